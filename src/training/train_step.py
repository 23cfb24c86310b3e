"""One training step in GRAPH_MODE with sparse embedding updates.

The fused table is gathered outside autodiff; gradients are taken with respect to the gathered rows
emb [B, S, D] and the MLP weights, so the table update touches B*S rows, never the whole table
(a dense table gradient costs O(table) per step and ~2 extra table-sized buffers in nn.SGD).

optimizer 'sgd':      table[r] -= lr * sum of the batch's gradients for row r (ScatterAdd sums
                      duplicates), MLP w -= lr * g: exactly SGD on the whole model.
optimizer 'adagrad':  MLPs: acc += g^2, w -= lr * g / (sqrt(acc) + eps).
                      Table: row-wise Adagrad (one accumulator per row): for a row r with summed
                      gradient G_r in the batch, acc[r] += mean(G_r^2); table[r] -= lr * G_r / (sqrt(acc[r]) + eps).
optimizer 'adam':     MLPs and interaction (PyTorch's Adam, beta1 0.9, beta2 0.999, eps 1e-8): step t = 1, 2, ...
                      m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
                      Table: row-wise Adagrad as above (no table-sized moment buffers).
                      State: m, v per MLP weight, the step count t, the row accumulators: all checkpointed.
The learning rate is a Parameter read by the graph: the trainer sets it before a step when the
schedule (src/training/schedule.py) changes it.
With convert_dtype (fp16 MLPs, GPU/Ascend) the loss is multiplied by loss_scale before the
backward pass and the gradients divided by it.

Distributed (src/training/parallel.py; N ranks, per-rank batch B): the loss and the MLP gradients are
all-reduced and divided by N; the table gradients (divided by N) reach the ranks that hold their rows
(data_parallel: all-gathered with their rows to every rank; hybrid_parallel: summed per row and sent to
the row's owner by an all-to-all, HybridTrainStep), so each rank applies exactly the update a single
process would make for the concatenated global batch of N*B.
"""
from typing import List

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

ADAGRAD_EPS = 1e-10            # PyTorch's Adagrad; the config key adagrad_eps
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8                # PyTorch's Adam; the config key adam_eps

_sgd = ops.MultitypeFuncGraph("sgd")
_adagrad = ops.MultitypeFuncGraph("adagrad")
_adam = ops.MultitypeFuncGraph("adam")


_flat = ops.MultitypeFuncGraph("flat")
_shape_as = ops.MultitypeFuncGraph("shape_as")


@_flat.register("Tensor")
def _flatten(grad):
    return grad.reshape(-1)


@_shape_as.register("Tensor", "Tensor")
def _reshape_like(flat, param):
    return flat.reshape(param.shape)


@_sgd.register("Tensor", "Tensor", "Tensor")
def _sgd_update(lr, param, grad):
    return ops.assign_sub(param, lr * grad)


@_adagrad.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _adagrad_update(lr, eps, param, acc, grad):
    acc_new = ops.assign_add(acc, grad * grad)
    return ops.assign_sub(param, lr * grad / (ops.sqrt(acc_new) + eps))


@_adam.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _adam_update(lr, bc1, bc2, eps, param, m, v, grad):
    m_new = ops.assign(m, m * ADAM_BETAS[0] + grad * (1.0 - ADAM_BETAS[0]))
    v_new = ops.assign(v, v * ADAM_BETAS[1] + grad * grad * (1.0 - ADAM_BETAS[1]))
    return ops.assign_sub(param, lr * (m_new / bc1) / (ops.sqrt(v_new / bc2) + eps))


