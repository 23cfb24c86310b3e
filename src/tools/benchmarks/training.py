"""Training suites: end-to-end speed, Kaggle-sized tables, the architectures' step, multi-hot against one-hot, and
the quality suites' entry points (src/tools/benchmarks/quality.py holds the recipes).

    python -m src.tools.benchmark train | multihot | quality | time_to_quality
"""
import os
import time

import numpy as np

from src.data.synthetic import KAGGLE_SIZES as KAGGLE, N_DENSE, N_SLOTS
from src.model_utils.spec import DLRMSpec, criteo_features
from src.tools.benchmarks import quality, recipes
from src.tools.benchmarks.common import DOT, SGD, config_file, gb, run_child, spec_of, synthetic_dataset
from src.utils.runtime import setup_context


def child_train(dataset, batch, steps, device, config, *extra):
    """End-to-end training speed (data loading included) over `steps` steps after 3 warm-up steps, with the SGD
    recipe, or with `extra` --key=value options after it."""
    setup_context(device, None)
    from src.model_utils.config import parse_cli
    from src.training.trainer import Trainer
    cfg = parse_cli([f"--config_path={config}", f"--device_target={device}", f"--dataset_path={dataset}",
                     f"--batch_size={batch}", "--save_checkpoint=False", "--do_eval=False", *SGD,
                     "--loss_file_name=", "--log_interval_steps=1000000", *extra])
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


def bench_train(work, device, lines):
    config = config_file(device)
    d, dataset = synthetic_dataset(work, lines)
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


def bench_quality(work, device, lines, seeds, recipes=""):
    """Test AUC after one epoch per recipe over `seeds` seeds (src/tools/benchmarks/quality.py), next to logistic
    regression and the best achievable AUC."""
    d, dataset = synthetic_dataset(work, lines)
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
