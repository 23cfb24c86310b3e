"""DLRM (Naumov et al. 2019) as small MindSpore cells.

    ids [B,S] int32 --SparseArch--> emb [B,S,D] -----------------+
                                                                  +--InteractionArch--> [B,F] --OverArch--> logit [B,1]
    dense [B,Dn] float32 --DenseArch--> x [B,D] -----------------+

S = slot_dim (26), Dn = dense_dim (13), D = data_emb_dim (16). F = D + S'(S'-1)/2 for the dot
interaction over S' = S + 1 vectors (367 for Criteo), D + S*D for `cat`.
All tables live in one fused [sum(table_sizes), D] float32 parameter with per-slot row offsets:
one gather and one scatter per step instead of 26 of each (each MindSpore CPU kernel launch costs
~0.1 ms at batch 128, so 26 small tables would add ~5 ms a step).
Initialisation follows the reference DLRM: a table of n rows ~ U(-1/sqrt(n), 1/sqrt(n)); MLP weights
~ N(0, sqrt(2/(in+out))), biases ~ N(0, sqrt(1/out)); all from numpy generators seeded by `seed`.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Initializer, initializer


class SlotUniform(Initializer):
    """Fills a table holding the fused-table row ranges `segments` [(lo, hi), ...] one after another
    (default: all rows): rows of a slot with n rows ~ U(-1/sqrt(n), 1/sqrt(n)).

    Every (slot, 2^20-row chunk) has its own generator seeded (seed, slot, chunk), so a rank holding some
    rows makes exactly the values of the single-device table for them without making the rest; the table
    is filled in place (peak: one table copy plus one 64 MB chunk)."""
    CHUNK = 1 << 20

    def __init__(self, table_sizes, seed, segments=None):
        super().__init__()
        self.table_sizes, self.seed = list(table_sizes), seed
        self.segments = list(segments) if segments is not None else [(0, sum(self.table_sizes))]

    def _initialize(self, arr):
        at = 0
        for lo, hi in self.segments:
            self._fill(arr[at:at + hi - lo], lo, hi)
            at += hi - lo

    def _fill(self, arr, lo, hi):
        off = 0
        for slot, n in enumerate(self.table_sizes):
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
            off += n


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
    """ids int32 [B, S] (per-slot ids) -> embeddings float32 [B, S, D] from one fused table.

    With `segments` [(lo, hi), ...] (hybrid parallel, from src/training/sharding.py) this rank holds only
    those row ranges of the fused table, one after another: table float32 [sum(hi - lo), D]; the lookup
    across ranks is src/training/sharded_lookup.py's ShardedLookup, and `construct` (single-device lookup) is
    not used.

    Example: table_sizes [3, 5], dim 4 -> table float32 [8, 4], offsets [[0, 3]];
    ids [[2, 0]] -> rows [[2, 3]] -> embeddings float32 [1, 2, 4].
    """

    def __init__(self, table_sizes: Sequence[int], dim: int, seed: int,
                 segments: Optional[Sequence[Tuple[int, int]]] = None):
        super().__init__()
        self.table_sizes = list(table_sizes)
        self.rows = int(sum(self.table_sizes))
        self.segments = [tuple(s) for s in segments] if segments is not None else [(0, self.rows)]
        offsets = np.concatenate(([0], np.cumsum(self.table_sizes)[:-1])).astype(np.int32)
        self.offsets = Tensor(offsets[None, :])                              # [1, S] int32
        local = sum(hi - lo for lo, hi in self.segments)
        init = SlotUniform(self.table_sizes, seed, self.segments)
        self.table = Parameter(initializer(init, (local, dim), ms.float32), name="table")

    def global_ids(self, ids: Tensor) -> Tensor:
        """ids int32 [B, S] -> rows of the fused table int32 [B, S]."""
        return ids + self.offsets

    def construct(self, ids):
        return ops.gather(self.table, self.global_ids(ids), 0)


class DenseArch(nn.Cell):
    """dense float32 [B, Dn] -> x float32 [B, bottom_mlp_args[-1]] (ReLU after every layer).

    Example: in_dim 13, widths [512, 256, 64, 16]: dense [128, 13] -> x [128, 16].
    """

    def __init__(self, in_dim: int, widths: Sequence[int], seed, fp16: bool = False):
        super().__init__()
        self.mlp = _mlp(widths, in_dim, seed, relu_last=True, fp16=fp16)

    def construct(self, dense):
        return self.mlp(dense).astype(ms.float32)


class CrossLayer(nn.Cell):
    """One DCN-V2 cross layer (Wang et al. 2020): (x0, x) float32 [B, F] -> float32 [B, F],
        x_next = x0 * (U (V^T x) + b) + x      (low rank r: V [F, r], U [r, F] here as row-major maps)
        x_next = x0 * (W x + b) + x            (full rank, rank = 0: W [F, F])
    Init as the reference implementations (DCN-V2's, torchrec's CrossNet / LowRankCrossNet): every
    matrix Xavier/Glorot normal, N(0, sqrt(2 / (fan_in + fan_out))); the bias b zeros.
    """

    def __init__(self, dim: int, rank: int, rng: np.random.Generator):
        super().__init__()
        self.rank = rank
        glorot = lambda a, b: Tensor(rng.normal(0.0, np.sqrt(2.0 / (a + b)), (a, b)).astype(np.float32))  # noqa: E731
        if rank:
            self.v = Parameter(glorot(dim, rank), name="v")
            self.u = Parameter(glorot(rank, dim), name="u")
        else:
            self.w = Parameter(glorot(dim, dim), name="w")
        self.b = Parameter(Tensor(np.zeros(dim, np.float32)), name="b")

    def construct(self, x0, x):
        t = ops.matmul(ops.matmul(x, self.v), self.u) if self.rank else ops.matmul(x, self.w)
        return x0 * (t + self.b) + x


class CrossNet(nn.Cell):
    """DCN-V2's cross network: x0 float32 [B, F] -> x_L float32 [B, F] through `num_layers` CrossLayers.

    Example (Criteo, D = 16, dcn over the bottom output and the 26 embeddings): F = 16 + 26*16 = 432;
    3 full-rank layers hold 3 x (432*432 + 432) = 560,448 weights, rank 64 holds 3 x (2*432*64 + 432) = 167,184.
    """

    def __init__(self, dim: int, num_layers: int, rank: int, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.layers = nn.CellList([CrossLayer(dim, rank, rng) for _ in range(num_layers)])

    def construct(self, x0):
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


class InteractionArch(nn.Cell):
    """x float32 [B, Dx], emb float32 [B, S, D] -> float32 [B, Dx + pairs] (dot, which needs Dx = D),
    [B, Dx + S*D] (cat) or [B, Dx + S*D] (dcn). Dx is the bottom MLP's last width (`dense_out`, default D).

    dot: the S+1 vectors' pairwise dot products, strict lower triangle (S+1)S/2 values (351 for
    Criteo), or with the diagonal when `itself` ((S+1)(S+2)/2 values).
    cat: the concatenation [x, emb_1, ..., emb_S].
    dcn: the concatenation through DCN-V2's CrossNet (`dcn_layers` layers, rank `dcn_rank`, 0 = full).

    Example (Criteo, D = 16): x [128, 16], emb [128, 26, 16] -> dot [128, 16 + 351] = [128, 367];
    cat and dcn [128, 16 + 416] = [128, 432]. `out_dim` holds the width.
    """

    def __init__(self, num_slots: int, dim: int, op: str = "dot", itself: bool = False,
                 dense_out: Optional[int] = None, dcn_layers: int = 3, dcn_rank: int = 0, seed=0):
        super().__init__()
        self.op = op
        n = num_slots + 1
        li, lj = np.tril_indices(n, 0 if itself else -1)
        self.flat_index = Tensor((li * n + lj).astype(np.int32))             # [pairs] int32
        self.n = n
        self.out_dim = (dim if dense_out is None else dense_out) + (len(li) if op == "dot" else num_slots * dim)
        if op == "dcn":
            self.cross = CrossNet(self.out_dim, dcn_layers, dcn_rank, seed)

    def construct(self, x, emb):
        if self.op == "dot":
            t = ops.concat((x.expand_dims(1), emb), 1)                          # [B, S+1, D]
            z = ops.bmm(t, t.transpose(0, 2, 1)).reshape(x.shape[0], self.n * self.n)
            return ops.concat((x, ops.gather(z, self.flat_index, 1)), 1)
        flat = ops.concat((x, emb.reshape(x.shape[0], -1)), 1)                  # [B, Dx + S*D]
        if self.op == "dcn":
            return self.cross(flat)
        return flat


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
    """(ids int32 [B, S], dense float32 [B, Dn]) -> click logit float32 [B, 1].

    Example (Criteo Kaggle, batch 128): ids [128, 26], dense [128, 13] -> DenseArch x [128, 16],
    SparseArch emb [128, 26, 16] -> InteractionArch [128, 367] -> OverArch logit [128, 1].

    The train step, the hybrid-parallel exchange and the size estimate use the table through
    `table`, `global_rows`, `segments`, `num_rows`, `emb_dim` and `row_sharded_params`, and the
    dense part through `from_embeddings` and `mlp_params`.
    """

    def __init__(self, table_sizes: Sequence[int], dense_dim: int, emb_dim: int, bottom: Sequence[int],
                 top: Sequence[int], interaction_op: str = "dot", itself: bool = False, fp16: bool = False,
                 seed: int = 123, segments: Optional[Sequence[Tuple[int, int]]] = None, dcn_layers: int = 3,
                 dcn_rank: int = 0):
        super().__init__()
        if interaction_op == "dot" and bottom[-1] != emb_dim:
            raise ValueError(f"the dot interaction needs the bottom MLP to end with the embedding dimension: "
                             f"bottom {list(bottom)} ends with {bottom[-1]}, emb_dim is {emb_dim}")
        self.sparse_arch = SparseArch(table_sizes, emb_dim, seed, segments)
        self.dense_arch = DenseArch(dense_dim, bottom, [seed, 1], fp16)
        self.interaction = InteractionArch(len(table_sizes), emb_dim, interaction_op, itself, bottom[-1],
                                           dcn_layers, dcn_rank, [seed, 3])
        self.over_arch = OverArch(self.interaction.out_dim, top, [seed, 2], fp16)

    @property
    def table(self) -> Parameter:
        """This process's rows of the fused embedding table, float32 [sum of its segments' rows, D]."""
        return self.sparse_arch.table

    @property
    def table_sizes(self) -> List[int]:
        """Rows of each slot's table, in slot order."""
        return self.sparse_arch.table_sizes

    @property
    def num_rows(self) -> int:
        """Rows of the whole fused table (all ranks)."""
        return self.sparse_arch.rows

    @property
    def segments(self) -> List[Tuple[int, int]]:
        """[(lo, hi), ...]: the fused-table row ranges this process holds, in the order of its table."""
        return self.sparse_arch.segments

    @property
    def emb_dim(self) -> int:
        """Embedding dimension D."""
        return int(self.sparse_arch.table.shape[1])

    def global_rows(self, ids: Tensor) -> Tensor:
        """ids int32 [B, S] -> rows of the fused table int32 [B, S]."""
        return self.sparse_arch.global_ids(ids)

    def from_embeddings(self, dense: Tensor, emb: Tensor) -> Tensor:
        """The differentiable part: dense float32 [B, Dn], emb float32 [B, S, D] -> logit float32 [B, 1]."""
        return self.over_arch(self.interaction(self.dense_arch(dense), emb))

    def construct(self, ids, dense):
        return self.from_embeddings(dense, self.sparse_arch(ids))

    def row_sharded_params(self) -> List[Parameter]:
        """Parameters split by rows across hybrid-parallel ranks (the fused table)."""
        return [self.sparse_arch.table]

    def mlp_params(self) -> List[Parameter]:
        """Every trainable parameter but the table (data-parallel in every mode)."""
        return [p for p in self.trainable_params() if p is not self.sparse_arch.table]


