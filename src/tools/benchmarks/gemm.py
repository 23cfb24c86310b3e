"""How far the training step is from the machine's matrix-multiply limit, measured in one run.

    python -m src.tools.benchmark gemm [--device_target CPU]

For the Kaggle architecture at batch 16384 (random ids over small tables: the step's compute does not depend on
the table size) it measures:
  - the MatMul rate at the model's own layer shapes, MindSpore's (one graph holding every layer's forward,
    input-gradient and weight-gradient product) and numpy's (the same products);
  - the train step's samples/s with the default optimizer, as FLOP/s with DLRMSpec.flops_per_sample;
  - their ratio, and the step split into sub-graphs timed alone: the table gather, the forward pass and loss,
    forward + backward, and the rest (the optimizer's MLP and table updates);
  - dcn's step against dot's, per sample.
    python -m src.tools.benchmark kernels

counts the kernels of the batch-128 train step per optimizer (from the compiled graph's IR) and times the step.
"""
import os
import shutil
import time
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from src.data.synthetic import N_DENSE, N_SLOTS
from src.model_utils.spec import DLRMSpec

BATCH = 16384


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def numpy_matmul_seconds(shapes: Sequence[Tuple[int, int]], batch: int, repeats: int = 5) -> float:
    """Seconds for one pass of the layers' three products each in numpy float32 (median of `repeats`)."""
    rng = np.random.default_rng(0)
    data = [(rng.random((batch, i), np.float32), rng.random((o, i), np.float32), rng.random((batch, o), np.float32))
            for i, o in shapes]

    def one():
        for x, w, dy in data:
            x @ w.T
            dy @ w
            dy.T @ x
    return _median_seconds(one, repeats)


def mindspore_matmul_seconds(shapes: Sequence[Tuple[int, int]], batch: int, repeats: int = 5) -> float:
    """The same products in one MindSpore graph (GRAPH_MODE), seconds per call (median of `repeats`)."""
    from mindspore import Tensor
    from src.tools.benchmarks.gemm_cells import LayerProducts
    rng = np.random.default_rng(0)
    args = []
    for i, o in shapes:
        args += [Tensor(rng.random((batch, i), np.float32)), Tensor(rng.random((o, i), np.float32)),
                 Tensor(rng.random((batch, o), np.float32))]
    cell = LayerProducts(len(shapes))
    return _median_seconds(lambda: cell(*args)[-1].asnumpy(), repeats)


def step_parts(spec: DLRMSpec, batch: int, steps: int = 6, fused: bool = False) -> Dict[str, float]:
    """Seconds per step of the whole train step and of its sub-graphs (gather; forward + loss; forward + backward),
    random ids over the spec's tables; `fused`: with the fused CPU kernels (src/model/cpu_kernels/)."""
    from mindspore import Tensor
    from src.model.dlrm import build_model
    from src.tools.benchmarks.gemm_cells import Backward, Forward, Gather
    from src.training.train_step import make_train_step
    rng = np.random.default_rng(0)
    ids = Tensor(np.stack([rng.integers(0, n, batch) for n in spec.table_sizes], 1).astype(np.int32))
    dense = Tensor(rng.random((batch, spec.dense_dim)).astype(np.float32))
    label = Tensor((rng.random((batch, 1)) < 0.25).astype(np.float32))
    net = build_model(spec, cpu_kernels=fused)
    gather, forward = Gather(net), Forward(net)
    backward = Backward(forward, net.mlp_params())
    emb = gather(ids)
    step = make_train_step(net, 0.01)
    return {"gather": _median_seconds(lambda: gather(ids).asnumpy(), steps),
            "forward": _median_seconds(lambda: forward(dense, emb, label).asnumpy(), steps),
            "forward + backward": _median_seconds(lambda: backward(dense, emb, label)[0].asnumpy(), steps),
            "step": _median_seconds(lambda: step(ids, dense, label).asnumpy(), steps)}


