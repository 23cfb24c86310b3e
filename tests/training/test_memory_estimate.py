"""Memory planning before allocation: --plan_only for any rank count without launching ranks, the
memory_budget_gb stop, and the planner's arithmetic."""
import subprocess
import sys

import pytest

from fixtures.paths import ROOT, make_cfg
from src.data.synthetic import KAGGLE_SIZES
from src.model_utils.spec import DLRMSpec, criteo_features
from src.training.memory_estimate import MemoryBudgetError, check_budget, estimate
from src.training.cost_model import bytes_per_step
from src.training.sharding import make_plan

def kaggle(cfg) -> DLRMSpec:
    return DLRMSpec.from_config(cfg, criteo_features(KAGGLE_SIZES))


SIZES = "--categorical_feature_sizes=[" + ",".join(map(str, KAGGLE_SIZES)) + "]"


def _train(*args):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plan_only_sizes_a_cluster_without_launching_it():
    r = _train("--plan_only=True", "--rank_size=64", "--parallel_mode=hybrid_parallel", "--batch_size=16384",
               "--dataset_path=/nowhere", SIZES, "--memory_budget_gb=100")
    assert r.returncode == 0, r.stderr
    rows = sum(KAGGLE_SIZES)
    most = int(make_plan(kaggle(make_cfg()), 64, ["auto"], 16384).rows_per_rank().max())
    assert f"hybrid_parallel, 64 rank(s), batch 16384 per rank; {rows:,} table rows, {most:,} per rank" in r.stdout
    assert "sharding: " in r.stdout and "ids_alltoall_as_allgathers" in r.stdout and "fits:" in r.stdout
    r = _train("--plan_only=True", "--rank_size=1", "--dataset_path=/nowhere", SIZES, "--memory_budget_gb=1")
    assert r.returncode == 1 and "does not fit" in r.stdout and "use 4 ranks of hybrid_parallel" not in r.stdout
    assert "or use hybrid_parallel" in r.stdout                  # stand_alone: splitting the table is the way out


def test_budget_names_the_ranks_that_would_fit():
    cfg = make_cfg("--parallel_mode=hybrid_parallel", "--batch_size=1024")
    one = estimate(cfg, kaggle(cfg), 1)
    with pytest.raises(MemoryBudgetError, match=r"each of the 1 rank\(s\) would need .* use 2 ranks of hybrid_parallel"):
        check_budget(cfg, kaggle(cfg), 1, int(one.total * 0.8))
    assert check_budget(cfg, kaggle(cfg), 2, int(one.total * 0.8)).ranks == 2


def test_train_stops_before_allocating_when_over_budget(real_dataset, tmp_path):
    r = _train(f"--dataset_path={real_dataset[0]}/mindrecord", f"--ckpt_path={tmp_path}/ck", "--memory_budget_gb=0.1",
               f"--loss_file_name={tmp_path}/loss.log", "--batch_size=64")
    assert r.returncode == 1 and "train error: each of the 1 rank(s) would need" in r.stderr
    assert not (tmp_path / "ck").exists() and not (tmp_path / "loss.log").exists()


def test_plan_arithmetic():
    cfg = make_cfg("--parallel_mode=hybrid_parallel", "--batch_size=16384", "--optimizer=adagrad",
                   "--device_target=Ascend", "--sharding_plan=row")
    assert kaggle(cfg).mlp_params == 475_985                      # the Kaggle MLPs (README)
    p8, p512 = estimate(cfg, kaggle(cfg), 8), estimate(cfg, kaggle(cfg), 512)
    rows = sum(KAGGLE_SIZES)
    local = sum(-(-n // 8) for n in KAGGLE_SIZES)                 # each table's largest block
    assert local - 26 <= p8.rows_per_rank <= local
    assert p8.table == p8.rows_per_rank * 16 * 4 and p8.optimizer == 4 * (p8.rows_per_rank + 475_985)
    assert p8.exchange == bytes_per_step("hybrid_parallel", 8, 16384, 26, 16, 475_985, 26, 0, True)
    assert p512.exchange["total"] < 1.2 * p8.exchange["total"]    # the all-to-all's bytes stay flat in N
    dp = estimate(make_cfg("--parallel_mode=data_parallel", "--batch_size=16384"), kaggle(cfg), 8)
    assert dp.rows_per_rank == rows and p8.exchange["total"] < dp.exchange["total"]
