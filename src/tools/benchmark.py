"""Benchmarks behind the README's figures. Each measurement runs in its own process so that its
peak RSS is its own.

    python -m src.tools.benchmark preprocess [--work DIR]   # 1M and 4M synthetic lines
    python -m src.tools.benchmark preprocess_workers        # workers 1 / auto / 2 on day files (one gzip), phase times
    python -m src.tools.benchmark csv [--lines N]           # your own data: a 10-column CSV on 1 and 2 workers
    python -m src.tools.benchmark train [--work DIR] [--device_target CPU|GPU] [--lines N]
    python -m src.tools.benchmark quality [--seeds 5] [--recipes A,B]   # recipes x seeds: AUC mean ± std
    python -m src.tools.benchmark time_to_quality [--seeds 3] [--target_auc 0.777]   # time to a fixed AUC
    python -m src.tools.benchmark real_rows [--recipes A,B] # the recipes on the real Criteo rows of tests/data
    python -m src.tools.benchmark gemm                      # the step at batch 16384 against the MatMul rate
    python -m src.tools.benchmark kernels                   # kernels per batch-128 step and ms per step
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
import shutil
import subprocess
import sys
import time

import numpy as np

from src.data.synthetic import KAGGLE_SIZES as KAGGLE, N_DENSE, N_SLOTS
from src.model_utils.spec import DLRMSpec, criteo_features
from src.utils.runtime import setup_context
from src.tools.benchmarks import gemm, quality, recipes, scoring

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The Kaggle architecture with the dot interaction and plain SGD: the recipe the speed suites' figures (train, tables,
# parallel, plan, multi-hot, infer) have always been measured with, whatever the configs' default recipe.
DOT = ("--interaction_op=dot",)
SGD = ("--optimizer=sgd", "--learning_rate=0.15", *DOT, "--warmup_steps=0", "--decay_start_step=0", "--decay_steps=0")


def config_file(device):
    """The config file the suites start from: gpu_config.yaml for GPU, cpu_config.yaml otherwise."""
    return os.path.join(ROOT, f"{'gpu' if device == 'GPU' else 'cpu'}_config.yaml")


def run_child(*args, env=None):
    """Run `python -m src.tools.benchmark _child ...` (extra environment `env`); returns (json result, peak
    RSS in bytes)."""
    proc = subprocess.Popen([sys.executable, "-m", "src.tools.benchmark", "_child", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, env=dict(os.environ, GLOG_v="3", **(env or {})))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed with exit code {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss * 1024


def ensure_synthetic(work, lines):
    d = os.path.join(work, f"synthetic_{lines}")
    if not os.path.isfile(os.path.join(d, "train.txt")):
        from src.data.synthetic import generate
        generate(os.path.join(d, "train.txt"), lines, prob_file=os.path.join(d, "train_prob.npy"))
    return d


def gb(n):
    return f"{n / 2 ** 30:.2f} GB"


# ---------------------------------------------------------------- children (one measurement each)
def spec_of(sizes, *options) -> DLRMSpec:
    """The default config's model (plus train.py `options`) over Criteo-layout tables of `sizes` rows, with SGD."""
    from src.model_utils.config import parse_cli
    return DLRMSpec.from_config(parse_cli(["--optimizer=sgd", *DOT, *options]), criteo_features(sizes))


CSV_SPEC = """files: [clicks.csv]
format: csv
header: true
label: click
dense: [price, age, score]
categorical: [user, item, city, device, site, campaign]
"""


