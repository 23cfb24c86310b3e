"""The sharded embedding lookup of hybrid parallel (cells): this rank's part of the tables under a sharding plan,
the all-to-all exchange of rows and vectors, and the inference head that uses it."""
from typing import Tuple

import numpy as np
from mindspore import Tensor, nn, ops

from src.training.collectives import AllToAll
from src.training.parallel import ParallelInfo


class ShardedLookup(nn.Cell):
    """The embeddings of this rank's batch under a sharding plan (src/training/sharding.py). The local
    table float32 [R_local, D] is passed in (a Parameter kept by two cells is renamed).

    The lookups are the columns of the ids input (L: one per categorical slot, max_len per multi_hot slot);
    rep_cols and ex_cols (sharding.Router's) are those of the replicated and of the exchanged slots.
    rep_rows int32 [B, L_rep]: local rows of the replicated columns (looked up here; [B, 1] unused when L_rep = 0).
    send int32 [N*C]: block k = this rank's distinct rows owned by rank k (rows of k's local table, -1 pad).
    inverse int32 [B*L_ex]: each exchanged lookup's place in the [N*C] vectors that come back.
    -> (emb float32 [B, L, D] in column order, unpooled; recv int32 [N*C] rows the other ranks asked of this one).
    ids out, vectors back: two all-to-alls (the gradients go back by a third, in the train step).
    """

    def __init__(self, info: ParallelInfo, native: bool, rep_cols, ex_cols, dim: int):
        super().__init__()
        self.a2a = AllToAll(info, native)
        self.n_rep, self.n_ex, self.dim = len(rep_cols), len(ex_cols), dim
        order = list(rep_cols) + list(ex_cols)                               # columns as concatenated
        self.to_slot_order = Tensor(np.argsort(order).astype(np.int32))      # [L] int32
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
        """g float32 [B, L, D] in column order -> (replicated columns' [B*L_rep, D], exchanged ones' [B*L_ex, D]);
        with one kind only, both are the whole [B*L, D]."""
        if not self.identity:
            g_emb = ops.gather(g_emb, self.from_slot_order, 1)
        if self.n_rep and self.n_ex:
            return g_emb[:, :self.n_rep].reshape(-1, self.dim), g_emb[:, self.n_rep:].reshape(-1, self.dim)
        g = g_emb.reshape(-1, self.dim)
        return g, g


class ShardedProbability(nn.Cell):
    """Hybrid-parallel inference on one rank: (dense float32 [B, Dn], rep_rows, send, inverse: see
    ShardedLookup, ids int32 [B, L] for the multi_hot pooling or [1, 1]) -> click probability float32 [B, 1] for
    this rank's batch; a collective: every rank calls it with the same capacity C."""

    def __init__(self, net, lookup: ShardedLookup):
        super().__init__()
        self.net = net
        self.lookup = lookup
        self.table = net.table

    def construct(self, dense, rep_rows, send, inverse, ids):
        emb, _ = self.lookup(self.table, rep_rows, send, inverse)
        return ops.sigmoid(self.net.from_lookups(dense, emb, ids))
