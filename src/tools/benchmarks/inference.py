"""Export and inference suites: export size and latency, compact tables, and the C++ program against the Python
runner on the same model.

    python -m src.tools.benchmark infer | infer_cpp | compact
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from src.data.synthetic import KAGGLE_SIZES as KAGGLE, N_DENSE, N_SLOTS
from src.tools.benchmarks.common import ROOT, config_file, gb, run_child, run_timed, spec_of, synthetic_dataset
from src.utils.runtime import setup_context


def child_export(file_name, device, dtype="float32"):
    """Export a Kaggle-sized DLRM (33,762,577 rows, random init) to MINDIR with a dynamic batch, its table in `dtype`."""
    setup_context(device, None)
    from src.inference.export import export_network
    from src.model.dlrm import build_model
    from src.model.serving import DLRMProbability
    from src.model_utils.config import parse_cli
    cfg = parse_cli([f"--file_name={file_name}", "--file_format=MINDIR", "--export_batch_size=0",
                     f"--export_table_dtype={dtype}"])
    net = DLRMProbability(build_model(spec_of(KAGGLE), seed=1))
    net.set_train(False)
    t = time.time()
    path = export_network(net, cfg, log=lambda *_: None)
    folder = os.path.dirname(path)
    files = {}
    for base, _, names in os.walk(folder):
        for n in names:
            files[os.path.relpath(os.path.join(base, n), folder)] = os.path.getsize(os.path.join(base, n))
    return {"seconds": time.time() - t, "path": path, "files": files}


def child_infer(mindir, device):
    """Latency of the exported MINDIR (mindspore.load + GraphCell) at batch 1, 128 and 16384, random ids."""
    setup_context(device, None)
    import mindspore as ms
    from mindspore import Tensor, nn
    t = time.time()
    graph = nn.GraphCell(ms.load(mindir))
    out = {"load_seconds": time.time() - t}
    rng = np.random.default_rng(0)
    for batch, reps in ((1, 2000), (128, 500), (16384, 20)):
        feeds = [(np.stack([rng.integers(0, s, batch) for s in KAGGLE], 1).astype(np.int32),
                  rng.random((batch, N_DENSE)).astype(np.float32)) for _ in range(4)]
        for ids, dense in feeds:                                   # warm-up (compiles this shape)
            graph(Tensor(ids), Tensor(dense)).asnumpy()
        lat = []
        for i in range(reps):
            ids, dense = feeds[i % len(feeds)]
            t = time.perf_counter()
            graph(Tensor(ids), Tensor(dense)).asnumpy()
            lat.append(time.perf_counter() - t)
        lat = np.array(lat) * 1000.0
        out[str(batch)] = {"mean_ms": float(lat.mean()), "p50_ms": float(np.median(lat)),
                           "p99_ms": float(np.percentile(lat, 99)), "samples_per_s": batch * 1000.0 / float(lat.mean()),
                           "reps": reps}
    return out


def child_compact_auc(dataset, device, config, folder):
    """Train one epoch (the config's recipe), export the network with each table dtype and score every
    exported MINDIR on the test split: the AUC a compact table costs."""
    setup_context(device, None)
    import mindspore as ms
    from mindspore import nn
    from src.inference.export import export_network
    from src.model_utils.config import Config, parse_cli
    from src.training.evaluation import evaluate
    from src.training.trainer import Trainer
    cfg = parse_cli([f"--config_path={config}", f"--device_target={device}", f"--dataset_path={dataset}",
                     "--save_checkpoint=False", "--do_eval=False", "--loss_file_name=", "--log_interval_steps=1000000"])
    tr = Trainer(cfg, log=lambda *_: None)
    tr.run()
    tr.prob_net.set_train(False)
    out = {}
    for dtype in ("float32", "float16", "int8"):
        path = export_network(tr.prob_net, Config(cfg, file_name=os.path.join(folder, dtype, "dlrm"),
                                                   export_table_dtype=dtype), log=lambda *_: None)
        r = evaluate(nn.GraphCell(ms.load(path)), dataset, "test", 16384)
        out[dtype] = {"auc": r["auc"], "logloss": r["logloss"]}
    return out


def onnx_fit_sizes():
    """Kaggle table sizes with every table over 1M rows scaled by one factor, so that the float32 model
    is as large as fits ONNX's 2 GB limit (less 32 MB for the graph): what the C++ path can serve."""
    from src.inference.export import ONNX_LIMIT
    spec = spec_of(KAGGLE)
    rows = spec.rows_in(ONNX_LIMIT - (32 << 20) - spec.mlp_bytes)
    small = sum(s for s in KAGGLE if s <= 1_000_000)
    big = sum(s for s in KAGGLE if s > 1_000_000)
    f = (rows - small) / big
    return [s if s <= 1_000_000 else int(s * f) for s in KAGGLE]


def child_export_pair(folder, device):
    """One random-init Kaggle-architecture DLRM over `onnx_fit_sizes()`, exported three ways: MINDIR with a
    dynamic batch (the Python runner's) and ONNX at batch 128 and 16384 (the C++ path's)."""
    setup_context(device, None)
    from src.inference.export import export_network
    from src.model.dlrm import build_model
    from src.model.serving import DLRMProbability
    from src.model_utils.config import parse_cli
    net = DLRMProbability(build_model(spec_of(onnx_fit_sizes()), seed=1))
    net.set_train(False)
    out = {}
    for fmt, batch in (("MINDIR", 0), ("ONNX", 128), ("ONNX", 16384)):
        name = os.path.join(folder, "dlrm" if fmt == "MINDIR" else f"dlrm_b{batch}")
        cfg = parse_cli([f"--file_name={name}", f"--file_format={fmt}", f"--export_batch_size={batch}"])
        t = time.time()
        path = export_network(net, cfg, log=lambda *_: None)
        out[f"{fmt}_{batch}"] = {"path": path, "seconds": time.time() - t}
    return out


def bench_compact(work, device, lines):
    """Kaggle-size exports with float32 / float16 / int8 tables: size, load, latency; and the AUC change of a
    trained model on the synthetic test split."""
    print(f"== compact tables ({device}; Kaggle architecture and table sizes, 33,762,577 rows, random init)")
    sizes = {}
    for dtype in ("float32", "float16", "int8"):
        res, peak = run_child("export", os.path.join(work, "compact", dtype, "dlrm"), device, dtype)
        sizes[dtype] = sum(res["files"].values())
        inf, ipeak = run_child("infer", res["path"], device)
        print(f"{dtype}: {sizes[dtype] / 2 ** 30:.2f} GB ({sizes[dtype] / sizes['float32']:.3f}x), export "
              f"{res['seconds']:.1f}s (peak RSS {gb(peak)}), load {inf['load_seconds']:.1f}s (peak RSS {gb(ipeak)}); "
              + "; ".join(f"batch {b}: {inf[b]['samples_per_s']:,.0f} samples/s, mean {inf[b]['mean_ms']:.3f} ms, "
                          f"p99 {inf[b]['p99_ms']:.3f} ms" for b in ("1", "16384")), flush=True)
        shutil.rmtree(os.path.join(work, "compact", dtype), ignore_errors=True)
    config = config_file(device)
    _, dataset = synthetic_dataset(work, lines)
    res, _ = run_child("compact_auc", dataset, device, config, os.path.join(work, "compact_auc"))
    base = res["float32"]
    for dtype, r in res.items():
        print(f"trained model ({lines:,} synthetic lines, 1 epoch), {dtype} table: auc {r['auc']:.5f} "
              f"({r['auc'] - base['auc']:+.5f}), logloss {r['logloss']:.5f} ({r['logloss'] - base['logloss']:+.5f})")


def bench_infer(work, device):
    print(f"== export and inference ({device}; Kaggle architecture and table sizes, 33,762,577 rows, random init)")
    res, peak = run_child("export", os.path.join(work, "export", "dlrm"), device)
    size = sum(res["files"].values())
    print(f"export MINDIR (dynamic batch): {res['seconds']:.1f}s, peak RSS {gb(peak)}, {gb(size)} on disk: "
          + ", ".join(f"{k} {v / 2 ** 20:,.1f} MB" if v >= 2 ** 20 else f"{k} {v / 1024:,.0f} KB"
                      for k, v in sorted(res["files"].items())))
    inf, peak = run_child("infer", res["path"], device)
    print(f"load exported MINDIR: {inf['load_seconds']:.1f}s; inference peak RSS {gb(peak)}")
    for batch in ("1", "128", "16384"):
        r = inf[batch]
        print(f"inference batch {batch:>5}: {r['samples_per_s']:,.0f} samples/s, latency mean {r['mean_ms']:.3f} ms, "
              f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms ({r['reps']} calls)")


def _random_batch_files(folder, sizes, batch, n_batches):
    """n_batches batch files of random ids (uniform per slot) and dense features, written as preprocess.py does."""
    from src.inference.batch_files import write_batches
    rng = np.random.default_rng(batch)

    def batches():
        for _ in range(n_batches):
            ids = np.stack([rng.integers(0, s, batch) for s in sizes], 1).astype(np.int32)
            yield ids, rng.random((batch, N_DENSE)).astype(np.float32), np.zeros((batch, 1), np.float32)
    write_batches(batches(), folder, N_SLOTS, N_DENSE, batch)
    return folder


def bench_infer_cpp(work, device):
    """C++ program on MindSpore Lite (converted ONNX) against the Python runner on MindSpore 2.10 (MINDIR):
    the same weights and the same batch files, at batch 128 and 16384."""
    from src.inference.batch_files import read_time
    sizes = onnx_fit_sizes()
    print(f"== C++ program (MindSpore Lite 2.0.0) vs Python runner (MindSpore 2.10), {device}; Kaggle architecture, "
          f"tables over 1M rows scaled to fit ONNX: {sum(sizes):,} rows ({sum(sizes) * 64 / 2 ** 30:.2f} GB float32)")
    folder = os.path.join(work, "cpp")
    os.makedirs(folder, exist_ok=True)
    env = dict(os.environ, PYTHON=sys.executable)
    lite = subprocess.run(["bash", "ascend310_infer/fetch_mindspore_lite.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True).stdout.strip().splitlines()[-1]
    subprocess.run(["bash", "ascend310_infer/build.sh"], cwd=ROOT, env=dict(env, MINDSPORE_PATH=lite), check=True,
                   capture_output=True)
    exported, peak = run_child("export_pair", folder, device)
    print("export: " + ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in exported.items()) + f"; peak RSS {gb(peak)}")
    exe = os.path.join(ROOT, "ascend310_infer", "out")
    for batch, n_batches in ((128, 200), (16384, 12)):
        onnx = exported[f"ONNX_{batch}"]["path"]
        sec, peak, out = run_timed([os.path.join(exe, "converter"), f"--onnx_path={onnx}",
                                    f"--output_path={os.path.join(folder, f'dlrm_b{batch}_lite.mindir')}"])
        lite_model = out.strip().splitlines()[-1].split(" -> ")[-1]          # X.mindir or X_graph.mindir
        print(f"batch {batch}: convert {os.path.getsize(onnx) / 2 ** 20:,.0f} MB ONNX -> "
              f"{os.path.basename(lite_model)} in {sec:.1f}s, peak RSS {gb(peak)}")
        data = _random_batch_files(os.path.join(folder, f"batches_{batch}"), sizes, batch, n_batches)
        runs = {}
        for kind, cmd in (
                ("C++ / Lite", [os.path.join(exe, "main"), f"--mindir_path={lite_model}",
                                f"--input0_path={data}/00_ids", f"--input1_path={data}/01_dense", "--device_type=CPU",
                                f"--result_path={folder}/res_cpp_{batch}", f"--time_path={folder}/time_cpp_{batch}"]),
                ("Python / MindSpore", [sys.executable, "-m", "src.inference.runner",
                                        f"--mindir_path={exported['MINDIR_0']['path']}", f"--input_path={data}",
                                        f"--result_path={folder}/res_py_{batch}", f"--time_path={folder}/time_py_{batch}",
                                        f"--device_target={device}"])):
            sec, peak, _ = run_timed(cmd, env=dict(os.environ, GLOG_v="3"))
            tag = "cpp" if kind.startswith("C++") else "py"
            t = read_time(os.path.join(folder, f"time_{tag}_{batch}", "test_perform_static.txt"))
            runs[tag] = np.concatenate([np.fromfile(os.path.join(folder, f"res_{tag}_{batch}", f), "<f4") for f in
                                        sorted(os.listdir(os.path.join(folder, f"res_{tag}_{batch}")))])
            print(f"  {kind:<19} {t['samples_per_s']:>9,.0f} samples/s, latency mean {t['mean_ms']:.3f} ms, "
                  f"p50 {t['p50_ms']:.3f} ms, p99 {t['p99_ms']:.3f} ms ({t['count']} batches); model load "
                  f"{t['load_s']:.1f}s; process {sec:.1f}s, peak RSS {gb(peak)}")
        print(f"  max |C++ - Python| probability: {np.max(np.abs(runs['cpp'] - runs['py'])):.2e} "
              f"over {len(runs['py']):,} samples")
