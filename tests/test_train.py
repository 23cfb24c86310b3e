import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from conftest import ROOT, make_cfg
from src.training import checkpoint
from src.training.checkpoint import CheckpointError
from src.model.dlrm import DLRM
from src.training.train_step import TrainStep
from src.training.trainer import Trainer, TrainingDiverged

SMALL = ["--bottom_mlp_args=[32,16]", "--top_mlp_args=[32,1]"]


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
    a = DLRM(sizes, 13, 16, [32, 16], [32, 1], seed=3)
    b = DLRM(sizes, 13, 16, [32, 16], [32, 1], seed=3)
    sparse, dense = TrainStep(a, "sgd", 0.3), DenseSGD(b, 0.3)
    for ids, d, y in _batches(12, sizes=sizes):
        la = sparse(Tensor(ids), Tensor(d), Tensor(y)).asnumpy()
        lb = dense(Tensor(ids), Tensor(d), Tensor(y)).asnumpy()
        np.testing.assert_allclose(la, lb, rtol=1e-5)
    for pa, pb in zip(a.trainable_params(), b.trainable_params()):
        assert pa.name == pb.name
        np.testing.assert_allclose(pa.asnumpy(), pb.asnumpy(), atol=1e-6, err_msg=pa.name)
    assert not np.allclose(a.sparse_arch.table.asnumpy(), DLRM(sizes, 13, 16, [32, 16], [32, 1], seed=3)
                           .sparse_arch.table.asnumpy())


def test_rowwise_adagrad_matches_a_numpy_reference():
    sizes = (30, 5, 200) + (9,) * 23
    net = DLRM(sizes, 13, 16, [32, 16], [32, 1], seed=4)
    step = TrainStep(net, "adagrad", 0.1)
    table = net.sparse_arch.table.asnumpy().copy()
    acc = np.zeros(table.shape[0], np.float32)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
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


def _cfg(ds, tmp, *extra):
    return make_cfg(f"--dataset_path={ds}", f"--ckpt_path={tmp}/ckpt", f"--loss_file_name={tmp}/loss.log",
                    f"--eval_file_name={tmp}/eval.log", "--batch_size=256", "--log_interval_steps=10",
                    "--test_batch_size=1000", *SMALL, *extra)


def _params(trainer):
    return {p.name: p.asnumpy().copy() for p in trainer.state_params()}


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_kill_and_resume_gives_the_same_parameters(synth_dataset, tmp_path, optimizer):
    ds = os.path.join(synth_dataset[0], "mindrecord")
    # 60 steps: two epochs of 33 steps (8571 samples / 256), resumed once mid-epoch-1 and once in epoch 2
    full = Trainer(_cfg(ds, tmp_path / "a", "--train_epochs=2", "--do_eval=False", "--save_checkpoint=False",
                        f"--optimizer={optimizer}"), log=lambda *_: None)
    full.run(max_steps=60)
    first = Trainer(_cfg(ds, tmp_path / "b", "--train_epochs=2", "--do_eval=False", "--save_checkpoint_steps=20",
                         f"--optimizer={optimizer}"), log=lambda *_: None)
    first.run(max_steps=20)
    ck = checkpoint.list_checkpoints(str(tmp_path / "b" / "ckpt"), "dlrm")
    assert [os.path.basename(c) for c in ck] == ["dlrm-1_20.safetensors"]
    second = Trainer(_cfg(ds, tmp_path / "b", "--train_epochs=2", "--do_eval=False", "--save_checkpoint_steps=20",
                          "--resume=True", f"--optimizer={optimizer}"), log=lambda *_: None)
    second.run(max_steps=40)
    third = Trainer(_cfg(ds, tmp_path / "b", "--train_epochs=2", "--do_eval=False", "--save_checkpoint_steps=20",
                         "--resume=True", f"--optimizer={optimizer}"), log=lambda *_: None)
    assert third.run(max_steps=60)["global_step"] == 60
    a, b = _params(full), _params(third)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(synth_dataset, tmp_path):
    ds = os.path.join(synth_dataset[0], "mindrecord")
    tr = Trainer(_cfg(ds, tmp_path, "--do_eval=False", "--save_checkpoint_steps=2", "--keep_checkpoint_max=1"),
                 log=lambda *_: None)
    tr.run(max_steps=2)
    good = tr.last_checkpoint
    bias = tr.net.over_arch.trainable_params()[-1]
    bias.set_data(Tensor(np.full(bias.shape, np.inf, np.float32)))  # a diverged parameter
    tr.cfg.resume = False
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at epoch 1, step \d+: training stopped; "
                                               r"last good checkpoint: .*dlrm-1_2\.safetensors"):
        tr.run(max_steps=50)
    assert checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "dlrm")[-1] == good