def child_gemm(device: str, config: str, interaction: str, kernels: str = "stock") -> dict:
    """In one process: the MatMul rates at the layer shapes and the step's parts, for the config's model and
    optimizer with `interaction` (dot or dcn: 3 layers, rank 64) over 26 tables of 1,000 rows; `kernels`: stock or
    fused (the fused CPU kernels)."""
    from src.model_utils.config import parse_cli
    from src.model_utils.spec import criteo_features
    from src.utils.runtime import setup_context
    setup_context(device, None)
    dcn = ["--dcn_num_layers=3", "--dcn_low_rank_dim=64"] if interaction == "dcn" else []
    cfg = parse_cli([f"--config_path={config}", f"--interaction_op={interaction}", *dcn])
    spec = DLRMSpec.from_config(cfg, criteo_features([1000] * N_SLOTS))
    shapes = spec.layer_shapes()
    return {"optimizer": cfg.optimizer, "flops_per_sample": spec.flops_per_sample(),
            "matmul_flops": spec.matmul_flops(BATCH), "numpy_seconds": numpy_matmul_seconds(shapes, BATCH),
            "mindspore_seconds": mindspore_matmul_seconds(shapes, BATCH),
            **step_parts(spec, BATCH, fused=kernels == "fused")}


def bench_gemm(run_child, config: str, device: str) -> None:
    """Print the step's FLOP/s against the MatMul rates, the step's parts, and dcn against dot (one run)."""
    res = {kind: run_child("gemm", device, config, kind)[0] for kind in ("dot", "dcn", "dot")}
    dot, dcn = res["dot"], res["dcn"]          # dot ran twice: the second (warm machine) is kept
    ms_rate = dot["matmul_flops"] / dot["mindspore_seconds"]
    np_rate = dot["matmul_flops"] / dot["numpy_seconds"]
    step_rate = dot["flops_per_sample"] * BATCH / dot["step"]
    print(f"== the step against the MatMul limit (Kaggle architecture, dot, {dot['optimizer']}, batch {BATCH:,}, "
          f"{dot['flops_per_sample'] / 1e6:.2f} MFLOP a sample)")
    print(f"MatMul at the layer shapes (forward, input and weight gradients): MindSpore {ms_rate / 1e9:.1f} GFLOP/s "
          f"({dot['mindspore_seconds'] * 1e3:.1f} ms), numpy {np_rate / 1e9:.1f} GFLOP/s "
          f"({dot['numpy_seconds'] * 1e3:.1f} ms)")
    print(f"train step: {BATCH / dot['step']:,.0f} samples/s = {step_rate / 1e9:.1f} GFLOP/s: "
          f"{step_rate / ms_rate:.0%} of MindSpore's MatMul rate, {step_rate / np_rate:.0%} of numpy's")
    parts = {"gather": dot["gather"], "forward + loss": dot["forward"],
             "backward": dot["forward + backward"] - dot["forward"],
             "optimizer (MLP and table updates)": dot["step"] - dot["forward + backward"] - dot["gather"]}
    print("| part of the step | ms | share |\n|---|---|---|")
    for name, sec in parts.items():
        print(f"| {name} | {sec * 1e3:.1f} | {sec / dot['step']:.0%} |")
    print(f"| (of which MatMul at MindSpore's rate) | {dot['mindspore_seconds'] * 1e3:.1f} | "
          f"{dot['mindspore_seconds'] / dot['step']:.0%} |")
    print(f"| whole step | {dot['step'] * 1e3:.1f} | 100% |")
    print(f"dcn (3 layers, rank 64) step: {BATCH / dcn['step']:,.0f} samples/s; per sample dcn / dot = "
          f"{dcn['step'] / dot['step']:.2f}x")


NOT_KERNELS = ("UpdateState", "Load", "MakeTuple", "TupleGetItem", "Depend", "cell", "Return")


