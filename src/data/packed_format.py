"""The packed MindRecord dataset format: the one definition that the writer, the reader, the
preprocessing passes and the distributed shards all use.

A dataset is a folder (DIR/mindrecord) holding:
  {split}-{i:05d}.mindrecord     the parts of each split (train, test [, val]): packed rows, schema
                                 `ROW_SCHEMA` (+ MindRecord's .db); metadata.json "parts" lists them in
                                 order with their sample counts
  metadata.json                  `METADATA_KEYS`, format `FORMAT_VERSION`
  vocab.npz, stats.json          vocabulary and feature statistics
metadata.json's "files" records every other file's size and SHA-256: readers check the sizes when they
open the dataset (a stat per file), `python -m src.data.packed_format verify DIR` checks the checksums.
"vocab_fingerprint" identifies the id assignment (mode, vocabulary or hash range, table sizes); a
checkpoint keeps the one it was trained with, so that it is never evaluated on ids that mean otherwise.

Row schema: one MindRecord row holds P samples (P = pack_size; only a split's last row may hold fewer):
  ids    int32   [P * slot_dim]   per-slot ids, sample-major
  dense  float32 [P * dense_dim]  log(1 + max(x, 0)) dense features, sample-major
  label  float32 [P]              0/1 click labels
Format 4 stores each column as one MindRecord "bytes" field holding the array's little-endian bytes; format 3 stored
them as MindRecord int32/float32 arrays, which MindRecord compresses value by value on write (~0.6 s per 1M samples,
holding the GIL: 3-4x the raw write). `column` reads both. One row per sample writes at ~14k rows/s with MindSpore
2.10; packing writes ~0.8M samples/s (format 3) and ~4M samples/s (format 4).

Shards: shard k of N holds, of every part of R packed rows, the contiguous block [k*R//N, (k+1)*R//N),
so every sample is in exactly one shard (MindDataset's own num_shards repeats rows to even them out).
"""
import hashlib
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

FORMAT_VERSION = 4          # 2: "files" holds sizes and checksums, "vocab_fingerprint"; 3: splits are parts;
READS = (3, 4)              # 4: columns are raw little-endian bytes.  READS: the versions this code reads
METADATA = "metadata.json"
COLUMNS = ("ids", "dense", "label")
DTYPES = {"ids": np.dtype("<i4"), "dense": np.dtype("<f4"), "label": np.dtype("<f4")}
ROW_SCHEMA = {name: {"type": "bytes"} for name in COLUMNS}
ROW_SCHEMA_V3 = {"ids": {"type": "int32", "shape": [-1]},          # format 3 (read only; tests write it)
                 "dense": {"type": "float32", "shape": [-1]},
                 "label": {"type": "float32", "shape": [-1]}}
SPLITS = ("train", "val", "test")
# metadata.json: key -> the JSON type(s) it must have (checked on every read)
METADATA_KEYS = {
    "format_version": int, "dense_dim": int, "slot_dim": int, "id_mode": str, "table_sizes": list,
    "total_rows": int, "pack_size": int, "lines": dict, "samples": dict, "files": dict, "bad_lines": dict,
    "vocab_fingerprint": str, "parts": dict,
}


class DatasetError(ValueError):
    """A dataset folder is missing or inconsistent; the message names the file."""


def ids_per_sample(meta: dict) -> int:
    """The width of the dataset's ids: slot_dim, or with multi_hot features its "ids_per_sample" (one per
    categorical slot and max_len per multi_hot slot)."""
    return int(meta.get("ids_per_sample", meta["slot_dim"]))


