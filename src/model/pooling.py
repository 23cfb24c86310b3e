"""Multi-hot pooling: the L looked-up rows of a sample -> one vector per slot (sum or mean over a list's ids).

    emb float32 [B, L, D], ids int32 [B, L] (-1 = a pad) --Pooling--> pooled float32 [B, S, D]

A categorical slot has one column of the ids input and passes through; a multi_hot slot has max_len consecutive
columns (DLRMSpec.lookup_slots), summed, or averaged over its real ids (pooling mean), with the pads weighted 0.
An empty list gives a zero vector. The pads were looked up as their slot's row 0 (DLRMSpec.lookup_offsets), so
the gradient they send back is 0: the sparse update stays the batch's rows only and exact.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from src.model_utils.spec import DLRMSpec


def lookup_rows(ids: Tensor, offsets: Tensor) -> Tensor:
    """ids int32 [B, L] (-1 pads) + offsets int32 [1, L] -> rows of the fused table int32 [B, L] (a pad -> its
    slot's row 0; Pooling weights it 0)."""
    return ops.maximum(ids, 0) + offsets


class Pooling(nn.Cell):
    """(emb float32 [B, L, D], ids int32 [B, L]) -> pooled float32 [B, S, D] (see the module docstring).

    pool() is a MatMul with the constant membership matrix P float32 [L, S] (P[l, s] = 1 when column l belongs to
    slot s) over the weighted rows: MatMul, Transpose and Reshape export to MINDIR and ONNX alike (a segment sum does
    not export to ONNX), so the export and the C++ path compute what training computed; it was also the fastest of
    MatMul, segment sum, cumulative sum and split-and-sum measured (docs/benchmarks.md). The train step does not
    differentiate through it: pooling is linear, so a lookup's gradient is its slot's gradient times its weight
    (spread(), one gather).

    Example: slots [C1 categorical, tags multi_hot max_len 3 sum]: L = 4, S = 2;
    ids [[7, 2, 5, -1]] -> [[emb(7), emb(2) + emb(5)]]; with pooling mean: [[emb(7), (emb(2) + emb(5)) / 2]].
    """

    def __init__(self, spec: DLRMSpec):
        super().__init__()
        slots = np.asarray(spec.lookup_slots, np.int64)
        member = np.zeros((len(slots), spec.slots), np.float32)
        member[np.arange(len(slots)), slots] = 1.0
        self.member = Tensor(member)                                                    # [L, S]
        self.member_t = Tensor(np.ascontiguousarray(member.T))                          # [S, L]
        self.slot_of = Tensor(slots.astype(np.int32))                                   # [L]
        self.has_mean = bool(spec.mean_pooled_slots)
        self.is_mean = Tensor(np.isin(slots, spec.mean_pooled_slots).astype(np.float32)[None, :])   # [1, L]
        self.slots, self.dim = spec.slots, spec.emb_dim

    def weights(self, ids: Tensor) -> Tensor:
        """ids int32 [B, L] -> weight float32 [B, L] of every lookup: 0 for a pad, 1 / the list's length in a
        mean-pooled slot, 1 otherwise."""
        mask = (ids >= 0).astype(ms.float32)                                           # [B, L]
        if not self.has_mean:
            return mask
        count = ops.matmul(ops.matmul(mask, self.member), self.member_t)               # [B, L]: its list's length
        return mask / (self.is_mean * (ops.maximum(count, 1.0) - 1.0) + 1.0)

    def pool(self, emb: Tensor, weight: Tensor) -> Tensor:
        """Rows float32 [B, L, D] and their weights float32 [B, L] -> pooled float32 [B, S, D]."""
        b, l, d = emb.shape
        flat = (emb * weight.expand_dims(2)).transpose(0, 2, 1).reshape(b * d, l)         # [B*D, L]
        return ops.matmul(flat, self.member).reshape(b, d, self.slots).transpose(0, 2, 1)   # [B, S, D]

    def spread(self, grad: Tensor, weight: Tensor) -> Tensor:
        """The gradient w.r.t. the pooled vectors float32 [B, S, D] -> w.r.t. the rows float32 [B, L, D] (pool()'s
        transpose: each row gets its slot's gradient times its weight; 0 for a pad)."""
        return ops.gather(grad, self.slot_of, 1) * weight.expand_dims(2)

    def pool_columns(self, emb: Tensor, weight: Tensor) -> Tensor:
        """pool() of the rows gathered column-major, float32 [L, B, D] (weight float32 [L, B]) -> pooled float32
        [B, S, D]: the big tensor needs no transpose (the single-process and data-parallel train step's layout: its
        step at MLPerf's sizes, batch 16384, ran 18% faster than with pool(), docs/benchmarks.md)."""
        l, b, d = emb.shape
        flat = (emb * weight.expand_dims(2)).reshape(l, b * d)                           # [L, B*D]
        return ops.matmul(self.member_t, flat).reshape(self.slots, b, d).transpose(1, 0, 2)  # [B, S, D]

    def spread_columns(self, grad: Tensor, weight: Tensor) -> Tensor:
        """spread() for the column-major layout: grad float32 [B, S, D], weight float32 [L, B] -> float32 [L, B, D]."""
        return ops.gather(grad.transpose(1, 0, 2), self.slot_of, 0) * weight.expand_dims(2)

    def construct(self, emb, ids):
        return self.pool(emb, self.weights(ids))
