"""Data- and hybrid-parallel training on 2, 3 and 4 CPU ranks (msrun on 127.0.0.1, the all-to-all as AllGather
rounds) against one process over the same global batches; resumes across rank counts that do not divide each
other, also mid-epoch; the launcher's exit; two "nodes" killed and restarted.

Adagrad and Adam run with adagrad_eps = adam_eps = 1e-4 here: with PyTorch's 1e-10 / 1e-8 the first steps move a
weight whose gradient sits at rounding level by about lr in whichever direction the rounding gives, so any two
summation orders (two ranks' all-reduce against one process's batch) drift apart by ~lr on those weights: measured
4.8e-5 after one step and 0.1 after 64 at 3 ranks, against 7e-7 with eps 1e-4 (docs/distributed.md).
"""
import glob
import os
import re
import shutil
import signal
import time

import numpy as np
import psutil
import pytest

from fixtures.commands import Started, env, run_py
from fixtures.distributed import (LR, assert_same, free_port, global_batches, launch, launch_runs, leftover_batches,
                                  merged_state, reference)
from fixtures.paths import ROOT, TEST_RECIPE, make_cfg
from src.data.packed_format import load_metadata, shard_sizes
from src.training import checkpoint
from src.training.sharding import make_plan

pytestmark = pytest.mark.slow          # multi-rank launches: bash scripts/run_tests.sh -m "not slow" leaves them out

B = 16                     # per rank; the real sample's 1,714 training samples: 50 steps an epoch on 2 ranks
EPS = ("--adagrad_eps=1e-4", "--adam_eps=1e-4")
SMALL = ("--bottom_mlp_args=[64,16]", "--top_mlp_args=[64,1]")
# every kind in one plan: 26 tables cycle through row, table-wise on ranks 0 and 1, replicated and auto
MIXED = "[" + ",".join(["row", "table:0", "table:1", "replicated", "auto"] * 5 + ["row"]) + "]"
PLANS = {"row": "row", "table": "table", "replicated": "replicated", "mixed": MIXED}


def recipe(optimizer: str):
    """The config of one optimizer in these tests."""
    return (f"--optimizer={optimizer}", f"--learning_rate={LR[optimizer]}", *EPS, *SMALL)


def _epochs(ds, n, b, epochs, skip=0):
    return [g for e in range(epochs) for g in global_batches(ds, n, b, e, skip=skip if e == 0 else 0)]


