"""One training step in GRAPH_MODE with sparse embedding updates.

The fused table is gathered outside autodiff; gradients are taken with respect to the gathered rows
emb [B, S, D] and the MLP weights, so the table update touches B*S rows, never the whole table
(a dense table gradient costs O(table) per step and ~2 extra table-sized buffers in nn.SGD).

The optimizer (SGD, Adagrad, Adam) is the spec's: src/training/optimizers.py holds one class each (its state and
updates), and make_train_step mixes it into the step.
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
import importlib
from typing import Optional, Tuple

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from src.model_utils.spec import Optimizer
from src.training.sharded_lookup import ShardedLookup
from src.training.optimizers import ADAGRAD_EPS, ADAM_EPS, AdagradRule, AdamRule, SGDRule


_flat = ops.MultitypeFuncGraph("flat")
_shape_as = ops.MultitypeFuncGraph("shape_as")


@_flat.register("Tensor")
def _flatten(grad):
    return grad.reshape(-1)


@_shape_as.register("Tensor", "Tensor")
def _reshape_like(flat, param):
    return flat.reshape(param.shape)


class TrainStep(nn.Cell):
    """(ids int32 [B,S], dense float32 [B,Dn], label float32 [B,1]) -> mean loss float32 scalar;
    updates the parameters in place. Built by make_train_step with the optimizer's rule mixed in."""

    def __init__(self, net, learning_rate: float = 0.15, loss_scale: float = 1.0, parallel=None,
                 adagrad_eps: float = ADAGRAD_EPS, adam_eps: float = ADAM_EPS):
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
        self.lr = Parameter(Tensor(learning_rate, ms.float32), name="learning_rate", requires_grad=False)
        self.table_lr = Parameter(Tensor(learning_rate, ms.float32), name="table_learning_rate", requires_grad=False)
        self.scale = Tensor(loss_scale, ms.float32)
        self.use_scale = loss_scale != 1.0
        self.weights = ms.ParameterTuple(net.mlp_params())
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.value_and_grad = ms.value_and_grad(self._scaled_loss, grad_position=1, weights=self.weights)
        self.hyper_map = ops.HyperMap()
        self.pooled = net.spec.pooled
        if self.pooled:
            self.pooling = net.sparse_arch.pooling
        self.index_add = ops.IndexAdd(axis=0)
        self._init_state(adagrad_eps, adam_eps)

    def set_learning_rate(self, lr: float, table_lr: Optional[float] = None) -> None:
        """The rates of the next steps: `lr` for the MLPs and the interaction, `table_lr` for the table rows (default:
        lr). The graph reads the Parameters: no recompilation."""
        self.lr.set_data(Tensor(lr, ms.float32))
        self.table_lr.set_data(Tensor(lr if table_lr is None else table_lr, ms.float32))

    def _scaled_loss(self, dense, emb, label):
        loss = self.loss_fn(self.net.from_embeddings(dense, emb), label)
        return loss * self.scale if self.use_scale else loss

    def construct(self, ids, dense, label):
        if self.pooled:                                    # multi_hot: rows gathered column-major, [L, B, D]
            rows = self.net.global_rows(ids).T.reshape(-1)                    # [L*B] int32
            emb = ops.gather(self.table, rows, 0).reshape(ids.shape[1], ids.shape[0], self.dim)
            weight = self.pooling.weights(ids).T                              # [L, B]
            loss, (g_emb, g_w) = self.value_and_grad(dense, self.pooling.pool_columns(emb, weight), label)
            loss, g_emb, g_w = self._unscale(loss, self.pooling.spread_columns(g_emb, weight), g_w)
        else:
            rows = self.net.global_rows(ids).reshape(-1)                      # [B*L] int32
            emb = ops.gather(self.table, rows, 0).reshape(ids.shape[0], ids.shape[1], self.dim)   # [B, L, D]
            loss, g_emb, g_w = self._gradients(dense, emb, label, ids)
        g_emb = g_emb.reshape(-1, self.dim)                                    # [B*L, D] (a pad's: 0)
        keys = rows
        if self.size > 1:                                                      # data parallel
            loss, g_w, _, _ = self._all_reduce(loss, g_w, None)
            # collectives in one order on every rank: each waits for the one before (parallel.AllToAll)
            g_emb = self.all_gather(ops.depend(g_emb, loss)) * self.inv_size   # [N*B*S, D]
            keys = self.all_gather(ops.depend(rows, g_emb))                    # [N*B*S]
        self._update_mlps(g_w)
        self._update_rows(keys, keys, g_emb, None)
        return loss

    def _gradients(self, dense, emb, label, ids):
        """emb: the looked-up rows float32 [B, L, D] -> (loss, gradient float32 [B, L, D] w.r.t. them, MLP
        gradients), loss scaling undone. With multi_hot slots the rows are pooled by the ids outside autodiff and
        the pooled vectors' gradient spread back over the rows (Pooling.spread: pooling is linear)."""
        if self.pooled:
            weight = self.pooling.weights(ids)                                # [B, L]
            loss, (g_emb, g_w) = self.value_and_grad(dense, self.pooling.pool(emb, weight), label)
            g_emb = self.pooling.spread(g_emb, weight)                        # [B, S, D] -> [B, L, D]
        else:
            loss, (g_emb, g_w) = self.value_and_grad(dense, emb, label)
        return self._unscale(loss, g_emb, g_w)

    def _unscale(self, loss, g_emb, g_w):
        """(loss, row gradients, MLP gradients) with the loss scaling undone."""
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