def write_clicks_csv(path: str, lines: int, seed: int = 0, tags: bool = False) -> None:
    """A 10-column CSV with a header (label, 3 numbers, 6 string categories of Zipf-like frequencies; some fields
    quoted with a comma inside, some missing), the own-data benchmark's input; with `tags`, an 11th column of 0-8
    `|`-separated tags (Zipf-like over 2,000)."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write("click,price,age,score,user,item,city,device,site,campaign" + (",tags\n" if tags else "\n"))
        for lo in range(0, lines, 200_000):
            n = min(200_000, lines - lo)
            cols = [(rng.random(n) < 0.25).astype(int).astype(str),
                    np.char.mod("%.2f", rng.lognormal(3, 1, n)), rng.integers(15, 80, n).astype(str),
                    np.where(rng.random(n) < 0.1, "", np.char.mod("%.4f", rng.normal(0, 1, n)))]
            for name, vocab in (("u", 200_000), ("i", 50_000), ("c", 300), ("d", 40), ("s", 5_000), ("k", 1_000)):
                v = np.char.add(name, np.minimum(rng.zipf(1.3, n), vocab).astype(str))
                if name == "c":
                    v = np.where(rng.random(n) < 0.2, np.char.add(np.char.add('"', v), ', FR"'), v)
                cols.append(np.where(rng.random(n) < 0.05, "", v))
            if tags:
                count = rng.integers(0, 9, n)
                values = np.char.add("t", np.minimum(rng.zipf(1.3, int(count.sum())), 2000).astype(str)).tolist()
                at = np.concatenate(([0], np.cumsum(count)))
                cols.append(np.array(["|".join(values[at[i]:at[i + 1]]) for i in range(n)]))
            rows = cols[0]
            for c in cols[1:]:
                rows = np.char.add(np.char.add(rows, ","), c)
            f.write("\n".join(rows.tolist()) + "\n")


def child_preprocess_csv(data_dir, lines, workers):
    """Preprocess the own-data CSV with its feature spec on `workers` workers."""
    from src.model_utils.config import parse_cli
    from src.data.preprocess import preprocess
    cfg = parse_cli([f"--data_path={data_dir}", f"--feature_spec={os.path.join(data_dir, 'spec.yaml')}",
                     f"--workers={workers}"])
    t = time.time()
    meta = preprocess(cfg, progress=False)
    return {"seconds": time.time() - t, "lines": lines, "rows": meta["total_rows"]}


def bench_preprocess_csv(work, lines=1_000_000, tags=False):
    """Own-data preprocessing speed: a 10-column CSV (header, quoting, missing values) on 1 and 2 workers; with
    `tags`, an 11th column read as multi_hot (max_len 8)."""
    d = os.path.join(work, f"csv_{lines}" + ("_tags" if tags else ""))
    if not os.path.isfile(os.path.join(d, "clicks.csv")):
        os.makedirs(d, exist_ok=True)
        write_clicks_csv(os.path.join(d, "clicks.csv"), lines, tags=tags)
        with open(os.path.join(d, "spec.yaml"), "w") as f:
            f.write(CSV_SPEC + ("multi_hot:\n  - {name: tags, separator: '|', max_len: 8}\n" if tags else ""))
    print(f"== preprocess your own CSV ({lines:,} lines x {11 if tags else 10} columns: label, 3 numbers, 6 string "
          f"categories{', a multi-hot column of 0-8 tags' if tags else ''}; header, quoted fields, missing values; "
          f"vocabulary mode)")
    for workers in (1, 2):
        res, peak = run_child("preprocess_csv", d, str(lines), str(workers))
        print(f"workers={workers}: {lines / res['seconds']:,.0f} lines/s ({lines / res['seconds'] / workers:,.0f} "
              f"per worker, {res['seconds']:.2f}s in-process), peak RSS {gb(peak)}, {res['rows']:,} embedding rows")


def child_preprocess(data_dir, lines):
    from src.model_utils.config import parse_cli
    from src.data.preprocess import preprocess
    cfg = parse_cli([f"--data_path={data_dir}", f"--train_line_count={lines}"])
    t = time.time()
    meta = preprocess(cfg, progress=False)
    return {"seconds": time.time() - t, "lines": lines, "rows": meta["total_rows"]}


def child_train(dataset, batch, steps, device, config):
    """End-to-end training speed (data loading included) over `steps` steps after 20 warm-up steps."""
    setup_context(device, None)
    from src.model_utils.config import parse_cli
    from src.training.trainer import Trainer
    cfg = parse_cli([f"--config_path={config}", f"--device_target={device}", f"--dataset_path={dataset}",
                     f"--batch_size={batch}", "--save_checkpoint=False", "--do_eval=False", *SGD,
                     "--loss_file_name=", "--log_interval_steps=1000000"])
    tr = Trainer(cfg, log=lambda *_: None)
    tr.run(max_steps=3)                       # compile
    t = time.time()
    tr.run(max_steps=3 + steps)
    dt = time.time() - t
    return {"samples_per_s": steps * batch / dt, "steps": steps, "batch": batch}


def child_train_epoch(dataset, device, config, *extra):
    """One epoch at the config's batch size (or the `extra` --key=value options), then eval: AUC after one epoch."""
    setup_context(device, None)
    from src.model_utils.config import parse_cli
    from src.training.trainer import Trainer
    from src.training.evaluation import evaluate
    cfg = parse_cli([f"--config_path={config}", f"--device_target={device}", f"--dataset_path={dataset}",
                     "--save_checkpoint=False", "--do_eval=False", "--loss_file_name=", "--log_interval_steps=1000000",
                     *extra])
    tr = Trainer(cfg, log=lambda *_: None)
    t = time.time()
    pos = tr.run()
    train_s = time.time() - t
    ev = evaluate(tr.prob_net, dataset, "test", 16384)
    ev2 = evaluate(tr.prob_net, dataset, "test", 16384)   # second pass: compiled, files cached
    return {"train_seconds": train_s, "steps": pos["global_step"], "auc": ev["auc"], "logloss": ev["logloss"],
            "accuracy": ev["accuracy"], "eval_samples_per_s": ev2["samples_per_s"], "batch": cfg.batch_size}


def time_steps(step, sizes, batch, steps, rng, n_feeds):
    """Seconds for `steps` calls of a train step on random batches (ids uniform per slot), after 2 warm-up calls."""
    from mindspore import Tensor
    feed = []
    for _ in range(n_feeds):
        ids = np.stack([rng.integers(0, s, batch) for s in sizes], 1).astype(np.int32)
        feed.append((Tensor(ids), Tensor(rng.random((batch, N_DENSE)).astype(np.float32)),
                     Tensor((rng.random((batch, 1)) < 0.25).astype(np.float32))))
    for f in feed[:2]:
        step(*f).asnumpy()
    t = time.time()
    for i in range(steps):
        loss = step(*feed[i % len(feed)])
    loss.asnumpy()
    return time.time() - t


def child_tables(sizes_kind, batch, steps, device, ckpt_dir):
    """Step time with random ids over Kaggle-sized or small tables (no data loading), plus checkpoint size."""
    setup_context(device, None)
    from src.training import checkpoint
    from src.model.dlrm import build_model
    from src.training.train_step import make_train_step
    sizes = KAGGLE if sizes_kind == "kaggle" else [min(s, 1000) for s in KAGGLE]
    t = time.time()
    net = build_model(spec_of(sizes), seed=1)
    init_s = time.time() - t
    dt = time_steps(make_train_step(net, 0.1), sizes, batch, steps, np.random.default_rng(0), 8)
    out = {"samples_per_s": steps * batch / dt, "init_seconds": init_s, "rows": int(sum(sizes))}
    if ckpt_dir:
        path = os.path.join(ckpt_dir, f"bench_{sizes_kind}.safetensors")
        t = time.time()
        checkpoint.save(path, list(net.trainable_params()), {"global_step": steps, "epoch": 0, "step_in_epoch": 0})
        out["ckpt_seconds"] = time.time() - t
        out["ckpt_bytes"] = os.path.getsize(path)
        os.remove(path)
    return out


