"""Benchmarks behind the README's figures: the dispatcher of the suites in src/tools/benchmarks/ (one module per kind
of suite: preprocessing, training, quality, recipes, gemm, inference, distributed, scoring). Each measurement runs in
its own process (`python -m src.tools.benchmark _child NAME ...`) so that its peak RSS is its own.

    python -m src.tools.benchmark preprocess [--work DIR]   # 1M and 4M synthetic lines
    python -m src.tools.benchmark preprocess_pandas [--seeds 3]  # 1M lines: preprocess vs pandas.read_csv, rounds
    python -m src.tools.benchmark preprocess_workers        # workers 1 / auto / 2 on day files (one gzip), phase times
    python -m src.tools.benchmark csv [--lines N]           # your own data: a 10-column CSV on 1 and 2 workers
    python -m src.tools.benchmark train [--work DIR] [--device_target CPU|GPU] [--lines N]
    python -m src.tools.benchmark quality [--seeds 5] [--recipes A,B]   # recipes x seeds: AUC mean ± std
    python -m src.tools.benchmark time_to_quality [--seeds 3] [--target_auc 0.777]   # time to a fixed AUC
    python -m src.tools.benchmark real_rows [--recipes A,B] # the recipes on the real Criteo rows of tests/data
    python -m src.tools.benchmark gemm                      # the step at batch 16384 against the MatMul rate
    python -m src.tools.benchmark kernels                   # kernels per batch-128 step and ms per step
    python -m src.tools.benchmark profile_step              # kernel time per step: default recipe, dot, multi-hot
    python -m src.tools.benchmark fused [--seeds 3]         # fused CPU kernels vs stock ops, interleaved rounds
    python -m src.tools.benchmark infer [--work DIR] [--device_target CPU|GPU]   # export + inference latency, then infer_cpp
    python -m src.tools.benchmark infer_cpp [--work DIR]    # C++ program (MindSpore Lite) vs Python runner, same model
    python -m src.tools.benchmark parallel [--device_target CPU|GPU]             # 1 vs 2 ranks, Kaggle tables
    python -m src.tools.benchmark terabyte [--work DIR]     # day files: workers 1 vs 2, Kaggle size, 24 days + training
    python -m src.tools.benchmark memory_flat [--work DIR]  # preprocessing memory for 1M and 4M lines of day files
    python -m src.tools.benchmark plan                      # cost model: memory, bytes and step time for N = 8..512
    python -m src.tools.benchmark predict                   # predict.py over 1M raw lines with the default model
    python -m src.tools.benchmark serve                     # serve.py under a bounded loopback load
"""
import argparse
import json
import os
import sys
import time
from typing import Callable, Dict

from src.tools.benchmarks import distributed, gemm, inference, preprocessing, quality, recipes, scoring, training
from src.tools.benchmarks.common import ROOT, config_file, day_files, run_child, synthetic_dataset, typed_arg

# one measurement each, run in a child process: name -> function(*args) -> JSON-able result
CHILDREN: Dict[str, Callable] = {
    "compute": training.child_compute, "multihot": training.child_multihot, "train": training.child_train,
    "train_epoch": training.child_train_epoch, "tables": training.child_tables, "logreg": training.child_logreg,
    "best": training.child_best, "preprocess": preprocessing.child_preprocess,
    "preprocess_csv": preprocessing.child_preprocess_csv,
    "pandas_parse": preprocessing.child_pandas_parse, "export": inference.child_export,
    "infer": inference.child_infer, "export_pair": inference.child_export_pair,
    "compact_auc": inference.child_compact_auc, "dist": distributed.child_dist,
    "collectives": distributed.child_collectives, "to_target": quality.child_to_target, "gemm": gemm.child_gemm,
    "kernels": gemm.child_kernels, "bf16": gemm.child_bf16, "profile": gemm.child_profile,
    "epochs": quality.child_epochs, "runtime_speed": scoring.runtime_speed,
    "against_eval": scoring.against_eval, "recipe": recipes.child_recipe}


