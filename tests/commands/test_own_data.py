"""Your own data through every command with only a feature spec written: the Avazu sample (a CSV with a header,
22 string categoricals, no dense features) preprocessed, trained, evaluated, exported and batch-inferred."""
import json
import os
import re

import numpy as np
import pytest

from fixtures.commands import ok, run
from fixtures.paths import PY
from src.training import checkpoint

METRIC = re.compile(r"accuracy: ([0-9.]+), auc: ([0-9.]+), logloss: ([0-9.]+), samples: (\d+)")


@pytest.mark.slow
def test_own_csv_preprocess_train_eval_export_infer(avazu, tmp_path):
    d, ds, ck, train_out = avazu
    meta = json.load(open(os.path.join(ds, "metadata.json")))
    assert (meta["dense_dim"], meta["slot_dim"], meta["samples"]) == (0, 22, {"train": 82, "val": 4, "test": 14})   # the default val_size: 5% of 86
    assert [f["name"] for f in meta["features"]][:3] == ["hour", "C1", "banner_pos"]
    assert "model: 22 tables" in train_out and "final eval: accuracy" in train_out
    _, _, _, model = checkpoint.read(checkpoint.resolve(ck, "dlrm"))
    spec = model["spec"]
    assert len(spec["features"]) == 22 and spec["features"][3] == {"name": "site_id", "kind": "categorical",
                                                                    "rows": meta["table_sizes"][3], "max_len": 1,
                                                                    "pooling": "sum"}
    trained = METRIC.search(train_out.split("final eval:")[1]).groups()
    r = ok([PY, "eval.py", f"--dataset_path={ds}", f"--checkpoint_path={ck}", "--test_batch_size=8",
            f"--eval_file_name={tmp_path / 'eval.log'}"])
    assert METRIC.search((tmp_path / "eval.log").read_text()).groups() == trained
    r = ok([PY, "export.py", f"--checkpoint_path={ck}", f"--file_name={tmp_path / 'dlrm'}"])
    assert "inputs ids int32 [B,22]; output float32 [B,1]" in r.stdout        # one input: no dense features
    r = run(["bash", "scripts/run_infer_cpu.sh", str(tmp_path / "dlrm.mindir"), ds, "y", "--test_batch_size=8"],
            env=dict(os.environ, INFER_DIR=str(tmp_path / "run")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(os.listdir(tmp_path / "run" / "preprocess_Result")) == ["00_ids", "label", "manifest.json"]
    got = METRIC.search((tmp_path / "run" / "acc.log").read_text()).groups()
    assert got[3] == trained[3] == "14"
    assert all(abs(float(a) - float(b)) < 2e-6 for a, b in zip(got[:3], trained[:3])), (got, trained)


@pytest.mark.slow
def test_own_csv_with_a_multi_hot_column_through_every_command(movielens, tmp_path):
    """MovieLens: quoted titles holding commas, missing values, label = rating >= 4, `genres` multi_hot (mean of up
    to 6 genres).
    The dataset holds 6 categorical ids and 6 genre places per sample (-1 pads), the model pools them; eval.py, the
    exported MINDIR's Python batch inference and train.py's final evaluation agree."""
    d, ds, ck, train_out = movielens
    meta = json.load(open(os.path.join(ds, "metadata.json")))
    assert (meta["slot_dim"], meta["ids_per_sample"], meta["samples"]) == (7, 12, {"train": 163, "val": 9, "test": 28})
    genres = meta["features"][-1]
    assert genres == {"name": "genres", "kind": "multi_hot", "rows": meta["table_sizes"][-1], "max_len": 6,
                      "pooling": "mean"} and 10 <= genres["rows"] <= 20           # 18 genres + missing + unknown
    stats = json.load(open(os.path.join(ds, "stats.json")))
    assert 0.08 < stats["multi_hot_empty_rate"][0] < 0.14 and 1.3 < stats["multi_hot_mean_length"][0] < 2.5
    assert 0.08 < stats["categorical_missing_rate"][5] < 0.14                           # zip
    from src.data.reader import PackedBatches
    ids = np.concatenate([b[0] for b in PackedBatches(ds, "train", 64)])
    assert ids.shape == (163, 12) and (ids[:, :6] >= 0).all() and (ids[:, 6] == -1).any()    # empty lists
    assert ((ids[:, 6] >= 2) | (ids[:, 6] == -1)).all() and (ids[:, 5] == 0).any()          # zip missing: id 0
    lengths = (ids[:, 6:] >= 0).sum(1)
    assert lengths.max() > 1 and all((ids[i, 6 + n:] == -1).all() for i, n in enumerate(lengths))  # left-aligned
    _, _, _, model = checkpoint.read(checkpoint.resolve(ck, "dlrm"))
    assert model["spec"]["features"][-1] == genres
    trained = METRIC.search(train_out.split("final eval:")[1]).groups()
    ok([PY, "eval.py", f"--dataset_path={ds}", f"--checkpoint_path={ck}", "--test_batch_size=8",
        "--optimizer=adagrad", f"--eval_file_name={tmp_path / 'eval.log'}"])
    assert METRIC.search((tmp_path / "eval.log").read_text()).groups() == trained
    r = ok([PY, "export.py", f"--checkpoint_path={ck}", f"--file_name={tmp_path / 'dlrm'}"])
    assert "inputs ids int32 [B,12], dense float32 [B,1]" in r.stdout
    r = run(["bash", "scripts/run_infer_cpu.sh", str(tmp_path / "dlrm.mindir"), ds, "y", "--test_batch_size=8"],
            env=dict(os.environ, INFER_DIR=str(tmp_path / "run")))
    assert r.returncode == 0, r.stdout + r.stderr
    got = METRIC.search((tmp_path / "run" / "acc.log").read_text()).groups()
    assert got[3] == trained[3] == "28"
    assert all(abs(float(a) - float(b)) < 2e-6 for a, b in zip(got[:3], trained[:3])), (got, trained)