def child_logreg(dataset):
    """Logistic regression on hashed one-hot features (2^20 buckets) + log dense, same split."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from src.data.reader import PackedBatches
    from src.training.metrics import ctr_metrics

    def load(split):
        parts = list(PackedBatches(dataset, split, 1 << 20))
        ids = np.concatenate([p[0] for p in parts])
        dense = np.concatenate([p[1] for p in parts])
        label = np.concatenate([p[2] for p in parts])[:, 0]
        n, s = ids.shape
        cols = ((ids.astype(np.int64) * 1000003 + np.arange(s)[None, :] * 7919) % (1 << 20)).reshape(-1)
        onehot = sparse.csr_matrix((np.ones(n * s, np.float32), cols, np.arange(0, n * s + 1, s)),
                                   shape=(n, 1 << 20))
        return sparse.hstack([onehot, sparse.csr_matrix(dense)], format="csr"), label
    xtr, ytr = load("train")
    xte, yte = load("test")
    t = time.time()
    model = LogisticRegression(C=0.05, max_iter=200, solver="lbfgs")
    model.fit(xtr, ytr)
    res = ctr_metrics(model.predict_proba(xte)[:, 1], yte)
    res["fit_seconds"] = time.time() - t
    return res


def child_best(dataset, prob_file):
    from src.tools.best_auc import best_test_metrics
    return best_test_metrics(dataset, prob_file)


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


def time_hybrid_steps(step, feed, sizes, batch, steps, rng, n_feeds, own_agreement=False):
    """time_steps for a hybrid-parallel rank: as the trainer does, the batches are routed in a data thread
    and each step's exchange capacity is agreed in the step before (src/training/exchange_feed.py: ExchangeFeed);
    own_agreement=True: each step agrees by a collective of its own instead (for comparison)."""
    from src.utils.progress import background, with_next
    feed_data = [(np.stack([rng.integers(0, s, batch) for s in sizes], 1).astype(np.int32),
                  rng.random((batch, N_DENSE)).astype(np.float32), (rng.random((batch, 1)) < 0.25).astype(np.float32))
                 for _ in range(n_feeds)]

    def run(n):
        need = None
        source = background(feed.routed(feed_data[i % n_feeds] for i in range(n)), depth=4)
        for (routed, dense, label), upcoming in with_next(source):
            _, agreed = feed.train_step(step, routed, dense, label, upcoming, need)
            need = None if own_agreement else agreed
    run(2)
    t = time.time()
    run(steps)
    return time.time() - t


def child_dist(mode, batch, steps, device, own_agreement=0):
    """One rank (or the single process) of a Kaggle-sized training run with random ids: prints its own
    samples/s (global batch) and peak RSS. Under msrun every rank prints one JSON line. Hybrid ranks use the
    default sharding plan (own_agreement=1: see time_hybrid_steps)."""
    import resource
    setup_context(device, None)
    from src.model.dlrm import build_model
    from src.model_utils.config import parse_cli
    from src.training.cost_model import exchange_is_alltoall
    from src.training.exchange_feed import ExchangeFeed
    from src.training.parallel import init_parallel
    from src.training.sharded_lookup import ShardedLookup
    from src.training.sharding import Router, make_plan
    from src.training.train_step import make_train_step
    cfg = parse_cli([f"--parallel_mode={mode}", f"--device_target={device}", f"--batch_size={batch}", *SGD])
    par = init_parallel(cfg.parallel_mode)
    rng = np.random.default_rng([7, par.rank])
    spec = spec_of(KAGGLE)
    plan = make_plan(spec, par.size, cfg.sharding_plan, batch) if par.hybrid else None
    t = time.time()
    net = build_model(spec, seed=1, segments=plan.segments(par.rank) if plan else None)
    init_s = time.time() - t
    if plan:
        router = Router(plan, par.rank)
        lookup = ShardedLookup(par, exchange_is_alltoall(device), router.rep_cols, router.ex_cols, spec.emb_dim)
        step = make_train_step(net, 0.1, 1.0, par, lookup, plan.replicated_rows)
        feed = ExchangeFeed(router)
        dt = time_hybrid_steps(step, feed, KAGGLE, batch, steps, rng, 4, bool(own_agreement))
    else:
        feed = None
        dt = time_steps(make_train_step(net, 0.1, parallel=par), KAGGLE, batch, steps, rng, 4)
    if par.distributed:                  # every rank finishes its steps before any leaves the cluster
        from mindspore.communication import release
        from src.training.collectives import Barrier
        Barrier()().asnumpy()
        release()
    return {"rank": par.rank, "size": par.size, "samples_per_s": steps * batch * par.size / dt,
            "own_agreements": feed.own_agreements if feed else 0,
            "table_rows": int(net.table.shape[0]), "init_seconds": init_s,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def child_collectives(device):
    """Milliseconds per AllReduce / AllGather of a few sizes on this backend (run under msrun)."""
    setup_context(device, None)
    from mindspore import Tensor, nn, ops
    from mindspore.communication import get_rank, init
    init()

    class Op(nn.Cell):
        def __init__(self, op):
            super().__init__()
            self.op = op

        def construct(self, x):
            return self.op(x)
    out = {"rank": get_rank()}
    for name, op in (("allreduce", ops.AllReduce()), ("allgather", ops.AllGather())):
        cell = Op(op)
        for mb in (0.004, 0.4, 3.4):
            x = Tensor(np.ones(int(mb * 2 ** 20 / 4), np.float32))
            cell(x).asnumpy()
            t = time.time()
            for _ in range(10):
                y = cell(x)
            y.asnumpy()
            out[f"{name} {mb} MB"] = (time.time() - t) / 10 * 1000.0
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


MLPERF_TB_SIZES = [39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10, 2208,
                   11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36]
ARCHS = {   # name -> (train.py options, table sizes)
    "Kaggle (dim 16, 13-512-256-64-16, top 512-256-1)": ([], KAGGLE),
    "MLPerf Terabyte (dim 128, 13-512-256-128, top 1024-1024-512-256-1)":
        (["--data_emb_dim=128", "--bottom_mlp_args=[512,256,128]", "--top_mlp_args=[1024,1024,512,256,1]"],
         MLPERF_TB_SIZES),
}


def child_compute(arch, batch, steps, device):
    """Seconds per sample of one process's train step for an architecture, over small tables (1000 rows per
    slot: the step's cost does not grow with the table, README "Training"), random ids, SGD."""
    setup_context(device, None)
    from src.model.dlrm import build_model
    from src.training.train_step import make_train_step
    sizes = [1000] * N_SLOTS
    step = make_train_step(build_model(spec_of(sizes, *ARCHS[arch][0])), 0.1)
    dt = time_steps(step, sizes, batch, steps, np.random.default_rng(0), 2)
    return {"seconds_per_sample": dt / (steps * batch)}


def multi_hot_spec(sizes, slots_sizes) -> DLRMSpec:
    """The default config's model with SGD over Criteo-layout tables of `sizes` rows, slot t holding slots_sizes[t]
    ids a sample (MLPerf's multi-hot Criteo, src/data/multi_hot_criteo.py)."""
    from src.data.multi_hot_criteo import multi_hot_features
    from src.model_utils.config import parse_cli
    from src.model_utils.spec import Feature
    features = [Feature(**f) for f in multi_hot_features(criteo_features(sizes), slots_sizes)]
    return DLRMSpec.from_config(parse_cli(["--optimizer=sgd", *DOT]), features)


