"""Memory planning before allocation: --plan_only for any rank count without launching ranks, the
memory_budget_gb stop, and the planner's arithmetic; sharding plans and the host-side routing of lookups."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, make_cfg
from src.data.synthetic import KAGGLE_SIZES
from src.training.memory_plan import MemoryBudgetError, check_budget, dense_params, plan
from src.training.parallel import ExchangeFeed, bytes_per_step
from src.training.sharding import Router, ShardingError, make_plan
from src.utils.progress import with_next

SIZES = "--categorical_feature_sizes=[" + ",".join(map(str, KAGGLE_SIZES)) + "]"


def _train(*args):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plan_only_sizes_a_cluster_without_launching_it():
    r = _train("--plan_only=True", "--rank_size=64", "--parallel_mode=hybrid_parallel", "--batch_size=16384",
               "--dataset_path=/nowhere", SIZES, "--memory_budget_gb=100")
    assert r.returncode == 0, r.stderr
    rows = sum(KAGGLE_SIZES)
    most = int(make_plan(KAGGLE_SIZES, 64, ["auto"], 16384).rows_per_rank().max())
    assert f"hybrid_parallel, 64 rank(s), batch 16384 per rank; {rows:,} table rows, {most:,} per rank" in r.stdout
    assert "sharding: " in r.stdout and "ids_alltoall_as_allgathers" in r.stdout and "fits:" in r.stdout
    r = _train("--plan_only=True", "--rank_size=1", "--dataset_path=/nowhere", SIZES, "--memory_budget_gb=1")
    assert r.returncode == 1 and "does not fit" in r.stdout and "use 4 ranks of hybrid_parallel" not in r.stdout
    assert "or use hybrid_parallel" in r.stdout                  # stand_alone: splitting the table is the way out


def test_budget_names_the_ranks_that_would_fit():
    cfg = make_cfg("--parallel_mode=hybrid_parallel", "--batch_size=1024")
    one = plan(cfg, KAGGLE_SIZES, 1)
    with pytest.raises(MemoryBudgetError, match=r"each of the 1 rank\(s\) would need .* use 2 ranks of hybrid_parallel"):
        check_budget(cfg, KAGGLE_SIZES, 1, int(one.total * 0.8))
    assert check_budget(cfg, KAGGLE_SIZES, 2, int(one.total * 0.8)).ranks == 2


def test_train_stops_before_allocating_when_over_budget(real_dataset, tmp_path):
    r = _train(f"--dataset_path={real_dataset[0]}/mindrecord", f"--ckpt_path={tmp_path}/ck", "--memory_budget_gb=0.1",
               f"--loss_file_name={tmp_path}/loss.log")
    assert r.returncode == 1 and "train error: each of the 1 rank(s) would need" in r.stderr
    assert not (tmp_path / "ck").exists() and not (tmp_path / "loss.log").exists()


def test_plan_arithmetic():
    cfg = make_cfg("--parallel_mode=hybrid_parallel", "--batch_size=16384", "--optimizer=adagrad",
                   "--device_target=GPU", "--sharding_plan=row")
    assert dense_params(cfg, 26) == 475_985                       # the Kaggle MLPs (README)
    p8, p512 = plan(cfg, KAGGLE_SIZES, 8), plan(cfg, KAGGLE_SIZES, 512)
    rows = sum(KAGGLE_SIZES)
    local = sum(-(-n // 8) for n in KAGGLE_SIZES)                 # each table's largest block
    assert local - 26 <= p8.rows_per_rank <= local
    assert p8.table == p8.rows_per_rank * 16 * 4 and p8.optimizer == 4 * (p8.rows_per_rank + 475_985)
    assert p8.exchange == bytes_per_step("hybrid_parallel", 8, 16384, 26, 16, 475_985, 26, 0, True)
    assert p512.exchange["total"] < 1.2 * p8.exchange["total"]    # the all-to-all's bytes stay flat in N
    dp = plan(make_cfg("--parallel_mode=data_parallel", "--batch_size=16384"), KAGGLE_SIZES, 8)
    assert dp.rows_per_rank == rows and p8.exchange["total"] < dp.exchange["total"]


def test_the_default_planner():
    """auto: tables up to the batch replicated, a table over a rank's share row-wise, the rest whole on one rank,
    balanced; entries checked with the entry named."""
    sizes = [3, 50, 1000, 20000, 7, 400, 900]
    p = make_plan(sizes, 2, ["auto"], 16)
    assert p.kinds == ("replicated", "table", "table", "row", "replicated", "table", "table")
    assert p.owners[0] == -1 and sorted(p.owners[i] for i in (1, 2, 5, 6)) == [0, 0, 1, 1]
    per_rank = p.rows_per_rank()
    assert per_rank.sum() == sum(sizes) + 10 and abs(int(per_rank[0]) - int(per_rank[1])) <= 1000
    for r in range(2):                                            # replicated first, then the rank's parts
        segs = p.segments(r)
        assert segs[:2] == [(0, 3), (21053, 21060)] and sum(hi - lo for lo, hi in segs) == per_rank[r]
    pinned = make_plan(sizes, 3, ["table:2"] * 7, 16)
    assert set(pinned.owners) == {2} and pinned.rows_per_rank().tolist() == [0, 0, sum(sizes)]
    with pytest.raises(ShardingError, match=r"entry 1 = 'tabel'"):
        make_plan(sizes, 2, ["row", "tabel"] + ["row"] * 5, 16)
    with pytest.raises(ShardingError, match=r"entry 0 = 'table:5': rank 5 does not exist"):
        make_plan(sizes, 2, ["table:5"], 16)
    with pytest.raises(ShardingError, match=r"has 2 entries"):
        make_plan(sizes, 2, ["row", "row"], 16)


def test_routing_sends_each_owner_its_distinct_rows_and_brings_every_lookup_back():
    """Every rank's send blocks hold only rows that owner has, each once; the vectors an owner returns, put
    back by `inverse`, are exactly the looked-up rows (the fused table here is its own row numbers)."""
    sizes = [3, 50, 1000, 20000, 7, 400]
    p = make_plan(sizes, 3, ["row", "table:2", "replicated", "row", "table", "table"], 16)
    rng = np.random.default_rng(0)
    ids = np.stack([rng.integers(0, n, 64) for n in sizes], 1).astype(np.int32)
    ids[:, 3] = ids[0, 3]                                          # one row asked 64 times: sent once
    local = [np.concatenate([np.arange(lo, hi) for lo, hi in p.segments(k)]) for k in range(3)]
    want = ids + p.offsets[None, :]
    for r in range(3):
        router = Router(p, r)
        routed = router.route(ids)
        c = router.capacity(routed.need, 64)
        send, inverse = router.pack(routed, c)
        assert c >= routed.need and c % 8 == 0
        blocks = send.reshape(3, c)
        back = np.concatenate([np.where(blocks[k] >= 0, local[k][np.maximum(blocks[k], 0)], -1) for k in range(3)])
        for k in range(3):
            asked = blocks[k][blocks[k] >= 0]
            assert len(set(asked.tolist())) == len(asked) and (asked < len(local[k])).all()
        np.testing.assert_array_equal(back[inverse].reshape(64, -1), want[:, router.ex_slots])
        np.testing.assert_array_equal(local[r][routed.rep_rows], want[:, router.rep_slots])
        assert (blocks >= 0).sum() == len(np.unique(want[:, router.ex_slots]))


def test_ranks_agree_on_the_next_capacity_through_the_summed_announcements():
    """What each rank announces in a step's AllReduce, summed, gives every rank the largest next need; a rank
    without a next batch makes the next step agree by itself. with_next pairs each batch with the one after."""
    sizes = [5000, 300, 70000]
    p = make_plan(sizes, 3, ["row"] * 3, 32)
    rng = np.random.default_rng(1)
    feeds = [ExchangeFeed(Router(p, r)) for r in range(3)]
    routed = [f.router.route(np.stack([rng.integers(0, n, 32 * (r + 1)) for n in sizes], 1).astype(np.int32))
              for r, f in enumerate(feeds)]
    summed = sum(f.announce(x) for f, x in zip(feeds, routed))
    assert ExchangeFeed.agreed(summed) == max(x.need for x in routed) and max(x.need for x in routed) > 0
    assert ExchangeFeed.agreed(summed - feeds[1].announce(routed[1]) + feeds[1].announce(None)) is None
    assert list(with_next([1, 2, 3])) == [(1, 2), (2, 3), (3, None)] and list(with_next([])) == []
