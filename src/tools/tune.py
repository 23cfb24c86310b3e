"""A budgeted tuner for your own data: Optuna's TPE sampler over training recipes, every trial a real training run
judged on the validation split, the unpromising ones pruned at their intermediate validation evaluations.

    python -m src.tools.tune --dataset_path=DIR/mindrecord --budget_minutes=20 [--study_dir=DIR] [--trials=N]
        [--train_epochs=1] [--key=value ...]

It searches the optimizer (adam, adagrad, sgd), the learning rate (log-uniform in a range per optimizer, at batch
4096 for batch_size auto), the batch (auto, or a power of two the training split holds 32 steps of), the warmup
(0, 20 or 200 steps), the decay (none, or to the last step), the interaction (dot, dcn) and, for dcn, its rank.
Each trial trains train_epochs epochs with keep_best, evaluating the validation split 4 times an epoch; Optuna's
median pruner stops a trial whose validation logloss at an evaluation is worse than the median of the trials before
it there. The objective is the trial's best validation logloss.

The study lives in STUDY_DIR/study.db (SQLite): the same command continues it (finished trials are kept; a trial a kill
interrupted is left as it was and a new one starts). At the end it prints the trials as a table, writes the best
recipe as STUDY_DIR/best_recipe.yaml (a whole config: `python train.py --config_path=STUDY_DIR/best_recipe.yaml
--dataset_path=...`), and reports the test split once, for the best trial's best checkpoint. Other --key=value
options are config keys every trial shares.
"""
import argparse
import os
import sys
import time
from dataclasses import replace
from typing import Dict, List, Optional


LR_RANGE = {"adam": (1e-4, 3e-2), "adagrad": (1e-3, 1e-1), "sgd": (1e-2, 1.0)}
WARMUPS = (0, 20, 200)
RANKS = (16, 32, 64, 128)
EVALS_PER_EPOCH = 4


def batches_for(train_rows: int) -> List[str]:
    """The batch choices: auto, and the powers of two from 64 to 4096 that leave 32 steps an epoch."""
    return ["auto"] + [str(b) for b in (64, 256, 1024, 4096) if train_rows >= 32 * b]


def suggest(trial, train_rows: int) -> Dict[str, str]:
    """One trial's recipe: config key -> value (as --key=value takes them)."""
    opt = trial.suggest_categorical("optimizer", list(LR_RANGE))
    lo, hi = LR_RANGE[opt]
    params = {"optimizer": opt, "learning_rate": f"{trial.suggest_float(f'lr_{opt}', lo, hi, log=True):.6g}",
              "batch_size": trial.suggest_categorical("batch_size", batches_for(train_rows)),
              "warmup_steps": str(trial.suggest_categorical("warmup_steps", list(WARMUPS))),
              "interaction_op": trial.suggest_categorical("interaction_op", ["dot", "dcn"])}
    decay = trial.suggest_categorical("decay", ["none", "to_end"])
    params.update(decay_start_step=params["warmup_steps"] if decay == "to_end" else "0",
                  decay_steps="-1" if decay == "to_end" else "0")
    if params["interaction_op"] == "dcn":
        params["dcn_low_rank_dim"] = str(trial.suggest_categorical("dcn_low_rank_dim", list(RANKS)))
    return params


