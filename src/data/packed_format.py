"""The packed MindRecord dataset format: the one definition that the writer, the reader, the
preprocessing passes and the distributed shards all use.

A dataset is a folder (DIR/mindrecord) holding:
  train.mindrecord, test.mindrecord [, val.mindrecord]   packed rows, schema `ROW_SCHEMA`
  metadata.json                                          `METADATA_KEYS`, format `FORMAT_VERSION`
  vocab.npz, stats.json                                  vocabulary and feature statistics

Row schema: one MindRecord row holds P samples (P = pack_size; only a split's last row may hold fewer):
  ids    int32   [P * slot_dim]   per-slot ids, sample-major
  dense  float32 [P * dense_dim]  log(1 + max(x, 0)) dense features, sample-major
  label  float32 [P]              0/1 click labels
One row per sample writes at ~14k rows/s with MindSpore 2.10; packing writes ~0.8M samples/s.

Shards: shard k of N is the contiguous block of packed rows [k*R//N, (k+1)*R//N) of a split's R rows,
so every sample is in exactly one shard (MindDataset's own num_shards repeats rows to even them out).
"""
import json
import os
from typing import Dict, List, Sequence, Tuple

FORMAT_VERSION = 1
METADATA = "metadata.json"
COLUMNS = ("ids", "dense", "label")
ROW_SCHEMA = {"ids": {"type": "int32", "shape": [-1]},
              "dense": {"type": "float32", "shape": [-1]},
              "label": {"type": "float32", "shape": [-1]}}
SPLITS = ("train", "val", "test")
# metadata.json: key -> the JSON type(s) it must have (checked on every read)
METADATA_KEYS = {
    "format_version": int, "dense_dim": int, "slot_dim": int, "id_mode": str, "table_sizes": list,
    "total_rows": int, "pack_size": int, "lines": dict, "samples": dict, "files": dict, "bad_lines": dict,
}


class DatasetError(ValueError):
    """A dataset folder is missing or inconsistent; the message names the file."""


def split_file_name(split: str) -> str:
    """The file of one split inside the dataset folder (`train` -> `train.mindrecord`)."""
    return f"{split}.mindrecord"


def validate_metadata(meta: dict, path: str) -> dict:
    """Check the shape of a metadata.json dict (keys, types, format version); returns it."""
    if not isinstance(meta, dict):
        raise DatasetError(f"'{path}' must hold a JSON object, found {type(meta).__name__}")
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise DatasetError(f"'{path}' lacks keys {missing}: not a dataset written by this project's preprocessing")
    version = meta["format_version"]
    if version != FORMAT_VERSION:
        raise DatasetError(f"'{path}' has format_version {version!r}; this code reads format {FORMAT_VERSION}: "
                           f"preprocess the data again")
    for key, typ in METADATA_KEYS.items():
        if not isinstance(meta[key], typ) or (typ is int and isinstance(meta[key], bool)):
            raise DatasetError(f"'{path}': key '{key}' must be a JSON {typ.__name__}, found {meta[key]!r}")
    sizes = meta["table_sizes"]
    if len(sizes) != meta["slot_dim"] or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise DatasetError(f"'{path}': table_sizes must hold slot_dim={meta['slot_dim']} positive integers")
    for split, n in meta["samples"].items():
        if split not in SPLITS or not isinstance(n, int) or n < 0:
            raise DatasetError(f"'{path}': samples must map splits {SPLITS} to counts, found {split!r}: {n!r}")
    return meta


def load_metadata(dataset_path: str) -> dict:
    """metadata.json of a dataset folder, validated (format version included)."""
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
    return validate_metadata(meta, path)


def table_sizes_for(cfg, meta: dict) -> List[int]:
    """Per-slot table sizes: the dataset's, checked against a non-empty categorical_feature_sizes."""
    sizes = list(meta["table_sizes"])
    if cfg.categorical_feature_sizes and list(cfg.categorical_feature_sizes) != sizes:
        diff = [i + 1 for i, (a, b) in enumerate(zip(cfg.categorical_feature_sizes, sizes)) if a != b]
        raise DatasetError(f"categorical_feature_sizes in the config disagrees with {METADATA} of the dataset "
                           f"(slots {diff[:5]}{'...' if len(diff) > 5 else ''}: config "
                           f"{[cfg.categorical_feature_sizes[i - 1] for i in diff[:3]]} vs dataset "
                           f"{[sizes[i - 1] for i in diff[:3]]}); set categorical_feature_sizes='[]' to use "
                           f"the dataset's")
    if meta["dense_dim"] != cfg.dense_dim or meta["slot_dim"] != cfg.slot_dim:
        raise DatasetError(f"dataset has dense_dim={meta['dense_dim']}, slot_dim={meta['slot_dim']} but the "
                           f"config says {cfg.dense_dim}, {cfg.slot_dim}")
    return sizes


def split_file(dataset_path: str, split: str) -> str:
    """Path of one split's MindRecord file; a missing split names the splits that exist."""
    path = os.path.join(dataset_path, split_file_name(split))
    if not os.path.isfile(path):
        present = sorted(f[:-len(".mindrecord")] for f in os.listdir(dataset_path) if f.endswith(".mindrecord"))
        raise DatasetError(f"'{path}' not found (splits present: {present})")
    return path


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
    """Samples of every shard of a split, from metadata.json alone (no data read)."""
    return [shard_block(meta["samples"][split], meta["pack_size"], num_shards, k)[2] for k in range(num_shards)]


def describe_splits(samples: Dict[str, int], order: Sequence[str] = SPLITS) -> str:
    """'train 1,714 / test 285' style summary of a samples dict."""
    return " / ".join(f"{s} {samples[s]:,}" for s in order if s in samples)
