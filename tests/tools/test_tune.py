"""The budgeted tuner: a 2-trial study on the real sample's validation split writes a trial table, a best recipe that
train.py's --config_path takes, and the test split reported once; the same command continues the stored study."""
import re

from fixtures.commands import run_py
from src.model_utils.config import parse_cli


def test_a_two_trial_study_then_one_more(real_val, tmp_path):
    study = tmp_path / "study"
    r = run_py("-m", "src.tools.tune", f"--dataset_path={real_val}", "--budget_minutes=5", "--trials=2",
               f"--study_dir={study}", "--bottom_mlp_args=[32,16]", "--top_mlp_args=[32,1]", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert f"study {study}/study.db: 2 trials (2 this run)" in out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \| complete \|", line)]
    assert len(rows) == 2
    best = rows[0].split(" | ")
    assert out.count("test split (reported once") == 1 and f"trial {best[0][2:]}'s best checkpoint" in out
    cfg = parse_cli([f"--config_path={study}/best_recipe.yaml"])
    recipe = dict(kv.split("=", 1) for kv in best[5].split() if "=" in kv)
    assert cfg.optimizer == recipe["optimizer"] and str(cfg.batch_size) == recipe["batch_size"]
    assert cfg.learning_rate == float(recipe["learning_rate"]) and cfg.bottom_mlp_args == [32, 16]
    r = run_py("-m", "src.tools.tune", f"--dataset_path={real_val}", "--budget_minutes=5", "--trials=1",
               f"--study_dir={study}", "--bottom_mlp_args=[32,16]", "--top_mlp_args=[32,1]", timeout=600)
    assert r.returncode == 0 and f"study {study}/study.db: 3 trials (1 this run)" in r.stdout, r.stderr[-2000:]