class TrainStep(nn.Cell):
    """(ids int32 [B,S], dense float32 [B,Dn], label float32 [B,1]) -> mean loss float32 scalar;
    updates the parameters in place."""

    def __init__(self, net, optimizer: str = "sgd", learning_rate: float = 0.15, loss_scale: float = 1.0,
                 parallel=None, adagrad_eps: float = ADAGRAD_EPS, adam_eps: float = ADAM_EPS):
        super().__init__()
        self.net = net
        self.table = net.table
        self.size = parallel.size if parallel is not None else 1
        if self.size > 1:
            self.all_gather = ops.AllGather()
            self.all_reduce = ops.AllReduce()
            self.inv_size = Tensor(1.0 / self.size, ms.float32)
            # the MLP gradients and the loss travel in one AllReduce (one collective instead of 15)
            self.split_sizes = [int(np.prod(p.shape)) for p in net.mlp_params()] + [1]
        self.dim = self.table.shape[1]
        self.optimizer = optimizer
        self.lr = Parameter(Tensor(learning_rate, ms.float32), name="learning_rate", requires_grad=False)
        self.scale = Tensor(loss_scale, ms.float32)
        self.use_scale = loss_scale != 1.0
        self.weights = ms.ParameterTuple(net.mlp_params())
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.value_and_grad = ms.value_and_grad(self._scaled_loss, grad_position=1, weights=self.weights)
        self.hyper_map = ops.HyperMap()
        if optimizer == "adagrad":
            self.mlp_acc = self.weights.clone(prefix="adagrad_acc", init="zeros")
        if optimizer == "adam":
            self.adam_m = self.weights.clone(prefix="adam_m", init="zeros")
            self.adam_v = self.weights.clone(prefix="adam_v", init="zeros")
            self.adam_step = Parameter(Tensor(0.0, ms.float32), name="adam_step", requires_grad=False)
            self.betas = (Tensor(ADAM_BETAS[0], ms.float32), Tensor(ADAM_BETAS[1], ms.float32))
            self.adam_eps = Tensor(adam_eps, ms.float32)
        self.adagrad_eps = Tensor(adagrad_eps, ms.float32)
        self.rowwise = optimizer in ("adagrad", "adam")
        if self.rowwise:
            self.row_acc = Parameter(initializer("zeros", (self.table.shape[0],), ms.float32),
                                     name="adagrad_acc.embedding.table")
            self.unique = ops.Unique()

    def set_learning_rate(self, lr: float) -> None:
        """The rate of the next steps (the graph reads the Parameter; no recompilation)."""
        self.lr.set_data(Tensor(lr, ms.float32))

    def _scaled_loss(self, dense, emb, label):
        loss = self.loss_fn(self.net.from_embeddings(dense, emb), label)
        return loss * self.scale if self.use_scale else loss

    def construct(self, ids, dense, label):
        rows = self.net.global_rows(ids).reshape(-1)                          # [B*S] int32
        emb = ops.gather(self.table, rows, 0).reshape(ids.shape[0], ids.shape[1], self.dim)   # [B, S, D]
        loss, g_emb, g_w = self._gradients(dense, emb, label)
        g_emb = g_emb.reshape(-1, self.dim)                                    # [B*S, D]
        keys = rows
        if self.size > 1:                                                      # data parallel
            loss, g_w, _, _ = self._all_reduce(loss, g_w, None)
            # collectives in one order on every rank: each waits for the one before (parallel.AllToAll)
            g_emb = self.all_gather(ops.depend(g_emb, loss)) * self.inv_size   # [N*B*S, D]
            keys = self.all_gather(ops.depend(rows, g_emb))                    # [N*B*S]
        self._update_mlps(g_w)
        self._update_rows(keys, keys, g_emb, None)
        return loss

    def _gradients(self, dense, emb, label):
        """-> (loss, gradient float32 [B, S, D] w.r.t. emb, MLP gradients), loss scaling undone."""
        loss, (g_emb, g_w) = self.value_and_grad(dense, emb, label)
        if self.use_scale:
            loss = loss / self.scale
            g_emb = g_emb / self.scale
            g_w = self.hyper_map(ops.partial(ops.div), g_w, (self.scale,) * len(g_w))
        return loss, g_emb, g_w

    def _all_reduce(self, loss, g_w, extra, summed=None):
        """One AllReduce of the MLP gradients, `extra` (float32 [K, D] or None) and the loss, averaged over
        the ranks, and of `summed` (float32 [M] or None), summed over them -> (loss, g_w, extra, summed)."""
        flat = self.hyper_map(_flat, g_w) + (loss.reshape(1),)
        sizes = list(self.split_sizes)
        if extra is not None:
            flat = flat + (extra.reshape(-1),)
            sizes.append(extra.shape[0] * self.dim)
        averaged = sum(sizes)
        if summed is not None:
            flat = flat + (summed,)
        reduced = self.all_reduce(ops.concat(flat))
        parts = ops.split(reduced[:averaged] * self.inv_size, sizes)
        g_w = self.hyper_map(_shape_as, parts[:len(self.split_sizes) - 1], self.weights)
        out = parts[-1].reshape(extra.shape) if extra is not None else None
        return (parts[len(self.split_sizes) - 1].reshape(()), g_w, out,
                reduced[averaged:] if summed is not None else None)

    def _update_mlps(self, g_w):
        if self.optimizer == "adam":
            t = ops.assign_add(self.adam_step, ops.ones_like(self.adam_step))
            bc1, bc2 = 1.0 - ops.pow(self.betas[0], t), 1.0 - ops.pow(self.betas[1], t)
            self.hyper_map(ops.partial(_adam, self.lr, bc1, bc2, self.adam_eps), self.weights, self.adam_m,
                           self.adam_v, g_w)
        elif self.optimizer == "adagrad":
            self.hyper_map(ops.partial(_adagrad, self.lr, self.adagrad_eps), self.weights, self.mlp_acc, g_w)
        else:
            self.hyper_map(ops.partial(_sgd, self.lr), self.weights, g_w)

    def _update_rows(self, keys, local, g, mask):
        """Sparse table update: occurrence i adds gradient g[i] float32 [K, D] to local row local[i] (int32 [K]);
        keys int32 [K] tell equal rows apart (and padding: a key of its own); mask float32 [K, 1] or None
        zeroes occurrences that are not this rank's."""
        if mask is not None:
            g = g * mask
        if self.rowwise:
            _, inverse = self.unique(keys)                                     # [K] int32
            n = keys.shape[0]
            summed = ops.unsorted_segment_sum(g, inverse, n)                   # [K, D] per unique row
            per_occ = ops.gather(summed, inverse, 0)                           # row's summed grad per occurrence
            occ = ops.gather(ops.unsorted_segment_sum(ops.ones_like(keys).astype(ms.float32), inverse, n),
                             inverse, 0)                                       # occurrences of the row
            sq = (per_occ * per_occ).mean(1) / occ                             # split acc increment over occurrences
            if mask is not None:
                sq = sq * mask.reshape(-1)
            ops.scatter_add(self.row_acc, local, sq)
            acc = ops.gather(self.row_acc, local, 0)
            ops.scatter_add(self.table, local, -self.lr * g / (ops.sqrt(acc) + self.adagrad_eps).expand_dims(1))
        else:
            ops.scatter_add(self.table, local, -self.lr * g)

    def optimizer_state(self) -> List[Parameter]:
        """Parameters of the optimizer (empty for SGD)."""
        if self.optimizer == "adagrad":
            return list(self.mlp_acc) + [self.row_acc]
        if self.optimizer == "adam":
            return list(self.adam_m) + list(self.adam_v) + [self.adam_step, self.row_acc]
        return []

    def row_sharded_state(self) -> List[Parameter]:
        """Optimizer parameters split by rows like the table (row-wise Adagrad's accumulator)."""
        return [self.row_acc] if self.rowwise else []



