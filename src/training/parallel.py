"""Parallel setup and the collective exchanges of data- and hybrid-parallel training.

parallel_mode
  stand_alone      one process.
  data_parallel    every rank holds the whole table; MLP gradients are all-reduced and the sparse
                   table gradients (rows + vectors) all-gathered, so every rank applies the same
                   update, averaged over the global batch.
  hybrid_parallel  each table is row-wise sharded, placed whole on one rank, or replicated, by a
                   sharding plan (src/training/sharding.py); the MLPs and the interaction are
                   data-parallel. Per step, a rank with B samples and S_ex exchanged slots sends each
                   owner only the distinct rows it needs from it (send blocks padded to a capacity C
                   that the ranks agree on per step, about B*S_ex/N):
                     ids      all-to-all  [N*C] int32      -> each owner gets the rows asked of it
                     vectors  all-to-all  [N*C, D]         -> each rank gets its own lookups back
                     grads    all-to-all  [N*C, D]         -> owners update their rows
                     MLPs     AllReduce of the MLP gradients, the replicated tables' gradients and the loss
                   so the bytes a rank sends per step do not grow with N.
MindSpore 2.10's CPU backend has AllGather and AllReduce but no AlltoAll (nor ReduceScatter): on CPU
the all-to-all is N-1 rounds of AllGather, each carrying one block per rank (AllToAll below: the same
numbers; the same bytes as a native all-to-all at N = 2, N-1 times them beyond). GPU (NCCL) and Ascend
(HCCL) use ops.AlltoAll.
Everything is explicit collectives in GRAPH_MODE cells: no shard strategies, so the same code runs
on all three backends (semi-auto/auto parallel fail on CPU in 2.10).
"""
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

if TYPE_CHECKING:
    from src.training.sharding import Routed

@dataclass(frozen=True)
class ParallelInfo:
    """This process's place in the job: parallel_mode, rank and number of ranks."""
    mode: str = "stand_alone"
    rank: int = 0
    size: int = 1

    @property
    def hybrid(self) -> bool:
        """Table rows split across ranks (hybrid_parallel with more than one rank)."""
        return self.mode == "hybrid_parallel" and self.size > 1

    @property
    def distributed(self) -> bool:
        """More than one rank."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: writes loss.log, eval.log and the merged checkpoint."""
        return self.rank == 0


def init_parallel(cfg) -> ParallelInfo:
    """Start communication for data/hybrid parallel (after the device is set). Returns ParallelInfo."""
    if cfg.parallel_mode == "stand_alone":
        return ParallelInfo()
    from mindspore.communication import get_group_size, get_rank, init
    try:
        init()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"parallel_mode={cfg.parallel_mode}: communication init failed ({first}). Start "
                           f"distributed training with scripts/run_distribute_train_{{cpu,gpu,ascend}}.sh "
                           f"(msrun or a rank table), not plain python") from None
    return ParallelInfo(cfg.parallel_mode, get_rank(), get_group_size())


def distributed_device_id() -> Optional[int]:
    """DEVICE_ID when a launcher set it (Ascend rank table); None lets msrun's local rank decide."""
    value = os.environ.get("DEVICE_ID")
    return int(value) if value not in (None, "") else None


def bytes_per_step(mode: str, n: int, batch: int, slots: int, dim: int, mlp_params: int,
                   exchanged_slots: Optional[int] = None, replicated_rows: int = 0,
                   native_alltoall: bool = True) -> Dict[str, float]:
    """Bytes each rank sends per training step, float32 values and int32 ids, ring algorithms (AllGather
    sends (N-1)/N of the gathered tensor, AllReduce twice that of its input).
    hybrid_parallel: an all-to-all sends (N-1)/N of its [N*C] buffer; taken at C = B*S_ex/N (every lookup
    distinct and the owners balanced: duplicates make it less, skew more), so it is flat in N. Emulated by
    N-1 AllGathers (native_alltoall=False, CPU) it is N-1 times that. Replicated tables' gradients [R_rep, D] ride in
    the MLPs' all-reduce."""
    if n <= 1:
        return {"total": 0}
    ring = (n - 1) / n
    if mode != "hybrid_parallel":
        m = batch * slots
        out = {"mlp_and_loss_allreduce": 2 * ring * (mlp_params + 1) * 4, "ids_allgather": ring * n * m * 4,
               "grads_allgather": ring * n * m * dim * 4}
        out["total"] = sum(out.values())
        return out
    m = batch * (slots if exchanged_slots is None else exchanged_slots)
    sent = ring * m * (1 if native_alltoall else n - 1)              # lookups that leave the rank, per tensor
    how = "alltoall" if native_alltoall else "alltoall_as_allgathers"
    out = {"mlp_and_loss_allreduce": 2 * ring * (mlp_params + replicated_rows * dim + 1) * 4,
           f"ids_{how}": sent * 4, f"vectors_{how}": sent * dim * 4, f"grads_{how}": sent * dim * 4}
    out["total"] = sum(out.values())
    return out


class Barrier(nn.Cell):
    """All ranks meet here (an AllReduce of one number)."""

    def __init__(self):
        super().__init__()
        self.all_reduce = ops.AllReduce()
        self.one = Tensor(np.ones(1, np.float32))

    def construct(self):
        return self.all_reduce(self.one)


class AllGatherCell(nn.Cell):
    """x [m, ...] on each rank -> [N*m, ...], rank-major."""

    def __init__(self):
        super().__init__()
        self.all_gather = ops.AllGather()

    def construct(self, x):
        return self.all_gather(x)


