"""Adding an optimizer is its module and one registry line: this file is the module of a toy one (heavy-ball momentum
for the MLP weights, plain SGD rows), and one `OPTIMIZERS` entry makes the config accept it, the spec count its state
and the train step build and run it, single-process and hybrid step classes named by the entry alone."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

import pytest

from fixtures.paths import make_cfg
from fixtures.specs import spec_of
from src.model.dlrm import build_model
from src.model_utils.config import ConfigError
from src.model_utils.spec import BYTES, OPTIMIZERS, Optimizer
from src.training.optimizers import SGDRule
from src.training.train_step import HybridTrainStep, TrainStep, make_train_step

SIZES = (30, 5, 200) + (9,) * 23

_momentum = ops.MultitypeFuncGraph("toy_momentum")


@_momentum.register("Function", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _momentum_update(apply, lr, beta, param, velocity, grad):
    return apply(param, velocity, lr, grad, beta)          # velocity = beta v + g; param -= lr v


class MomentumRule(SGDRule):
    """Heavy-ball momentum for the MLP weights (one velocity each), plain SGD for the table rows."""
    beta = 0.9

    def _init_state(self, adagrad_eps: float, adam_eps: float) -> None:
        super()._init_state(adagrad_eps, adam_eps)
        self.velocity = self.weights.clone(prefix="momentum_v", init="zeros")
        self.apply_momentum = ops.ApplyMomentum()
        self.beta_t = Tensor(self.beta, ms.float32)

    def _update_mlps(self, g_w):
        self.hyper_map(ops.partial(_momentum, self.apply_momentum, self.lr, self.beta_t), self.weights,
                       self.velocity, g_w)

    def optimizer_state(self):
        return list(self.velocity)


class MomentumTrainStep(MomentumRule, TrainStep):
    """TrainStep with the toy momentum."""


class MomentumHybridTrainStep(MomentumRule, HybridTrainStep):
    """HybridTrainStep with the toy momentum."""


TOY = Optimizer("momentum", per_weight=1, steps=f"{__name__}:MomentumTrainStep,MomentumHybridTrainStep",
                adaptive=False)


def _batches(n, bs=64, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        ids = np.stack([rng.integers(0, s, bs) for s in SIZES], 1).astype(np.int32)
        yield Tensor(ids), Tensor(rng.random((bs, 13)).astype(np.float32)), \
            Tensor((rng.random((bs, 1)) < 0.3).astype(np.float32))


def test_a_toy_optimizer_takes_its_module_and_one_registry_line(monkeypatch):
    with pytest.raises(ConfigError, match=r"'momentum' is not one of \['sgd', 'adagrad', 'adam'\]"):
        make_cfg("--optimizer=momentum")
    monkeypatch.setitem(OPTIMIZERS, "momentum", TOY)                    # the one registry line
    cfg = make_cfg("--optimizer=momentum")
    assert cfg.optimizer == "momentum"
    spec = spec_of(SIZES, optimizer="momentum")
    assert spec.optimizer is TOY and spec.state_bytes() == BYTES * spec.mlp_params   # one velocity a weight, no rows

    # beta 0: the toy's steps equal plain SGD's
    toy_net, sgd_net = build_model(spec, seed=3), build_model(spec_of(SIZES), seed=3)
    toy, sgd = make_train_step(toy_net, 0.2), make_train_step(sgd_net, 0.2)
    assert type(toy) is MomentumTrainStep
    toy.beta_t = Tensor(0.0, ms.float32)
    for batch in _batches(4):
        np.testing.assert_allclose(toy(*batch).asnumpy(), sgd(*batch).asnumpy(), rtol=1e-5)
    for a, b in zip(toy_net.trainable_params(), sgd_net.trainable_params()):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), atol=1e-6, err_msg=a.name)
    assert [p.name.split(".")[0] for p in toy.optimizer_state()] == ["momentum_v"] * len(toy.optimizer_state())

    # beta 0.9: the second step moves the MLP weights by lr (0.9 g1 + g2), not SGD's lr g2
    toy_net, sgd_net = build_model(spec, seed=3), build_model(spec_of(SIZES), seed=3)
    toy, sgd = make_train_step(toy_net, 0.2), make_train_step(sgd_net, 0.2)
    w0 = toy_net.over_arch.trainable_params()[0].asnumpy().copy()
    first, second = list(_batches(2, seed=5))
    toy(*first)
    sgd(*first)
    w1 = toy_net.over_arch.trainable_params()[0].asnumpy().copy()
    np.testing.assert_allclose(w1, sgd_net.over_arch.trainable_params()[0].asnumpy(), atol=1e-6)   # v = g1
    g1 = (w0 - w1) / 0.2
    velocity = toy.optimizer_state()[len(toy_net.dense_arch.trainable_params())].asnumpy()
    np.testing.assert_allclose(velocity, g1, atol=1e-4)
    toy(*second)
    w2 = toy_net.over_arch.trainable_params()[0].asnumpy()
    g2 = toy.optimizer_state()[len(toy_net.dense_arch.trainable_params())].asnumpy() - 0.9 * g1
    np.testing.assert_allclose(w2, w1 - 0.2 * (0.9 * g1 + g2), atol=1e-5)
    assert np.abs(g2).max() > 0