class DLRMProbability(nn.Cell):
    """Inference/export head: (ids int32 [B, S], dense float32 [B, Dn]) -> click probability float32 [B, 1]."""

    def __init__(self, net: DLRM):
        super().__init__()
        self.net = net

    def construct(self, ids, dense):
        return ops.sigmoid(self.net(ids, dense))


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

    def __init__(self, table: np.ndarray, table_sizes: Sequence[int], dtype: str):
        super().__init__()
        if dtype not in ("float16", "int8"):
            raise ValueError(f"table dtype {dtype!r} is not float16 or int8")
        self.int8 = dtype == "int8"
        offsets = np.concatenate(([0], np.cumsum(table_sizes)[:-1])).astype(np.int32)
        self.offsets = Tensor(offsets[None, :])                              # [1, S] int32
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
        self.sparse_arch = CompactSparseArch(net.table.asnumpy(), net.table_sizes, dtype)
        self.dense_arch, self.interaction, self.over_arch = net.dense_arch, net.interaction, net.over_arch

    def construct(self, ids, dense):
        return ops.sigmoid(self.over_arch(self.interaction(self.dense_arch(dense), self.sparse_arch(ids))))


# The config keys that fix the network's shapes (with the table sizes); checkpoints record them.
ARCH_KEYS = ("dense_dim", "slot_dim", "data_emb_dim", "bottom_mlp_args", "top_mlp_args", "interaction_op",
             "interaction_itself", "dcn_num_layers", "dcn_low_rank_dim")