def count_kernels(ir_file: str) -> Dict[str, int]:
    """Kernels per primitive in a compiled graph's IR (graph_build_*.ir): the nodes that launch work, without
    MindSpore's bookkeeping nodes (UpdateState, Load, tuples, Depend)."""
    import re
    counts: Dict[str, int] = {}
    with open(ir_file) as f:
        for m in re.finditer(r"= (?:PrimFunc_|Prim::)?([A-Za-z0-9]+)\(", f.read()):
            if m.group(1) not in NOT_KERNELS:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def child_kernels(device: str, config: str, optimizer: str, interaction: str = "dot", batch: str = "128",
                  steps: str = "2000", kernels: str = "stock") -> dict:
    """The train step of the config's model with `optimizer` and `interaction` (dcn: 3 layers, rank 64) at `batch`
    (random ids, 26 tables of 1,000 rows, no data loading), with the stock ops or the fused CPU kernels (`kernels`):
    kernels in its compiled graph, milliseconds per step, and per step the process's CPU milliseconds and involuntary
    context switches (getrusage)."""
    import glob
    import resource
    import tempfile
    import mindspore as ms
    from mindspore import Tensor
    from src.model.dlrm import build_model
    from src.model_utils.config import parse_cli
    from src.model_utils.spec import criteo_features
    from src.training.train_step import make_train_step
    from src.utils.runtime import setup_context
    setup_context(device, None)
    ir_dir = tempfile.mkdtemp(prefix="dlrm_ir_")
    ms.set_context(save_graphs=True, save_graphs_path=ir_dir)
    cfg = parse_cli([f"--config_path={config}", f"--optimizer={optimizer}", f"--interaction_op={interaction}",
                     "--dcn_num_layers=3", "--dcn_low_rank_dim=64"])
    spec = DLRMSpec.from_config(cfg, criteo_features([1000] * N_SLOTS))
    batch, steps = int(batch), int(steps)
    step = make_train_step(build_model(spec, cpu_kernels=kernels == "fused"), 0.01)
    rng = np.random.default_rng(0)
    feed = [(Tensor(rng.integers(0, 1000, (batch, N_SLOTS)).astype(np.int32)),
             Tensor(rng.random((batch, N_DENSE)).astype(np.float32)),
             Tensor((rng.random((batch, 1)) < 0.25).astype(np.float32))) for _ in range(4)]
    step(*feed[0]).asnumpy()
    ms.set_context(save_graphs=False)
    kernels = count_kernels(sorted(glob.glob(os.path.join(ir_dir, "graph_build_*.ir")))[-1])
    shutil.rmtree(ir_dir, ignore_errors=True)
    for f in feed:
        step(*f).asnumpy()
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(steps):
        loss = step(*feed[i % 4])
    loss.asnumpy()
    wall, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"kernels": sum(kernels.values()), "by_primitive": kernels, "ms_per_step": wall / steps * 1e3,
            "cpu_ms_per_step": cpu / steps * 1e3,
            "involuntary_switches_per_step": (after.ru_nivcsw - before.ru_nivcsw) / steps}


def bench_kernels(run_child, config: str, device: str) -> None:
    """Kernels per train step and ms per step at batch 128 for each optimizer (random ids, no data loading)."""
    print("== kernels per train step, batch 128 (Kaggle architecture; random ids over small tables, no data "
          "loading; 2,000 steps)")
    print("| model | kernels per step | ms per step | most frequent kernels |\n|---|---|---|---|")
    for opt, inter in (("sgd", "dot"), ("adagrad", "dot"), ("adam", "dot"), ("adam", "dcn")):
        res, _ = run_child("kernels", device, config, opt, inter)
        top = sorted(res["by_primitive"].items(), key=lambda kv: -kv[1])[:6]
        print(f"| {inter} + {opt} | {res['kernels']} | {res['ms_per_step']:.2f} | "
              f"{', '.join(f'{k} {v}' for k, v in top)} |", flush=True)