class HybridTrainStep(TrainStep):
    """One hybrid-parallel rank's step under a sharding plan (src/training/sharding.py):
    (dense float32 [B, Dn], label float32 [B, 1], rep_rows int32 [B, S_rep], send int32 [N*C],
    inverse int32 [B*S_ex], announce float32 [N]) -> float32 [1 + N]: the mean loss over the global batch,
    then `announce` summed over the ranks. The inputs are src.training.exchange_feed.ExchangeFeed's (each rank
    writes its next step's need at its own index of `announce`, so the ranks agree on the next capacity in
    this step's AllReduce); `lookup` is src.training.sharded_lookup.ShardedLookup.

    Exchanged rows: each rank sums its gradients per distinct row asked of an owner ([N*C, D], the
    layout of the vectors it got back), an all-to-all returns them to the owners, and the owner
    applies them to the rows in `recv` (-1 padding masked out). Replicated rows: the gradient is
    summed into a dense [R_rep, D] block that rides in the MLPs' AllReduce, and every rank applies it
    to its copy (rows 0..R_rep-1 of its local table)."""

    def __init__(self, net, optimizer: str, learning_rate: float, loss_scale: float, parallel, lookup,
                 replicated_rows: int, adagrad_eps: float = ADAGRAD_EPS, adam_eps: float = ADAM_EPS):
        super().__init__(net, optimizer, learning_rate, loss_scale, parallel, adagrad_eps, adam_eps)
        self.lookup = lookup
        self.rep_rows = replicated_rows
        self.rep_index = Tensor(np.arange(max(1, replicated_rows), dtype=np.int32))

    def construct(self, dense, label, rep_rows, send, inverse, announce):
        emb, recv = self.lookup(self.table, rep_rows, send, inverse)          # [B, S, D], [N*C]
        loss, g_emb, g_w = self._gradients(dense, emb, label)
        g_rep, g_ex = self.lookup.split(g_emb)                                 # [B*S_rep, D], [B*S_ex, D]
        dense_rep = None
        if self.rep_rows:
            dense_rep = ops.unsorted_segment_sum(g_rep, rep_rows.reshape(-1), self.rep_rows)   # [R_rep, D]
        loss, g_w, dense_rep, announced = self._all_reduce(loss, g_w, dense_rep, announce)
        self._update_mlps(g_w)
        if self.rep_rows:
            self._update_rows(self.rep_index, self.rep_index, dense_rep, None)
        if self.lookup.n_ex:
            g_asked = ops.unsorted_segment_sum(g_ex * self.inv_size, inverse, send.shape[0])  # [N*C, D]
            g_own = self.lookup.a2a(ops.depend(g_asked, loss))                 # after the AllReduce, on every rank
            own = recv >= 0
            local = ops.select(own, recv, ops.zeros_like(recv))
            self._update_rows(recv, local, g_own, own.astype(ms.float32).expand_dims(1))
        return ops.concat((loss.reshape(1), announced))
