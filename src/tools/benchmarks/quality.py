"""Quality benchmarks: what a training recipe learns in one epoch, and how long it takes to reach a target AUC.

    python -m src.tools.benchmark quality [--seeds 5] [--recipes NAME,...]          # AUC mean ± std per recipe
    python -m src.tools.benchmark time_to_quality [--seeds 3] [--target_auc 0.777]   # time to a fixed AUC

Both run on the benchmark's synthetic dataset (1M lines, the last 1/7 held out as the test split). A recipe is a batch
size and train.py options; its warmup and decay are given as fractions of the epoch, so that the schedule ends with the
epoch whatever the dataset's size. Seeds are 123 (the configs' own) and then 1, 2, ...: a recipe that is only good
for some seeds shows it in its minimum.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from src.data.packed_format import load_metadata

OLD_DEFAULT = "sgd"             # the configs' first recipe (CHANGELOG.md)
PREVIOUS = "large-dcn-adam"     # the configs' recipe before the validation split (CHANGELOG.md)
DEFAULT = "default"             # the configs' recipe since (src/tools/benchmarks/recipes.py chose it)


@dataclass(frozen=True)
class Recipe:
    """A batch size, train.py options and a learning-rate schedule: linear warmup, then (with `decay`) the polynomial
    decay from the end of the warmup to the last step of training (decay_steps = -1)."""
    label: str
    batch: int
    options: Tuple[str, ...]
    warmup_steps: int = 0
    decay: bool = False

    def args(self) -> List[str]:
        """train.py options."""
        out = [f"--batch_size={self.batch}", *self.options, f"--warmup_steps={self.warmup_steps}"]
        if self.decay:
            out += [f"--decay_start_step={self.warmup_steps}", "--decay_steps=-1"]
        else:
            out += ["--decay_start_step=0", "--decay_steps=0"]
        return out

    def at_batch(self, batch: int, warmup_steps: int) -> "Recipe":
        """The recipe at another batch size: the learning rate scaled linearly for SGD and by the square root of the
        batch ratio for the adaptive optimizers (Adagrad, Adam), with another warmup."""
        from src.training.auto_batch import scaled_rate
        opt = next((o.split("=")[1] for o in self.options if o.startswith("--optimizer=")), "sgd")
        opts = tuple(f"--learning_rate={scaled_rate(float(o.split('=')[1]), opt, batch, self.batch):.6g}"
                     if o.startswith("--learning_rate=") else o for o in self.options)
        return Recipe(self.label, batch, opts, min(self.warmup_steps, warmup_steps), self.decay)


DOT_ADAGRAD = ("--interaction_op=dot", "--optimizer=adagrad", "--learning_rate=0.01")
DCN_ADAM = ("--interaction_op=dcn", "--dcn_num_layers=3", "--dcn_low_rank_dim=64", "--optimizer=adam")
RECIPES: Dict[str, Recipe] = {
    "sgd": Recipe("dot + SGD, lr 0.15 (the default until 2026-12-02)", 128, ("--optimizer=sgd", "--learning_rate=0.15",
                  "--interaction_op=dot")),
    "adagrad": Recipe("dot + Adagrad, lr 0.01, no warmup", 128, DOT_ADAGRAD),
    "adagrad-warmup": Recipe("dot + Adagrad, lr 0.01, warmup 500 steps", 128, DOT_ADAGRAD, warmup_steps=500),
    "dcn-adam": Recipe("dcn + Adam, lr 0.003, warmup 500 steps", 128, (*DCN_ADAM, "--learning_rate=0.003"),
                       warmup_steps=500),
    "large-dot-adam": Recipe("dot + Adam, batch 4096, lr 0.01, warmup 20 + decay", 4096,
                             ("--interaction_op=dot", "--optimizer=adam", "--learning_rate=0.01"), 20, True),
    "large-dcn-adam-flat": Recipe("dcn + Adam, batch 4096, lr 0.01, warmup 20, no decay", 4096,
                                  (*DCN_ADAM, "--learning_rate=0.01"), 20),
    "large-dcn-adam": Recipe("dcn + Adam, batch 4096, lr 0.01, warmup 20 + decay of every rate (the default from "
                             "2026-12-02 to 2026-12-05)", 4096, (*DCN_ADAM, "--learning_rate=0.01",
                                                                 "--table_schedule=True"), 20, True),
    "default": Recipe("dcn + Adam, batch 4096 (auto), lr 0.01, warmup 20 of the MLPs' rate, no decay (the default)",
                      4096, (*DCN_ADAM, "--learning_rate=0.01", "--table_schedule=False"), 20),
}


def seeds_of(n: int) -> List[int]:
    """The configs' seed 123, then 1, 2, ...: n seeds."""
    return [123] + list(range(1, n))


