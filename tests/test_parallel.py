"""Data- and hybrid-parallel training on 2 CPU ranks (msrun on 127.0.0.1) against one process; hybrid under
each kind of sharding plan, with the all-to-all exchange in its CPU form (AllGather)."""
import glob
import os
import re
import subprocess
import time

import numpy as np
import psutil
import pytest
from mindspore import Tensor

from conftest import ROOT, make_cfg
from src.training import checkpoint
from src.data.packed_format import load_metadata, shard_sizes
from src.data.reader import PackedBatches
from src.model.dlrm import DLRMProbability, build_model
from src.training.parallel import bytes_per_step
from src.training.sharding import make_plan
from src.training.train_step import TrainStep
from src.training.trainer import Trainer
from src.training.evaluation import evaluate

N, B, EPOCHS = 2, 16, 2          # real fixture: shards of 900 and 814 samples -> 50 steps an epoch, 100 in all


def _launch(ds, run_dir, *args, mode="hybrid_parallel"):
    env = dict(os.environ, RUN_DIR=str(run_dir), PARALLEL_MODE=mode)
    return subprocess.run(["bash", "scripts/run_distribute_train_cpu.sh", str(N), ds, f"--batch_size={B}",
                           f"--train_epochs={EPOCHS}", "--test_batch_size=64", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


LR = {"sgd": 0.15, "adagrad": 0.01}
# SGD meets 1e-5 (measured 6e-8). Adagrad divides each gradient by the root of its accumulated squares,
# so for a weight whose gradients sit at rounding level, the different summation order of two ranks
# (all-reduce of two half-batch gradients vs one full-batch gradient) turns into a step of size ~lr:
# measured 5.1e-5 on one weight of 188k in the top MLP, everything else below 1e-6.
TOL = {"sgd": 1e-5, "adagrad": 1e-4}


# every kind in one plan: 26 tables cycle through row, both ranks' table-wise, replicated and auto
MIXED = "--sharding_plan=[" + ",".join(["row", "table:0", "table:1", "replicated", "auto"] * 5 + ["row"]) + "]"


def _reference(ds, optimizer, *extra, start=None, first_epoch=0):
    """One process over the same global batches: step i concatenates batch i of every rank's shard.
    start: a checkpoint to begin from, trained from epoch `first_epoch`."""
    cfg = make_cfg(f"--dataset_path={ds}", f"--optimizer={optimizer}", f"--learning_rate={LR[optimizer]}", *extra)
    meta = load_metadata(ds)
    net = build_model(cfg, meta["table_sizes"])
    step = TrainStep(net, optimizer, cfg.learning_rate)
    if start is not None:
        checkpoint.restore(list(net.trainable_params()) + step.optimizer_state(), checkpoint.load(start)[0], start)
    steps = min(shard_sizes(meta, "train", N)) // B
    assert steps >= 50
    for epoch in range(first_epoch, EPOCHS):
        shards = [PackedBatches(ds, "train", B, shuffle=True, seed=cfg.random_seed, epoch=epoch, num_shards=N,
                                shard_id=k, drop_remainder=True, shuffle_buffer_records=cfg.shuffle_buffer_records,
                                max_batches=steps) for k in range(N)]
        for parts in zip(*shards):
            step(*[Tensor(np.concatenate(x)) for x in zip(*parts)])
    state = {checkpoint.canonical(p.name): p.asnumpy() for p in list(net.trainable_params()) + step.optimizer_state()}
    return cfg, net, state


def _assert_same(arrays, state, tol=1e-5):
    """Parameters to `tol` absolute; Adagrad accumulators (sums of squares, up to ~1e4 here) to `tol` relative."""
    assert set(state) <= set(arrays)
    worst = max(float(np.max(np.abs(arrays[k] - v) / (np.maximum(1.0, np.abs(v)) if "adagrad_acc" in k else 1.0)))
                for k, v in state.items())
    print(f"max |distributed - single process| = {worst:.3g}")
    assert worst <= tol, f"max |distributed - single| = {worst}"


@pytest.mark.parametrize("mode,optimizer,plan", [("hybrid_parallel", "sgd", "row"), ("data_parallel", "sgd", "auto"),
                                                 ("hybrid_parallel", "adagrad", "replicated")])
def test_two_ranks_end_equal_to_one_process(real_dataset, tmp_path, mode, optimizer, plan):
    ds = os.path.join(real_dataset[0], "mindrecord")
    r = _launch(ds, tmp_path, f"--optimizer={optimizer}", f"--learning_rate={LR[optimizer]}", "--do_eval=True",
                f"--sharding_plan={plan}", mode=mode)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg, net, state = _reference(ds, optimizer)
    merged = checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "dlrm")
    assert [os.path.basename(p) for p in merged] == ["dlrm-2_100.safetensors"]
    arrays, position = checkpoint.load(merged[0])
    assert position == {"global_step": 100, "epoch": 2, "step_in_epoch": 0}
    _assert_same(arrays, state, TOL[optimizer])
    # evaluation split across ranks, metrics over all 285 test samples = one process's
    want = evaluate(DLRMProbability(net), ds, "test", 64)
    line = (tmp_path / "eval.log").read_text().strip().splitlines()[-1]
    auc, logloss, samples = re.search(r"auc: ([0-9.]+), logloss: ([0-9.]+), samples: (\d+)", line).groups()
    assert int(samples) == 285 and abs(float(auc) - want["auc"]) < 1e-5 and abs(float(logloss) - want["logloss"]) < 1e-5
    shards = sorted(glob.glob(str(tmp_path / "ckpt" / "rank_*" / "*.safetensors")))
    if mode == "data_parallel":
        assert shards == []
        return
    sizes = real_dataset[1]["table_sizes"]
    rows, sp = sum(sizes), make_plan(sizes, N, [plan], B)
    assert len(shards) == N
    for k, path in enumerate(shards):
        a, pos, row_sharded, model = checkpoint.read(path)
        assert row_sharded == sorted(["sparse_arch.table"] + (["adagrad_acc.embedding.table"]
                                                              if optimizer == "adagrad" else []))
        assert model["sharding"] == {"ranks": N, "kinds": [plan] * len(sizes), "owners": [-1] * len(sizes)}
        assert pos["shard"] == {"rows": rows, "rank": k, "size": N, "segments": sp.segments(k)}
        held = sum(hi - lo for lo, hi in sp.segments(k))
        assert a["sparse_arch.table"].shape == (held, 16)
        assert held == rows if plan == "replicated" else abs(held - rows / N) <= len(sizes)   # ~1/N per rank
        # a rank of a later run (any layout) resuming from the merged file gets exactly its rows
        sliced, _, _, _ = checkpoint.load_rows(("full", merged[0]), sp.segments(k))
        for name in row_sharded:
            np.testing.assert_array_equal(sliced[name], a[name])
    # resume with another number of ranks (1): the shard set alone, joined, gives the same state
    os.remove(merged[0])
    tr = Trainer(make_cfg(f"--dataset_path={ds}", f"--ckpt_path={tmp_path / 'ckpt'}", f"--optimizer={optimizer}",
                          f"--learning_rate={LR[optimizer]}"), log=lambda *_: None)
    tr.resume()
    _assert_same({checkpoint.canonical(p.name): p.asnumpy() for p in tr.state_params()},
                 {k: arrays[k] for k in state}, tol=0.0)
    assert tr.position["global_step"] == 100
    out = subprocess.run([os.path.join(ROOT, ".venv", "bin", "python"), "-m", "src.checkpoint", "merge",
                          str(tmp_path / "ckpt")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("dlrm-2_100.safetensors")
    _assert_same(checkpoint.load(out.stdout.strip())[0], {k: arrays[k] for k in state}, tol=0.0)


def test_resume_from_one_process_on_two_ranks_with_a_mixed_plan(real_dataset, tmp_path):
    """1 -> 2: a single process trains one epoch and saves; two hybrid ranks under a plan with every kind
    (row, table-wise on each rank, replicated) resume from that file and train the second epoch; the result
    equals one process continuing from the same file over the same global batches (Adagrad, DCN-V2: the
    cross layers are data-parallel weights like the MLPs, their gradients in the fused all-reduce)."""
    dcn = ["--interaction_op=dcn", "--dcn_num_layers=2", "--dcn_low_rank_dim=16"]
    ds = os.path.join(real_dataset[0], "mindrecord")
    ckpt = tmp_path / "ckpt"
    one = Trainer(make_cfg(f"--dataset_path={ds}", f"--ckpt_path={ckpt}", "--optimizer=adagrad",
                           f"--learning_rate={LR['adagrad']}", f"--batch_size={N * B}", "--train_epochs=1",
                           "--do_eval=False", f"--loss_file_name={tmp_path / 'one.log'}", *dcn), log=lambda *_: None)
    one.run()
    start = one.last_checkpoint
    r = _launch(ds, tmp_path, "--optimizer=adagrad", f"--learning_rate={LR['adagrad']}", "--do_eval=False",
                "--resume=True", MIXED, *dcn)
    assert r.returncode == 0, r.stdout + r.stderr
    sp = make_plan(real_dataset[1]["table_sizes"], N, MIXED.split("=", 1)[1].strip("[]").split(","), B)
    assert {"row", "table", "replicated"} <= set(sp.kinds) and sp.lines()[0] in r.stdout, r.stdout
    assert f"resumed from {start} at epoch 2" in r.stdout
    _, _, state = _reference(ds, "adagrad", *dcn, start=start, first_epoch=1)
    assert sum("cross" in k and "adagrad" not in k for k in state) == 6  # 2 layers x (u, v, b)
    arrays, position = checkpoint.load(checkpoint.list_checkpoints(str(ckpt), "dlrm")[-1])
    assert position["epoch"] == 2 and position["global_step"] == one.position["global_step"] + 50
    _assert_same(arrays, state, TOL["adagrad"])


def test_a_killed_rank_fails_the_job_with_its_name(real_dataset, tmp_path):
    ds = os.path.join(real_dataset[0], "mindrecord")
    env = dict(os.environ, RUN_DIR=str(tmp_path))
    proc = subprocess.Popen(["bash", "scripts/run_distribute_train_cpu.sh", str(N), ds, f"--batch_size={B}",
                             "--train_epochs=10000", "--do_eval=False", "--save_checkpoint=False",
                             "--log_interval_steps=10"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:
        time.sleep(1)
        if (tmp_path / "loss.log").exists():          # training is under way
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if p.environ().get("RANK_ID") == "1" and "train.py" in " ".join(p.cmdline()):
                        victim = p
                except psutil.Error:
                    pass
    assert victim is not None, "rank 1 never started training"
    victim.kill()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1
    assert "distributed training FAILED" in err
    assert re.search(rf"rank 1 \(pid {victim.pid}\) exited with code -9 \(killed by signal 9\)", err), err


def test_bytes_per_step_formula():
    """hybrid: all-to-all bytes flat in N (N-1 times that as the CPU's AllGathers); data parallel grows with N."""
    mlp, m = 475_985, 16384 * 26
    assert bytes_per_step("hybrid_parallel", 1, 16384, 26, 16, mlp)["total"] == 0
    two = bytes_per_step("hybrid_parallel", 2, 16384, 26, 16, mlp)
    assert two["ids_alltoall"] == 0.5 * m * 4 and two["vectors_alltoall"] == 0.5 * m * 16 * 4 == two["grads_alltoall"]
    cpu = bytes_per_step("hybrid_parallel", 4, 16384, 26, 16, mlp, native_alltoall=False)
    four = bytes_per_step("hybrid_parallel", 4, 16384, 26, 16, mlp)
    assert cpu["vectors_alltoall_as_allgathers"] == 3 * four["vectors_alltoall"]
    hyb = {n: bytes_per_step("hybrid_parallel", n, 16384, 26, 16, mlp)["total"] for n in (8, 64, 512)}
    assert max(hyb.values()) < 1.15 * min(hyb.values())                         # (N-1)/N: flat in N
    dp = bytes_per_step("data_parallel", 8, 16384, 26, 16, mlp)
    assert hyb[8] < dp["total"]
    rep = bytes_per_step("hybrid_parallel", 8, 16384, 26, 16, mlp, exchanged_slots=20, replicated_rows=1000)
    assert rep["ids_alltoall"] == 7 / 8 * 16384 * 20 * 4
    assert rep["mlp_and_loss_allreduce"] == 2 * 7 / 8 * (mlp + 1000 * 16 + 1) * 4


def _free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _start_node(ds, run_dir, rank, port, ckpt, *args):
    env = dict(os.environ, RUN_DIR=str(run_dir), NODE_NUM="2", NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), PARALLEL_MODE="hybrid_parallel")
    return subprocess.Popen(["bash", "scripts/run_distribute_train_cpu.sh", "1", ds, f"--batch_size={B}",
                             f"--ckpt_path={ckpt}", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_nodes_end_equal_to_one_process_and_a_lost_node_fails_the_job(real_dataset, tmp_path):
    """Two launcher invocations (NODE_NUM=2, one worker each; MindSpore's scheduler on node 0) train like one
    process over the same global batches (SGD, 1e-5). Then node 1's rank is killed mid-run: node 0's
    launcher fails, naming rank 1 (MindSpore's scheduler reports it after its heartbeat timeout, ~30 s)."""
    ds = os.path.join(real_dataset[0], "mindrecord")
    port, ckpt = _free_port(), tmp_path / "ckpt"
    nodes = [_start_node(ds, tmp_path / f"node{k}", k, port, ckpt, f"--train_epochs={EPOCHS}", "--do_eval=False",
                         "--optimizer=sgd", f"--learning_rate={LR['sgd']}") for k in range(2)]
    outs = [n.communicate(timeout=300) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outs
    assert "node 1 of 2: ranks 1..1 of 2" in outs[1][0]
    _, _, state = _reference(ds, "sgd")
    arrays, position = checkpoint.load(checkpoint.list_checkpoints(str(ckpt), "dlrm")[-1])
    assert position["global_step"] == 100
    _assert_same(arrays, state, TOL["sgd"])
    port = _free_port()
    nodes = [_start_node(ds, tmp_path / f"kill{k}", k, port, tmp_path / "ck2", "--train_epochs=10000",
                         "--do_eval=False", "--save_checkpoint=False", "--log_interval_steps=10") for k in range(2)]
    log0 = tmp_path / "kill0" / "log" / "worker_0.log"
    deadline = time.time() + 120
    while not (log0.exists() and "train: " in log0.read_text()) and time.time() < deadline:
        time.sleep(0.5)
    victim = next(p for p in psutil.process_iter(["cmdline", "environ"])
                  if "train.py" in " ".join(p.info["cmdline"] or []) and (p.info["environ"] or {}).get("MS_NODE_ID") == "1")
    victim.kill()
    out0 = nodes[0].communicate(timeout=180)
    nodes[1].communicate(timeout=60)
    assert nodes[0].returncode == 1 and nodes[1].returncode == 1
    assert "rank(s) 1 stopped answering" in out0[1], out0[1][-2000:]