def child_multihot(kind, batch, steps, device):
    """Seconds per step of one process's train step over the Kaggle tables (33.8M rows), random ids uniform per
    table: one-hot (26 ids a sample) or MLPerf's multi-hot sizes (214 ids a sample, sum-pooled)."""
    setup_context(device, None)
    from src.data.multi_hot_criteo import MLPERF_SIZES
    from src.model.dlrm import build_model
    from src.training.train_step import make_train_step
    spec = multi_hot_spec(KAGGLE, MLPERF_SIZES if kind == "multihot" else [1] * N_SLOTS)
    columns = [spec.table_sizes[s] for s in spec.lookup_slots]          # rows of each ids column's table
    step = make_train_step(build_model(spec, seed=1), 0.1)
    dt = time_steps(step, columns, batch, steps, np.random.default_rng(0), 3)
    return {"samples_per_s": steps * batch / dt, "lookups": spec.lookups}


def bench_multihot(device, batch=16384, steps=8, rounds=2):
    """Multi-hot (MLPerf's 214 ids a sample) against one-hot training steps at the same batch, interleaved."""
    print(f"== multi-hot training step: Kaggle tables, MLPerf's multi_hot_sizes (214 ids a sample, sum pooling) vs "
          f"one-hot (26), batch {batch}, {steps} steps, interleaved x{rounds}")
    got = {"onehot": [], "multihot": []}
    for _ in range(rounds):
        for kind in ("onehot", "multihot"):
            res, peak = run_child("multihot", kind, str(batch), str(steps), device)
            got[kind].append(res["samples_per_s"])
            print(f"{kind}: {res['samples_per_s']:,.0f} samples/s ({res['lookups']} ids a sample), peak RSS {gb(peak)}")
    ratio = np.mean(got["multihot"]) / np.mean(got["onehot"])
    print(f"multi-hot / one-hot: {ratio:.2f}x (target >= 0.5x)")


CHILDREN = {"compute": child_compute, "multihot": child_multihot, "preprocess": child_preprocess, "preprocess_csv": child_preprocess_csv,
            "train": child_train, "train_epoch": child_train_epoch,
            "tables": child_tables, "logreg": child_logreg, "best": child_best, "export": child_export,
            "infer": child_infer, "dist": child_dist, "collectives": child_collectives,
            "export_pair": child_export_pair, "compact_auc": child_compact_auc, "to_target": quality.child_to_target,
            "gemm": gemm.child_gemm, "kernels": gemm.child_kernels,
            "epochs": quality.child_epochs, "runtime_speed": scoring.runtime_speed,
            "against_eval": scoring.against_eval, "recipe": recipes.child_recipe}


def _typed(v):
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def _tree_memory(root: int):
    """(sum of PSS, largest RSS) in bytes over process `root` and its descendants (Linux /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                pass
    todo, pss, rss = [root], 0, 0
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ln.split(":")[0] in ("Rss", "Pss")}
            pss, rss = pss + fields.get("Pss", 0), max(rss, fields.get("Rss", 0))
        except OSError:
            pass
    return pss, rss


def run_sampled(cmd, every=0.25, stdout=None):
    """Run cmd (from the repo root); returns (wall seconds, peak total PSS of its process tree, peak single
    RSS). PSS counts pages shared by the worker processes once. `stdout` (a list) receives the command's output."""
    import tempfile
    t = time.time()
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True,
                                env=dict(os.environ, GLOG_v="3"))
        peak_pss = peak_rss = 0
        while proc.poll() is None:
            pss, rss = _tree_memory(proc.pid)
            peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
            time.sleep(every)
        wall = time.time() - t
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd} failed ({proc.returncode}): {err.read()[-1500:]}")
        if stdout is not None:
            out.seek(0)
            stdout.append(out.read())
    return wall, peak_pss, peak_rss


def _gzip_of(sources, dst):
    """dst (.gz) holding the sources' text one after the other, written whole or not at all."""
    import gzip as gz
    with gz.open(dst + ".tmp", "wb") as out:
        for path in sources:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out)
    os.replace(dst + ".tmp", dst)


def _mixed_days(work):
    """4 synthetic day files of 250,000 lines, the last gzip-compressed (made once)."""
    d = os.path.join(work, "days_4x250000_mixed")
    if not os.path.isfile(os.path.join(d, "day_3.gz")):
        plain = _days(work, 4, 250_000)
        os.makedirs(d, exist_ok=True)
        for k in range(3):
            shutil.copyfile(os.path.join(plain, f"day_{k}"), os.path.join(d, f"day_{k}"))
        _gzip_of([os.path.join(plain, "day_3")], os.path.join(d, "day_3.gz"))
    return d


def _big_gzip_day(work):
    """day_0.gz of 1,000,000 lines (4 pieces) and day_1 of 100,000 (made once from the 500k-line day files): one gzip
    task holds most of the work."""
    d = os.path.join(work, "days_gz1000000_100000")
    if not os.path.isfile(os.path.join(d, "day_1")):
        src = _days(work, 8, 500_000)
        os.makedirs(d, exist_ok=True)
        _gzip_of([os.path.join(src, "day_0"), os.path.join(src, "day_1")], os.path.join(d, "day_0.gz"))
        with open(os.path.join(src, "day_2"), "rb") as f, open(os.path.join(d, "day_1.tmp"), "wb") as g:
            g.writelines(line for _, line in zip(range(100_000), f))
        os.replace(os.path.join(d, "day_1.tmp"), os.path.join(d, "day_1"))
    return d