def pick(names: str) -> Dict[str, Recipe]:
    """The recipes of a comma-separated list of RECIPES keys ('' = all)."""
    if not names:
        return RECIPES
    unknown = [n for n in names.split(",") if n not in RECIPES]
    if unknown:
        raise SystemExit(f"--recipes: unknown {unknown}; recipes: {', '.join(RECIPES)}")
    return {n: RECIPES[n] for n in names.split(",")}


def _mean_std(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    return f"{xs.mean():.4f} ± {xs.std(ddof=1) if len(xs) > 1 else 0.0:.4f}"


def bench_quality(run_child, config: str, dataset: str, device: str, seeds: int, names: str = "") -> None:
    """Per recipe over `seeds` seeds: test AUC and logloss after one epoch (mean ± std, the lowest seed's AUC, its
    distance to the mean) and the training time."""
    print("| recipe | batch | AUC mean ± std | lowest seed (AUC - mean) | logloss mean ± std | train time per run "
          "| options |")
    print("|---|---|---|---|---|---|---|")
    for name, recipe in pick(names).items():
        runs = {s: run_child("train_epoch", dataset, device, config, *recipe.args(), f"--random_seed={s}")[0]
                for s in seeds_of(seeds)}
        auc = np.array([r["auc"] for r in runs.values()])
        low = min(runs, key=lambda s: runs[s]["auc"])
        secs = np.array([r["train_seconds"] for r in runs.values()])
        print(f"| {recipe.label} | {recipe.batch} | {_mean_std(auc)} | seed {low}: {runs[low]['auc']:.4f} "
              f"({runs[low]['auc'] - auc.mean():+.4f}) | {_mean_std([r['logloss'] for r in runs.values()])} | "
              f"{secs.mean():.0f} s ± {secs.std():.0f} | `{' '.join(recipe.args())}` |", flush=True)
        print("  per seed: " + ", ".join(f"{s}: {r['auc']:.4f}" for s, r in runs.items()), flush=True)


def _quiet_config(dataset: str, device: str, config: str, *extra: str):
    """The config of a child's training run (MindSpore's context set for `device`): no checkpoints, no loss or eval
    log files, then the `extra` --key=value options."""
    from src.model_utils.config import parse_cli
    from src.utils.runtime import setup_context
    setup_context(device, None)
    return parse_cli([f"--config_path={config}", f"--device_target={device}", f"--dataset_path={dataset}",
                      "--save_checkpoint=False", "--loss_file_name=", "--eval_file_name=",
                      "--log_interval_steps=1000000", *extra])


def child_to_target(dataset: str, device: str, config: str, target: float, *extra: str) -> dict:
    """Train with target_auc (evaluating 16 times an epoch) in this process; returns when and whether it was
    reached: {reached, auc, step, train_seconds, wall_seconds, evaluations}."""
    from src.model_utils.config import Config
    from src.training.trainer import Trainer
    cfg = _quiet_config(dataset, device, config, f"--target_auc={target}", *extra)
    every = max(1, load_metadata(dataset)["samples"]["train"] // cfg.batch_size // 16)
    tr = Trainer(Config(cfg, eval_interval_steps=every), log=lambda *_: None)
    tr.run()
    best = max(r["auc"] for r in tr.eval_results)
    return {"reached": tr.reached is not None, "best_auc": best, "evaluations": len(tr.eval_results),
            **(tr.reached or {})}


def bench_time_to_quality(run_child, config: str, dataset: str, device: str, seeds: int, target: float,
                          names: str = "") -> None:
    """Per recipe over `seeds` seeds: training time (evaluations excluded) and wall time (process start included)
    to the first evaluation at or above `target`, and the ratio of each recipe's mean training time to the old
    default's, measured in this run."""
    chosen = pick(names) if names else {n: RECIPES[n] for n in (OLD_DEFAULT, PREVIOUS, DEFAULT)}
    chosen = {OLD_DEFAULT: RECIPES[OLD_DEFAULT], **chosen}
    print(f"target auc {target:g}; evaluation every 1/16 epoch; training time excludes the evaluations, wall time "
          f"counts from the process start")
    print("| recipe | batch | reached | training time to target | wall time to target | step | vs old default |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, recipe in chosen.items():
        runs = [run_child("to_target", dataset, device, config, str(target), *recipe.args(),
                          f"--random_seed={s}")[0] for s in seeds_of(seeds)]
        hit = [r for r in runs if r["reached"]]
        if not hit:
            print(f"| {recipe.label} | {recipe.batch} | 0 of {len(runs)} (best auc "
                  f"{max(r['best_auc'] for r in runs):.4f}) | | | | |", flush=True)
            continue
        train = np.array([r["train_seconds"] for r in hit])
        wall = np.array([r["wall_seconds"] for r in hit])
        base = train.mean() if name == OLD_DEFAULT else base
        ratio = f"{train.mean() / base:.2f}x" if base else ""
        print(f"| {recipe.label} | {recipe.batch} | {len(hit)} of {len(runs)} | {train.mean():.1f} s ± {train.std():.1f} | "
              f"{wall.mean():.1f} s ± {wall.std():.1f} | {np.mean([r['step'] for r in hit]):.0f} | {ratio} |",
              flush=True)


REAL_SAMPLE = os.path.join("tests", "data", "samples", "criteo_kaggle_train_head1999.tsv")


def real_dataset(root: str, work: str) -> str:
    """The real Criteo rows of tests/data preprocessed (Kaggle layout: the first 1,714 lines train, the last 285
    test); made once in `work`."""
    d = os.path.join(work, "real_1999")
    if not os.path.isfile(os.path.join(d, "mindrecord", "metadata.json")):
        from src.data.preprocess import preprocess
        from src.model_utils.config import parse_cli
        os.makedirs(d, exist_ok=True)
        if not os.path.exists(os.path.join(d, "train.txt")):
            os.symlink(os.path.join(root, REAL_SAMPLE), os.path.join(d, "train.txt"))
        preprocess(parse_cli([f"--data_path={d}"]), progress=False)
    return os.path.join(d, "mindrecord")


def child_epochs(dataset: str, device: str, config: str, *extra: str) -> dict:
    """Train with evaluation after every epoch; returns the per-epoch test AUC and logloss."""
    from src.training.trainer import Trainer
    tr = Trainer(_quiet_config(dataset, device, config, "--test_batch_size=1024", *extra), log=lambda *_: None)
    tr.run()
    return {"auc": [r["auc"] for r in tr.eval_results], "logloss": [r["logloss"] for r in tr.eval_results]}


def bench_real_rows(run_child, root: str, config: str, work: str, device: str, epochs: int = 5,
                    names: str = "") -> None:
    """The recipes on real Criteo rows (1,714 train, 285 test) for `epochs` epochs at batch 128 (1,714 rows hold less
    than one batch of the large-batch recipes: each runs at 128, its learning rate scaled by Recipe.at_batch, warmup
    at most 13 steps, one epoch): AUC and logloss after each epoch; a logloss that grows shows overfitting."""
    dataset = real_dataset(root, work)
    print(f"== real rows: {REAL_SAMPLE} (first 1,714 lines train, last 285 test), {epochs} epochs at batch 128, "
          f"3 seeds; per epoch the mean test AUC / logloss")
    print("| recipe | options at batch 128 | " + " | ".join(f"epoch {e}" for e in range(1, epochs + 1)) + " |")
    print("|---|---|" + "---|" * epochs)
    for name, recipe in pick(names).items():
        small = recipe.at_batch(128, 13)
        runs = [run_child("epochs", dataset, device, config, *small.args(), f"--train_epochs={epochs}",
                          f"--random_seed={s}")[0] for s in seeds_of(3)]
        auc, ll = np.mean([r["auc"] for r in runs], 0), np.mean([r["logloss"] for r in runs], 0)
        print(f"| {recipe.label} | `{' '.join(small.args()[1:])}` | " +
              " | ".join(f"{a:.4f} / {x:.4f}" for a, x in zip(auc, ll)) + " |", flush=True)
