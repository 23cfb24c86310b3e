"""Why a learning-rate decay over the tables costs AUC on some data: how often the test split's ids were seen in
training, and how much of its learning such a row gets under a schedule of the table rate.

    python -m src.tools.rare_rows --dataset_path=DIR/mindrecord [--warmup_steps=20] [--steps=N]

For every (slot, id) of the test split, its row's training count k. A row's j-th update under row-wise Adagrad is
about lr(t_j) / sqrt(j) times its gradient (the accumulator grows by one gradient square an occurrence), and in one
epoch its k occurrences fall at uniform random times of the shuffled epoch. Its share of learning under a schedule is
E[sum_j s(t_j)/sqrt(j)] / sum_j 1/sqrt(j), with s the schedule over the peak rate: 1 for a flat rate. Printed per
band of k, as the share of the test split's ids in the band and their learning share under warmup then polynomial
decay (power 2) to the last step, the schedule the tables had before table_schedule was off.
"""
import argparse
import json
from typing import List, Optional

import numpy as np

BANDS = ((0, 0), (1, 1), (2, 3), (4, 10), (11, 100), (101, 10 ** 12))


def learning_share(k: int, warmup: float, rng: np.random.Generator, draws: int = 4000) -> float:
    """A row with k occurrences: its expected sum of s(t_j)/sqrt(j) over the flat rate's (warmup: the warmup's share
    of the epoch; decay (1 - u)^2 from its end to the last step)."""
    if k == 0:
        return 0.0
    t = np.sort(rng.random((draws, min(k, 200))), axis=1)
    u = np.clip((t - warmup) / max(1 - warmup, 1e-12), 0, 1)
    s = np.where(t < warmup, t / max(warmup, 1e-12), (1 - u) ** 2)
    w = 1.0 / np.sqrt(np.arange(1, t.shape[1] + 1))
    return float((s * w).sum(1).mean() / w.sum())


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.tools.rare_rows --dataset_path=DS` (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m src.tools.rare_rows", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_path", required=True)
    ap.add_argument("--warmup_steps", type=int, default=20)
    ap.add_argument("--steps", type=int, default=0, help="steps in the epoch (default: the training split / 4096)")
    args = ap.parse_args(argv)
    from src.data.packed_format import load_metadata
    from src.data.reader import PackedBatches
    from src.model_utils.spec import features_of
    meta = load_metadata(args.dataset_path)
    offsets = np.concatenate([[0], np.cumsum(meta["table_sizes"])[:-1]])
    slots = [s for s, f in enumerate(f for f in features_of(meta) if f.kind != "dense") for _ in range(f.max_len)]
    counts = np.zeros(int(sum(meta["table_sizes"])), np.int64)
    for ids, _, _ in PackedBatches(args.dataset_path, "train", 1 << 16):
        rows = (ids + offsets[slots][None, :])[ids >= 0]
        counts += np.bincount(rows, minlength=len(counts))
    k = np.concatenate([counts[(ids + offsets[slots][None, :])[ids >= 0]]
                        for ids, _, _ in PackedBatches(args.dataset_path, "test", 1 << 16)])
    steps = args.steps or max(1, meta["samples"]["train"] // 4096)
    warmup = min(1.0, args.warmup_steps / steps)
    rng = np.random.default_rng(0)
    out = {"dataset": args.dataset_path, "steps": steps, "warmup_share": round(warmup, 4), "bands": []}
    for lo, hi in BANDS:
        sel = (k >= lo) & (k <= hi)
        uniq, n = np.unique(k[sel], return_counts=True)
        share = float(np.average([learning_share(int(x), warmup, rng) for x in uniq], weights=n)) if len(uniq) else 0.0
        out["bands"].append({"k": f"{lo}-{hi}" if hi < 10 ** 12 else f">{lo - 1}", "test_ids": round(float(sel.mean()), 4),
                             "learning_share_under_decay": round(share, 3)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
