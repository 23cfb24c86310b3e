import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from src.data.reader import PackedBatches, create_dataset
from src.data.synthetic import generate


def test_synthetic_file_has_the_criteo_structure(tmp_path):
    generate(str(tmp_path / "train.txt"), 30000, seed=1, prob_file=str(tmp_path / "p.npy"), progress=False)
    df = pd.read_csv(tmp_path / "train.txt", sep="\t", header=None, dtype={i: str for i in range(14, 40)})
    assert df.shape == (30000, 40)
    miss = df.isna().mean()
    assert abs(miss[1] - 0.45) < 0.02 and abs(miss[10] - 0.45) < 0.02 and (df[1].isna() == df[10].isna()).all()
    assert abs(miss[12] - 0.77) < 0.02 and abs(miss[35] - 0.80) < 0.02
    assert (df[33].isna() == df[39].isna()).all() and abs(miss[33] - 0.44) < 0.02
    assert df[2].min() == -3 and (df[[c for c in range(1, 14) if c != 2]].min() >= 0).all()
    cats = df[14].dropna()
    assert cats.str.fullmatch(r"[0-9a-f]{8}").all()
    top = df[16].value_counts()
    assert top.iloc[0] > 20 * top.iloc[len(top) // 2]               # heavy-tailed value frequencies
    p = np.load(tmp_path / "p.npy")
    assert p.shape == (30000,) and 0.2 < df[0].mean() < 0.35 and abs(p.mean() - df[0].mean()) < 0.02
    generate(str(tmp_path / "again.txt"), 30000, seed=1, progress=False)
    assert open(tmp_path / "again.txt").read() == open(tmp_path / "train.txt").read()


def test_create_dataset_shapes_and_eval_keeps_every_sample(real_dataset):
    ds = os.path.join(real_dataset[0], "mindrecord")
    data = create_dataset(ds, "test", batch_size=100)
    batches = list(data.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert [len(b[2]) for b in batches] == [100, 100, 85]
    ids, dense, label = batches[0]
    assert ids.dtype == np.int32 and ids.shape == (100, 26)
    assert dense.dtype == np.float32 and dense.shape == (100, 13)
    assert label.dtype == np.float32 and label.shape == (100, 1)
    train = list(create_dataset(ds, "train", batch_size=128).create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert len(train) == 1714 // 128 and all(len(b[2]) == 128 for b in train)


def test_shards_split_the_rows_disjointly(real_dataset):
    ds = os.path.join(real_dataset[0], "mindrecord")
    whole = np.concatenate([b[0] for b in PackedBatches(ds, "train", 1000)])
    parts = [np.concatenate([b[0] for b in PackedBatches(ds, "train", 1000, num_shards=2, shard_id=r)])
             for r in (0, 1)]
    assert len(parts[0]) + len(parts[1]) == len(whole)
    both = np.concatenate(parts)
    np.testing.assert_array_equal(both[np.lexsort(both.T)], whole[np.lexsort(whole.T)])


def _sh(*args):
    return subprocess.run(["bash", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_launch_scripts_train_and_eval_on_cpu(real_dataset):
    ds = os.path.join(real_dataset[0], "mindrecord")
    r = _sh("scripts/run_standalone_train_cpu.sh", ds, "--batch_size=256", "--test_batch_size=200",
            "--ckpt_file_name_prefix=scripttest")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run_dir = os.path.join(ROOT, "output", "train_standalone_cpu_0")
    assert "final eval: accuracy" in open(os.path.join(run_dir, "train.log")).read()
    ck = os.path.join(run_dir, "ckpt")
    r = _sh("scripts/run_eval.sh", "0", "CPU", ds, ck, "--ckpt_file_name_prefix=scripttest")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "samples: 285," in r.stdout
    r = _sh("scripts/run_eval_gpu.sh", "0", "CPU", ds)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = _sh("scripts/run_standalone_train_gpu.sh", "x", "GPU", ds)
    assert r.returncode == 2 and "DEVICE_ID must be a non-negative integer" in r.stderr
    r = _sh("scripts/run_standalone_train_ascend.sh", "0", "Ascend", "/nonexistent")
    assert r.returncode == 2 and "has no metadata.json" in r.stderr


RANK_TABLE = {"version": "1.0", "server_count": "2", "status": "completed", "server_list": [
    {"server_id": "10.0.0.1", "device": [{"device_id": "0", "device_ip": "192.1.1.1", "rank_id": "0"},
                                         {"device_id": "1", "device_ip": "192.1.1.2", "rank_id": "1"}]},
    {"server_id": "10.0.0.2", "device": [{"device_id": "0", "device_ip": "192.1.2.1", "rank_id": "2"},
                                         {"device_id": "1", "device_ip": "192.1.2.2", "rank_id": "3"}]}]}


def test_rank_table_places_this_servers_devices_with_global_ranks(tmp_path):
    import json
    from src.utils.rank_table import RankTableError, placement
    assert placement(RANK_TABLE, "t.json", 2, "10.0.0.2") == (4, [(0, 2), (1, 3)])
    assert placement({}, "t.json", 3) == (3, [(0, 0), (1, 1), (2, 2)])        # a placeholder table
    with pytest.raises(RankTableError, match="this server has 2 devices in the table, but DEVICE_NUM is 8"):
        placement(RANK_TABLE, "t.json", 8, "10.0.0.1")
    with pytest.raises(RankTableError, match="match this machine's addresses .* set SERVER_ID"):
        placement(RANK_TABLE, "t.json", 2)
    table = tmp_path / "rank_table_2x2.json"
    table.write_text(json.dumps(RANK_TABLE))
    env = dict(os.environ, SERVER_ID="10.0.0.2", RUN_DIR=str(tmp_path / "run"))
    r = subprocess.run(["bash", "scripts/run_distribute_train_ascend.sh", "2", str(tmp_path / "nowhere"), str(table)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 2 and "has no metadata.json" in r.stderr           # checked before anything starts
    fake = tmp_path / "ds"                                                    # any folder with a metadata.json
    fake.mkdir()
    (fake / "metadata.json").write_text("{}")
    r = subprocess.run(["bash", "scripts/run_distribute_train_ascend.sh", "2", str(fake), str(table)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    # no Ascend here: both ranks fail, but they were started as global ranks 2 and 3 on devices 0 and 1
    assert "started ranks 2 (device 0), 3 (device 1) of 4" in r.stdout and r.returncode == 1, r.stdout + r.stderr
    assert sorted(os.listdir(tmp_path / "run")) == ["log2", "log3"]
