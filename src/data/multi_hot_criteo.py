"""MLPerf's multi-hot Criteo: a one-hot Criteo dataset materialised to several ids per slot (DLRM-DCNv2).

    python -m src.data.multi_hot_criteo --dataset_path=DIR/mindrecord [--output_path=DIR/mindrecord_multihot]
           [--multi_hot_sizes=3,2,1,...] [--seed=0]

As MLPerf's `materialize_synthetic_multihot_dataset.py` (uniform distribution): slot t of size m_t turns each id i
into the bag [i, r_1, ..., r_{m_t - 1}], with the extra ids drawn uniformly from the slot's table and fixed per
(t, i): every sample holding id i in slot t gets the same bag, as MLPerf's per-row cache gives it. The draws here
are a counter-based hash of (seed, t, i, j) (SplitMix64) instead of a cache of rows x (m_t - 1) numbers, so a
40M-row table needs no 40M x 99 cache: the same distribution, reproducible from the seed alone.
Slots of size 1 stay categorical; the others become multi_hot features with sum pooling (MLPerf's). Every bag is
full, so there are no pads. MLPerf's sizes (MLPERF_SIZES) give 214 ids per sample.
The output is a dataset like preprocessing's (same parts, splits, order, dense features and labels), written to a
temporary folder and renamed into place: a failed run leaves any previous output as it was.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
from typing import List, Optional, Sequence

import numpy as np

from src.model_utils.spec import Feature, features_of

MLPERF_SIZES = (3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over uint64 values (wrapping arithmetic): a well-mixed hash of each."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def bags(ids: np.ndarray, rows: int, size: int, seed: int, slot: int) -> np.ndarray:
    """One slot's ids int32 [n] (in [0, rows)) -> bags int32 [n, size]: the id, then size - 1 ids uniform in
    [0, rows), a fixed function of (seed, slot, id, place)."""
    out = np.empty((len(ids), size), np.int32)
    out[:, 0] = ids
    if size > 1:
        base = _splitmix64(np.uint64(seed) * np.uint64(1 << 20) + np.uint64(slot))       # the slot's stream
        with np.errstate(over="ignore"):
            key = ids.astype(np.uint64)[:, None] * np.uint64(4096) + np.arange(1, size, dtype=np.uint64)[None, :]
            out[:, 1:] = (_splitmix64(key ^ base) % np.uint64(rows)).astype(np.int32)
    return out


def multi_hot_features(base: Sequence[Feature], sizes: Sequence[int]) -> List[dict]:
    """Metadata "features" of a one-hot dataset's features `base` with sparse slot t of size sizes[t]: categorical
    (size 1) or multi_hot (sum pooling); the dense features as they were."""
    out: List[dict] = []
    slot = 0
    for f in base:
        if f.kind != "dense":
            m = int(sizes[slot])
            f = Feature(f.name, "categorical", rows=f.rows) if m == 1 else \
                Feature(f.name, "multi_hot", rows=f.rows, max_len=m, pooling="sum")
            slot += 1
        out.append(f.record())
    return out


def materialize(dataset_path: str, output_path: str, sizes: Sequence[int] = MLPERF_SIZES, seed: int = 0,
                progress: bool = True) -> dict:
    """Write the multi-hot dataset of a one-hot one; returns its metadata. Raises DatasetError for an input that is
    not a one-hot dataset with len(sizes) slots, OutputError when output_path holds something else."""
    import mindspore.dataset as ds
    from src.data.packed_format import (COLUMNS, FORMAT_VERSION, METADATA, DatasetError, column, file_record,
                                        load_metadata)
    from src.data.writer import PackedWriter
    from src.utils.progress import Progress
    from src.utils.staged_dir import has_file, staged_dir, write_json_atomic
    meta = load_metadata(dataset_path)
    slots = meta["slot_dim"]
    if "ids_per_sample" in meta:
        raise DatasetError(f"'{dataset_path}' already has multi_hot features; give a one-hot dataset")
    if len(sizes) != slots or any(int(m) < 1 for m in sizes):
        raise DatasetError(f"multi_hot_sizes has {len(sizes)} entries {list(sizes)}; '{dataset_path}' has {slots} "
                           f"slots: give one size of at least 1 per slot")
    if os.path.abspath(output_path) == os.path.abspath(dataset_path):
        raise DatasetError("output_path must differ from dataset_path (the one-hot dataset is kept)")
    rows = meta["table_sizes"]
    width = int(sum(sizes))
    total = sum(meta["samples"].values())
    prog = Progress("multi-hot dataset", total, "samples", enabled=progress)
    with staged_dir(output_path, has_file(METADATA), "the multi-hot dataset") as tmp:
        files = {}
        for split, parts in meta["parts"].items():
            for name, _ in parts:
                writer = PackedWriter(os.path.join(tmp, name), meta["pack_size"])
                data = ds.MindDataset(os.path.join(dataset_path, name), columns_list=list(COLUMNS), shuffle=False)
                for ids, dense, label in data.create_tuple_iterator(output_numpy=True, num_epochs=1):
                    label = column(label, "label")
                    n = len(label)
                    ids = column(ids, "ids").reshape(n, slots)
                    wide = np.concatenate([bags(ids[:, t], rows[t], int(sizes[t]), seed, t) for t in range(slots)], 1)
                    writer.write(wide, column(dense, "dense").reshape(n, meta["dense_dim"]) if meta["dense_dim"] else
                                 np.zeros((n, 0), np.float32), label)
                    prog.update(n)
                writer.close()
                files.update({f: file_record(os.path.join(tmp, f)) for f in (name, name + ".db")})
        for name in ("vocab.npz", "stats.json"):
            if name in meta["files"]:
                shutil.copy(os.path.join(dataset_path, name), os.path.join(tmp, name))
                files[name] = file_record(os.path.join(tmp, name))
        out = dict(meta)
        out.update(format_version=FORMAT_VERSION, features=multi_hot_features(features_of(meta), sizes),
                   ids_per_sample=width,
                   files=dict(sorted(files.items())),
                   multi_hot={"source": os.path.abspath(dataset_path), "sizes": [int(m) for m in sizes],
                              "seed": seed, "distribution": "uniform", "pooling": "sum"},
                   vocab_fingerprint=hashlib.sha256(json.dumps([meta["vocab_fingerprint"], list(map(int, sizes)),
                                                                seed]).encode()).hexdigest())
        write_json_atomic(os.path.join(tmp, METADATA), out)
    prog.finish()
    return out


def main(argv: Optional[List[str]] = None) -> None:
    """The command line (see the module docstring)."""
    from src.data.packed_format import DatasetError
    from src.utils.staged_dir import OutputError
    p = argparse.ArgumentParser(prog="python -m src.data.multi_hot_criteo",
                                description="Materialise MLPerf's multi-hot Criteo from a one-hot Criteo dataset.")
    p.add_argument("--dataset_path", required=True, help="the one-hot dataset (DIR/mindrecord)")
    p.add_argument("--output_path", default="", help="where the multi-hot dataset goes (default: DATASET_multihot)")
    p.add_argument("--multi_hot_sizes", default=",".join(map(str, MLPERF_SIZES)),
                   help="ids per sample of each slot, comma-separated (default: MLPerf DLRM-DCNv2's, 214 in all)")
    p.add_argument("--seed", type=int, default=0, help="the draws' seed (the same seed gives the same dataset)")
    args = p.parse_args(argv)
    out = args.output_path or args.dataset_path.rstrip("/") + "_multihot"
    try:
        sizes = [int(x) for x in args.multi_hot_sizes.split(",")]
    except ValueError:
        sys.stderr.write(f"multi_hot error: --multi_hot_sizes={args.multi_hot_sizes!r}: expected integers separated "
                         f"by commas\n")
        sys.exit(2)
    try:
        meta = materialize(args.dataset_path, out, sizes, args.seed)
    except (DatasetError, OutputError, OSError) as exc:
        sys.stderr.write(f"multi_hot error: {exc}\n")
        sys.exit(2)
    print(f"wrote {out}: {meta['ids_per_sample']} ids per sample over {meta['slot_dim']} slots "
          f"({sum(1 for f in meta['features'] if f['kind'] == 'multi_hot')} multi_hot), samples {meta['samples']}")


if __name__ == "__main__":
    main()
