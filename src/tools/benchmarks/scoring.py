"""Scoring new data with a model bundle: predict.py over 1M raw Criteo lines, and serve.py under a bounded loopback
load, with the default model (the configs' recipe, one epoch over the 1M-line synthetic set).

    bash scripts/run_benchmark.sh predict     # lines/s end to end (process start included), parse + transform vs
                                              # model, workers and runtimes, next to eval.py's rate; each runtime's
                                              # speed alone and its probabilities against eval.py's
    bash scripts/run_benchmark.sh serve       # rows/s and p50/p99 latency at 1, 8 and 64 clients, 1- and 100-row
                                              # requests; the server's memory over the run
"""
import os
import re
import subprocess
import sys
import time
from typing import Callable, Tuple

from src.tools.benchmarks.common import ROOT
from src.tools.load_test import describe, run_load, serving

SUMMARY = re.compile(r"scored ([\d,]+) lines .* in ([\d.]+) s: ([\d,]+) lines/s; parse \+ transform ([\d.]+) s on "
                     r"(\d+) worker\(s\), model ([\d.]+) s")
# (rows a request, clients, requests): the load levels of the targets, bounded in count and in time
LEVELS = ((1, 1, 1000), (1, 8, 4000), (1, 64, 8000), (100, 1, 300), (100, 8, 1500), (100, 64, 6000))
SECONDS = 60.0


def _run(*args: str) -> Tuple[float, str]:
    """(wall seconds, stdout) of a project command (python ARGS) from the repository root; fails on an error."""
    start = time.time()
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, GLOG_v="3"))
    if r.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stderr[-1500:]}")
    return time.time() - start, r.stdout


def default_bundle(work: str, dataset: Callable[[], Tuple[str, str]]) -> Tuple[str, str, str]:
    """(the raw train.txt, its dataset, the bundle) of the default model on the 1M-line synthetic set: trained with
    the configs' recipe and exported once (kept in work/scoring/)."""
    data_dir, dataset_path = dataset()
    folder = os.path.join(work, "scoring")
    bundle = os.path.join(folder, "bundle")
    if not os.path.isfile(os.path.join(bundle, "manifest.json")):
        os.makedirs(folder, exist_ok=True)
        _run("train.py", f"--dataset_path={dataset_path}", f"--ckpt_path={folder}/ckpt",
             f"--loss_file_name={folder}/loss.log", f"--eval_file_name={folder}/eval.log")
        _run("export.py", f"--checkpoint_path={folder}/ckpt", f"--dataset_path={dataset_path}",
             f"--bundle_path={bundle}")
    return os.path.join(data_dir, "train.txt"), dataset_path, bundle


def bench_predict(work: str, dataset: Callable[[], Tuple[str, str]]) -> None:
    """predict.py over the 1M raw lines: workers auto, 1 and 2, both runtimes; eval.py on the same model."""
    raw, dataset_path, bundle = default_bundle(work, dataset)
    print(f"== predict.py: 1,000,000 raw Criteo lines ({raw}), the default model, output CSV; wall time with process "
          f"start")
    out = os.path.join(work, "scoring", "predictions.csv")
    for extra in ((), ("--workers=1",), ("--workers=2",), ("--runtime=mindspore",)):
        wall, text = _run("predict.py", f"--model_path={bundle}", f"--input_path={raw}", f"--output_path={out}",
                          *extra)
        m = SUMMARY.search(text)
        lines = int(m.group(1).replace(",", ""))
        print(f"predict {' '.join(extra) or '(defaults: workers=auto, runtime=auto)'}: {lines / wall:,.0f} lines/s "
              f"with process start ({wall:.1f} s); in the run {m.group(3)} lines/s, parse + transform "
              f"{m.group(4)} s on {m.group(5)} worker(s), model {m.group(6)} s", flush=True)
    wall, text = _run("eval.py", f"--dataset_path={dataset_path}", f"--checkpoint_path={work}/scoring/ckpt",
                      f"--eval_file_name={work}/scoring/eval_again.log")
    rate = re.search(r"samples: (\d+), eval_time: ([\d.]+)s, samples/s: ([\d.]+)", text)
    print(f"eval.py on the same model (test split, MindRecord, batch 16384): {float(rate.group(3)):,.0f} samples/s "
          f"in the run ({rate.group(1)} samples), {wall:.1f} s with process start")