def _run(script, *args):
    env = dict(os.environ, GLOG_v="3")
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_train_checkpoint_eval_round_trip_on_the_real_fixture(real_dataset, tmp_path):
    ds = os.path.join(real_dataset[0], "mindrecord")
    common = [f"--dataset_path={ds}", f"--eval_file_name={tmp_path}/eval.log", "--test_batch_size=100"]
    r = _run("train.py", *common, f"--ckpt_path={tmp_path}/ckpt", f"--loss_file_name={tmp_path}/loss.log",
             "--batch_size=128", "--log_interval_steps=5", "--save_checkpoint_steps=7", "--keep_checkpoint_max=2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("model: 26 tables, ")
    assert "embedding rows x 16" in r.stdout and "expected peak memory" in r.stdout
    ck = checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "dlrm")
    assert [os.path.basename(c) for c in ck] == ["dlrm-1_7.safetensors", "dlrm-1_13.safetensors"]  # 1714//128 = 13
    loss_lines = open(tmp_path / "loss.log").read().splitlines()
    assert len(loss_lines) == 3
    import re
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d epoch: 1, step: 5, loss is [0-9.]+, samples/s: [0-9.]+",
                        loss_lines[0])
    train_eval = open(tmp_path / "eval.log").read().splitlines()[-1]
    assert "samples: 285," in train_eval
    r = _run("eval.py", *common, f"--checkpoint_path={tmp_path}/ckpt")
    assert r.returncode == 0, r.stderr[-3000:]
    ev = open(tmp_path / "eval.log").read().splitlines()[-1]
    assert "dlrm-1_13.safetensors" in ev and "samples: 285," in ev
    pick = lambda line, k: re.search(rf"{k}: ([0-9.]+)", line).group(1)
    for k in ("accuracy", "auc", "logloss"):
        assert pick(ev, k) == pick(train_eval, k), k
    # the network comes from the checkpoint; a command line asking for another architecture is refused,
    # naming the key and both values
    r = _run("eval.py", *common, f"--checkpoint_path={ck[-1]}", "--top_mlp_args=[256,1]")
    assert r.returncode == 1
    assert "holds a network with top_mlp_args=[512, 256, 1] but the command line asks for top_mlp_args=[256, 1]" \
        in r.stderr
    r = _run("eval.py", *common, f"--checkpoint_path={tmp_path}/nothing_here")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_checkpoint_from_another_dataset_is_refused(real_dataset, synth_dataset, tmp_path):
    ds = os.path.join(synth_dataset[0], "mindrecord")
    tr = Trainer(_cfg(ds, tmp_path, "--do_eval=False"), log=lambda *_: None)
    tr.run(max_steps=1)
    other = Trainer(_cfg(os.path.join(real_dataset[0], "mindrecord"), tmp_path / "o"), log=lambda *_: None)
    arrays, _ = checkpoint.load(tr.last_checkpoint)
    with pytest.raises(CheckpointError, match=r"parameter 'sparse_arch.table' has shape \(\d+, 16\), the model "
                                              r"built from the config expects \(\d+, 16\)"):
        checkpoint.restore(other.state_params(), arrays, tr.last_checkpoint)
    with pytest.raises(CheckpointError, match="no parameter 'adagrad_acc"):
        Trainer(_cfg(ds, tmp_path, "--optimizer=adagrad", "--resume=True"), log=lambda *_: None).resume()


def test_yaml_table_sizes_must_agree_with_the_dataset(synth_dataset, tmp_path):
    from src.data.packed_format import DatasetError
    ds = os.path.join(synth_dataset[0], "mindrecord")
    with pytest.raises(DatasetError, match="categorical_feature_sizes in the config disagrees"):
        Trainer(_cfg(ds, tmp_path, "--categorical_feature_sizes=" + str([5] * 26)))
    sizes = synth_dataset[1]["table_sizes"]
    Trainer(_cfg(ds, tmp_path, "--categorical_feature_sizes=" + str(sizes).replace(" ", "")))


def test_synthetic_model_learns_towards_the_best_auc(synth_dataset, tmp_path):
    from src.tools.best_auc import best_test_metrics
    ds = os.path.join(synth_dataset[0], "mindrecord")
    tr = Trainer(_cfg(ds, tmp_path, "--train_epochs=3", "--save_checkpoint=False", "--batch_size=128"),
                 log=lambda *_: None)
    tr.run()
    best = best_test_metrics(ds, os.path.join(synth_dataset[0], "train_prob.npy"))
    aucs = [r["auc"] for r in tr.eval_results]
    assert len(aucs) == 3 and all(r["samples"] == 2857 for r in tr.eval_results)
    assert aucs[-1] > aucs[0] and aucs[-1] > 0.66 and aucs[-1] < best["auc"] + 0.01