def run_trial(trial, args, shared: List[str], train_rows: int) -> float:
    """Train one trial's recipe; its best validation logloss (optuna.TrialPruned when the pruner stops it)."""
    import optuna
    from src.model_utils.config import parse_cli
    from src.training.trainer import Trainer
    params = suggest(trial, train_rows)
    folder = os.path.join(args.study_dir, f"trial_{trial.number}")
    cfg = parse_cli([f"--dataset_path={args.dataset_path}", f"--ckpt_path={folder}", "--loss_file_name=",
                     f"--eval_file_name={folder}/eval.log", f"--train_epochs={args.train_epochs}",
                     "--save_checkpoint_steps=100000000", "--log_interval_steps=100000000",
                     *shared, *[f"--{k}={v}" for k, v in params.items()]])
    tr = Trainer(cfg, log=lambda *_: None)
    every = max(1, train_rows // tr.settings.batch_size // EVALS_PER_EPOCH)      # the batch auto chose
    tr.settings = replace(tr.settings, evals=replace(tr.settings.evals, every_steps=every))

    def report(result: Dict[str, float], step: int) -> None:
        trial.report(result["logloss"], step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation logloss {result['logloss']:.6f} at step {step}")
    tr.on_eval = report
    start = time.time()
    tr.run()
    trial.set_user_attr("val_auc", tr.watch.best["auc"])
    trial.set_user_attr("seconds", time.time() - start)
    trial.set_user_attr("config", {k: v for k, v in params.items()} | {"batch_used": cfg.batch_size,
                                                                         "learning_rate_used": cfg.learning_rate})
    trial.set_user_attr("best_checkpoint", tr.best_checkpoint)
    return tr.watch.best["logloss"]


def table(study) -> List[str]:
    """The trials as a markdown table, best first."""
    rows = ["| trial | state | validation logloss | validation auc | seconds | recipe |", "|---|---|---|---|---|---|"]
    done = sorted(study.trials, key=lambda t: (t.value is None, t.value if t.value is not None else 0, t.number))
    for t in done:
        cfg = t.user_attrs.get("config") or t.params
        rows.append(f"| {t.number} | {t.state.name.lower()} | {'' if t.value is None else f'{t.value:.6f}'} | "
                    f"{t.user_attrs.get('val_auc', float('nan')):.6f} | {t.user_attrs.get('seconds', 0):.0f} | "
                    f"{' '.join(f'{k}={v}' for k, v in cfg.items())} |")
    return rows


def write_best(study, study_dir: str, shared: List[str]) -> str:
    """STUDY_DIR/best_recipe.yaml: the whole CPU config with the best trial's recipe (and the shared options)."""
    from src.model_utils.config import parse_cli, render_yaml
    from src.utils.staged_dir import write_atomic
    best = study.best_trial.user_attrs["config"]
    recipe = {k: v for k, v in best.items() if k not in ("batch_used", "learning_rate_used")}
    cfg = parse_cli([*shared, *[f"--{k}={v}" for k, v in recipe.items()]])
    values = {k: v for k, v in cfg.items() if k != "config_path"}
    path = os.path.join(study_dir, "best_recipe.yaml")
    text = render_yaml(values, cfg.device_target).replace(
        "# DLRM config for", f"# The tuner's best recipe (trial {study.best_trial.number}, validation logloss "
                             f"{study.best_value:.6f}), as a whole config for", 1)
    write_atomic(path, lambda f: f.write(text.encode()))
    return path


def report_test(study, dataset_path: str) -> str:
    """The test split, once: the best trial's best checkpoint scored by eval.py's code."""
    from src.inference.export import load_inference_net
    from src.model_utils.config import parse_cli
    from src.training.evaluation import evaluate
    from src.training.logs import format_metrics
    path = study.best_trial.user_attrs["best_checkpoint"]
    net = load_inference_net(parse_cli([]), path)[0]
    return f"test split (reported once, trial {study.best_trial.number}'s best checkpoint {path}): " + \
        format_metrics(evaluate(net, dataset_path, "test", 16384))


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.tools.tune --dataset_path=DS --budget_minutes=M ...` (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m src.tools.tune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Any other --key=value is a config key all trials share.")
    ap.add_argument("--dataset_path", required=True)
    ap.add_argument("--budget_minutes", type=float, required=True, help="stop starting trials after this long")
    ap.add_argument("--trials", type=int, default=None, help="at most this many trials (this run)")
    ap.add_argument("--study_dir", default="", help="where the study, the trials' checkpoints and the best recipe "
                                                   "go (default: DATASET/../tune)")
    ap.add_argument("--train_epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    args, shared = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    import optuna
    from src.data.packed_format import load_metadata
    from src.utils.runtime import setup_context
    meta = load_metadata(args.dataset_path)
    if not meta["samples"].get("val"):
        sys.stderr.write(f"tune error: {args.dataset_path} has no validation split: preprocess it with val_size (the "
                         f"default) or val_split=True\n")
        sys.exit(2)
    args.study_dir = args.study_dir or os.path.join(os.path.dirname(os.path.abspath(args.dataset_path)), "tune")
    os.makedirs(args.study_dir, exist_ok=True)
    setup_context("CPU", None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="dlrm", storage=f"sqlite:///{args.study_dir}/study.db",
                                load_if_exists=True, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    before = len(study.trials)
    study.optimize(lambda t: run_trial(t, args, shared, meta["samples"]["train"]), n_trials=args.trials,
                   timeout=args.budget_minutes * 60.0)
    print(f"study {args.study_dir}/study.db: {len(study.trials)} trials ({len(study.trials) - before} this run)")
    print("\n".join(table(study)))
    print(f"best recipe: {write_best(study, args.study_dir, shared)}")
    print(report_test(study, args.dataset_path))


if __name__ == "__main__":
    main()
