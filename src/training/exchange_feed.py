"""Host side of the hybrid exchange for one rank: routing batches (sharding.Router, in the data thread) and
agreeing with the other ranks on each step's exchange capacity."""
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Tuple

import numpy as np
from mindspore import Tensor, nn

from src.training.collectives import AllGatherCell

if TYPE_CHECKING:
    from src.training.sharding import Routed


class ExchangeFeed:
    """Host side of the hybrid exchange for one rank: routes batches with a src.training.sharding.Router
    (in the data thread) and agrees with the other ranks on each step's capacity C (every rank must call
    the exchange with the same shapes). In training the agreement rides in the previous step's AllReduce:
    each rank announces its next batch's need (announce), the step sums the announcements (HybridTrainStep)
    and agreed() reads the result; without one (first step of an epoch, evaluation) an AllGather of one
    number per rank agrees."""

    def __init__(self, router):
        self.router = router
        self.gather = AllGatherCell()
        self.own_agreements = 0                  # steps that needed their own agreement collective

    def routed(self, batches: Iterable) -> Iterator:
        """(ids int32 [B, L], dense, label) -> (Routed, dense, label)."""
        for ids, dense, label in batches:
            yield self.router.route(ids), dense, label

    def inputs(self, routed: "Routed", batch: int, need: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """-> Tensors (rep_rows int32 [B, L_rep], send int32 [N*C], inverse int32 [B*L_ex], ids int32 [B, L] for
        the multi_hot pooling or [1, 1]). need: the
        largest need over the ranks when already agreed (agreed()); None: a collective agrees on it now."""
        if need is None:
            self.own_agreements += 1
            need = int(self.gather(Tensor(np.array([routed.need], np.float32))).asnumpy().max())
        send, inverse = self.router.pack(routed, self.router.capacity(need, batch))
        return Tensor(routed.rep_rows), Tensor(send), Tensor(inverse), Tensor(routed.ids)

    def train_step(self, step: nn.Cell, routed: "Routed", dense: np.ndarray, label: np.ndarray,
                   upcoming: Optional[tuple], need: Optional[int]) -> Tuple[float, Optional[int]]:
        """One HybridTrainStep on this rank's routed batch (dense float32 [B, Dn], label float32 [B, 1]).
        need: this step's capacity need as agreed in the step before (None: agreed now); upcoming: the next
        (Routed, dense, label) or None -> (mean loss over the global batch, the next step's agreed need or None)."""
        out = step(Tensor(dense), Tensor(label), *self.inputs(routed, len(label), need),
                   Tensor(self.announce(upcoming[0] if upcoming else None))).asnumpy()
        return float(out[0]), self.agreed(out[1:])

    def announce(self, upcoming: Optional["Routed"]) -> np.ndarray:
        """float32 [N]: 1 + the upcoming batch's need at this rank's index, 0 elsewhere (all 0 when this rank
        has no upcoming batch). Exact in float32 up to 2^24 rows per block."""
        out = np.zeros(self.router.ranks, np.float32)
        if upcoming is not None:
            out[self.router.rank] = upcoming.need + 1
        return out

    @staticmethod
    def agreed(summed: np.ndarray) -> Optional[int]:
        """The announcements summed over the ranks, float32 [N] -> the largest need, or None when a rank
        announced nothing (the next step then agrees by itself)."""
        if np.any(summed < 0.5):
            return None
        return int(np.rint(summed.max())) - 1