def bench_preprocess_workers(work, rounds=2):
    """Worker counts against each other on day files, hashing (MLPerf's max_ind_range), command wall time with process
    start, interleaved `rounds` times: 1M lines in 4 files (one gzip), a gzip file of 1M lines beside a plain one of
    100k, 4M lines in 8 plain files; workers 1, auto, 2, and 1 held to one core; per run the phase times preprocessing prints."""
    print("== preprocessing workers (day files, hashing max_ind_range=40M; command wall time including process start; "
          f"{rounds} interleaved rounds, the best of each)")
    # "1 on one core": workers=1 held to one CPU (taskset), so its tokeniser runs on one thread: the rate of one core
    variants = {"1": [], "auto": [], "2": [], "1 on one core": ["taskset", "-c", "0"] if shutil.which("taskset") else None}
    for name, d, lines in (("1M lines in 4 day files of 250k (day_3.gz)", _mixed_days(work), 1_000_000),
                           ("1.1M lines: a gzip day file of 1M, a plain one of 100k", _big_gzip_day(work), 1_100_000),
                           ("4M lines in 8 day files of 500k", _days(work, 8, 500_000), 4_000_000)):
        walls, phases = {}, {}
        for r in range(rounds):
            for w in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                if variants[w] is None:
                    continue
                out = []
                cmd = variants[w] + _preprocess_cmd(d, f"--workers={w.split()[0]}", "--max_ind_range=40000000")
                wall, _, _ = run_sampled(cmd, stdout=out)
                walls.setdefault(w, []).append(wall)
                phases[w] = next((x for x in out[0].splitlines() if x.startswith("wall time by phase")), "")
        for w in walls:
            best = min(walls[w])
            print(f"{name}, workers={w}: {lines / best:,.0f} lines/s ({best:.1f} s; {min(walls['1']) / best:.2f}x "
                  f"workers=1); {phases[w]}", flush=True)


def _days(work, days, lines, gz=False):
    """`days` synthetic day files of `lines` lines each (made once)."""
    d = os.path.join(work, f"days_{days}x{lines}" + ("_gz" if gz else ""))
    if not os.path.isfile(os.path.join(d, f"day_{days - 1}" + (".gz" if gz else ""))):
        from src.data.synthetic import generate_days
        generate_days(d, days, lines, gzip=gz)
    return d


def _preprocess_cmd(data_dir, *extra):
    return [sys.executable, "src/preprocess_data.py", f"--data_path={data_dir}", *extra]


def bench_plan(device):
    """The cost model: per-rank memory and bytes per step from the planner (what --plan_only prints) and a
    modelled step time, for N = 8, 64, 512 at batch 16384 per rank, Kaggle and MLPerf Terabyte."""
    from src.model_utils.config import parse_cli
    from src.training.memory_estimate import estimate
    links = {"25 Gb/s Ethernet": 25e9 / 8, "100 Gb/s InfiniBand": 100e9 / 8}
    print("== cost model (hybrid_parallel, default sharding plan, batch 16384 per rank, SGD; step = batch x compute "
          "per sample measured here on 2 CPU cores + bytes sent / link bandwidth, no overlap)")
    print("| configuration | N | sharding (row / table / replicated) | per-rank memory | bytes/rank/step: all-to-all "
          "(GPU/Ascend) | data_parallel | step, " + " | step, ".join(links) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(links))
    for arch, (opts, sizes) in ARCHS.items():
        res, _ = run_child("compute", arch, "4096", "6", device)
        cfg = parse_cli([*SGD, *opts, "--parallel_mode=hybrid_parallel", "--batch_size=16384", "--device_target=GPU"])
        dp_cfg = parse_cli([*SGD, *opts, "--parallel_mode=data_parallel", "--batch_size=16384", "--device_target=GPU"])
        for n in (8, 64, 512):
            spec = DLRMSpec.from_config(cfg, criteo_features(sizes))
            p, dp = estimate(cfg, spec, n), estimate(dp_cfg, spec, n)
            kinds = "/".join(str(p.sharding.kinds.count(k)) for k in ("row", "table", "replicated"))
            steps = [f"{p.step_seconds(res['seconds_per_sample'], bw):.2f} s" for bw in links.values()]
            print(f"| {arch}, compute {res['seconds_per_sample'] * 1e6:.1f} us/sample | {n} | {kinds} | {gb(p.total)} | "
                  f"{p.exchange['total'] / 2 ** 20:.0f} MB | {dp.exchange['total'] / 2 ** 30:.2f} GB | "
                  + " | ".join(steps) + " |")


def bench_terabyte(work, device):
    """Day files: workers 1 vs 2, memory flat in the lines, the full Kaggle size, 24 days then one epoch."""
    print("== terabyte layout (day files; command wall time including process start, peak memory = PSS of all "
          "processes)")
    mlperf = "--max_ind_range=40000000"
    small, big = _days(work, 8, 125_000), _days(work, 8, 500_000)
    rates = {}
    for mode, extra in (("hash (MLPerf max_ind_range=40M)", [mlperf]), ("vocabulary (threshold 1)", [])):
        for w in (1, 2):
            wall, pss, rss = run_sampled(_preprocess_cmd(big, f"--workers={w}", *extra))
            rates[(mode, w)] = 4_000_000 / wall
            print(f"day files 8 x 500,000 lines, {mode}, workers={w}: {4_000_000 / wall:,.0f} lines/s ({wall:.1f}s), "
                  f"peak memory {gb(pss)} (largest process {gb(rss)})")
        print(f"  workers=2 / workers=1: {rates[(mode, 2)] / rates[(mode, 1)]:.2f}x")
    bench_memory_flat(small, big, mlperf)
    bench_kaggle_size(work)
    bench_24_days(work, device)


def bench_memory_flat(small, big, *extra):
    """Peak memory for 1M and 4M lines with the same settings (16 MiB pieces and 100k-line parts, so that
    both sets are made of full pieces and parts: memory is per piece and per part, not per line)."""
    mem = {}
    for d, n in ((small, 1_000_000), (big, 4_000_000)):
        wall, pss, rss = run_sampled(_preprocess_cmd(d, "--workers=2", "--chunk_bytes=16777216",
                                                     "--shuffle_bucket_lines=100000", *extra))
        mem[n] = pss
        print(f"memory vs lines: {n:,} lines, workers=2, hash, chunk_bytes 16 MiB, 100k-line parts: peak memory "
              f"{gb(pss)} (largest process {gb(rss)})")
    print(f"  peak memory 4M / 1M lines: {mem[4_000_000] / mem[1_000_000]:.2f}x")