@pytest.fixture(scope="module")
def two_ranks(real_ds, tmp_path_factory):
    """2 ranks through the real launcher: hybrid, the mixed plan, Adagrad, evaluation after each epoch, 2 epochs,
    a checkpoint every 30 steps (one in the middle of epoch 1)."""
    run_dir = tmp_path_factory.mktemp("two_ranks")
    r = launch(2, real_ds, run_dir, f"--batch_size={B}", "--train_epochs=2", "--test_batch_size=64", "--do_eval=True",
               f"--sharding_plan={MIXED}", "--save_checkpoint_steps=30", "--keep_checkpoint_max=10",
               *recipe("adagrad"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return run_dir, r


def test_two_ranks_equal_one_process(real_ds, two_ranks):
    """The merged checkpoint equals one process over the same global batches (1e-5); the distributed evaluation's
    metrics over all 285 test samples equal one process's; every shard holds exactly its plan's segments, and
    cutting the merged file to them gives the shard bit for bit; the shards alone resume one process exactly;
    the merge command rebuilds the merged file; the ranks agreed on the exchange capacity inside the step's
    AllReduce, except on each epoch's first step and each evaluation batch."""
    from src.model.dlrm import build_model
    from src.model.serving import DLRMProbability
    from src.training.evaluation import evaluate
    from src.training.preflight import config_spec
    from src.training.trainer import Trainer
    run_dir, r = two_ranks
    arrays, position = merged_state(run_dir / "ckpt")
    assert position["global_step"] == 100 and position["epoch"] == 2 and position["step_in_epoch"] == 0
    want = reference(real_ds, _epochs(real_ds, 2, B, 2), *recipe("adagrad"))
    assert_same(arrays, want, 1e-5)
    # distributed evaluation = one process's over every test sample
    cfg = make_cfg(f"--dataset_path={real_ds}", *recipe("adagrad"))
    spec = config_spec(cfg)
    net = build_model(spec, cfg.random_seed)
    checkpoint.restore(net.trainable_params(), arrays, "merged")
    one = evaluate(DLRMProbability(net), real_ds, "test", 64)
    line = (run_dir / "eval.log").read_text().strip().splitlines()[-1]
    auc, logloss, samples = re.search(r"auc: ([0-9.]+), logloss: ([0-9.]+), samples: (\d+)", line).groups()
    assert int(samples) == 285 and abs(float(auc) - one["auc"]) < 1e-5 and abs(float(logloss) - one["logloss"]) < 1e-5
    # shards: their plan and segments
    plan = make_plan(spec, 2, MIXED.strip("[]").split(","), B)
    assert {"row", "table", "replicated"} <= set(plan.kinds) and plan.lines()[0] in r.stdout
    merged = checkpoint.list_checkpoints(str(run_dir / "ckpt"), "dlrm")[-1]
    for k in range(2):
        a, pos, row_sharded, model = checkpoint.read(glob.glob(str(run_dir / "ckpt" / f"rank_{k}" / "*-2_100.*"))[0])
        assert row_sharded == ["adagrad_acc.embedding.table", "sparse_arch.table"]
        assert model["sharding"] == plan.to_json() and pos["shard"]["segments"] == plan.segments(k)
        sliced, _, _, _ = checkpoint.load_rows(("full", merged), plan.segments(k))
        for name in row_sharded:
            np.testing.assert_array_equal(sliced[name], a[name])
    # the shard set alone, joined, resumes one process exactly; the merge command writes the same file
    os.rename(merged, merged + ".aside")
    tr = Trainer(make_cfg(f"--dataset_path={real_ds}", f"--ckpt_path={run_dir / 'ckpt'}", *recipe("adagrad")),
                 log=lambda *_: None)
    tr.resume()
    got = {checkpoint.canonical(p.name): p.asnumpy() for p in tr.state_params()}
    assert_same(got, {k: arrays[k] for k in want}, 0.0)
    out = run_py("-m", "src.training.checkpoint", "merge", str(run_dir / "ckpt"))
    assert out.returncode == 0 and out.stdout.strip() == merged, out.stderr
    assert_same(checkpoint.load(merged)[0], {k: arrays[k] for k in want}, 0.0)
    # capacity agreements by a collective of their own: each epoch's first step and each evaluation batch
    import json
    reports = [json.load(open(run_dir / "ranks" / f"rank_{k}.json")) for k in range(2)]
    meta = load_metadata(real_ds)
    eval_batches = max(-(-n // 64) for n in shard_sizes(meta, "test", 2))
    assert [rep["own_agreements"] for rep in reports] == [2 + 2 * eval_batches] * 2


@pytest.fixture(scope="module")
def three_ranks(real_ds, two_ranks, tmp_path_factory):
    """3 ranks through the real launcher, resuming the 2-rank run's shards at step 30 of 50 (mid-epoch 1) with another
    plan (auto), to the end of epoch 2, a checkpoint every 20 steps. Rank 2 crashes in its exit path after it has
    reported success (SIGSEGV, as MindSpore's teardown was seen to under load)."""
    src_dir, _ = two_ranks
    run_dir = tmp_path_factory.mktemp("three_ranks")
    ckpt = run_dir / "ckpt"
    for k in range(2):
        os.makedirs(ckpt / f"rank_{k}")
        for f in glob.glob(str(src_dir / "ckpt" / f"rank_{k}" / "dlrm-1_30.*")):
            shutil.copy(f, ckpt / f"rank_{k}")
    start = checkpoint.merge(str(ckpt), "dlrm", 30)
    shutil.copy(start, run_dir / "start.safetensors")
    os.remove(start)
    hook = run_dir / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(                       # rank 2: a segfault at exit, after its report
        "import atexit, os, signal\n"
        "def crash():\n"
        f"    open({str(run_dir / 'crashed')!r}, 'w').write(open({str(run_dir / 'ranks' / 'rank_2.json')!r}).read())\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "if os.environ.get('RANK_ID') == '2' and os.environ.get('MS_ROLE') == 'MS_WORKER':\n"
        "    atexit.register(crash)\n")
    r = launch(3, real_ds, run_dir, f"--batch_size={B}", "--train_epochs=2", "--do_eval=False", "--resume=True",
               "--save_checkpoint_steps=20", "--keep_checkpoint_max=10", *recipe("adagrad"),
               extra_env={"PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"})
    return run_dir, r


def test_three_ranks_resume_a_two_rank_checkpoint_mid_epoch(real_ds, three_ranks):
    """2 -> 3 in the middle of epoch 1: the rest of epoch 1 is what the two ranks had not reached, then epoch 2 on 3
    ranks; equal to one process from the same checkpoint over the same global batches (1e-5). Rank 2's crash after
    its report does not fail the job: it exits 0, with msrun's complaint as a warning when msrun saw it."""
    run_dir, r = three_ranks
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resumed from 2 shards" in r.stdout and "at epoch 1, step 30" in r.stdout
    assert '"status": "ok"' in (run_dir / "crashed").read_text()   # it crashed, and only after its report
    if "exit with exception" in (run_dir / "msrun.log").read_text():  # msrun saw it before the launcher stopped it
        assert "after every rank had reported success" in r.stderr, r.stderr
    rest = list(leftover_batches(real_ds, (2, B, 30), 3, B, epoch=0))
    arrays, position = merged_state(run_dir / "ckpt")
    assert position["global_step"] == 30 + len(rest) + len(_epochs(real_ds, 3, B, 1)) and position["epoch"] == 2
    want = reference(real_ds, rest + list(global_batches(real_ds, 3, B, 1)), *recipe("adagrad"),
                     start=str(run_dir / "start.safetensors"), first_step=30)
    assert_same(arrays, want, 1e-5)


# ---------------------------------------------------------------- 3 and 4 ranks: plans x optimizers (slow)
MATRIX_STEPS = 6
# Each rank count sees every plan and every optimizer, and every (plan, optimizer) pair runs at 3 or 4 ranks;
# data parallel with Adagrad at both.
CASES = {3: [("row", "sgd"), ("table", "adagrad"), ("replicated", "adam"), ("mixed", "adagrad"), ("mixed", "adam"),
             ("row", "adam"), ("data", "adagrad")],
         4: [("row", "adagrad"), ("table", "sgd"), ("table", "adam"), ("replicated", "sgd"),
             ("replicated", "adagrad"), ("mixed", "sgd"), ("data", "adagrad")]}
RESUMED_STEPS = 5          # the 3-rank launch also continues the 4-rank (mixed, sgd) run mid-epoch for this many steps


def _run_args(ds, ckpt, plan, optimizer, *extra):
    mode = "data_parallel" if plan == "data" else "hybrid_parallel"
    return [f"--dataset_path={ds}", f"--ckpt_path={ckpt}", f"--batch_size={B}", f"--parallel_mode={mode}",
            f"--sharding_plan={PLANS.get(plan, 'auto')}", "--do_eval=False", "--loss_file_name=", *recipe(optimizer),
            *extra]


def _matrix(n, ds, out, extra_runs=()):
    runs = [{"name": f"{p}_{o}", "max_steps": MATRIX_STEPS, "args": _run_args(ds, out / f"{p}_{o}", p, o)}
            for p, o in CASES[n]] + list(extra_runs)
    r = launch_runs(n, runs, out, fixed_capacity=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def matrix4(real_ds, tmp_path_factory):
    """One launch of 4 ranks trains each 4-rank case for 6 steps (tests/fixtures/rank_runs.py; exchange blocks padded
    to the worst case, so one graph per case)."""
    return _matrix(4, real_ds, tmp_path_factory.mktemp("matrix4"))


@pytest.fixture(scope="module")
def matrix3(real_ds, matrix4, tmp_path_factory):
    """One launch of 3 ranks: each 3-rank case, then the 4-rank (mixed, sgd) run resumed mid-epoch (4 -> 3, the
    auto plan) for RESUMED_STEPS steps."""
    out = tmp_path_factory.mktemp("matrix3")
    shutil.copytree(matrix4 / "mixed_sgd", out / "resumed_4to3")
    resumed = {"name": "resumed_4to3", "max_steps": MATRIX_STEPS + RESUMED_STEPS,
               "args": _run_args(real_ds, out / "resumed_4to3", "auto", "sgd", "--resume=True")}
    return _matrix(3, real_ds, out, [resumed])


@pytest.fixture(scope="module")
def matrix_references(real_ds):
    """One process per (rank count, optimizer): the plan does not change the numbers, so one reference serves all."""
    return {(n, opt): reference(real_ds, list(global_batches(real_ds, n, B, 0))[:MATRIX_STEPS], *recipe(opt))
            for n in CASES for opt in LR}


def _check_matrix(out, n, references):
    worst = {}
    for plan, optimizer in CASES[n]:
        arrays, position = merged_state(out / f"{plan}_{optimizer}")
        assert position["global_step"] == MATRIX_STEPS
        worst[(plan, optimizer)] = assert_same(arrays, references[(n, optimizer)], 1e-5)
    print(f"{n} ranks, max |distributed - one process|: {worst}")


@pytest.mark.cluster
def test_four_ranks_equal_one_process_for_every_plan_and_optimizer(matrix4, matrix_references):
    _check_matrix(matrix4, 4, matrix_references)


@pytest.mark.cluster
def test_three_ranks_equal_one_process_and_resume_four_mid_epoch(real_ds, matrix3, matrix4, matrix_references):
    _check_matrix(matrix3, 3, matrix_references)
    start = checkpoint.list_checkpoints(str(matrix4 / "mixed_sgd"), "dlrm")[-1]
    rest = list(leftover_batches(real_ds, (4, B, MATRIX_STEPS), 3, B, epoch=0))[:RESUMED_STEPS]
    want = reference(real_ds, rest, *recipe("sgd"), start=start, first_step=MATRIX_STEPS)
    arrays, position = merged_state(matrix3 / "resumed_4to3")
    assert position["global_step"] == MATRIX_STEPS + RESUMED_STEPS
    assert_same(arrays, want, 1e-5)


def _start_node(ds, run_dir, rank, port, ckpt, *args):
    e = env(RUN_DIR=str(run_dir), NODE_NUM="2", NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
            PARALLEL_MODE="hybrid_parallel", MS_NODE_TIMEOUT="10")
    return Started(["bash", "scripts/run_distribute_train_cpu.sh", "1", ds, *TEST_RECIPE, f"--batch_size={B}",
                    f"--ckpt_path={ckpt}", *args], run_dir / "launcher", env=e)


def test_two_nodes_killed_mid_epoch_and_restarted_end_equal_to_one_process(real_ds, three_ranks, tmp_path):
    """Two launcher invocations (NODE_NUM=2, one rank each; MindSpore's scheduler on node 0) resume the 3-rank run's
    shards at step 60, in the middle of its epoch 2 (3 -> 2). Node 1's rank is killed after its checkpoint at step 70:
    both launchers fail, node 0 naming rank 1. Both are started again with --resume=True, exactly as a user would on two
    machines; the job ends equal to one process over the same batches from the 3-rank checkpoint (1e-5)."""
    run_dir, _ = three_ranks
    ckpt = tmp_path / "ckpt"
    for k in range(3):
        os.makedirs(ckpt / f"rank_{k}")
        for f in glob.glob(str(run_dir / "ckpt" / f"rank_{k}" / "dlrm-2_60.*")):
            shutil.copy(f, ckpt / f"rank_{k}")
    start = checkpoint.merge(str(ckpt), "dlrm", 60)
    shutil.move(start, tmp_path / "start.safetensors")
    done = checkpoint.load(str(tmp_path / "start.safetensors"))[1]["step_in_epoch"]
    args = ("--train_epochs=2", "--do_eval=False", "--resume=True", "--save_checkpoint_steps=10",
            "--keep_checkpoint_max=20", *recipe("adagrad"))
    port = free_port()
    nodes = [_start_node(real_ds, tmp_path / f"node{k}", k, port, ckpt, *args) for k in range(2)]
    deadline = time.time() + 180
    while not glob.glob(str(ckpt / "rank_1" / "dlrm-*_70.safetensors")) and time.time() < deadline:
        time.sleep(0.2)
    victim = next(p for p in psutil.process_iter(["cmdline", "environ"])
                  if "train.py" in " ".join(p.info["cmdline"] or []) and (p.info["environ"] or {}).get("MS_NODE_ID") == "1")
    victim.send_signal(signal.SIGKILL)
    outs = [n.wait(timeout=180) for n in nodes]
    assert [o[0] for o in outs] == [1, 1], outs
    assert "rank(s) 1 stopped answering" in outs[0][2] and "rank 1 never reported" in outs[1][2], outs
    port = free_port()
    nodes = [_start_node(real_ds, tmp_path / f"again{k}", k, port, ckpt, *args) for k in range(2)]
    outs = [n.wait(timeout=300) for n in nodes]
    assert [o[0] for o in outs] == [0, 0], outs
    assert "node 1 of 2: ranks 1..1 of 2" in outs[1][1]
    assert re.search(r"resumed from .*rank_0/dlrm-2_70\.safetensors at epoch 2, step 70",
                     (tmp_path / "again0" / "log" / "worker_0.log").read_text())
    batches = list(leftover_batches(real_ds, (3, B, done), 2, B, epoch=1))
    arrays, position = merged_state(ckpt)
    assert position["global_step"] == 60 + len(batches) and position["epoch"] == 2
    assert_same(arrays, reference(real_ds, batches, *recipe("adagrad"), start=str(tmp_path / "start.safetensors"),
                                  first_step=60), 1e-5)


# ---------------------------------------------------------------- multi_hot slots at 2 and 3 ranks
MH_B, MH_STEPS = 8, 6
# MovieLens' 7 slots (user_id, movie_id, title, gender, occupation, zip, genres): genres (multi_hot, up to 6 ids a
# sample) replicated and row-wise (a list's ids then go to several owners) at 3 ranks, table-wise and row-wise at 2.
# Both launches run with --cluster (about 80 s: beyond CI's time budget); CI runs the routing of multi-hot lists
# through the simulated all-to-all at 2, 3 and 4 ranks (tests/training/test_sharding.py) and the single-process
# exactness against numpy (tests/training/test_multi_hot.py).
MH_CASES = {3: [("[row,table:0,table:1,replicated,auto,row,replicated]", "adagrad"),
                ("[table:2,row,replicated,table:0,auto,table:1,row]", "sgd"), ("data", "sgd")],
            2: [("[table:1,row,replicated,table:0,auto,row,table:1]", "adagrad"), ("row", "sgd"),
                ("data", "adagrad")]}


def _multi_hot_run(ds, name, ckpt, plan, optimizer, steps, *extra) -> dict:
    mode = "data_parallel" if plan == "data" else "hybrid_parallel"
    return {"name": name, "max_steps": steps, "args": [
        f"--dataset_path={ds}", f"--ckpt_path={ckpt}", f"--batch_size={MH_B}", f"--parallel_mode={mode}",
        f"--sharding_plan={'auto' if plan == 'data' else plan}", "--do_eval=False", "--loss_file_name=",
        *recipe(optimizer), *extra]}



def _multi_hot_launch(movielens, tmp_path_factory, n, resume=False):
    """One launch of n ranks on the MovieLens dataset (genres multi_hot) training each of MH_CASES[n] for MH_STEPS
    steps of MH_B per rank; with `resume`, also a run of half the steps resumed to MH_STEPS under another plan
    (genres table-wise, then row-wise). Returns its out folder."""
    _, ds, _, _ = movielens
    folder = tmp_path_factory.mktemp(f"multi_hot{n}")
    runs = [_multi_hot_run(ds, f"case{i}", folder / f"case{i}", plan, optimizer, MH_STEPS)
            for i, (plan, optimizer) in enumerate(MH_CASES[n])]
    if resume:
        runs += [_multi_hot_run(ds, "resume_a", folder / "resumed", MH_CASES[n][0][0], "adagrad", MH_STEPS // 2),
                 _multi_hot_run(ds, "resume_b", folder / "resumed", "row", "adagrad", MH_STEPS, "--resume=True",
                                f"--loss_file_name={folder / 'resumed.log'}", "--log_interval_steps=1")]
    r = launch_runs(n, runs, folder, fixed_capacity=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return folder


def _check_multi_hot(movielens, folder, n, resume=False):
    _, ds, _, _ = movielens
    batches = list(global_batches(ds, n, MH_B, 0))[:MH_STEPS]
    assert len(batches) == MH_STEPS and any((b[0] == -1).any() for b in batches)
    worst = {}
    cases = [(f"case{i}", plan, optimizer) for i, (plan, optimizer) in enumerate(MH_CASES[n])]
    for name, plan, optimizer in cases + ([("resumed", "resumed under row", "adagrad")] if resume else []):
        arrays, position = merged_state(folder / name)
        assert position["global_step"] == MH_STEPS
        worst[(plan, optimizer)] = assert_same(arrays, reference(ds, batches, *recipe(optimizer)), 1e-5)
    if resume:                                       # the second half trained steps 4..6 only: it resumed
        steps = [int(m) for m in re.findall(r"step: (\d+), loss", (folder / "resumed.log").read_text())]
        assert steps == list(range(MH_STEPS // 2 + 1, MH_STEPS + 1)), steps
    print(f"multi-hot, {n} ranks, max |distributed - one process|: {worst}")


@pytest.mark.cluster
def test_multi_hot_slots_at_three_ranks_equal_one_process(movielens, tmp_path_factory):
    """Pooled slots under hybrid parallel (the ids of a list routed to their rows' owners, pads as row 0 weighted 0;
    genres replicated, then row-wise) and data parallel: the merged checkpoint equals one process over the
    same global batches (1e-5)."""
    _check_multi_hot(movielens, _multi_hot_launch(movielens, tmp_path_factory, 3), 3)


@pytest.mark.cluster
def test_multi_hot_slots_at_two_ranks_equal_one_process_and_resume_under_another_plan(movielens, tmp_path_factory):
    """The same at 2 ranks, and a run stopped at half its steps (its checkpoint: the multi-hot table's shards) and
    resumed under another plan (genres table-wise -> row-wise) equal to one process (--cluster)."""
    _check_multi_hot(movielens, _multi_hot_launch(movielens, tmp_path_factory, 2, resume=True), 2, resume=True)

