"""The C++ batch-inference program (ascend310_infer/) built against MindSpore Lite 2.0.0 and run on CPU: the ONNX
export converted by its converter gives eval's metrics. Lite is fetched from the package index once (the suite's one
download): the tests skip only when the index cannot be reached, and say so; any other failure fails."""
import os
import re
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from fixtures.datasets import own, read_split
from fixtures.paths import PY, ROOT
from src.inference.batch_files import read_time
from src.inference.export import export_network, load_inference_net
from src.training.evaluation import evaluate

METRIC = re.compile(r"accuracy: ([0-9.]+), auc: ([0-9.]+), logloss: ([0-9.]+), samples: (\d+)")


def _index_unreachable() -> str:
    """Why the package index cannot be reached ('' when it can): pip's configured index, else PyPI."""
    got = subprocess.run([PY, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True)
    url = os.environ.get("PIP_INDEX_URL") or (got.stdout.strip() if got.returncode == 0 else "") or \
        "https://pypi.org/simple"
    try:
        urllib.request.urlopen(url.rstrip("/") + "/mindspore-lite/", timeout=15).close()
        return ""
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} cannot be reached ({exc})"


def _eval_probs(net, ds):
    from mindspore import Tensor
    ids, dense, label = read_split(ds, "test")
    return ids, dense, label, net(Tensor(ids), Tensor(dense)).asnumpy()


@pytest.fixture(scope="module")
def cpp_programs():
    """ascend310_infer/out/{main,converter} built against MindSpore Lite 2.0.0 (fetched once into .whl/;
    the one download of the suite: without the package index the C++ tests are skipped, saying why)."""
    env = dict(os.environ, PYTHON=PY)
    lite = subprocess.run(["bash", "ascend310_infer/fetch_mindspore_lite.sh"], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=900)
    if lite.returncode != 0:
        why = _index_unreachable()
        if why:
            pytest.skip(f"needs the network: MindSpore Lite 2.0.0 (the C++ API and runtime) comes from the package "
                        f"index, and {why}")
        pytest.fail(f"fetching MindSpore Lite 2.0.0 failed although the package index answers: {lite.stderr[-1500:]}")
    env["MINDSPORE_PATH"] = lite.stdout.strip().splitlines()[-1]
    b = subprocess.run(["bash", "ascend310_infer/build.sh"], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=600)
    assert b.returncode == 0, b.stdout + b.stderr
    out = os.path.join(ROOT, "ascend310_infer", "out")
    assert os.access(os.path.join(out, "main"), os.X_OK) and os.access(os.path.join(out, "converter"), os.X_OK)
    return out, env