def bench_kaggle_size(work):
    """45,840,617 synthetic lines with Kaggle-size vocabularies, vocabulary mode, the default worker count."""
    lines = 45_840_617
    d = os.path.join(work, "kaggle_full")
    if not os.path.isfile(os.path.join(d, "train.txt")):
        from src.data.synthetic import generate
        generate(os.path.join(d, "train.txt"), lines, vocab_scale=1.0)
    out = []
    wall, pss, rss = run_sampled(_preprocess_cmd(d, f"--train_line_count={lines}"), stdout=out)
    meta = json.load(open(os.path.join(d, "mindrecord", "metadata.json")))
    print(next((x for x in out[0].splitlines() if x.startswith("wall time by phase")), ""))
    print(f"Kaggle size: {lines:,} lines, {meta['total_rows']:,} embedding rows (threshold 1), default workers: "
          f"{wall / 60:.1f} min ({lines / wall:,.0f} lines/s), peak memory {gb(pss)} (largest process {gb(rss)})")


def bench_24_days(work, device):
    """24 synthetic days of 200,000 lines: preprocess (max_ind_range 1M), one epoch at batch 16384, eval."""
    d = _days(work, 24, 200_000)
    wall, pss, rss = run_sampled(_preprocess_cmd(d, "--workers=2", "--max_ind_range=1000000"))
    print(f"24 days x 200,000 lines, max_ind_range=1,000,000, workers=2: preprocess {wall:.0f}s "
          f"({4_800_000 / wall:,.0f} lines/s), peak memory {gb(pss)}")
    config = config_file(device)
    res, peak = run_child("train_epoch", os.path.join(d, "mindrecord"), device, config, *SGD, "--batch_size=16384")
    samples = res["steps"] * res["batch"]
    print(f"  train one epoch, batch 16384, {res['steps']} steps over {samples:,} samples (26 x 1M rows x dim 16): "
          f"{samples / res['train_seconds']:,.0f} samples/s, peak RSS {gb(peak)}; held-out day_23: "
          f"auc {res['auc']:.4f}, logloss {res['logloss']:.4f}")


# ---------------------------------------------------------------- suites
def bench_preprocess(work):
    print("== preprocess (synthetic Criteo text -> packed MindRecord, default workers: count lines, parse pieces, "
          "merge counts, write parts)")
    rss = {}
    for lines in (1_000_000, 4_000_000):
        d = ensure_synthetic(work, lines)
        t = time.time()
        res, peak = run_child("preprocess", d, str(lines))
        wall = time.time() - t
        rss[lines] = peak
        print(f"preprocess {lines:>9,} lines: {lines / res['seconds']:,.0f} lines/s in-process "
              f"({res['seconds']:.2f}s), {lines / wall:,.0f} lines/s with process start ({wall:.2f}s), "
              f"peak RSS {gb(peak)}, {res['rows']:,} embedding rows")
    print(f"peak RSS 4M / 1M = {rss[4_000_000] / rss[1_000_000]:.2f}x")


def bench_train(work, device, lines):
    config = config_file(device)
    d, dataset = _dataset(work, lines)
    print(f"== train ({device}, Kaggle architecture 13-512-256-64-16 / 367-512-256-1, dim 16, SGD; "
          f"{lines:,}-line synthetic dataset)")
    for batch, steps in ((128, 2000), (16384, 12)):
        res, peak = run_child("train", dataset, str(batch), str(steps), device, config)
        print(f"train end to end, batch {batch:>5}: {res['samples_per_s']:,.0f} samples/s "
              f"(data loading included, {steps} steps), peak RSS {gb(peak)}")
    for kind in ("small", "kaggle"):
        res, peak = run_child("tables", kind, "128", "2000", device, work)
        print(f"train step, batch 128, {kind} tables ({res['rows']:,} rows): {res['samples_per_s']:,.0f} samples/s "
              f"(random ids, no data loading), init {res['init_seconds']:.1f}s, peak RSS {gb(peak)}, "
              f"checkpoint {gb(res['ckpt_bytes'])} in {res['ckpt_seconds']:.1f}s")
    print("== quality after one epoch")
    res, peak = run_child("train_epoch", dataset, device, config, *SGD)
    print(f"eval batch 16384: {res['eval_samples_per_s']:,.0f} samples/s")
    print(f"DLRM 1 epoch (batch {res['batch']}, {res['steps']} steps, {res['train_seconds']:.0f}s): "
          f"auc {res['auc']:.4f}, logloss {res['logloss']:.4f}, accuracy {res['accuracy']:.4f}")
    lr, _ = run_child("logreg", dataset)
    print(f"logistic regression (hashed one-hot, 2^20 buckets, + log dense): auc {lr['auc']:.4f}, "
          f"logloss {lr['logloss']:.4f} (fit {lr['fit_seconds']:.0f}s)")
    best, _ = run_child("best", dataset, os.path.join(d, "train_prob.npy"))
    print(f"best achievable (generator's true probabilities): auc {best['auc']:.4f}, logloss {best['logloss']:.4f}")
    print(f"DLRM - logistic regression: {res['auc'] - lr['auc']:+.4f} AUC; best - DLRM: {best['auc'] - res['auc']:+.4f}")


def _dataset(work, lines):
    """The suites' synthetic dataset of `lines` lines (generated and preprocessed once)."""
    d = ensure_synthetic(work, lines)
    dataset = os.path.join(d, "mindrecord")
    if not os.path.isfile(os.path.join(dataset, "metadata.json")):
        run_child("preprocess", d, str(lines))
    return d, dataset


def bench_quality(work, device, lines, seeds, recipes=""):
    """Test AUC after one epoch per recipe over `seeds` seeds (src/tools/benchmarks/quality.py), next to logistic
    regression and the best achievable AUC."""
    d, dataset = _dataset(work, lines)
    print(f"== quality over {seeds} seeds ({device}; {lines:,}-line synthetic dataset, 1 epoch, test split)")
    best, _ = run_child("best", dataset, os.path.join(d, "train_prob.npy"))
    lr, _ = run_child("logreg", dataset)
    print(f"best achievable: auc {best['auc']:.4f}, logloss {best['logloss']:.4f}; logistic regression: auc "
          f"{lr['auc']:.4f}, logloss {lr['logloss']:.4f}")
    quality.bench_quality(run_child, config_file(device), dataset, device, seeds, recipes)


def bench_time_to_quality(work, device, lines, seeds, target, recipes_=""):
    """Time to a fixed validation AUC per recipe over `seeds` seeds (src/tools/benchmarks/quality.py), on the
    recipes suite's gen_a dataset (the same 1M synthetic lines, with the default validation split)."""
    dataset = recipes.prepared(work, "gen_a", lines)
    print(f"== time to quality over {seeds} seeds ({device}; {lines:,}-line synthetic dataset, validation split)")
    quality.bench_time_to_quality(run_child, config_file(device), dataset, device, seeds, target,
                                  recipes_)


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
    _, dataset = _dataset(work, lines)
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