def _ab_rows(run_child, config: str, device: str, dataset: str, kernels: str) -> Dict[str, float]:
    """One round of the fused-kernel A/B with `kernels` (stock or fused): the step alone (synchronised after every
    step: step_parts), the batch-128 step dispatched back to back, and train.py's loop end to end (data included)."""
    gemm_res, _ = run_child("gemm", device, config, "dot", kernels)
    numpy_rate = gemm_res["matmul_flops"] / gemm_res["numpy_seconds"]
    k128, _ = run_child("kernels", device, config, "sgd", "dot", "128", "3000", kernels)
    e128, _ = run_child("train", dataset, "128", "1500", device, config, f"--cpu_kernels={kernels}")
    e16k, _ = run_child("train", dataset, str(BATCH), "10", device, config, f"--cpu_kernels={kernels}")
    return {"step alone, batch 16384 dot: samples/s": BATCH / gemm_res["step"],
            "  the step alone's share of numpy's GEMM rate":
                gemm_res["flops_per_sample"] * BATCH / gemm_res["step"] / numpy_rate,
            "step back to back, batch 128 dot + SGD: ms/step": k128["ms_per_step"],
            "  kernels per step": k128["kernels"],
            "  CPU ms per step (both cores)": k128["cpu_ms_per_step"],
            "  involuntary context switches per step": k128["involuntary_switches_per_step"],
            "train.py loop, batch 128 dot + SGD: samples/s": e128["samples_per_s"],
            "train.py loop, batch 16384 dot + SGD: samples/s": e16k["samples_per_s"],
            "  the loop's share of numpy's GEMM rate":
                gemm_res["flops_per_sample"] * e16k["samples_per_s"] / numpy_rate}


def child_bf16(device: str) -> dict:
    """Whether MindSpore's CPU backend runs bfloat16 MatMul, BatchMatMul and nn.Dense.to_float(bfloat16): each
    'ok' or the first line of its error; and the CPU's bf16 flags."""
    import mindspore as ms
    from mindspore import Tensor, nn, ops
    from src.utils.runtime import setup_context
    setup_context(device, None)
    rng = np.random.default_rng(0)
    a, w = Tensor(rng.random((64, 32), np.float32)), Tensor(rng.random((32, 16), np.float32))

    class Dense(nn.Cell):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(32, 16).to_float(ms.bfloat16)

        def construct(self, x):
            return self.dense(x).astype(ms.float32)
    trials = {"MatMul": lambda: ops.matmul(a.astype(ms.bfloat16), w.astype(ms.bfloat16)).astype(ms.float32),
              "BatchMatMul": lambda: ops.bmm(a.astype(ms.bfloat16).expand_dims(0),
                                             w.astype(ms.bfloat16).expand_dims(0)).astype(ms.float32),
              "nn.Dense.to_float(bfloat16)": lambda: Dense()(a)}
    out = {}
    for name, fn in trials.items():
        try:
            fn().asnumpy()
            out[name] = "ok"
        except (RuntimeError, TypeError, ValueError) as exc:
            out[name] = next((ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("-")),
                             type(exc).__name__)
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    out["cpu"] = " ".join(sorted({f for f in flags if "bf16" in f or f.startswith("amx")})) or "no bf16 flags"
    return out


def bench_fused(run_child, config: str, device: str, dataset: str, rounds: int = 3) -> None:
    """The fused CPU kernels against the stock ops, interleaved `rounds` times (stock, fused, stock, fused, ...),
    then whether the CPU backend has bf16 GEMMs."""
    print(f"== fused CPU kernels (src/model/cpu_kernels/) vs MindSpore's stock ops, interleaved x{rounds} "
          f"(Kaggle architecture; the step alone: random ids over 26 tables of 1,000 rows; train.py's loop: "
          f"{dataset})")
    got: Dict[str, Dict[str, list]] = {"stock": {}, "fused": {}}
    for r in range(rounds):
        for kind in ("stock", "fused"):
            for name, value in _ab_rows(run_child, config, device, dataset, kind).items():
                got[kind].setdefault(name, []).append(value)
            print(f"round {r + 1} {kind}: " + ", ".join(f"{k.strip()} {v[-1]:.4g}" for k, v in got[kind].items()),
                  flush=True)
    print("| figure (median of the rounds) | stock | fused | fused / stock |\n|---|---|---|---|")
    for name in got["stock"]:
        a, b = float(np.median(got["stock"][name])), float(np.median(got["fused"][name]))
        print(f"| {name} | {a:.4g} | {b:.4g} | {b / a:.3f} |")
    bf16, _ = run_child("bf16", device)
    print(f"bf16 on MindSpore's CPU backend (CPU flags: {bf16.pop('cpu')}): " +
          "; ".join(f"{k}: {v}" for k, v in bf16.items()))