def runtime_speed(bundle: str) -> dict:
    """Each runtime on the bundle's model alone (2 threads): ms for one row, rows/s at batches of 1024, 4096 and 16384
    (test-split-like random rows, 2 s per batch size)."""
    from src.inference.bundle import Bundle
    from src.inference.onnx_dynamic import sample_inputs
    b = Bundle(bundle, verify=False)
    out = {}
    for runtime in ("onnxruntime", "mindspore"):
        model = b.model(2, runtime)
        res = {}
        for batch in (1, 1024, 4096, 16384):
            ids, dense = sample_inputs(b.spec, batch)
            model.predict(ids, dense)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < 2.0:
                model.predict(ids, dense)
                n += 1
            seconds = (time.perf_counter() - start) / n
            res[batch] = {"ms": seconds * 1000.0, "rows_per_s": batch / seconds}
        out[runtime] = res
    return out


def against_eval(bundle: str, ckpt: str, dataset_path: str, test_lines: str, work: str) -> dict:
    """predict.py's probabilities of the test split's raw lines, with each runtime, against eval.py's network on the
    split: the largest difference and the lines over 1e-6."""
    import numpy as np
    import pandas as pd
    from src.inference.export import load_inference_net
    from src.model_utils.config import parse_cli
    from src.training.evaluation import predict_split
    from src.utils.runtime import setup_context
    setup_context("CPU", None)
    want, _ = predict_split(load_inference_net(parse_cli([]), ckpt)[0], dataset_path, "test", 16384)
    out = {}
    for runtime in ("onnxruntime", "mindspore"):
        csv = os.path.join(work, f"test_{runtime}.csv")
        _run("predict.py", f"--model_path={bundle}", f"--input_path={test_lines}", f"--output_path={csv}",
             f"--runtime={runtime}")
        diff = np.abs(pd.read_csv(csv)["probability"].to_numpy() - want)
        out[runtime] = {"max": float(diff.max()), "over": int((diff > 1e-6).sum()), "lines": len(diff)}
    return out


def test_lines_of(raw: str, work: str) -> str:
    """The raw lines of the 1M-line set's test split (its last 1,000,000 // 7), written once."""
    path = os.path.join(work, "scoring", "test_lines.txt")
    if not os.path.isfile(path):
        with open(raw, encoding="utf-8") as f, open(path, "w", encoding="utf-8") as g:
            g.writelines(f.readlines()[-(1_000_000 // 7):])
    return path


def bench_runtimes(run_child: Callable, work: str, dataset: Callable[[], Tuple[str, str]]) -> None:
    """The two runtimes of the bundle: speed of the model alone, and predict.py's probabilities against eval.py's."""
    raw, dataset_path, bundle = default_bundle(work, dataset)
    speed, _ = run_child("runtime_speed", bundle)
    for runtime, res in speed.items():
        print(f"{runtime} alone, 2 threads: one row {res['1']['ms']:.3f} ms; "
              + ", ".join(f"batch {b}: {res[b]['rows_per_s']:,.0f} rows/s" for b in ("1024", "4096", "16384")))
    diff, _ = run_child("against_eval", bundle, os.path.join(work, "scoring", "ckpt"), dataset_path,
                        test_lines_of(raw, work), os.path.join(work, "scoring"))
    for runtime, d in diff.items():
        print(f"predict.py --runtime={runtime} on the {d['lines']:,} raw test lines against eval.py's network: largest "
              f"difference {d['max']:.2e}, {d['over']} lines over 1e-6")


def bench_serve(work: str, dataset: Callable[[], Tuple[str, str]]) -> None:
    """serve.py (defaults: micro-batches of up to 4096 rows or 2 ms) under LEVELS, client and server on this machine."""
    raw, _, bundle = default_bundle(work, dataset)
    lines = open(test_lines_of(raw, work), encoding="utf-8").read().splitlines()
    print("== serve.py: the default model's bundle on 127.0.0.1, POST /predict {\"lines\": [...]} of the test split's "
          "raw lines; a client of asyncio connections (src/tools/load_test.py) on the same 2 cores")
    with serving(bundle, os.path.join(work, "scoring", "serve_log")) as (proc, port):
        run_load(port, lines, 10, 4, 200, 10.0, proc.pid)                     # warm-up
        for rows, clients, requests in LEVELS:
            print(describe(run_load(port, lines, rows, clients, requests, SECONDS, proc.pid)), flush=True)
        again = run_load(port, lines, 100, 64, 6000, SECONDS, proc.pid)
        print("again, memory flat? " + describe(again))
