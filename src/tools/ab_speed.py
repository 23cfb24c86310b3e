"""A/B speed of two revisions of this repository on the Criteo path, interleaved, on the same data.

    python -m src.tools.ab_speed --base REV [--head REV] [--rounds 3] [--lines 1000000] [--work DIR] [--only M,...]

The base revision (A) is checked out into a temporary git worktree (removed at the end); B is the working tree, or
--head checked out the same way. Each
round measures A then B, the next round B then A (so drift over time, page cache and thermal state fall on both):
  preprocess   seconds for src/data/preprocess.py on `--lines` synthetic Criteo lines (Kaggle layout)
  train 128    samples/s of Trainer steps at batch 128 (Kaggle architecture, dot, --optimizer; data loading
               included), after 3 warm-up steps
  train 16384  the same at batch 16384
  eval         samples/s of evaluate() over the test split
Each measurement runs in a fresh process in its tree through public library calls that both revisions have. Prints
the median per revision and B/A; exits 0. Nothing outside the work folder is written (a temporary one by default).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PREPROCESS = """
import json, sys, time
from src.model_utils.config import parse_cli
from src.data.preprocess import preprocess
cfg = parse_cli([f"--data_path={sys.argv[1]}", f"--train_line_count={sys.argv[2]}"])
t = time.time()
preprocess(cfg, progress=False)
print(json.dumps({"value": time.time() - t}))
"""

TRAIN = """
import json, sys, time
from src.utils.runtime import setup_context
setup_context("CPU", None)
from src.model_utils.config import parse_cli
from src.training.trainer import Trainer
batch, steps = int(sys.argv[2]), int(sys.argv[3])
cfg = parse_cli([f"--dataset_path={sys.argv[1]}", f"--batch_size={batch}", "--save_checkpoint=False",
                 "--do_eval=False", f"--optimizer={sys.argv[4]}", "--interaction_op=dot", "--loss_file_name=",
                 "--log_interval_steps=1000000"])
tr = Trainer(cfg, log=lambda *_: None)
tr.run(max_steps=3)
t = time.time()
tr.run(max_steps=3 + steps)
print(json.dumps({"value": steps * batch / (time.time() - t)}))
"""

EVAL = """
import json, sys, time
from src.utils.runtime import setup_context
setup_context("CPU", None)
from src.model_utils.config import parse_cli
from src.training.evaluation import evaluate
from src.training.trainer import Trainer
cfg = parse_cli([f"--dataset_path={sys.argv[1]}", "--save_checkpoint=False", "--do_eval=False",
                 "--interaction_op=dot", "--loss_file_name="])
tr = Trainer(cfg, log=lambda *_: None)
evaluate(tr.prob_net, sys.argv[1], "test", 16384)                  # compile
t = time.time()
res = evaluate(tr.prob_net, sys.argv[1], "test", 16384)
print(json.dumps({"value": res["samples"] / (time.time() - t)}))
"""

MEASURES = ("preprocess s", "train 128 samples/s", "train 16384 samples/s", "eval samples/s")


def _child(tree: str, code: str, *args: str) -> float:
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=tree, capture_output=True, text=True,
                       env=dict(os.environ, GLOG_v="3", PYTHONPATH=tree))
    if r.returncode != 0:
        raise RuntimeError(f"measurement in {tree} failed:\n{r.stderr[-3000:]}")
    return float(json.loads(r.stdout.strip().splitlines()[-1])["value"])


def measure(tree: str, data: str, lines: int, only: List[str], optimizer: str = "sgd") -> Dict[str, float]:
    """One round of the measures in `only` (all when empty) in `tree`, over its own copy of the text in `data`
    (its dataset is made here in the first round, and again each round when preprocessing is measured)."""
    ds = os.path.join(data, "mindrecord")
    out = {}
    if not only or "preprocess s" in only or not os.path.isdir(ds):
        shutil.rmtree(ds, ignore_errors=True)                                   # made by the previous round
        out["preprocess s"] = _child(tree, PREPROCESS, data, str(lines))
    for name, code, args in (("train 128 samples/s", TRAIN, ("128", "300", optimizer)),
                             ("train 16384 samples/s", TRAIN, ("16384", "8", optimizer)), ("eval samples/s", EVAL, ())):
        if not only or name in only:
            out[name] = _child(tree, code, ds, *args)
    return out


def main(argv: List[str] = None) -> None:
    """Parse the options, set up both trees and the data, run the rounds, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the git revision to compare the working tree against (A)")
    ap.add_argument("--head", default="", help="the revision to measure as B (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--work", default="", help="work folder (default: a new temporary one, removed at the end)")
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "adagrad", "adam"),
                    help="the train measures' optimizer (the model is the Kaggle architecture with dot)")
    ap.add_argument("--only", default="", help=f"comma-separated measures to run (default: all): {', '.join(MEASURES)}")
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="ab_speed_")
    os.makedirs(work, exist_ok=True)
    trees = {"A": os.path.join(work, "base"), "B": os.path.join(work, "head") if args.head else ROOT}
    for k, rev in (("A", args.base), ("B", args.head)):
        if rev:
            subprocess.run(["git", "worktree", "add", "--detach", trees[k], rev], cwd=ROOT, check=True,
                           capture_output=True)
    try:
        from src.data.synthetic import generate
        text = os.path.join(work, "train.txt")
        generate(text, args.lines)
        data = {}
        for k in trees:
            data[k] = os.path.join(work, f"data_{k}")
            os.makedirs(data[k], exist_ok=True)
            os.link(text, os.path.join(data[k], "train.txt"))
        only = [m.strip() for m in args.only.split(",") if m.strip()]
        unknown = [m for m in only if m not in MEASURES]
        if unknown:
            ap.error(f"--only: unknown measure {unknown[0]!r}; the measures are {', '.join(MEASURES)}")
        got = {k: {m: [] for m in MEASURES} for k in trees}
        for r in range(args.rounds):
            for k in ("A", "B") if r % 2 == 0 else ("B", "A"):
                res = measure(trees[k], data[k], args.lines, only, args.optimizer)
                for m, v in res.items():
                    got[k][m].append(v)
                print(f"round {r + 1} {k}: " + ", ".join(f"{m} {v:,.1f}" for m, v in res.items()), flush=True)
        def short(rev):
            return subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True,
                                  text=True).stdout.strip()
        head = short(args.head) if args.head else "working tree"
        print(f"\n| measure ({args.lines:,} lines, median of {args.rounds}) | A = {short(args.base)} | B = {head} | B/A |")
        print("|---|---|---|---|")
        for m in (m for m in MEASURES if got["A"][m][1:] or not only):
            a, b = statistics.median(got["A"][m]), statistics.median(got["B"][m])
            print(f"| {m} | {a:,.1f} | {b:,.1f} | {b / a:.3f} |")
    finally:
        for k, rev in (("A", args.base), ("B", args.head)):
            if rev:
                subprocess.run(["git", "worktree", "remove", "--force", trees[k]], cwd=ROOT, capture_output=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