def test_cpp_program_builds_and_reports_what_it_cannot_load(cpp_programs, trained, tmp_path):
    """Lite 2.0.0's runtime reads MindIR up to version 1: a MindSpore 2.10 MINDIR fails in both load modes,
    and the program says so for each; bad arguments and a missing C++ API are named."""
    out, env = cpp_programs
    exe = os.path.join(out, "main")
    cfg, ckpt = own(trained)
    net, _, _, _ = load_inference_net(cfg, ckpt)
    cfg.file_name = str(tmp_path / "dlrm")
    mindir = export_network(net, cfg, log=lambda *_: None)
    r = subprocess.run([exe, f"--mindir_path={mindir}", f"--input0_path={tmp_path}", f"--input1_path={tmp_path}",
                        "--device_type=CPU"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"cannot build a model from '{mindir}'" in r.stderr
    assert "load_mode file:" in r.stderr and "load_mode graph:" in r.stderr
    assert "maximum mind ir version: 1" in r.stderr
    r = subprocess.run([exe, "--mindir_path=x"], capture_output=True, text=True)
    assert r.returncode == 2 and "--input0_path is required" in r.stderr
    r = subprocess.run([exe, "--mindir_path=x", "--input0_path=y", "--input1_path=z", "--load_mode=fast"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--load_mode=fast is not one of auto, file, graph" in r.stderr
    conv = os.path.join(out, "converter")
    r = subprocess.run([conv, f"--onnx_path={tmp_path / 'none.onnx'}", f"--output_path={tmp_path / 'm.mindir'}"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and f"cannot convert '{tmp_path / 'none.onnx'}': not a readable file" in r.stderr
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    r = subprocess.run([conv, f"--onnx_path={tmp_path / 'junk.onnx'}", f"--output_path={tmp_path / 'm.mindir'}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"cannot convert '{tmp_path / 'junk.onnx'}'" in r.stderr
    assert not any(f.startswith("m.") for f in os.listdir(tmp_path))       # nothing half-written
    env = dict(env)
    env.pop("MINDSPORE_PATH")
    r = subprocess.run(["bash", "ascend310_infer/build.sh"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "C++ inference API (include/api/model.h + lib/) was not found" in r.stderr


def test_cpp_path_on_converted_onnx_equals_eval(cpp_programs, trained, tmp_path):
    """export ONNX (batch 100) -> converter -> C++ program over the test split (285 = 100 + 100 + 85: the last
    batch is padded to the model's fixed batch) -> postprocess: the metrics of evaluate(), probabilities to 1e-5."""
    _, env = cpp_programs
    cfg, ckpt = own(trained)
    net, _, _, _ = load_inference_net(cfg, ckpt)
    ids, dense, _, want_prob = _eval_probs(net, cfg.dataset_path)
    want = evaluate(net, cfg.dataset_path, "test", 100)
    cfg.file_name, cfg.file_format, cfg.export_batch_size = str(tmp_path / "dlrm"), "ONNX", 100
    onnx = export_network(net, cfg, log=lambda *_: None)
    env = dict(env, INFER_DIR=str(tmp_path / "run"), DEVICE_TYPE="CPU")
    r = subprocess.run(["bash", "scripts/run_infer_310.sh", onnx, cfg.dataset_path, "y", "--test_batch_size=100"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "run"
    assert "(load_mode file)" in r.stdout and os.path.isfile(run / "model" / "dlrm_lite.mindir")
    names = sorted(os.listdir(run / "result_Files"))
    assert names == [f"batch_00000{i}_0.bin" for i in range(3)]
    got = np.concatenate([np.fromfile(run / "result_Files" / n, "<f4") for n in names])
    assert got.shape == (285,) and np.max(np.abs(got - want_prob.ravel())) <= 1e-5     # only real rows written
    acc, auc, logloss, n = METRIC.search((run / "acc.log").read_text()).groups()
    assert int(n) == want["samples"] == 285
    assert abs(float(acc) - want["accuracy"]) < 1e-6 and abs(float(auc) - want["auc"]) < 2e-6
    assert abs(float(logloss) - want["logloss"]) < 2e-6
    assert re.match(r"NN inference cost average time: [0-9.]+ ms of infer_count 3\n",
                    (run / "time_Result" / "test_perform_static.txt").read_text())
    t = read_time(str(run / "time_Result" / "test_perform_static.txt"))     # the Python runner's format too
    assert (t["count"], t["samples"]) == (3, 285) and 0 < t["p50_ms"] <= t["p99_ms"] and t["load_s"] > 0
    r = subprocess.run(["bash", "scripts/run_infer_310.sh", onnx, cfg.dataset_path, "n", "--test_batch_size=100"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(env, RUNNER="python"))
    assert r.returncode == 2 and "RUNNER=python runs a .mindir" in r.stderr


def _cpp_equals_eval(cpp_programs, dataset, tmp_path, samples, *options) -> np.ndarray:
    """A trained model (dataset = (folder, dataset path, checkpoint folder, train output)) exported to ONNX at batch
    8 -> converter -> C++ program (scripts/run_infer_310.sh on CPU) over the test split: the program's probabilities
    equal the network's to 1e-5 and its metrics eval's. Returns the test ids."""
    from mindspore import Tensor
    from src.model_utils.config import parse_cli
    _, env = cpp_programs
    _, ds, ck, _ = dataset
    cfg = parse_cli([f"--dataset_path={ds}", f"--file_name={tmp_path / 'model'}", "--file_format=ONNX",
                     "--export_batch_size=8", *options])
    net, _, _, _ = load_inference_net(cfg, ck)
    want = evaluate(net, ds, "test", 8)
    onnx = export_network(net, cfg, log=lambda *_: None)
    r = subprocess.run(["bash", "scripts/run_infer_310.sh", onnx, ds, "y", "--test_batch_size=8"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env=dict(env, INFER_DIR=str(tmp_path / "run"), DEVICE_TYPE="CPU"))
    assert r.returncode == 0, r.stdout + r.stderr
    ids, dense, _ = read_split(ds, "test")
    want_prob = (net.ids_only(Tensor(ids)) if dense.shape[1] == 0 else net(Tensor(ids), Tensor(dense))).asnumpy()
    names = sorted(os.listdir(tmp_path / "run" / "result_Files"))
    got = np.concatenate([np.fromfile(tmp_path / "run" / "result_Files" / n, "<f4") for n in names])
    assert got.shape == (samples,) and np.max(np.abs(got - want_prob.ravel())) <= 1e-5
    acc, auc, logloss, n = METRIC.search((tmp_path / "run" / "acc.log").read_text()).groups()
    assert int(n) == want["samples"] == samples and abs(float(auc) - want["auc"]) < 2e-6
    assert abs(float(logloss) - want["logloss"]) < 2e-6 and abs(float(acc) - want["accuracy"]) < 1e-6
    return ids


@pytest.mark.slow
def test_cpp_path_on_own_csv_model_without_dense_features(cpp_programs, avazu, tmp_path):
    """The Avazu model (ids alone: no dense input) exported to ONNX at batch 8 -> converter -> C++ program over the
    14 test samples (8 + 6, padded): eval's metrics, probabilities to 1e-5."""
    _cpp_equals_eval(cpp_programs, avazu, tmp_path, 14)


@pytest.mark.slow
def test_cpp_path_on_a_multi_hot_model(cpp_programs, movielens, tmp_path):
    """The MovieLens model (genres pooled from up to 6 ids, -1 pads) exported to ONNX at batch 8 -> converter -> C++
    program over the 28 test samples: the pooling runs in Lite as in MindSpore (probabilities to 1e-5, eval's
    metrics)."""
    ids = _cpp_equals_eval(cpp_programs, movielens, tmp_path, 28, "--optimizer=adagrad")
    assert (ids == -1).any()