def suites(a: argparse.Namespace) -> Dict[str, Callable[[], None]]:
    """Every suite by name, in the order `all` runs them (BY_NAME_ONLY run only by name)."""
    dev, work = a.device_target, a.work
    one_m = lambda: synthetic_dataset(work, 1_000_000)                              # noqa: E731
    return {
        "preprocess": lambda: preprocessing.bench_preprocess(work),
        "preprocess_pandas": lambda: preprocessing.bench_preprocess_vs_pandas(work, rounds=a.seeds or 3),
        "preprocess_workers": lambda: preprocessing.bench_preprocess_workers(work),
        "csv": lambda: (preprocessing.bench_preprocess_csv(work, a.lines),
                        preprocessing.bench_preprocess_csv(work, a.lines, tags=True)),
        "csv_multihot": lambda: preprocessing.bench_preprocess_csv(work, a.lines, tags=True),
        "multihot": lambda: training.bench_multihot(dev),
        "train": lambda: training.bench_train(work, dev, a.lines),
        "quality": lambda: training.bench_quality(work, dev, a.lines, a.seeds or 5, a.recipes),
        "real_rows": lambda: quality.bench_real_rows(run_child, ROOT, config_file(dev), work, dev, names=a.recipes),
        "time_to_quality": lambda: training.bench_time_to_quality(work, dev, a.lines, a.seeds or 3, a.target_auc,
                                                                  a.recipes),
        "gemm": lambda: gemm.bench_gemm(run_child, config_file(dev), dev),
        "kernels": lambda: gemm.bench_kernels(run_child, config_file(dev), dev),
        "profile_step": lambda: gemm.bench_profile(run_child, config_file(dev), dev),
        "fused": lambda: gemm.bench_fused(run_child, config_file(dev), dev, synthetic_dataset(work, a.lines)[1],
                                          a.seeds or 3),
        "infer": lambda: (inference.bench_infer(work, dev), inference.bench_infer_cpp(work, dev)),
        "compact": lambda: inference.bench_compact(work, dev, a.lines),
        "infer_cpp": lambda: inference.bench_infer_cpp(work, dev),
        "parallel": lambda: distributed.bench_parallel(dev),
        "terabyte": lambda: preprocessing.bench_terabyte(work, dev),
        "plan": lambda: distributed.bench_plan(dev),
        "predict": lambda: (scoring.bench_predict(work, one_m), scoring.bench_runtimes(run_child, work, one_m)),
        "serve": lambda: scoring.bench_serve(work, one_m),
        "collectives": lambda: distributed.bench_collectives(dev),
        "recipes": lambda: recipes.bench_recipes(run_child, work, a.seeds or 3, a.recipes, a.datasets, a.lines),
        "seed_spread": lambda: recipes.bench_seed_spread(run_child, work, a.recipes, a.datasets),
        "kaggle_size": lambda: preprocessing.bench_kaggle_size(work),
        "memory_flat": lambda: preprocessing.bench_memory_flat(day_files(work, 8, 125_000),
                                                               day_files(work, 8, 500_000), "--max_ind_range=40000000"),
    }


BY_NAME_ONLY = ("fused", "profile_step", "preprocess_pandas", "collectives", "recipes", "seed_spread", "kaggle_size",
                "memory_flat",
                "csv_multihot", "infer_cpp")         # the last two: csv and infer run them


def main(argv=None) -> None:
    """`python -m src.tools.benchmark SUITE [options]`, or `_child NAME ARGS` (one measurement, JSON on stdout)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(CHILDREN[argv[1]](*[typed_arg(a) for a in argv[2:]])))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = list(suites(argparse.Namespace(device_target="CPU", work="", lines=0, seeds=0, recipes="",
                                           target_auc=0, datasets="")))
    ap.add_argument("suite", choices=names + ["all"])
    ap.add_argument("--seeds", type=int, default=0, help="quality (default 5) and time_to_quality (default 3): seeds "
                    "per recipe: 123, then 1, 2, ...")
    ap.add_argument("--recipes", default="", help="quality, time_to_quality, real_rows: comma-separated recipes "
                    f"({', '.join(quality.RECIPES)}; default: all; time_to_quality: the old and the new default)")
    ap.add_argument("--target_auc", type=float, default=0.777, help="time_to_quality: the AUC to reach (default: "
                    "the old default's one-epoch AUC at its lowest seed, so that every seed of it reaches the target "
                    "within its epoch)")
    ap.add_argument("--datasets", default="", help="recipes: comma-separated datasets (default: all five)")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench_out"))
    ap.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"])
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    print(f"benchmark on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
    for name, run in suites(args).items():
        if name == args.suite or (args.suite == "all" and name not in BY_NAME_ONLY):
            run()


if __name__ == "__main__":
    main()