PROFILES = {   # name -> (train.py options of the model, batch, multi-hot)
    "default recipe (dcn + Adam), batch 4096": ([], 4096, False),
    "dot + SGD, batch 16384": (["--interaction_op=dot", "--optimizer=sgd"], BATCH, False),
    "dot + SGD, MLPerf multi-hot sizes, batch 16384": (["--interaction_op=dot", "--optimizer=sgd"], BATCH, True),
}


def child_profile(device: str, config: str, name: str, steps: str = "6") -> dict:
    """MindSpore's profiler over `steps` train steps of the PROFILES entry `name` (random ids over tables of at most
    100,000 rows): ms a step back to back, and ms a step per kernel type (the profiler's cpu_op_type_info)."""
    import csv
    import glob
    import tempfile
    from mindspore import Profiler, Tensor
    from src.data.multi_hot_criteo import MLPERF_SIZES, multi_hot_features
    from src.data.synthetic import KAGGLE_SIZES
    from src.model.dlrm import build_model
    from src.model_utils.config import parse_cli
    from src.model_utils.spec import Feature, criteo_features
    from src.training.train_step import make_train_step
    from src.utils.runtime import setup_context
    setup_context(device, None)
    options, batch, multi_hot = PROFILES[name]
    sizes = [min(s, 100_000) for s in KAGGLE_SIZES]
    features = criteo_features(sizes)
    if multi_hot:
        features = [Feature(**f) for f in multi_hot_features(features, MLPERF_SIZES)]
    spec = DLRMSpec.from_config(parse_cli([f"--config_path={config}", *options]), features)
    rng = np.random.default_rng(0)
    ids = np.stack([rng.integers(0, spec.table_sizes[s], batch) for s in spec.lookup_slots], 1).astype(np.int32)
    feed = (Tensor(ids), Tensor(rng.random((batch, N_DENSE)).astype(np.float32)),
            Tensor((rng.random((batch, 1)) < 0.25).astype(np.float32)))
    step = make_train_step(build_model(spec, seed=1), 0.01)
    back_to_back = _median_seconds(lambda: [step(*feed) for _ in range(3)][-1].asnumpy(), 3) / 3
    out = tempfile.mkdtemp(prefix="dlrm_profile_")
    prof = Profiler(output_path=out)
    for _ in range(int(steps)):
        step(*feed).asnumpy()
    prof.stop()
    prof.analyse()
    with open(glob.glob(os.path.join(out, "**", "cpu_op_type_info_0.csv"), recursive=True)[0]) as f:
        per_type = {r["op_type"]: float(r["total_compute_time"]) / int(steps) for r in csv.DictReader(f)}
    shutil.rmtree(out, ignore_errors=True)
    return {"ms_per_step": back_to_back * 1e3, "ms_by_kernel": per_type}


def bench_profile(run_child, config: str, device: str) -> None:
    """Where the step's time goes, per kernel type, for the default recipe, dot and multi-hot (one run each)."""
    print("== kernel time per step (MindSpore's profiler; kernels may overlap, so their sum can exceed the step)")
    for name in PROFILES:
        res, _ = run_child("profile", device, config, name)
        top = sorted(res["ms_by_kernel"].items(), key=lambda kv: -kv[1])[:8]
        total = sum(res["ms_by_kernel"].values())
        print(f"{name}: {res['ms_per_step']:.1f} ms a step back to back; kernels {total:.1f} ms: " +
              ", ".join(f"{k} {v:.1f} ({v / total:.0%})" for k, v in top), flush=True)
