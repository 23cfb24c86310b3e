"""The optimizers of the train step, one rule class each (its step classes, src/training/train_step.py, are named by
its entry in the registry src/model_utils/spec.py OPTIMIZERS): the state each keeps and
how it updates the MLP weights (dense gradients) and the table rows (sparse: only the batch's rows).

  SGDRule      w -= lr * g; table[r] -= lr * (the batch's summed gradient of row r).
  AdagradRule  MLPs: acc += g^2, w -= lr * g / (sqrt(acc) + eps). Table: row-wise Adagrad, one accumulator per row:
               acc[r] += mean(G_r^2) over the row's dims, table[r] -= lr * G_r / (sqrt(acc[r]) + eps).
  AdamRule     MLPs and the interaction: PyTorch's Adam (beta1 0.9, beta2 0.999), step t = 1, 2, ...:
               m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
               Table: row-wise Adagrad as above (no table-sized moment buffers).
The rules are mixins of the train step cell (src/training/train_step.py), so their state Parameters keep the names
checkpoints have always used (adagrad_acc.*, adam_m.*, adam_v.*, adam_step, adagrad_acc.embedding.table).
"""
from typing import List

import mindspore as ms
from mindspore import Parameter, Tensor, ops
from mindspore.common.initializer import initializer


ADAGRAD_EPS = 1e-10            # PyTorch's Adagrad; the config key adagrad_eps
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8                # PyTorch's Adam; the config key adam_eps

_sgd = ops.MultitypeFuncGraph("sgd")
_adagrad = ops.MultitypeFuncGraph("adagrad")
_adam = ops.MultitypeFuncGraph("adam")


@_sgd.register("Function", "Tensor", "Tensor", "Tensor")
def _sgd_update(apply, lr, param, grad):
    return apply(param, lr, grad)                      # one fused kernel: param -= lr * grad


@_adagrad.register("Function", "Tensor", "Tensor", "Tensor", "Tensor")
def _adagrad_update(apply, lr, param, acc, grad):
    return apply(param, acc, lr, grad)                 # one fused kernel: acc += g^2; param -= lr g / (sqrt(acc) + eps)


@_adam.register("Function", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                "Tensor", "Tensor")
def _adam_update(apply, b1_power, b2_power, lr, b1, b2, eps, param, m, v, grad):
    # one fused kernel: m, v updated; param -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)
    return apply(param, m, v, b1_power, b2_power, lr, b1, b2, eps, grad)


class SGDRule:
    """SGD: no state; the table's rows take -lr x their summed gradient (IndexAdd sums duplicates; it is 2-5x faster
    than ScatterAdd on CPU for millions of rows, docs/benchmarks.md)."""

    def _init_state(self, adagrad_eps: float, adam_eps: float) -> None:
        self.apply_sgd = ops.ApplyGradientDescent()

    def _update_mlps(self, g_w):
        self.hyper_map(ops.partial(_sgd, self.apply_sgd, self.lr), self.weights, g_w)

    def _update_rows(self, keys, local, g, mask):
        """Sparse table update: occurrence i adds gradient g[i] float32 [K, D] to local row local[i] (int32 [K]);
        mask float32 [K, 1] or None zeroes occurrences that are not this rank's."""
        if mask is not None:
            g = g * mask
        self.index_add(self.table, local, -self.table_lr * g)

    def optimizer_state(self) -> List[Parameter]:
        """Parameters of the optimizer, as checkpoints hold them."""
        return []

    def row_sharded_state(self) -> List[Parameter]:
        """Optimizer parameters split by rows like the table."""
        return []


class AdagradRule(SGDRule):
    """Adagrad for the MLPs, row-wise Adagrad for the table (see the module docstring)."""

    def _init_state(self, adagrad_eps: float, adam_eps: float) -> None:
        self.adagrad_eps = Tensor(adagrad_eps, ms.float32)
        self.row_acc = Parameter(initializer("zeros", (self.table.shape[0],), ms.float32),
                                 name="adagrad_acc.embedding.table")
        self.unique = ops.Unique()
        self._init_mlp_state(adagrad_eps, adam_eps)

    def _init_mlp_state(self, adagrad_eps: float, adam_eps: float) -> None:
        self.mlp_acc = self.weights.clone(prefix="adagrad_acc", init="zeros")
        self.apply_adagrad = ops.ApplyAdagradV2(epsilon=adagrad_eps)

    def _update_mlps(self, g_w):
        self.hyper_map(ops.partial(_adagrad, self.apply_adagrad, self.lr), self.weights, self.mlp_acc, g_w)

    def _update_rows(self, keys, local, g, mask):
        """Row-wise Adagrad: keys int32 [K] tell equal rows apart (padding: a key of its own); each row's
        accumulator grows by the mean square of its summed gradient, split over its occurrences."""
        if mask is not None:
            g = g * mask
        _, inverse = self.unique(keys)                                     # [K] int32
        n = keys.shape[0]
        summed = ops.unsorted_segment_sum(g, inverse, n)                   # [K, D] per unique row
        per_occ = ops.gather(summed, inverse, 0)                           # row's summed grad per occurrence
        occ = ops.gather(ops.unsorted_segment_sum(ops.ones_like(keys).astype(ms.float32), inverse, n),
                         inverse, 0)                                       # occurrences of the row
        sq = (per_occ * per_occ).mean(1) / occ                             # split acc increment over occurrences
        if mask is not None:
            sq = sq * mask.reshape(-1)
        self.index_add(self.row_acc, local, sq)
        acc = ops.gather(self.row_acc, local, 0)
        self.index_add(self.table, local, -self.table_lr * g / (ops.sqrt(acc) + self.adagrad_eps).expand_dims(1))

    def optimizer_state(self) -> List[Parameter]:
        return list(self.mlp_acc) + [self.row_acc]

    def row_sharded_state(self) -> List[Parameter]:
        return [self.row_acc]


class AdamRule(AdagradRule):
    """Adam for the MLPs and the interaction, row-wise Adagrad for the table (see the module docstring)."""

    def _init_mlp_state(self, adagrad_eps: float, adam_eps: float) -> None:
        self.adam_m = self.weights.clone(prefix="adam_m", init="zeros")
        self.adam_v = self.weights.clone(prefix="adam_v", init="zeros")
        self.adam_step = Parameter(Tensor(0.0, ms.float32), name="adam_step", requires_grad=False)
        self.betas = (Tensor(ADAM_BETAS[0], ms.float32), Tensor(ADAM_BETAS[1], ms.float32))
        self.adam_eps = Tensor(adam_eps, ms.float32)
        self.apply_adam = ops.Adam()

    def _update_mlps(self, g_w):
        """PyTorch's Adam through MindSpore's fused Adam kernel, whose eps sits beside sqrt(v) rather than
        sqrt(v / (1-b2^t)): passing eps * sqrt(1-b2^t) makes the two the same update."""
        t = ops.assign_add(self.adam_step, ops.ones_like(self.adam_step))
        b1_power, b2_power = ops.pow(self.betas[0], t), ops.pow(self.betas[1], t)
        eps = self.adam_eps * ops.sqrt(1.0 - b2_power)
        self.hyper_map(ops.partial(_adam, self.apply_adam, b1_power, b2_power, self.lr, self.betas[0], self.betas[1],
                                   eps), self.weights, self.adam_m, self.adam_v, g_w)

    def optimizer_state(self) -> List[Parameter]:
        return list(self.adam_m) + list(self.adam_v) + [self.adam_step, self.row_acc]
