"""The interaction cells, one per kind of the spec's interaction (src/model_utils/spec.py), chosen by
`interaction_cell`: x float32 [B, Dx] (the bottom MLP's output; Dx = 0 without dense features), emb float32 [B, S, D]
-> float32 [B, F], F = spec.interaction_width.

Example (Criteo, D = 16, Dx = 16, S = 26): dot [128, 16 + 351] = [128, 367]; cat and dcn [128, 16 + 416] = [128, 432].
"""
from typing import Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.model.cpu_kernels.ops import dot_interaction_op
from src.model_utils.spec import DLRMSpec


class DotInteractionCell(nn.Cell):
    """dot: the pairwise dot products of the n = S (+1 with dense features) vectors, the strict lower triangle
    (n(n-1)/2 values, 351 for Criteo) or with the diagonal, after x. -> [B, Dx + pairs]; Dx must equal D.
    With `cpu_kernels` (CPU only) one fused kernel (src/model/cpu_kernels/dot_interaction.cc) replaces the concat,
    batched matmul, gather and concat, forward and backward, when it can be built."""

    def __init__(self, spec: DLRMSpec, seed: Sequence[int] = (), cpu_kernels: bool = False):
        super().__init__()
        inter = spec.interaction
        self.fused = dot_interaction_op(spec.interaction_width, spec.dense_out > 0) if cpu_kernels else None
        self.n = inter.vectors(spec.dense_out, spec.slots)
        self.with_dense = spec.dense_out > 0
        li, lj = np.tril_indices(self.n, 0 if inter.itself else -1)
        self.flat_index = Tensor((li * self.n + lj).astype(np.int32))          # [pairs] int32

    def construct(self, x, emb):
        if self.fused is not None:
            return self.fused(x, emb) if self.with_dense else self.fused(emb)
        t = ops.concat((x.expand_dims(1), emb), 1) if self.with_dense else emb   # [B, n, D]
        z = ops.bmm(t, t.transpose(0, 2, 1)).reshape(emb.shape[0], self.n * self.n)
        pairs = ops.gather(z, self.flat_index, 1)
        return ops.concat((x, pairs), 1) if self.with_dense else pairs


class CatInteractionCell(nn.Cell):
    """cat: the concatenation [x, emb_1, ..., emb_S] -> [B, Dx + S*D]."""

    def __init__(self, spec: DLRMSpec, seed: Sequence[int] = (), cpu_kernels: bool = False):
        super().__init__()
        self.with_dense = spec.dense_out > 0

    def construct(self, x, emb):
        flat = emb.reshape(emb.shape[0], -1)
        return ops.concat((x, flat), 1) if self.with_dense else flat


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


class DCNInteractionCell(CatInteractionCell):
    """dcn: the concatenation through DCN-V2's CrossNet -> [B, Dx + S*D]."""

    def __init__(self, spec: DLRMSpec, seed, cpu_kernels: bool = False):
        super().__init__(spec)
        self.cross = CrossNet(spec.interaction_width, spec.interaction.layers, spec.interaction.rank, seed)

    def construct(self, x, emb):
        return self.cross(super().construct(x, emb))


def interaction_cell(spec: DLRMSpec, seed: Sequence[int], cpu_kernels: bool = False) -> nn.Cell:
    """The cell of the spec's interaction: the class its registry entry names (Interaction.cell, in this module);
    `cpu_kernels` lets it use a fused CPU kernel where it has one."""
    return globals()[spec.interaction.cell](spec, seed, cpu_kernels)