def run_timed(cmd, env=None):
    """Run a command; returns (seconds, peak RSS bytes, output). A failure raises with its output's tail."""
    t = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.decode(errors='replace')[-2000:]}")
    return time.time() - t, usage.ru_maxrss * 1024, out.decode(errors="replace")


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


def run_ranks(n, *args):
    """`_child` under msrun with n ranks on 127.0.0.1: the JSON line of every rank."""
    import glob
    import socket
    import tempfile
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logs = tempfile.mkdtemp(prefix="bench_msrun_")
    env = dict(os.environ, GLOG_v="3", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               DLRM_LOCAL_RANKS=str(n))                 # as the launchers set it
    r = subprocess.run(["msrun", f"--worker_num={n}", f"--local_worker_num={n}", "--master_addr=127.0.0.1",
                        f"--master_port={port}", "--join=True", f"--log_dir={logs}", "python", "-m", "src.tools.benchmark",
                        "_child", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    out = []
    for path in sorted(glob.glob(os.path.join(logs, "worker_*.log"))):
        lines = [line for line in open(path, encoding="utf-8") if line.startswith("{")]
        out += [json.loads(lines[-1])] if lines else []
    if r.returncode != 0 and len(out) < n:
        raise RuntimeError(f"msrun benchmark failed ({r.returncode}); logs in {logs}")
    if r.returncode != 0:
        # Every rank finished its steps and its closing barrier and reported: the figures stand. Seen on
        # this machine under load: the scheduler then flags a rank that has left as timed out.
        sched = open(os.path.join(logs, "scheduler.log"), encoding="utf-8", errors="replace").read()
        why = next((line.strip() for line in sched.splitlines() if "[ERROR]" in line), "no error line")
        print(f"  (msrun exited with {r.returncode} after all {n} ranks reported; scheduler: {why[-160:]}; "
              f"logs in {logs})", file=sys.stderr)
    else:
        shutil.rmtree(logs)
    return out


def bench_collectives(device):
    print(f"== collectives, 2 ranks on {device} (rank 0's time per call)")
    for k, v in run_ranks(2, "collectives", device)[0].items():
        if k != "rank":
            print(f"{k}: {v:.2f} ms ({float(k.split()[1]) / v * 1000:,.0f} MB/s)")


def _plan_vs_measured(per_rank, single_peak, hybrid_ranks, dp_ranks):
    """--plan_only's per-rank memory next to the measured peaks of the same runs."""
    from src.model_utils.config import parse_cli
    from src.training.memory_estimate import estimate
    rows = []
    for mode, n, batch, measured in (("stand_alone", 1, 2 * per_rank, single_peak),
                                     ("hybrid_parallel", 2, per_rank, max(r["peak_rss"] for r in hybrid_ranks)),
                                     ("data_parallel", 2, per_rank, max(r["peak_rss"] for r in dp_ranks))):
        cfg = parse_cli([f"--parallel_mode={mode}", f"--batch_size={batch}", *SGD])
        p = estimate(cfg, DLRMSpec.from_config(cfg, criteo_features(KAGGLE)), n, False)
        rows.append(f"{mode} x{n}: plan {gb(p.total)}, measured {gb(measured)} ({p.total / measured - 1:+.0%})")
    print("  --plan_only memory vs measured peak: " + "; ".join(rows))


def _two_alone(per_rank, steps, device):
    """Two independent single processes at `per_rank` each, at the same time, with no communication (each
    told it shares the machine, as a rank is): the compute ceiling of 2 ranks on this machine."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: run_child("dist", "stand_alone", str(per_rank), str(steps), device,
                                                 env={"DLRM_LOCAL_RANKS": "2"}), range(2)))
    rate = min(r["samples_per_s"] for r, _ in done)
    print(f"  2 independent processes at {per_rank} each, same time, no communication: {2 * rate:,.0f} samples/s "
          f"together (the compute ceiling of 2 ranks here)")
    return 2 * rate


def bench_parallel(device):
    bench_collectives(device)
    print(f"== distributed training ({device}; Kaggle architecture and table sizes, 33,762,577 rows, SGD, random ids; "
          f"{os.cpu_count()} cores shared by all ranks)")
    # This machine's speed drifts by up to +-30% between runs: single and 2-rank runs are interleaved
    # twice and both figures shown; the ratio uses their means.
    for per_rank, steps in ((1024, 60), (8192, 12), (16384, 8)):
        singles, hybrids = [], []
        for _ in range(2):
            base, peak = run_child("dist", "stand_alone", str(2 * per_rank), str(steps), device)
            singles.append(base["samples_per_s"])
            ranks = run_ranks(2, "dist", "hybrid_parallel", str(per_rank), str(steps), device)
            hybrids.append(min(r["samples_per_s"] for r in ranks))
        dp = run_ranks(2, "dist", "data_parallel", str(per_rank), str(steps), device)
        one = float(np.mean(singles))
        print(f"global batch {2 * per_rank}: 1 process {' / '.join(f'{v:,.0f}' for v in singles)} samples/s, "
              f"peak RSS {gb(peak)}")
        print(f"  2 ranks hybrid_parallel, batch {per_rank} per rank: {' / '.join(f'{v:,.0f}' for v in hybrids)} "
              f"samples/s ({np.mean(hybrids) / one:.2f}x), per-rank peak RSS "
              + ", ".join(f"rank {r['rank']} {gb(r['peak_rss'])} ({r['table_rows']:,} rows)" for r in ranks)
              + f"; steps that agreed on their exchange capacity by a collective of their own: "
                f"{ranks[0]['own_agreements']} of {steps + 2} (the others agreed in the step before)")
        rate = min(r["samples_per_s"] for r in dp)
        print(f"  2 ranks data_parallel, batch {per_rank} per rank: {rate:,.0f} samples/s ({rate / one:.2f}x), "
              f"per-rank peak RSS " + ", ".join(f"rank {r['rank']} {gb(r['peak_rss'])}" for r in dp))
        if per_rank < 16384:
            print(f"  ({np.mean(hybrids) / _two_alone(per_rank, steps, device):.2f}x of that ceiling for hybrid)")
        if per_rank == 1024:
            _agreement_ab(per_rank, steps, device)
        _plan_vs_measured(per_rank, peak, ranks, dp)
    _bytes_from_plan()


def _agreement_ab(per_rank, steps, device):
    """Hybrid with the capacity agreed in the step before against a collective of its own per step,
    interleaved three times (A B A B A B)."""
    rates = {0: [], 1: []}
    for _ in range(3):
        for own in (0, 1):
            ranks = run_ranks(2, "dist", "hybrid_parallel", str(per_rank), str(steps), device, str(own))
            rates[own].append(min(r["samples_per_s"] for r in ranks))
    print(f"  hybrid, capacity agreed in the step before: {' / '.join(f'{v:,.0f}' for v in rates[0])} samples/s; "
          f"by its own collective each step: {' / '.join(f'{v:,.0f}' for v in rates[1])} "
          f"({np.mean(rates[0]) / np.mean(rates[1]):.2f}x)")


def _bytes_from_plan():
    """Bytes each rank sends per step, from the planner, for N = 2, 8, 64 (Kaggle, batch 16384 per rank)."""
    from src.model_utils.config import parse_cli
    from src.training.memory_estimate import estimate
    print("bytes sent per rank per step at batch 16384 per rank, Kaggle tables, from the planner (--plan_only):")
    for n in (2, 8, 64):
        out = []
        for mode, device in (("hybrid_parallel", "GPU"), ("hybrid_parallel", "CPU"), ("data_parallel", "GPU")):
            cfg = parse_cli([f"--parallel_mode={mode}", "--batch_size=16384", f"--device_target={device}", *SGD])
            p = estimate(cfg, DLRMSpec.from_config(cfg, criteo_features(KAGGLE)), n)
            what = f"{mode}{' (CPU: AllGather rounds)' if device == 'CPU' else ''}"
            out.append(f"{what} {p.exchange['total'] / 2 ** 20:,.1f} MB")
        print(f"  N={n}: " + "; ".join(out))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        res = CHILDREN[argv[1]](*[_typed(a) for a in argv[2:]])
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", choices=["preprocess", "csv", "train", "quality", "compact", "infer", "infer_cpp", "parallel",
                                      "collectives", "terabyte", "memory_flat", "plan", "multihot", "csv_multihot",
                                      "time_to_quality", "real_rows", "gemm", "kernels", "preprocess_workers", "kaggle_size",
                                      "predict", "serve", "recipes", "seed_spread", "all"])
    ap.add_argument("--seeds", type=int, default=0, help="quality (default 5) and time_to_quality (default 3): seeds "
                    "per recipe: 123, then 1, 2, ...")
    ap.add_argument("--recipes", default="", help="quality, time_to_quality, real_rows: comma-separated recipes "
                    f"({', '.join(quality.RECIPES)}; default: all; time_to_quality: the old and the new default)")
    ap.add_argument("--target_auc", type=float, default=0.777, help="time_to_quality: the AUC to reach (default: "
                    "the old default's one-epoch AUC, 0.7798 ± 0.0022 over 5 seeds, taken at its lowest seed (0.7774) "
                    "so that every seed of it reaches the target within its epoch)")
    ap.add_argument("--datasets", default="", help="recipes: comma-separated datasets (default: all five)")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench_out"))
    ap.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"])
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    print(f"benchmark on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
    if args.suite in ("preprocess", "all"):
        bench_preprocess(args.work)
    if args.suite in ("preprocess_workers", "all"):
        bench_preprocess_workers(args.work)
    if args.suite in ("csv", "all"):
        bench_preprocess_csv(args.work, args.lines)
    if args.suite in ("csv", "csv_multihot", "all"):
        bench_preprocess_csv(args.work, args.lines, tags=True)
    if args.suite in ("multihot", "all"):
        bench_multihot(args.device_target)
    if args.suite in ("train", "all"):
        bench_train(args.work, args.device_target, args.lines)
    if args.suite in ("quality", "all"):
        bench_quality(args.work, args.device_target, args.lines, args.seeds or 5, args.recipes)
    if args.suite in ("real_rows", "all"):
        quality.bench_real_rows(run_child, ROOT, config_file(args.device_target), args.work,
                                args.device_target, names=args.recipes)
    if args.suite in ("time_to_quality", "all"):
        bench_time_to_quality(args.work, args.device_target, args.lines, args.seeds or 3, args.target_auc,
                              args.recipes)
    if args.suite in ("gemm", "all"):
        gemm.bench_gemm(run_child, config_file(args.device_target), args.device_target)
    if args.suite in ("kernels", "all"):
        gemm.bench_kernels(run_child, config_file(args.device_target), args.device_target)
    if args.suite in ("infer", "all"):
        bench_infer(args.work, args.device_target)
    if args.suite in ("compact", "all"):
        bench_compact(args.work, args.device_target, args.lines)
    if args.suite in ("infer", "infer_cpp", "all"):
        bench_infer_cpp(args.work, args.device_target)
    if args.suite == "collectives":
        bench_collectives(args.device_target)
    if args.suite in ("parallel", "all"):
        bench_parallel(args.device_target)
    if args.suite in ("terabyte", "all"):
        bench_terabyte(args.work, args.device_target)
    if args.suite in ("plan", "all"):
        bench_plan(args.device_target)
    if args.suite in ("predict", "all"):
        scoring.bench_predict(args.work, lambda: _dataset(args.work, 1_000_000))
        scoring.bench_runtimes(run_child, args.work, lambda: _dataset(args.work, 1_000_000))
    if args.suite in ("serve", "all"):
        scoring.bench_serve(args.work, lambda: _dataset(args.work, 1_000_000))
    if args.suite == "recipes":
        recipes.bench_recipes(run_child, args.work, args.seeds or 3, args.recipes, args.datasets, args.lines)
    if args.suite == "seed_spread":
        recipes.bench_seed_spread(run_child, args.work, args.recipes, args.datasets)
    if args.suite == "kaggle_size":
        bench_kaggle_size(args.work)
    if args.suite == "memory_flat":
        bench_memory_flat(_days(args.work, 8, 125_000), _days(args.work, 8, 500_000), "--max_ind_range=40000000")


if __name__ == "__main__":
    main()
