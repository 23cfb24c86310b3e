"""Your own data through every command with only a feature spec written: the Avazu sample (a CSV with a header,
22 string categoricals, no dense features) preprocessed, trained, evaluated, exported and batch-inferred."""
import json
import os
import re

from fixtures.commands import ok, run
from fixtures.paths import PY
from src.training import checkpoint

METRIC = re.compile(r"accuracy: ([0-9.]+), auc: ([0-9.]+), logloss: ([0-9.]+), samples: (\d+)")


def test_own_csv_preprocess_train_eval_export_infer(avazu, tmp_path):
    d, ds, ck, train_out = avazu
    meta = json.load(open(os.path.join(ds, "metadata.json")))
    assert (meta["dense_dim"], meta["slot_dim"], meta["samples"]) == (0, 22, {"train": 86, "test": 14})
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