def build_model(cfg, table_sizes: Sequence[int], segments: Optional[Sequence[Tuple[int, int]]] = None) -> DLRM:
    """The DLRM of a config (ARCH_KEYS, convert_dtype, random_seed) over `table_sizes`; `segments` (the
    fused-table rows it holds) for a hybrid-parallel rank."""
    return DLRM(table_sizes, cfg.dense_dim, cfg.data_emb_dim, cfg.bottom_mlp_args, cfg.top_mlp_args,
                cfg.interaction_op, cfg.interaction_itself, cfg.convert_dtype, cfg.random_seed, segments,
                cfg.dcn_num_layers, cfg.dcn_low_rank_dim)


def model_size(net: DLRM, cfg) -> dict:
    """Rows, parameter counts and byte sizes (float32) of the whole model, for printing before training.
    A rank's expected peak memory is src/training/memory_plan.py's."""
    rows = net.num_rows
    table = rows * cfg.data_emb_dim
    mlp = int(sum(int(np.prod(p.shape)) for p in net.mlp_params()))
    opt_rows = rows if cfg.optimizer in ("adagrad", "adam") else 0          # row-wise accumulators
    opt_mlp = {"adagrad": mlp, "adam": 2 * mlp}.get(cfg.optimizer, 0)      # Adagrad acc; Adam m and v
    return {"rows": rows, "table_params": table, "mlp_params": mlp, "params": table + mlp,
            "param_bytes": 4 * (table + mlp), "optimizer_state_bytes": 4 * (opt_rows + opt_mlp),
            "checkpoint_bytes": 4 * (table + mlp + opt_rows + opt_mlp)}
