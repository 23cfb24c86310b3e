"""A model never meets a dataset it does not fit: every command that takes a checkpoint or an exported model and a
dataset (eval.py, export.py, a resume, preprocess.py, postprocess.py, both inference scripts) refuses the pair in one
line naming both values, exit code 2, no traceback and no output, before any graph is built. Run on every ordered pair
of four fixture datasets: Criteo with a vocabulary, Terabyte day files hashed, a CSV with a multi-hot column
(MovieLens), and a CSV of strings without dense features (Avazu)."""
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtures.commands import env, run
from fixtures.paths import PY

KINDS = ("criteo", "terabyte", "multihot", "csv")


@pytest.fixture(scope="module")
def models(trained, real_ds, terabyte, movielens, avazu, tmp_path_factory):
    """{kind: (dataset path, checkpoint folder, exported MINDIR, exported ONNX)}, each model exported in-process."""
    from src.inference.export import export_network, load_inference_net
    from src.model_utils.config import parse_cli
    out = tmp_path_factory.mktemp("exports")
    found = {"criteo": (real_ds, trained[1]), "terabyte": terabyte, "multihot": movielens[1:3], "csv": avazu[1:3]}
    result = {}
    for kind, (ds, ckpt) in found.items():
        paths = []
        for fmt in ("MINDIR", "ONNX"):
            cfg = parse_cli([f"--file_name={out / kind}", f"--file_format={fmt}", "--export_batch_size=8"])
            net, path, position, model = load_inference_net(cfg, ckpt)
            paths.append(export_network(net, cfg, log=lambda *_: None,
                                        source={"checkpoint": path, "step": position["global_step"], "model": model}))
        result[kind] = (ds, ckpt, *paths)
    return result


def _commands(model, data, out):
    """Every command, as a user types it, of the checkpoint / export of `model` against the dataset of `data`."""
    _, ckpt, mindir, onnx = model
    ds = data[0]
    return {
        "eval.py": [PY, "eval.py", f"--dataset_path={ds}", f"--checkpoint_path={ckpt}",
                    f"--eval_file_name={out}/eval.log"],
        "export.py": [PY, "export.py", f"--dataset_path={ds}", f"--checkpoint_path={ckpt}", f"--file_name={out}/m"],
        "train.py --resume": [PY, "train.py", f"--dataset_path={ds}", f"--ckpt_path={ckpt}", "--resume=True",
                              "--batch_size=16", f"--loss_file_name={out}/loss.log", f"--eval_file_name={out}/e.log"],
        "preprocess.py": [PY, "preprocess.py", f"--dataset_path={ds}", f"--model_path={onnx}",
                          f"--infer_data_path={out}/pre"],
        "postprocess.py": [PY, "postprocess.py", f"--dataset_path={ds}", f"--model_path={mindir}",
                           f"--result_path={out}/result_Files", f"--label_path={out}/pre/label"],
        "run_infer_310.sh (C++)": ["bash", "scripts/run_infer_310.sh", onnx, ds, "y"],
        "run_infer_cpu.sh": ["bash", "scripts/run_infer_cpu.sh", mindir, ds, "y"],
    }


def test_every_command_refuses_every_mismatched_pair_in_one_line(models, tmp_path):
    jobs = []
    for a, b in itertools.permutations(KINDS, 2):
        for name, cmd in _commands(models[a], models[b], tmp_path / f"{a}-{b}").items():
            jobs.append((a, b, name, cmd, tmp_path / f"{a}-{b}"))
    ckpt_files = {k: sorted(os.listdir(models[k][1])) for k in KINDS}

    def one(job):
        a, b, name, cmd, out = job
        r = run(cmd, timeout=120, env=env(DEVICE_TYPE="CPU", INFER_DIR=str(out / "infer")))
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        return job, r, lines
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, jobs))
    bad = []
    for (a, b, name, _, out), r, lines in results:
        what = f"{name} with the {a} model on the {b} dataset"
        if r.returncode != 2 or len(lines) != 1 or "does not fit dataset" not in lines[0] or "Traceback" in r.stderr:
            bad.append(f"{what}: exit {r.returncode}, stderr {r.stderr[-400:]!r}")
        elif os.path.exists(out):
            bad.append(f"{what}: wrote {sorted(os.listdir(out))}")
    assert not bad, "\n".join(bad)
    assert len(results) == 12 * 7
    assert {k: sorted(os.listdir(models[k][1])) for k in KINDS} == ckpt_files       # no resume wrote a checkpoint


def test_the_line_names_both_values(models, tmp_path):
    cmd = _commands(models["criteo"], models["terabyte"], tmp_path)["eval.py"]
    r = run(cmd)
    sizes = [sum(__import__("json").load(open(os.path.join(models[k][0], "metadata.json")))["table_sizes"])
             for k in ("criteo", "terabyte")]
    assert r.returncode == 2 and f"checkpoint has {sizes[0]:,} table rows for 26 slots; dataset ids need " \
                                 f"{sizes[1]:,}" in r.stderr
    cmd = _commands(models["multihot"], models["csv"], tmp_path)["run_infer_cpu.sh"]
    r = run(cmd)
    assert r.returncode == 2 and "model takes 1 dense features; dataset has 0" in r.stderr, r.stderr
