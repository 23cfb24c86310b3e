"""DLRM (Naumov et al. 2019) as small MindSpore cells, built from a DLRMSpec (src/model_utils/spec.py).

    ids [B,L] int32 --SparseArch (lookup, pooling)--> emb [B,S,D] ---+
                                                                      +--interaction--> [B,F] --OverArch--> logit [B,1]
    dense [B,Dn] float32 --DenseArch--> x [B,Dx] --------------------+

L = spec.lookups (ids per sample: one per categorical slot, max_len per multi_hot slot, -1 pads, pooled by
src/model/pooling.py), S = spec.slots (tables), Dn = spec.dense_dim, D = spec.emb_dim, Dx = spec.dense_out
(the bottom MLP's last width; no bottom MLP and Dx = 0 without dense features), F = spec.interaction_width; the
interaction cell is the spec's kind (src/model/interactions.py). All tables live in one fused [spec.total_rows, D]
float32 parameter with per-slot row offsets (spec.offsets): one gather and one scatter per step instead of 26 of each
(each MindSpore CPU kernel launch costs ~0.1 ms at batch 128, so 26 small tables would add ~5 ms a step).
Initialisation follows the reference DLRM: a table of n rows ~ U(-1/sqrt(n), 1/sqrt(n)); MLP weights
~ N(0, sqrt(2/(in+out))), biases ~ N(0, sqrt(1/out)); all from numpy generators seeded by `seed`.
Serving heads (probability, compact tables) are in src/model/serving.py.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Initializer, initializer

from src.model.interactions import interaction_cell
from src.model.pooling import Pooling, lookup_rows
from src.model_utils.spec import DLRMSpec


class SlotUniform(Initializer):
    """Fills a table holding the fused-table row ranges `segments` [(lo, hi), ...] one after another
    (default: all rows): rows of a slot with n rows ~ U(-1/sqrt(n), 1/sqrt(n)).

    Every (slot, 2^20-row chunk) has its own generator seeded (seed, slot, chunk), so a rank holding some
    rows makes exactly the values of the single-device table for them without making the rest; the table
    is filled in place (peak: one table copy plus one 64 MB chunk)."""
    CHUNK = 1 << 20

    def __init__(self, spec: DLRMSpec, seed: int, segments: Optional[Sequence[Tuple[int, int]]] = None):
        super().__init__()
        self.tables, self.seed = list(zip(spec.table_sizes, spec.offsets)), seed      # (rows, first fused row)
        self.segments = list(segments) if segments is not None else [(0, spec.total_rows)]

    def _initialize(self, arr):
        at = 0
        for lo, hi in self.segments:
            self._fill(arr[at:at + hi - lo], lo, hi)
            at += hi - lo

    def _fill(self, arr, lo, hi):
        for slot, (n, off) in enumerate(self.tables):
            bound = np.float32(1.0 / np.sqrt(n))
            for c0 in range(0, n, self.CHUNK):
                g0, g1 = off + c0, off + min(n, c0 + self.CHUNK)          # global rows of this chunk
                a, b = max(g0, lo), min(g1, hi)
                if a >= b:
                    continue
                rng = np.random.default_rng([self.seed, 1000 + slot, c0 // self.CHUNK])
                vals = rng.random((g1 - g0, arr.shape[1]), dtype=np.float32)[a - g0:b - g0]
                vals *= 2.0 * bound
                vals -= bound
                arr[a - lo:b - lo] = vals


def _mlp(widths: Sequence[int], in_dim: int, seed, relu_last: bool, fp16: bool) -> nn.SequentialCell:
    rng = np.random.default_rng(seed)
    layers = []
    for i, out in enumerate(widths):
        w = rng.normal(0.0, np.sqrt(2.0 / (in_dim + out)), (out, in_dim)).astype(np.float32)
        b = rng.normal(0.0, np.sqrt(1.0 / out), (out,)).astype(np.float32)
        dense = nn.Dense(in_dim, out, weight_init=Tensor(w), bias_init=Tensor(b))
        if fp16:
            dense.to_float(ms.float16)
        layers.append(dense)
        if relu_last or i < len(widths) - 1:
            layers.append(nn.ReLU())
        in_dim = out
    return nn.SequentialCell(layers)


class SparseArch(nn.Cell):
    """ids int32 [B, L] (per-slot ids; a multi_hot slot's list, -1 pads) -> embeddings float32 [B, S, D] from one
    fused table: `lookup` gives the rows [B, L, D], `pool` (with multi_hot slots; src/model/pooling.py) one vector
    per slot.

    With `segments` [(lo, hi), ...] (hybrid parallel, from src/training/sharding.py) this rank holds only
    those row ranges of the fused table, one after another: table float32 [sum(hi - lo), D]; the lookup
    across ranks is src/training/sharded_lookup.py's ShardedLookup, and `construct` (single-device lookup) is
    not used.

    Example: table_sizes [3, 5], dim 4 -> table float32 [8, 4], offsets [[0, 3]];
    ids [[2, 0]] -> rows [[2, 3]] -> embeddings float32 [1, 2, 4].
    """

    def __init__(self, spec: DLRMSpec, seed: int, segments: Optional[Sequence[Tuple[int, int]]] = None):
        super().__init__()
        self.rows = spec.total_rows
        self.segments = [tuple(s) for s in segments] if segments is not None else [(0, self.rows)]
        self.offsets = Tensor(np.asarray(spec.lookup_offsets, np.int32)[None, :])     # [1, L] int32
        self.pooled = spec.pooled
        if self.pooled:
            self.pooling = Pooling(spec)
        local = sum(hi - lo for lo, hi in self.segments)
        init = SlotUniform(spec, seed, self.segments)
        self.table = Parameter(initializer(init, (local, spec.emb_dim), ms.float32), name="table")

    def global_ids(self, ids: Tensor) -> Tensor:
        """ids int32 [B, L] -> rows of the fused table int32 [B, L] (a pad: its slot's row 0)."""
        return lookup_rows(ids, self.offsets) if self.pooled else ids + self.offsets

    def pool(self, emb: Tensor, ids: Tensor) -> Tensor:
        """Looked-up rows float32 [B, L, D] and the ids int32 [B, L] -> per-slot embeddings float32 [B, S, D]."""
        return self.pooling(emb, ids) if self.pooled else emb

    def construct(self, ids):
        return self.pool(ops.gather(self.table, self.global_ids(ids), 0), ids)


class DenseArch(nn.Cell):
    """dense float32 [B, Dn] -> x float32 [B, bottom[-1]] (ReLU after every layer).

    Example: in_dim 13, widths [512, 256, 64, 16]: dense [128, 13] -> x [128, 16].
    """

    def __init__(self, in_dim: int, widths: Sequence[int], seed, fp16: bool = False):
        super().__init__()
        self.mlp = _mlp(widths, in_dim, seed, relu_last=True, fp16=fp16)

    def construct(self, dense):
        return self.mlp(dense).astype(ms.float32)


class OverArch(nn.Cell):
    """features float32 [B, F] -> logit float32 [B, 1] (ReLU between layers, none after the last).

    Example: in_dim 367, widths [512, 256, 1]: features [128, 367] -> logit [128, 1].
    """

    def __init__(self, in_dim: int, widths: Sequence[int], seed, fp16: bool = False):
        super().__init__()
        self.mlp = _mlp(widths, in_dim, seed, relu_last=False, fp16=fp16)

    def construct(self, z):
        return self.mlp(z).astype(ms.float32)


class DLRM(nn.Cell):
    """(ids int32 [B, L], dense float32 [B, Dn]) -> click logit float32 [B, 1].

    Example (Criteo Kaggle, batch 128): ids [128, 26], dense [128, 13] -> DenseArch x [128, 16],
    SparseArch emb [128, 26, 16] -> interaction [128, 367] -> OverArch logit [128, 1].

    The train step, the hybrid-parallel exchange and the size estimate use the table through
    `table`, `global_rows`, `segments` and `row_sharded_params`, the dense part through `from_embeddings` and
    `mlp_params`, and every size through `spec`.
    """

    def __init__(self, spec: DLRMSpec, seed: int = 123, fp16: bool = False,
                 segments: Optional[Sequence[Tuple[int, int]]] = None, cpu_kernels: bool = False):
        super().__init__()
        self.spec = spec
        self.sparse_arch = SparseArch(spec, seed, segments)
        self.with_dense = spec.dense_dim > 0
        if self.with_dense:
            self.dense_arch = DenseArch(spec.dense_dim, spec.bottom, [seed, 1], fp16)
        self.interaction = interaction_cell(spec, [seed, 3], cpu_kernels)
        self.over_arch = OverArch(spec.interaction_width, spec.top, [seed, 2], fp16)

    @property
    def table(self) -> Parameter:
        """This process's rows of the fused embedding table, float32 [sum of its segments' rows, D]."""
        return self.sparse_arch.table

    @property
    def segments(self) -> List[Tuple[int, int]]:
        """[(lo, hi), ...]: the fused-table row ranges this process holds, in the order of its table."""
        return self.sparse_arch.segments

    def global_rows(self, ids: Tensor) -> Tensor:
        """ids int32 [B, L] -> rows of the fused table int32 [B, L]."""
        return self.sparse_arch.global_ids(ids)

    def from_embeddings(self, dense: Tensor, emb: Tensor) -> Tensor:
        """The differentiable part: dense float32 [B, Dn], emb float32 [B, S, D] -> logit float32 [B, 1]."""
        x = self.dense_arch(dense) if self.with_dense else dense
        return self.over_arch(self.interaction(x, emb))

    def from_lookups(self, dense: Tensor, emb: Tensor, ids: Tensor) -> Tensor:
        """from_embeddings of the looked-up rows float32 [B, L, D], pooled by the ids int32 [B, L] -> logit
        float32 [B, 1]."""
        return self.from_embeddings(dense, self.sparse_arch.pool(emb, ids))

    def construct(self, ids, dense):
        return self.from_embeddings(dense, self.sparse_arch(ids))

    def row_sharded_params(self) -> List[Parameter]:
        """Parameters split by rows across hybrid-parallel ranks (the fused table)."""
        return [self.sparse_arch.table]

    def mlp_params(self) -> List[Parameter]:
        """Every trainable parameter but the table (data-parallel in every mode)."""
        return [p for p in self.trainable_params() if p is not self.sparse_arch.table]


def build_model(spec: DLRMSpec, seed: int = 123, fp16: bool = False,
                segments: Optional[Sequence[Tuple[int, int]]] = None, cpu_kernels: bool = False) -> DLRM:
    """The DLRM of a spec, initialised from `seed` (float16 MLPs with fp16); `segments` (the fused-table rows it
    holds) for a hybrid-parallel rank; `cpu_kernels` (device CPU only) uses the fused CPU kernels
    (src/model/cpu_kernels/) where they can be built; exports build with the stock ops."""
    return DLRM(spec, seed, fp16, segments, cpu_kernels)