def validate_metadata(meta: dict, path: str) -> dict:
    """Check the shape of a metadata.json dict (keys, types, format version); returns it."""
    if not isinstance(meta, dict):
        raise DatasetError(f"'{path}' must hold a JSON object, found {type(meta).__name__}")
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise DatasetError(f"'{path}' lacks keys {missing}: not a dataset written by this project's preprocessing")
    version = meta["format_version"]
    if version not in READS:
        raise DatasetError(f"'{path}' has format_version {version!r}; this code reads formats "
                           f"{', '.join(map(str, READS))}: preprocess the data again")
    for key, typ in METADATA_KEYS.items():
        if not isinstance(meta[key], typ) or (typ is int and isinstance(meta[key], bool)):
            raise DatasetError(f"'{path}': key '{key}' must be a JSON {typ.__name__}, found {meta[key]!r}")
    if not isinstance(meta.get("ids_per_sample", 1), int) or ids_per_sample(meta) < meta["slot_dim"]:
        raise DatasetError(f"'{path}': ids_per_sample must be an integer of at least slot_dim={meta['slot_dim']}, "
                           f"found {meta.get('ids_per_sample')!r}")
    sizes = meta["table_sizes"]
    if len(sizes) != meta["slot_dim"] or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise DatasetError(f"'{path}': table_sizes must hold slot_dim={meta['slot_dim']} positive integers")
    for split, n in meta["samples"].items():
        if split not in SPLITS or not isinstance(n, int) or n < 0:
            raise DatasetError(f"'{path}': samples must map splits {SPLITS} to counts, found {split!r}: {n!r}")
    for split, parts in meta["parts"].items():
        ok = split in meta["samples"] and isinstance(parts, list) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], int) for p in parts)
        if not ok or sum(p[1] for p in parts) != meta["samples"][split]:
            raise DatasetError(f"'{path}': parts must map each split to [[file, samples], ...] adding up to its "
                               f"samples, found {split!r}: {str(parts)[:80]}")
    for name, info in meta["files"].items():
        if not (isinstance(info, dict) and isinstance(info.get("bytes"), int) and isinstance(info.get("sha256"), str)):
            raise DatasetError(f"'{path}': files must map file names to {{bytes, sha256}}, found {name!r}: {info!r}")
    return meta


def pack_row(ids: np.ndarray, dense: np.ndarray, label: np.ndarray) -> Dict[str, bytes]:
    """One format-4 row of P samples: ids int32 [P, L], dense float32 [P, Dn], label float32 [P] -> their
    little-endian bytes by column."""
    return {name: np.ascontiguousarray(arr, DTYPES[name]).tobytes()
            for name, arr in (("ids", ids), ("dense", dense), ("label", label))}


def column(value: np.ndarray, name: str) -> np.ndarray:
    """A column of a row as MindDataset returns it -> a flat array of the column's dtype (DTYPES): format 4 gives
    the bytes (a numpy bytes scalar or array), format 3 the typed array."""
    arr = np.asarray(value)
    if arr.dtype.kind == "S":
        return np.frombuffer(arr.tobytes(), DTYPES[name])
    return arr.reshape(-1)


def file_record(path: str) -> Dict[str, object]:
    """{bytes, sha256} of a file, for metadata.json's "files"."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": os.path.getsize(path), "sha256": digest}


def check_sizes(dataset_path: str, meta: dict) -> None:
    """Every file that metadata.json lists is there with its recorded size (cheap: one stat each)."""
    for name, info in meta["files"].items():
        path = os.path.join(dataset_path, name)
        if not os.path.isfile(path):
            raise DatasetError(f"'{path}' is missing; {METADATA} lists it: preprocess the data again")
        size = os.path.getsize(path)
        if size != info["bytes"]:
            raise DatasetError(f"'{path}' has {size:,} bytes, {METADATA} recorded {info['bytes']:,}: it was truncated "
                               f"or changed after preprocessing; preprocess again (`python -m src.data.packed_format "
                               f"verify {dataset_path}` checks every file's checksum)")


def verify(dataset_path: str) -> List[str]:
    """Check every listed file's size and SHA-256; returns the problems found (empty: all good)."""
    meta = load_metadata(dataset_path, check_files=False)
    problems = []
    for name, info in sorted(meta["files"].items()):
        path = os.path.join(dataset_path, name)
        if not os.path.isfile(path):
            problems.append(f"{path}: missing")
            continue
        got = file_record(path)
        if got != {"bytes": info["bytes"], "sha256": info["sha256"]}:
            problems.append(f"{path}: {got['bytes']:,} bytes, sha256 {got['sha256'][:16]}...; recorded "
                            f"{info['bytes']:,} bytes, sha256 {info['sha256'][:16]}...")
    return problems