class AllToAll(nn.Cell):
    """x [N*C, ...] whose block k goes to rank k -> [N*C, ...] whose block k came from rank k.
    native: ops.AlltoAll (NCCL on GPU, HCCL on Ascend). Otherwise (CPU, which has no all-to-all kernel)
    N-1 rounds of AllGather: in round j every rank contributes its block for rank (rank + j) mod N and
    keeps the block that rank (rank - j) mod N sent it; its own block never leaves it. The same numbers;
    each rank sends (N-1) x (N-1) blocks instead of N-1 (equal for N = 2)."""

    def __init__(self, info: ParallelInfo, native: bool):
        super().__init__()
        self.size, self.rank, self.native = info.size, info.rank, native
        if native:
            from mindspore.communication import GlobalComm
            self.op = ops.AlltoAll(info.size, 0, 0, GlobalComm.WORLD_COMM_GROUP)
        else:
            self.all_gather = ops.AllGather()
            self.round_of = [(info.rank - src) % info.size for src in range(info.size)]   # round that brings src's block

    def construct(self, x):
        if self.native:
            return self.op(x)
        c = x.shape[0] // self.size                  # contiguous dim-0 slices only (a reshape to [N, C, ...]
        got = ()                                      # and indexing it measured 5x slower on CPU)
        for j in range(1, self.size):
            dst = (self.rank + j) % self.size
            got = got + (self.all_gather(x[dst * c:(dst + 1) * c]),)                # [N*C, ...] source-major
        parts = ()
        for src in range(self.size):
            j = self.round_of[src]
            if j == 0:
                parts = parts + (x[self.rank * c:(self.rank + 1) * c],)
            else:
                parts = parts + (got[j - 1][src * c:(src + 1) * c],)
        return ops.concat(parts, 0)


class ShardedLookup(nn.Cell):
    """The embeddings of this rank's batch under a sharding plan (src/training/sharding.py). The local
    table float32 [R_local, D] is passed in (a Parameter kept by two cells is renamed).

    rep_rows int32 [B, S_rep]: local rows of the replicated slots (looked up here; [B, 1] unused when S_rep = 0).
    send int32 [N*C]: block k = this rank's distinct rows owned by rank k (rows of k's local table, -1 pad).
    inverse int32 [B*S_ex]: each exchanged lookup's place in the [N*C] vectors that come back.
    -> (emb float32 [B, S, D] in slot order; recv int32 [N*C] rows the other ranks asked of this one).
    ids out, vectors back: two all-to-alls (the gradients go back by a third, in the train step).
    """

    def __init__(self, info: ParallelInfo, native: bool, rep_slots, ex_slots, dim: int):
        super().__init__()
        self.a2a = AllToAll(info, native)
        self.n_rep, self.n_ex, self.dim = len(rep_slots), len(ex_slots), dim
        order = list(rep_slots) + list(ex_slots)                             # slots as concatenated
        self.to_slot_order = Tensor(np.argsort(order).astype(np.int32))      # [S] int32
        self.from_slot_order = Tensor(np.array(order, np.int32))
        self.identity = order == sorted(order)

    def construct(self, table, rep_rows, send, inverse):
        b = rep_rows.shape[0]
        recv = self.a2a(send) if self.n_ex else send                         # [N*C] int32
        parts = ()
        if self.n_rep:
            parts += (ops.gather(table, rep_rows.reshape(-1), 0).reshape(b, self.n_rep, self.dim),)
        if self.n_ex:
            vec = ops.gather(table, ops.maximum(recv, 0), 0)                 # [N*C, D] rows asked of this rank
            got = self.a2a(vec)                                              # [N*C, D] rows this rank asked for
            parts += (ops.gather(got, inverse, 0).reshape(b, self.n_ex, self.dim),)
        emb = ops.concat(parts, 1) if len(parts) > 1 else parts[0]
        if not self.identity:
            emb = ops.gather(emb, self.to_slot_order, 1)
        return emb, recv

    def split(self, g_emb: Tensor) -> Tuple[Tensor, Tensor]:
        """g float32 [B, S, D] in slot order -> (replicated slots' [B*S_rep, D], exchanged slots' [B*S_ex, D]);
        with one kind only, both are the whole [B*S, D]."""
        if not self.identity:
            g_emb = ops.gather(g_emb, self.from_slot_order, 1)
        if self.n_rep and self.n_ex:
            return g_emb[:, :self.n_rep].reshape(-1, self.dim), g_emb[:, self.n_rep:].reshape(-1, self.dim)
        g = g_emb.reshape(-1, self.dim)
        return g, g


class ShardedProbability(nn.Cell):
    """Hybrid-parallel inference on one rank: (dense float32 [B, Dn], rep_rows, send, inverse: see
    ShardedLookup) -> click probability float32 [B, 1] for this rank's batch; a collective: every rank
    calls it with the same capacity C."""

    def __init__(self, net, lookup: ShardedLookup):
        super().__init__()
        self.net = net
        self.lookup = lookup
        self.table = net.table

    def construct(self, dense, rep_rows, send, inverse):
        emb, _ = self.lookup(self.table, rep_rows, send, inverse)
        return ops.sigmoid(self.net.from_embeddings(dense, emb))


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
        """(ids int32 [B, S], dense, label) -> (Routed, dense, label)."""
        for ids, dense, label in batches:
            yield self.router.route(ids), dense, label

    def inputs(self, routed: "Routed", batch: int, need: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """-> Tensors (rep_rows int32 [B, S_rep], send int32 [N*C], inverse int32 [B*S_ex]). need: the
        largest need over the ranks when already agreed (agreed()); None: a collective agrees on it now."""
        if need is None:
            self.own_agreements += 1
            need = int(self.gather(Tensor(np.array([routed.need], np.float32))).asnumpy().max())
        send, inverse = self.router.pack(routed, self.router.capacity(need, batch))
        return Tensor(routed.rep_rows), Tensor(send), Tensor(inverse)

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
