"""Serving heads of a trained DLRM: the click probability, and the same with the table in float16 or int8 for a
smaller export. (ids int32 [B, L], dense float32 [B, Dn]) -> probability float32 [B, 1]; `IdsOnly` gives a model
without dense features its one-input form."""
from typing import Sequence

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from src.model.dlrm import DLRM


class DLRMProbability(nn.Cell):
    """Inference/export head: (ids int32 [B, L], dense float32 [B, Dn]) -> click probability float32 [B, 1]."""

    def __init__(self, net: DLRM):
        super().__init__()
        self.net = net
        self.spec = net.spec

    def construct(self, ids, dense):
        return ops.sigmoid(self.net(ids, dense))

    def ids_only(self, ids: Tensor) -> Tensor:
        """A model without dense features: ids int32 [B, L] -> probability float32 [B, 1]."""
        emb = self.net.sparse_arch(ids)
        return ops.sigmoid(self.net.over_arch(self.net.interaction(emb, emb)))      # x is unused without dense


class CompactSparseArch(nn.Cell):
    """Serving form of SparseArch: ids int32 [B, S] -> embeddings float32 [B, S, D] from a smaller table.

    float16: table float16 [R, D]; the B*S gathered rows are widened to float32.
    int8 (row-wise quantisation): table int8 [R, D] with a float32 scale s and offset o per row,
      q = round((x - min_r) / s_r) - 128 with s_r = (max_r - min_r) / 255 (1 where the row is constant),
      o_r = min_r + 128 s_r, and x ~ q * s_r + o_r, computed after the gather: only the batch's rows are
      widened. 16 + 8 bytes a row at D = 16, against 64 for float32 (0.375x).
    Example (Kaggle, D = 16): 33,762,577 rows -> 1.08 GB (float16) or 0.81 GB (int8) instead of 2.16 GB.
    """
    CHUNK = 1 << 20

    def __init__(self, table: np.ndarray, offsets: Sequence[int], dtype: str):
        super().__init__()
        if dtype not in ("float16", "int8"):
            raise ValueError(f"table dtype {dtype!r} is not float16 or int8")
        self.int8 = dtype == "int8"
        self.offsets = Tensor(np.asarray(offsets, np.int32)[None, :])        # [1, S] int32
        if not self.int8:
            self.table = Parameter(Tensor(table.astype(np.float16)), name="table_fp16", requires_grad=False)
            return
        q = np.empty(table.shape, np.int8)
        scale = np.empty((len(table), 1), np.float32)
        offset = np.empty((len(table), 1), np.float32)
        for lo in range(0, len(table), self.CHUNK):                          # bounded extra memory
            x = table[lo:lo + self.CHUNK]
            mn, mx = x.min(1, keepdims=True), x.max(1, keepdims=True)
            s = np.where(mx > mn, (mx - mn) / 255.0, 1.0).astype(np.float32)
            q[lo:lo + self.CHUNK] = (np.clip(np.rint((x - mn) / s), 0, 255) - 128).astype(np.int8)
            scale[lo:lo + self.CHUNK], offset[lo:lo + self.CHUNK] = s, mn + 128.0 * s
        self.table = Parameter(Tensor(q), name="table_int8", requires_grad=False)
        self.scale = Parameter(Tensor(scale), name="row_scale", requires_grad=False)
        self.offset = Parameter(Tensor(offset), name="row_offset", requires_grad=False)

    def construct(self, ids):
        rows = ids + self.offsets                                             # [B, S] int32
        emb = ops.gather(self.table, rows, 0).astype(ms.float32)              # [B, S, D]
        if self.int8:
            emb = emb * ops.gather(self.scale, rows, 0) + ops.gather(self.offset, rows, 0)
        return emb


class CompactDLRMProbability(nn.Cell):
    """DLRMProbability with the table in float16 or int8 (CompactSparseArch); the dense part is the
    trained network's own cells. (ids int32 [B, S], dense float32 [B, Dn]) -> probability float32 [B, 1]."""

    def __init__(self, net: "DLRM", dtype: str):
        super().__init__()
        self.spec = net.spec
        self.sparse_arch = CompactSparseArch(net.table.asnumpy(), net.spec.offsets, dtype)
        self.with_dense = net.with_dense
        if self.with_dense:
            self.dense_arch = net.dense_arch
        self.interaction, self.over_arch = net.interaction, net.over_arch

    def construct(self, ids, dense):
        x = self.dense_arch(dense) if self.with_dense else dense
        return ops.sigmoid(self.over_arch(self.interaction(x, self.sparse_arch(ids))))

    def ids_only(self, ids: Tensor) -> Tensor:
        """A model without dense features: ids int32 [B, L] -> probability float32 [B, 1]."""
        emb = self.sparse_arch(ids)
        return ops.sigmoid(self.over_arch(self.interaction(emb, emb)))                # x is unused without dense


class IdsOnly(nn.Cell):
    """The export head of a model without dense features: ids int32 [B, L] -> probability float32 [B, 1], one input
    (inference runtimes reject a [B, 0] input: MindSpore Lite 2.0.0's build fails with "Unsupported Feature")."""

    def __init__(self, head: nn.Cell):
        super().__init__()
        self.head, self.spec = head, head.spec

    def construct(self, ids):
        return self.head.ids_only(ids)