def load_metadata(dataset_path: str, check_files: bool = True) -> dict:
    """metadata.json of a dataset folder, validated (format version included); with check_files, every
    listed file must have its recorded size."""
    path = os.path.join(dataset_path, METADATA)
    if os.path.exists(dataset_path) and not os.path.isdir(dataset_path):
        raise DatasetError(f"dataset_path '{dataset_path}' is a file; it must be the folder written by "
                           f"preprocessing (DIR/mindrecord)")
    if not os.path.isfile(path):
        raise DatasetError(f"'{path}' not found: dataset_path must be a folder written by "
                           f"src/preprocess_data.py (DIR/mindrecord)")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"'{path}' is not valid JSON: {exc}") from None
    validate_metadata(meta, path)
    if check_files:
        check_sizes(dataset_path, meta)
    return meta


def table_sizes_for(cfg, meta: dict) -> List[int]:
    """Per-slot table sizes: the dataset's, checked against a non-empty categorical_feature_sizes."""
    sizes = list(meta["table_sizes"])
    if cfg.categorical_feature_sizes and len(cfg.categorical_feature_sizes) != len(sizes):
        raise DatasetError(f"categorical_feature_sizes in the config has {len(cfg.categorical_feature_sizes)} "
                           f"entries but the dataset's {METADATA} has {len(sizes)} tables; set "
                           f"categorical_feature_sizes='[]' to use the dataset's")
    if cfg.categorical_feature_sizes and list(cfg.categorical_feature_sizes) != sizes:
        diff = [i + 1 for i, (a, b) in enumerate(zip(cfg.categorical_feature_sizes, sizes)) if a != b]
        raise DatasetError(f"categorical_feature_sizes in the config disagrees with {METADATA} of the dataset "
                           f"(slots {diff[:5]}{'...' if len(diff) > 5 else ''}: config "
                           f"{[cfg.categorical_feature_sizes[i - 1] for i in diff[:3]]} vs dataset "
                           f"{[sizes[i - 1] for i in diff[:3]]}); set categorical_feature_sizes='[]' to use "
                           f"the dataset's")
    return sizes


def split_parts(dataset_path: str, meta: dict, split: str) -> List[Tuple[str, int]]:
    """(path, samples) of every part of a split, in order; a missing split names the splits that exist."""
    if split not in meta["parts"]:
        raise DatasetError(f"'{dataset_path}' has no {split} split (splits present: {sorted(meta['parts'])})")
    return [(os.path.join(dataset_path, name), n) for name, n in meta["parts"][split]]


def shard_block(samples: int, pack_size: int, num_shards: int = 1, shard_id: int = 0) -> Tuple[int, int, int]:
    """(first packed row, end row, samples) of shard `shard_id`: rows [k*R//N, (k+1)*R//N) of the
    R = ceil(samples / pack_size) rows; only the split's last row may hold fewer than pack_size.

    Example: 1714 samples, pack 100, 2 shards -> R = 18; shard 0 = (0, 9, 900), shard 1 = (9, 18, 814).
    """
    if not 0 <= shard_id < num_shards:
        raise DatasetError(f"shard_id {shard_id} is not in [0, {num_shards})")
    rows = -(-samples // pack_size)
    lo, hi = shard_id * rows // num_shards, (shard_id + 1) * rows // num_shards
    n = (hi - lo) * pack_size - (rows * pack_size - samples if hi == rows and hi > lo else 0)
    return lo, hi, n


def shard_sizes(meta: dict, split: str, num_shards: int) -> List[int]:
    """Samples of every shard of a split (its block of every part), from metadata.json alone (no data read)."""
    return [sum(shard_block(n, meta["pack_size"], num_shards, k)[2] for _, n in meta["parts"][split])
            for k in range(num_shards)]


def describe_splits(samples: Dict[str, int], order: Sequence[str] = SPLITS) -> str:
    """'train 1,714 / test 285' style summary of a samples dict."""
    return " / ".join(f"{s} {samples[s]:,}" for s in order if s in samples)


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.data.packed_format verify DIR`: check every file of a dataset against metadata.json."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("command", choices=["verify"])
    ap.add_argument("dataset_path")
    args = ap.parse_args(argv)
    try:
        problems = verify(args.dataset_path)
    except DatasetError as exc:
        sys.stderr.write(f"verify error: {exc}\n")
        sys.exit(2)
    for p in problems:
        print(f"BAD  {p}")
    n = len(load_metadata(args.dataset_path, check_files=False)["files"])
    print(f"{args.dataset_path}: {n - len(problems)} of {n} files match metadata.json"
          + ("" if not problems else "; preprocess again"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
