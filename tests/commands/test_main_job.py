"""The main job's variants never mix: in one copy of the repository, the default run, DATASET=terabyte,
DATASET=multihot and the default again each exit 0 and score their own model, eval.py's AUC equal to both inference
paths' (the Python runner and the C++ program) and, but for the multi-hot dataset (made from ids, not raw lines), to
predict.py's on the raw test lines with the model bundle, which serve.py then answers for."""
import os
import re
import subprocess

import pytest

from fixtures.commands import copy_of_repository, env
from fixtures.paths import ROOT

FINAL = re.compile(r"^final eval: .*auc: ([0-9.]+)", re.M)
PATHS = re.compile(r"^(infer_python|infer_cpp|predict\.py) .*?auc: ([0-9.]+)", re.M)


@pytest.mark.slow
@pytest.mark.cluster               # 105-126 s: outside CI's time budget, run with --cluster (README)
def test_default_terabyte_multihot_and_default_again_in_one_clone(tmp_path):
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    repo = copy_of_repository(str(tmp_path / "repo"))
    small = {"kaggle": {"LINES": "12000"}, "terabyte": {"LINES": "3000", "DAYS": "3"}, "multihot": {"LINES": "12000"}}
    seen = {}
    for dataset in ("kaggle", "terabyte", "multihot", "kaggle"):
        r = subprocess.run(["bash", "scripts/run_main.sh", "--batch_size=256", "--learning_rate=0.0025",
                            "--test_batch_size=4096"], cwd=repo, capture_output=True, text=True, timeout=600,
                           env={k: v for k, v in env(DATASET=dataset, **small[dataset]).items()
                                if k not in ("DATA_DIR", "OUT")})
        assert r.returncode == 0, f"DATASET={dataset}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
        final = float(FINAL.findall(r.stdout)[-1])
        paths = dict(PATHS.findall(r.stdout))
        want = {"infer_python", "infer_cpp"} | ({"predict.py"} if dataset != "multihot" else set())
        assert set(paths) == want, r.stdout[-1500:]
        assert {k: float(v) for k, v in paths.items()} == {k: final for k in want}, r.stdout
        if dataset != "multihot":
            assert "serve.py stopped (exit code 0)" in r.stdout
        seen.setdefault(dataset, []).append(final)
    assert seen["kaggle"][0] == seen["kaggle"][1]           # the same job again: the same model, not another's
    outputs = sorted(os.listdir(os.path.join(repo, "output")))
    assert outputs == ["main", "main_multihot", "main_terabyte"], outputs