class HybridTrainStep(TrainStep):
    """One hybrid-parallel rank's step under a sharding plan (src/training/sharding.py):
    (dense float32 [B, Dn], label float32 [B, 1], rep_rows int32 [B, L_rep], send int32 [N*C],
    inverse int32 [B*L_ex], ids int32 [B, L] (the multi_hot pooling's; [1, 1] without), announce float32 [N])
    -> float32 [1 + N]: the mean loss over the global batch,
    then `announce` summed over the ranks. The inputs are src.training.exchange_feed.ExchangeFeed's (each rank
    writes its next step's need at its own index of `announce`, so the ranks agree on the next capacity in
    this step's AllReduce); `lookup` is src.training.sharded_lookup.ShardedLookup.

    Exchanged rows: each rank sums its gradients per distinct row asked of an owner ([N*C, D], the
    layout of the vectors it got back), an all-to-all returns them to the owners, and the owner
    applies them to the rows in `recv` (-1 padding masked out). Replicated rows: the gradient is
    summed into a dense [R_rep, D] block that rides in the MLPs' AllReduce, and every rank applies it
    to its copy (rows 0..R_rep-1 of its local table)."""

    def __init__(self, net, learning_rate: float, loss_scale: float, parallel, lookup, replicated_rows: int,
                 adagrad_eps: float = ADAGRAD_EPS, adam_eps: float = ADAM_EPS):
        super().__init__(net, learning_rate, loss_scale, parallel, adagrad_eps, adam_eps)
        self.lookup = lookup
        self.rep_rows = replicated_rows
        self.rep_index = Tensor(np.arange(max(1, replicated_rows), dtype=np.int32))

    def construct(self, dense, label, rep_rows, send, inverse, ids, announce):
        emb, recv = self.lookup(self.table, rep_rows, send, inverse)          # [B, L, D], [N*C]
        loss, g_emb, g_w = self._gradients(dense, emb, label, ids)
        g_rep, g_ex = self.lookup.split(g_emb)                                 # [B*L_rep, D], [B*L_ex, D]
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


class SGDTrainStep(SGDRule, TrainStep):
    """TrainStep with plain SGD."""


class AdagradTrainStep(AdagradRule, TrainStep):
    """TrainStep with Adagrad (row-wise for the table)."""


class AdamTrainStep(AdamRule, TrainStep):
    """TrainStep with Adam for the MLPs, row-wise Adagrad for the table."""


class SGDHybridTrainStep(SGDRule, HybridTrainStep):
    """HybridTrainStep with plain SGD."""


class AdagradHybridTrainStep(AdagradRule, HybridTrainStep):
    """HybridTrainStep with Adagrad (row-wise for the table)."""


class AdamHybridTrainStep(AdamRule, HybridTrainStep):
    """HybridTrainStep with Adam for the MLPs, row-wise Adagrad for the table."""


def step_classes(optimizer: Optimizer) -> Tuple[type, type]:
    """(one-process or data-parallel step class, hybrid step class) of an optimizer, from its registry entry's
    "module:Step,HybridStep"."""
    module, names = optimizer.steps.split(":")
    found = importlib.import_module(module)
    single, hybrid = (getattr(found, name.strip()) for name in names.split(","))
    return single, hybrid


def make_train_step(net, learning_rate: float = 0.15, loss_scale: float = 1.0, parallel=None,
                    lookup: Optional[ShardedLookup] = None,
                    replicated_rows: int = 0, adagrad_eps: float = ADAGRAD_EPS, adam_eps: float = ADAM_EPS) -> TrainStep:
    """The train step of `net` with its spec's optimizer rule: one process or data parallel (TrainStep), or a hybrid
    rank (HybridTrainStep, with `lookup` and its replicated rows)."""
    single, hybrid = step_classes(net.spec.optimizer)
    cls = hybrid if lookup is not None else single
    if lookup is not None:
        return cls(net, learning_rate, loss_scale, parallel, lookup, replicated_rows, adagrad_eps, adam_eps)
    return cls(net, learning_rate, loss_scale, parallel, adagrad_eps, adam_eps)
