"""The batch files of the inference path, and the Python runner through run_infer_cpu.sh equal to eval."""
import os
import re
import subprocess

import numpy as np
import pytest

from fixtures.datasets import own, read_split
from fixtures.paths import ROOT
from src.inference.batch_files import InferFilesError, list_batches, read_array, read_results, read_time, write_batches
from src.inference.export import export_network, load_inference_net
from src.training.evaluation import evaluate

METRIC = re.compile(r"accuracy: ([0-9.]+), auc: ([0-9.]+), logloss: ([0-9.]+), samples: (\d+)")


def test_batch_files_keep_the_last_partial_batch_and_check_sizes(real_dataset, tmp_path):
    from src.data.reader import PackedBatches
    ds = os.path.join(real_dataset[0], "mindrecord")
    out = tmp_path / "pre"
    m = write_batches(PackedBatches(ds, "test", 128), str(out), 26, 13, 128)
    assert (m["batches"], m["samples"]) == (3, 285)
    names = list_batches(str(out / "00_ids"))
    assert names == ["batch_000000", "batch_000001", "batch_000002"]
    assert names == list_batches(str(out / "01_dense")) == list_batches(str(out / "label"))
    ids = read_array(str(out / "00_ids" / "batch_000002.bin"), "<i4", 26)
    assert ids.shape == (29, 26) and os.path.getsize(out / "01_dense" / "batch_000002.bin") == 29 * 13 * 4
    want_ids, want_dense, want_label = read_split(ds, "test")
    got = np.concatenate([read_array(str(out / "00_ids" / f"{n}.bin"), "<i4", 26) for n in names])
    np.testing.assert_array_equal(got, want_ids)
    (out / "00_ids" / "batch_000001.bin").write_bytes(b"\0" * 10)
    with pytest.raises(InferFilesError, match=r"batch_000001.bin' has 10 bytes, not a positive multiple of one row"):
        read_array(str(out / "00_ids" / "batch_000001.bin"), "<i4", 26)
    res = tmp_path / "res"
    res.mkdir()
    np.zeros((128, 1), np.float32).tofile(res / "batch_000000_0.bin")
    with pytest.raises(InferFilesError, match="batch_000001_0.bin' does not exist"):
        read_results(str(res), str(out / "label"))


def test_cpu_inference_script_end_to_end_equals_eval(trained, tmp_path):
    cfg, ckpt = own(trained)
    net, _, _, _ = load_inference_net(cfg, ckpt)
    want = evaluate(net, cfg.dataset_path, "test", 100)
    cfg.file_name = str(tmp_path / "dlrm")
    mindir = export_network(net, cfg, log=lambda *_: None)
    env = dict(os.environ, INFER_DIR=str(tmp_path / "run"))
    r = subprocess.run(["bash", "scripts/run_infer_cpu.sh", mindir, cfg.dataset_path, "y", "--test_batch_size=100"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "run"
    assert sorted(os.listdir(run / "result_Files")) == [f"batch_00000{i}_0.bin" for i in range(3)]
    timing = (run / "time_Result" / "test_perform_static.txt").read_text()
    assert re.match(r"NN inference cost average time: [0-9.]+ ms of infer_count 3\n", timing)
    t = read_time(str(run / "time_Result" / "test_perform_static.txt"))
    assert (t["count"], t["samples"]) == (3, 285) and 0 < t["p50_ms"] <= t["p99_ms"] and t["load_s"] > 0
    acc, auc, logloss, n = METRIC.search((run / "acc.log").read_text()).groups()
    assert int(n) == want["samples"] == 285
    assert abs(float(acc) - want["accuracy"]) < 1e-6 and abs(float(auc) - want["auc"]) < 2e-6
    assert abs(float(logloss) - want["logloss"]) < 2e-6
    r = subprocess.run(["bash", "scripts/run_infer_cpu.sh", mindir, cfg.dataset_path, "maybe"], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "NEED_PREPROCESS must be y or n" in r.stderr
