"""The default recipe chosen on data it was not tuned on: candidate recipes x five datasets x seeds, each run one epoch
with the validation split deciding (keep_best) and the test split reporting, then the worst-case regret of each recipe
(its distance to the best recipe's mean test AUC on each dataset, at its worst).

    bash scripts/run_benchmark.sh recipes [--seeds 3] [--recipes A,B] [--datasets a,b]

Datasets (made once in WORK/recipes/, every one preprocessed with the default validation split):
    gen_a      1M lines of src/data/synthetic.py (the generator the earlier defaults were chosen on)
    gen_b      1M lines of src/data/synthetic_other.py (a structure unlike gen_a's)
    real       the 1,999 real Criteo rows of tests/data (1,628 train, 86 validation, 285 test)
    avazu      the 100 real Avazu rows (82 / 4 / 14), examples/avazu/avazu.yaml
    movielens  the 200 real MovieLens rows (162 / 9 / 28), examples/movielens/movielens.yaml
A recipe's fixed batch larger than a dataset's training split is lowered to batch_size auto's choice there (its rate
scaled by the same rule). The two sample sets' test splits hold 14 and 28 rows: their AUCs are noise-dominated; they
are in the table because a default must not break on them.
"""
import os
import shutil
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

from src.tools.benchmarks.common import ROOT
DCN = ("--interaction_op=dcn", "--dcn_num_layers=3", "--dcn_low_rank_dim=64")
NO_SCHEDULE = ("--warmup_steps=0", "--decay_start_step=0", "--decay_steps=0")
RECIPES: Dict[str, Tuple[str, ...]] = {
    "sgd-128": ("--batch_size=128", "--interaction_op=dot", "--optimizer=sgd", "--learning_rate=0.15", *NO_SCHEDULE),
    "adagrad-128": ("--batch_size=128", "--interaction_op=dot", "--optimizer=adagrad", "--learning_rate=0.01",
                    *NO_SCHEDULE),
    "adam-decay-all": ("--batch_size=auto", *DCN, "--optimizer=adam", "--learning_rate=0.01", "--warmup_steps=20",
                       "--decay_start_step=20", "--decay_steps=-1", "--table_schedule=True"),
    "adam-decay": ("--batch_size=auto", *DCN, "--optimizer=adam", "--learning_rate=0.01", "--warmup_steps=20",
                   "--decay_start_step=20", "--decay_steps=-1", "--table_schedule=False"),
    "adam-flat": ("--batch_size=auto", *DCN, "--optimizer=adam", "--learning_rate=0.01", "--warmup_steps=20",
                  "--decay_start_step=0", "--decay_steps=0", "--table_schedule=False"),
    "adam-flat-nowarm": ("--batch_size=auto", *DCN, "--optimizer=adam", "--learning_rate=0.01", *NO_SCHEDULE),
}
DATASETS = ("gen_a", "gen_b", "real", "avazu", "movielens")
SPREAD_LINES = 44_211        # gen_a_36k: 37,895 lines before the test split, 36,000 of them training after validation
SPREAD_SEEDS = (123, 1, 2, 3)


def prepared(work: str, name: str, lines: int) -> str:
    """The dataset `name` (DATASETS) in work/recipes/NAME/mindrecord, made once."""
    from src.data.preprocess import preprocess
    from src.model_utils.config import parse_cli
    d = os.path.join(work, "recipes", name)
    out = os.path.join(d, "mindrecord")
    if os.path.isfile(os.path.join(out, "metadata.json")):
        return out
    os.makedirs(d, exist_ok=True)
    spec = ""
    if name in ("gen_a", "gen_a_36k"):
        from src.data.synthetic import generate
        generate(os.path.join(d, "train.txt"), SPREAD_LINES if name.endswith("_36k") else lines, progress=False)
    elif name in ("gen_b", "gen_b_36k"):
        from src.data.synthetic_other import generate_other
        generate_other(os.path.join(d, "train.txt"), SPREAD_LINES if name.endswith("_36k") else lines, progress=False)
    elif name == "real":
        shutil.copy(os.path.join(ROOT, "tests", "data", "samples", "criteo_kaggle_train_head1999.tsv"),
                    os.path.join(d, "train.txt"))
    else:
        sample = {"avazu": ("avazu_sample.csv", "train.csv"), "movielens": ("movielens_sample.csv", "ratings.csv")}
        shutil.copy(os.path.join(ROOT, "tests", "data", "samples", sample[name][0]), os.path.join(d, sample[name][1]))
        spec = os.path.join(ROOT, "examples", name, f"{name}.yaml")
    preprocess(parse_cli([f"--data_path={d}", f"--feature_spec={spec}", "--workers=auto"]), progress=False)
    return out


