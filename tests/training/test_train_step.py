"""The GRAPH_MODE train step against references: dense-gradient SGD, numpy row-wise Adagrad, numpy Adam, and the
learning-rate schedule as the trainer applies it."""

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from fixtures.paths import make_cfg
from fixtures.specs import spec_of
from src.model.dlrm import build_model
from src.model_utils.spec import DcnInteraction
from src.training.schedule import MIN_LR, lr_at
from src.training.train_step import make_train_step

SIZES = (30, 5, 200) + (9,) * 23


def _batches(n, bs=64, sizes=(30, 5, 200) + (9,) * 23, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        ids = np.stack([rng.integers(0, s, bs) for s in sizes], 1).astype(np.int32)
        ids[:, 0] = rng.integers(0, 3, bs)                        # many duplicate rows in a batch
        yield ids, rng.random((bs, 13)).astype(np.float32), (rng.random((bs, 1)) < 0.3).astype(np.float32)


class DenseSGD(nn.Cell):
    """Reference: gather inside autodiff, so the table gets a full dense gradient; w -= lr * g for all."""

    def __init__(self, net, lr):
        super().__init__()
        self.net, self.lr = net, lr
        self.params = ms.ParameterTuple(net.trainable_params())
        self.vg = ms.value_and_grad(self.loss, None, self.params)
        self.bce = nn.BCEWithLogitsLoss()

    def loss(self, ids, dense, label):
        return self.bce(self.net(ids, dense), label)

    def construct(self, ids, dense, label):
        loss, grads = self.vg(ids, dense, label)
        for p, g in zip(self.params, grads):
            ops.assign_sub(p, self.lr * g)
        return loss


def test_sparse_sgd_equals_dense_sgd():
    sizes = (30, 5, 200) + (9,) * 23
    a, b = build_model(spec_of(sizes), seed=3), build_model(spec_of(sizes), seed=3)
    sparse, dense = make_train_step(a, 0.3), DenseSGD(b, 0.3)
    for ids, d, y in _batches(12, sizes=SIZES):
        la = sparse(Tensor(ids), Tensor(d), Tensor(y)).asnumpy()
        lb = dense(Tensor(ids), Tensor(d), Tensor(y)).asnumpy()
        np.testing.assert_allclose(la, lb, rtol=1e-5)
    for pa, pb in zip(a.trainable_params(), b.trainable_params()):
        assert pa.name == pb.name
        np.testing.assert_allclose(pa.asnumpy(), pb.asnumpy(), atol=1e-6, err_msg=pa.name)
    assert not np.allclose(a.sparse_arch.table.asnumpy(), build_model(spec_of(sizes), seed=3).sparse_arch.table.asnumpy())


def test_rowwise_adagrad_matches_a_numpy_reference():
    sizes = (30, 5, 200) + (9,) * 23
    net = build_model(spec_of(sizes, optimizer="adagrad"), seed=4)
    step = make_train_step(net, 0.1)
    table = net.sparse_arch.table.asnumpy().copy()
    acc = np.zeros(table.shape[0], np.float32)
    offsets = np.cumsum((0,) + sizes[:-1])                      # numpy's own, not the spec's
    # gradients w.r.t. the gathered rows, from a forward pass of the same net before the step
    bce = nn.BCEWithLogitsLoss()

    def loss_fn(d, e, y):
        return bce(net.from_embeddings(d, e), y)
    grad_fn = ms.value_and_grad(loss_fn, grad_position=1)
    for ids, d, y in _batches(3, sizes=sizes, seed=9):
        rows = (ids + offsets).reshape(-1)
        emb = Tensor(table[rows].reshape(len(ids), 26, 16))
        _, g = grad_fn(Tensor(d), emb, Tensor(y))
        g = g.asnumpy().reshape(-1, 16)
        uniq, inv = np.unique(rows, return_inverse=True)
        summed = np.zeros((len(uniq), 16), np.float64)
        np.add.at(summed, inv, g)
        acc[uniq] += (summed ** 2).mean(1)
        table[uniq] -= 0.1 * summed / (np.sqrt(acc[uniq])[:, None] + 1e-10)
        step(Tensor(ids), Tensor(d), Tensor(y))
        np.testing.assert_allclose(step.row_acc.asnumpy(), acc, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(net.sparse_arch.table.asnumpy(), table, rtol=1e-4, atol=1e-6)
        table = net.sparse_arch.table.asnumpy().copy()  # MLPs moved too; continue from the real state


def test_schedule_warmup_constant_decay():
    base, w, start, d = 0.8, 4, 10, 5
    got = [lr_at(s, base, w, start, d) for s in range(18)]
    want = [0.2, 0.4, 0.6, 0.8] + [0.8] * 6 + [base * ((d - k) / d) ** 2 for k in range(5)] + [MIN_LR] * 3
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert [lr_at(s, base) for s in (0, 1000)] == [base, base]                     # schedule off


def test_adam_with_schedule_matches_a_numpy_reference():
    """Adam (PyTorch's form) for the MLP and cross weights, row-wise Adagrad for the table, with the lr of
    a warmup + decay schedule set before each step: 5 steps against numpy."""
    sizes = (30, 5, 200) + (9,) * 23
    net = build_model(spec_of(sizes, interaction=DcnInteraction(layers=2, rank=4), optimizer="adam"), seed=6)
    step = make_train_step(net, 0.05)
    offsets = np.cumsum((0,) + sizes[:-1])
    weights = ms.ParameterTuple(net.mlp_params())
    bce = nn.BCEWithLogitsLoss()

    def loss_fn(d, e, y):
        return bce(net.from_embeddings(d, e), y)
    grad_fn = ms.value_and_grad(loss_fn, grad_position=1, weights=weights)
    m = [np.zeros(p.shape) for p in weights]
    v = [np.zeros(p.shape) for p in weights]
    acc = np.zeros(sum(sizes))
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t, (ids, d, y) in enumerate(_batches(5, sizes=sizes, seed=11), start=1):
        lr = lr_at(t - 1, 0.05, warmup_steps=2, decay_start_step=3, decay_steps=4)
        table = net.table.asnumpy().astype(np.float64)
        w_now = [p.asnumpy().astype(np.float64) for p in weights]
        rows = (ids + offsets).reshape(-1)
        _, (g_emb, g_w) = grad_fn(Tensor(d), Tensor(table[rows].reshape(len(ids), 26, 16).astype(np.float32)),
                                  Tensor(y))
        want_w = []
        for i, g in enumerate(g_w):
            g = g.asnumpy().astype(np.float64)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            want_w.append(w_now[i] - lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps))
        uniq, inv = np.unique(rows, return_inverse=True)
        summed = np.zeros((len(uniq), 16))
        np.add.at(summed, inv, g_emb.asnumpy().reshape(-1, 16))
        acc[uniq] += (summed ** 2).mean(1)
        table[uniq] -= lr * summed / (np.sqrt(acc[uniq])[:, None] + 1e-10)
        step.set_learning_rate(lr)
        step(Tensor(ids), Tensor(d), Tensor(y))
        for p, want in zip(weights, want_w):
            np.testing.assert_allclose(p.asnumpy(), want, rtol=1e-4, atol=2e-6, err_msg=f"step {t} {p.name}")
        np.testing.assert_allclose(net.table.asnumpy(), table, rtol=1e-4, atol=1e-6)
        assert float(step.adam_step.asnumpy()) == t


def test_the_trainer_applies_the_schedule_to_every_step(real_ds):
    """Warmup then decay over 6 SGD steps through the Trainer: the parameters equal a replay of the same batches
    whose step rates are set by hand (set_learning_rate itself is checked against numpy above), and differ from a
    replay at the constant base rate, so a trainer that did not apply the schedule would fail here."""
    from src.data.reader import PackedBatches
    from src.training.trainer import Trainer
    args = [f"--dataset_path={real_ds}", "--batch_size=64", "--bottom_mlp_args=[32,16]", "--top_mlp_args=[32,1]",
            "--learning_rate=0.5", "--warmup_steps=3", "--decay_start_step=3", "--decay_steps=3", "--do_eval=False",
            "--save_checkpoint=False", "--loss_file_name="]
    tr = Trainer(make_cfg(*args), log=lambda *_: None)
    tr.run(max_steps=6)
    batches = list(PackedBatches(real_ds, "train", 64, shuffle=True, seed=123, drop_remainder=True))[:6]

    def replay(rates):
        net = build_model(tr.spec, seed=make_cfg(*args).random_seed)
        step = make_train_step(net, 0.5)
        for lr, batch in zip(rates, batches):
            step.set_learning_rate(lr, 0.5)                # table_schedule False: the tables keep the base rate
            step(*[Tensor(x) for x in batch])
        return {p.name: p.asnumpy() for p in net.trainable_params()}
    rates = [lr_at(s, 0.5, 3, 3, 3) for s in range(6)]
    assert len(set(rates)) == 5
    scheduled, constant = replay(rates), replay([0.5] * 6)
    got = {p.name: p.asnumpy() for p in tr.net.trainable_params()}
    for k in got:
        np.testing.assert_allclose(got[k], scheduled[k], atol=1e-6, err_msg=k)
    assert max(float(np.abs(got[k] - constant[k]).max()) for k in got) > 1e-3
