"""DCN-V2 cross layers, Adam and the MLPerf learning-rate schedule: against numpy references, through the
scripts, and resumed exactly."""
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from conftest import ROOT
from src.model.dlrm import DLRM, CrossNet
from src.training import checkpoint
from src.training.schedule import MIN_LR, lr_at
from src.training.train_step import TrainStep
from src.training.trainer import Trainer
from test_train import _batches, _cfg, _params


def _np_cross(x0, layers):
    """numpy float64 DCN-V2: x_{l+1} = x0 * (x_l V U + b) (low rank) or x0 * (x_l W + b) (full) + x_l."""
    x = x0
    for p in layers:
        t = x @ p["v"] @ p["u"] if "v" in p else x @ p["w"]
        x = x0 * (t + p["b"]) + x
    return x


def _layer_arrays(net):
    return [{k.rsplit(".", 1)[-1]: v.asnumpy().astype(np.float64) for k, v in
             ((p.name, p) for p in layer.trainable_params())} for layer in net.layers]


@pytest.mark.parametrize("rank", [0, 3])
def test_cross_layers_match_numpy_forward_and_gradient(rank):
    dim, n_layers = 6, 2
    net = CrossNet(dim, n_layers, rank, seed=5)
    layers = _layer_arrays(net)
    for p in layers:                           # the reference init: zero bias, Glorot-normal matrices
        assert np.all(p["b"] == 0)
        p["b"] = np.random.default_rng(1).normal(0, 0.1, dim)
    for layer, p in zip(net.layers, layers):
        layer.b.set_data(Tensor(p["b"].astype(np.float32)))
    x0 = np.random.default_rng(2).normal(0, 1, (4, dim))
    r = np.random.default_rng(3).normal(0, 1, (4, dim))
    got = net(Tensor(x0.astype(np.float32))).asnumpy()
    np.testing.assert_allclose(got, _np_cross(x0, layers), rtol=1e-5, atol=1e-5)
    # gradients of sum(out * r) w.r.t. x0 and every parameter, against central differences in float64
    params = ms.ParameterTuple(net.trainable_params())
    weight = Tensor(r.astype(np.float32))

    def objective(x):
        return (net(x) * weight).sum()
    g_x, g_p = ms.grad(objective, grad_position=0, weights=params)(Tensor(x0.astype(np.float32)))

    def f(x, ls):
        return float((_np_cross(x, ls) * r).sum())

    def numeric(get, shape):
        out = np.zeros(shape)
        for i in np.ndindex(shape):
            plus, minus = get(i, 1e-6), get(i, -1e-6)
            out[i] = (plus - minus) / 2e-6
        return out

    def bump_x(i, e):
        x = x0.copy()
        x[i] += e
        return f(x, layers)
    np.testing.assert_allclose(g_x.asnumpy(), numeric(bump_x, x0.shape), rtol=1e-3, atol=1e-4)
    for p, g in zip(params, g_p):
        li, key = int(p.name.split(".")[-2]), p.name.rsplit(".", 1)[-1]

        def bump(i, e, li=li, key=key):
            ls = [dict(q) for q in layers]
            ls[li][key] = ls[li][key].copy()
            ls[li][key][i] += e
            return f(x0, ls)
        np.testing.assert_allclose(g.asnumpy(), numeric(bump, tuple(p.shape)), rtol=1e-3, atol=1e-4, err_msg=p.name)


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
    net = DLRM(sizes, 13, 16, [32, 16], [32, 1], interaction_op="dcn", dcn_layers=2, dcn_rank=4, seed=6)
    step = TrainStep(net, "adam", 0.05)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
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


def test_dcn_adam_schedule_resume_is_exact(synth_dataset, tmp_path):
    ds = os.path.join(synth_dataset[0], "mindrecord")
    extra = ["--train_epochs=2", "--do_eval=False", "--interaction_op=dcn", "--dcn_num_layers=2",
             "--dcn_low_rank_dim=8", "--optimizer=adam", "--learning_rate=0.003", "--warmup_steps=10",
             "--decay_start_step=25", "--decay_steps=30"]
    full = Trainer(_cfg(ds, tmp_path / "a", *extra, "--save_checkpoint=False"), log=lambda *_: None)
    full.run(max_steps=50)
    first = Trainer(_cfg(ds, tmp_path / "b", *extra, "--save_checkpoint_steps=20"), log=lambda *_: None)
    first.run(max_steps=20)
    second = Trainer(_cfg(ds, tmp_path / "b", *extra, "--save_checkpoint_steps=20", "--resume=True"),
                     log=lambda *_: None)
    assert second.run(max_steps=50)["global_step"] == 50
    a, b = _params(full), _params(second)
    assert a.keys() == b.keys() and any("adam_m" in k for k in a) and any("cross" in k for k in a)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    assert second.current_lr == lr_at(49, 0.003, 10, 25, 30)


def test_dcn_trains_evaluates_and_exports_through_the_scripts(real_dataset, tmp_path):
    ds = os.path.join(real_dataset[0], "mindrecord")
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=ROOT, capture_output=True, text=True,  # noqa: E731
                                    timeout=600, env=dict(os.environ, GLOG_v="3"))
    r = run("train.py", f"--dataset_path={ds}", f"--ckpt_path={tmp_path}/ck", "--batch_size=64", "--test_batch_size=100",
            "--interaction_op=dcn", "--dcn_low_rank_dim=32", "--bottom_mlp_args=[64,32]", "--optimizer=adam",
            "--learning_rate=0.001", "--warmup_steps=5", f"--eval_file_name={tmp_path}/eval.log", "--loss_file_name=")
    assert r.returncode == 0, r.stderr[-2000:]
    train_line = open(tmp_path / "eval.log").read().splitlines()[-1]
    r = run("eval.py", f"--dataset_path={ds}", f"--checkpoint_path={tmp_path}/ck", "--test_batch_size=100",
            f"--eval_file_name={tmp_path}/eval.log")
    assert r.returncode == 0, r.stderr[-2000:]
    eval_line = open(tmp_path / "eval.log").read().splitlines()[-1]
    assert train_line.split("auc: ")[1][:8] == eval_line.split("auc: ")[1][:8]
    _, _, _, model = checkpoint.read(checkpoint.resolve(str(tmp_path / "ck"), "dlrm"))
    assert (model["interaction_op"], model["dcn_low_rank_dim"], model["optimizer"]) == ("dcn", 32, "adam")
    r = run("export.py", f"--checkpoint_path={tmp_path}/ck", f"--file_name={tmp_path}/dcn")
    assert r.returncode == 0 and os.path.isfile(tmp_path / "dcn.mindir"), r.stderr[-2000:]