def child_recipe(dataset: str, seed: int, *options: str) -> dict:
    """One epoch of a recipe (train.py options) on a dataset with seed `seed`: {test auc and logloss (keep_best's
    model), best validation logloss, training seconds, batch}."""
    import tempfile
    from src.data.packed_format import load_metadata
    from src.model_utils.config import parse_cli
    from src.training.auto_batch import auto_batch, scaled_rate
    from src.training.trainer import Trainer
    from src.utils.runtime import setup_context
    setup_context("CPU", None)
    with tempfile.TemporaryDirectory() as ck:
        cfg = parse_cli([f"--dataset_path={dataset}", f"--ckpt_path={ck}", "--loss_file_name=", "--eval_file_name=",
                         "--log_interval_steps=1000000", "--save_checkpoint_steps=100000000", "--test_batch_size=4096",
                         f"--random_seed={seed}", *options])
        rows = load_metadata(dataset)["samples"]["train"]
        if cfg.batch_size != "auto" and cfg.batch_size * 4 > rows:      # too large for a sample set: auto's batch
            small = auto_batch(rows)
            cfg.learning_rate = scaled_rate(cfg.learning_rate, cfg.optimizer, small, cfg.batch_size)
            cfg.batch_size = small
        tr = Trainer(cfg, log=lambda *_: None)
        start = time.time()
        tr.run()
        seconds = time.time() - start - tr.eval_seconds
    test = tr.eval_results[-1]
    return {"auc": test["auc"], "logloss": test["logloss"], "val_logloss": tr.watch.best["logloss"],
            "val_auc": tr.watch.best["auc"],
            "seconds": seconds, "batch": cfg.batch_size}


def bench_recipes(run_child: Callable, work: str, seeds: int = 3, names: str = "", datasets: str = "",
                  lines: int = 1_000_000) -> Dict[str, Dict[str, List[dict]]]:
    """Every recipe on every dataset over `seeds` seeds (1, 2, 3, ...); prints the table (mean validation and test AUC
    per dataset), then each recipe's regret and its worst: on validation (what a choice of default reads) and on test
    (reported only); returns {recipe: {dataset: [runs]}}."""
    recipes = {n: RECIPES[n] for n in names.split(",")} if names else RECIPES
    chosen = datasets.split(",") if datasets else list(DATASETS)
    paths = {d: prepared(work, d, lines) for d in chosen}
    runs: Dict[str, Dict[str, List[dict]]] = {}
    print(f"== recipes x datasets, {seeds} seeds, one epoch; mean validation AUC (keep_best's evaluation) / mean test "
          f"AUC ± std (keep_best's model), batch used")
    print("| recipe | " + " | ".join(chosen) + " |")
    print("|---|" + "---|" * len(chosen))
    for name, options in recipes.items():
        runs[name] = {d: [run_child("recipe", paths[d], str(s), *options)[0] for s in range(1, seeds + 1)]
                      for d in chosen}
        cells = [f"{np.mean([r['val_auc'] for r in rs]):.4f} / "
                 f"{np.mean([r['auc'] for r in rs]):.4f} ± {np.std([r['auc'] for r in rs], ddof=1):.4f} "
                 f"(b {rs[0]['batch']}, {np.mean([r['seconds'] for r in rs]):.0f} s)" for rs in runs[name].values()]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    for key, what in (("val_auc", "validation AUC: the choice reads this"), ("auc", "test AUC: reported only")):
        mean = {n: {d: float(np.mean([r[key] for r in runs[n][d]])) for d in chosen} for n in runs}
        best = {d: max(mean[n][d] for n in runs) for d in chosen}
        print(f"| regret in {what} | " + " | ".join(chosen) + " | worst |")
        print("|---|" + "---|" * (len(chosen) + 1))
        for name in runs:
            regret = [best[d] - mean[name][d] for d in chosen]
            print(f"| {name} | " + " | ".join(f"{x:.4f}" for x in regret) + f" | {max(regret):.4f} |")
    return runs


def bench_seed_spread(run_child: Callable, work: str, names: str = "", datasets: str = "") -> None:
    """Small data's seed spread: each recipe at batch 192 (its rate scaled from batch 4096 as batch_size auto scales
    it) on 36,000 training rows of gen_a (or gen_b: datasets "gen_b"), seeds 123, 1, 2, 3: test AUC per seed and the
    spread (max - min)."""
    from src.training.auto_batch import scaled_rate
    gen = datasets or "gen_a"
    path = prepared(work, f"{gen}_36k", SPREAD_LINES)
    print(f"== seed spread: 36,000 training rows ({gen}), batch 192, seeds " + ", ".join(map(str, SPREAD_SEEDS)))
    print("| recipe | AUC per seed | spread |")
    print("|---|---|---|")
    for name, options in ({n: RECIPES[n] for n in names.split(",")} if names else RECIPES).items():
        opts = [o for o in options if not o.startswith(("--batch_size=", "--learning_rate="))]
        opt = next(o.split("=")[1] for o in options if o.startswith("--optimizer="))
        rate = float(next(o.split("=")[1] for o in options if o.startswith("--learning_rate=")))
        if "--batch_size=auto" in options:
            rate = scaled_rate(rate, opt, 192)
        else:
            base = int(next(o.split("=")[1] for o in options if o.startswith("--batch_size=")))
            rate = scaled_rate(rate, opt, 192, base)
        aucs = [run_child("recipe", path, str(s), *opts, "--batch_size=192", f"--learning_rate={rate:.6g}")[0]["auc"]
                for s in SPREAD_SEEDS]
        print(f"| {name} | {', '.join(f'{a:.4f}' for a in aucs)} | {max(aucs) - min(aucs):.4f} |", flush=True)
