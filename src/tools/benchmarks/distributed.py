"""Distributed suites: 1 process against 2 ranks (hybrid and data parallel), the collectives' time per call, and
the cost model's plan for N = 8..512 ranks.

    python -m src.tools.benchmark parallel | collectives | plan
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from src.data.synthetic import KAGGLE_SIZES as KAGGLE, N_DENSE
from src.model_utils.spec import DLRMSpec, criteo_features
from src.tools.benchmarks.common import ROOT, SGD, gb, run_child, spec_of
from src.tools.benchmarks.training import ARCHS, time_steps
from src.utils.runtime import setup_context


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
