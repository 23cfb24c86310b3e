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
all-reduced and divided by N; the table gradients of all ranks are all-gathered with their rows
(divided by N), so each rank (data_parallel: every rank; hybrid_parallel: the owner of the row)
applies exactly the update a single process would make for the concatenated global batch of N*B.
"""
from typing import List

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

EPS = 1e-10
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

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


@_adagrad.register("Tensor", "Tensor", "Tensor", "Tensor")
def _adagrad_update(lr, param, acc, grad):
    acc_new = ops.assign_add(acc, grad * grad)
    return ops.assign_sub(param, lr * grad / (ops.sqrt(acc_new) + EPS))


@_adam.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _adam_update(lr, bc1, bc2, eps, param, m, v, grad):
    m_new = ops.assign(m, m * ADAM_BETAS[0] + grad * (1.0 - ADAM_BETAS[0]))
    v_new = ops.assign(v, v * ADAM_BETAS[1] + grad * grad * (1.0 - ADAM_BETAS[1]))
    return ops.assign_sub(param, lr * (m_new / bc1) / (ops.sqrt(v_new / bc2) + eps))


class TrainStep(nn.Cell):
    """(ids int32 [B,S], dense float32 [B,Dn], label float32 [B,1]) -> mean loss float32 scalar;
    updates the parameters in place."""

    def __init__(self, net, optimizer: str = "sgd", learning_rate: float = 0.15, loss_scale: float = 1.0,
                 parallel=None, native_reduce_scatter: bool = False):
        super().__init__()
        self.net = net
        self.table = net.table
        self.size = parallel.size if parallel is not None else 1
        self.hybrid = parallel is not None and parallel.hybrid
        if self.size > 1:
            self.all_gather = ops.AllGather()
            self.all_reduce = ops.AllReduce()
            self.inv_size = Tensor(1.0 / self.size, ms.float32)
            # the MLP gradients and the loss travel in one AllReduce (one collective instead of 15)
            self.split_sizes = [int(np.prod(p.shape)) for p in net.mlp_params()] + [1]
        if self.hybrid:
            from src.training.parallel import RowShardExchange
            self.exchange = RowShardExchange(net.row_range[0], self.table.shape[0], parallel,
                                             native_reduce_scatter)
        self.optimizer = optimizer
        self.lr = Parameter(Tensor(learning_rate, ms.float32), name="learning_rate", requires_grad=False)
        self.scale = Tensor(loss_scale, ms.float32)
        self.use_scale = loss_scale != 1.0
        self.weights = ms.ParameterTuple(net.mlp_params())
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.value_and_grad = ms.value_and_grad(self._scaled_loss, grad_position=1, weights=self.weights)
        self.hyper_map = ops.HyperMap()
        self.dim = self.table.shape[1]
        if optimizer == "adagrad":
            self.mlp_acc = self.weights.clone(prefix="adagrad_acc", init="zeros")
        if optimizer == "adam":
            self.adam_m = self.weights.clone(prefix="adam_m", init="zeros")
            self.adam_v = self.weights.clone(prefix="adam_v", init="zeros")
            self.adam_step = Parameter(Tensor(0.0, ms.float32), name="adam_step", requires_grad=False)
            self.betas = (Tensor(ADAM_BETAS[0], ms.float32), Tensor(ADAM_BETAS[1], ms.float32))
            self.adam_eps = Tensor(ADAM_EPS, ms.float32)
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
        if self.hybrid:
            keys, local, mask, emb = self.exchange.lookup(self.table, rows)   # keys/local [N*B*S], emb [B*S, D]
        else:
            emb = ops.gather(self.table, rows, 0)                              # [B*S, D]
            keys, local, mask = rows, rows, None
        emb = emb.reshape(ids.shape[0], ids.shape[1], self.dim)
        loss, (g_emb, g_w) = self.value_and_grad(dense, emb, label)
        g_emb = g_emb.reshape(-1, self.dim)                                    # [B*S, D]
        if self.use_scale:
            loss = loss / self.scale
            g_emb = g_emb / self.scale
            g_w = self.hyper_map(ops.partial(ops.div), g_w, (self.scale,) * len(g_w))
        if self.size > 1:
            flat = ops.concat(self.hyper_map(_flat, g_w) + (loss.reshape(1),))
            parts = ops.split(self.all_reduce(flat) * self.inv_size, self.split_sizes)
            loss = parts[-1].reshape(())
            g_w = self.hyper_map(_shape_as, parts[:-1], self.weights)
            g_emb = self.all_gather(g_emb) * self.inv_size                     # [N*B*S, D]
            if not self.hybrid:
                keys = self.all_gather(rows)                                   # [N*B*S]
                local = keys
        if mask is not None:
            g_emb = g_emb * mask                                               # rows this rank does not own: 0
        if self.optimizer == "adam":
            t = ops.assign_add(self.adam_step, ops.ones_like(self.adam_step))
            bc1, bc2 = 1.0 - ops.pow(self.betas[0], t), 1.0 - ops.pow(self.betas[1], t)
            self.hyper_map(ops.partial(_adam, self.lr, bc1, bc2, self.adam_eps), self.weights, self.adam_m,
                           self.adam_v, g_w)
        elif self.optimizer == "adagrad":
            self.hyper_map(ops.partial(_adagrad, self.lr), self.weights, self.mlp_acc, g_w)
        else:
            self.hyper_map(ops.partial(_sgd, self.lr), self.weights, g_w)
        if self.rowwise:
            _, inverse = self.unique(keys)                                     # [K] int32, K = len(keys)
            n = keys.shape[0]
            summed = ops.unsorted_segment_sum(g_emb, inverse, n)               # [K, D] per unique row
            per_occ = ops.gather(summed, inverse, 0)                           # row's summed grad per occurrence
            occ = ops.gather(ops.unsorted_segment_sum(ops.ones_like(keys).astype(ms.float32), inverse, n),
                             inverse, 0)                                       # occurrences of the row
            sq = (per_occ * per_occ).mean(1) / occ                             # split acc increment over occurrences
            if mask is not None:
                sq = sq * mask.reshape(-1)
            ops.scatter_add(self.row_acc, local, sq)
            acc = ops.gather(self.row_acc, local, 0)
            ops.scatter_add(self.table, local, -self.lr * g_emb / (ops.sqrt(acc) + EPS).expand_dims(1))
        else:
            ops.scatter_add(self.table, local, -self.lr * g_emb)
        return loss

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

