"""Criteo text -> packed MindRecord, in two streaming passes with memory bounded by the vocabulary.

    python src/preprocess_data.py --data_path=DIR/ --dense_dim=13 --slot_dim=26 --train_line_count=N

Reads DIR/train.txt (or DIR/train.txt.gz) and writes DIR/mindrecord/:
  train.mindrecord   training lines (all but the last N // 7), in a seeded uniform random order
  test.mindrecord    the last N // 7 lines in file order (with val_split: their second half)
  val.mindrecord     with val_split only: the first half of the last N // 7 lines
  vocab.npz          per slot C1..C26: `C{k}_keys` uint32 values in id order (id = position + 2)
                     and `C{k}_counts` int64 training counts (plain numpy arrays, no pickle)
  stats.json         per-feature statistics of the training lines
  metadata.json      table sizes, row counts, split, threshold, id mode and the skipped-line summary

Pass 1 parses the text once, counts categorical values over the training lines only, and scatters
the parsed training lines into random buckets on disk (test lines go to one file in order).
Pass 2 shuffles each bucket in memory, maps values to ids and writes packed MindRecord rows.
Assigning lines to buckets uniformly at random and shuffling each bucket gives a uniform random
permutation. Everything is written under a temporary folder that is renamed at the end, so an
interrupted run never leaves a dataset that training would read.
"""
import datetime
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from src.data.criteo import BlockParser, Chunk, CriteoFormatError, count_lines, iter_blocks, open_input
from src.data.packed_format import FORMAT_VERSION, METADATA, describe_splits, file_record, split_file_name
from src.data.vocab import SlotCounter, SlotMapper
from src.data.writer import PackedWriter
from src.utils.progress import Progress, background
from src.utils.staged_dir import OutputError, has_file, staged_dir

PIECE = 1 << 17  # lines mapped per step of pass 2 (small pieces let mapping overlap writing)


def record_dtype(dense_dim: int, slot_dim: int) -> np.dtype:
    """On-disk layout of a parsed line between the passes (label u1, dense f4[Dn], keys u4[S], missing ?[S])."""
    return np.dtype([("label", "u1"), ("dense", "<f4", (dense_dim,)), ("keys", "<u4", (slot_dim,)),
                     ("missing", "?", (slot_dim,))])


@dataclass
class Plan:
    """What the two passes agree on: the input, the split, the id mode and the staging folder."""
    path: str                 # the input file
    tmp: str                  # staging folder, renamed to DIR/mindrecord when both passes succeed
    mode: str                 # "vocab" | "hash" | "ids" (see src/data/vocab.py)
    total: int                # lines in the input
    n_train: int              # the first n_train lines are the training split
    n_val: int                # the next n_val lines are validation (val_split), the rest test
    dense_dim: int
    slot_dim: int
    n_buckets: int            # shuffle buckets of the training lines
    threshold: int
    max_ind_range: int
    pack_size: int
    chunk_bytes: int
    strict: bool
    max_bad_fraction: float
    seed: int
    rng: np.random.Generator = field(repr=False, default=None)

    @property
    def dtype(self) -> np.dtype:
        """The record layout of parsed lines between the passes."""
        return record_dtype(self.dense_dim, self.slot_dim)

    @property
    def splits(self) -> Tuple[str, ...]:
        """The splits written, in order."""
        return ("train", "val", "test") if self.n_val else ("train", "test")

    def bucket_path(self, b: int) -> str:
        """Staging file of training shuffle bucket b."""
        return os.path.join(self.tmp, f"bucket{b:04d}.bin")

    def held_out_path(self, split: str) -> str:
        """Staging file of a held-out split (val or test) in file order."""
        return os.path.join(self.tmp, f"{split}.bin")


def make_plan(cfg, path: str, tmp: str) -> Plan:
    """The plan for `cfg` over input `path` (counts the lines when train_line_count is 0)."""
    mode = "hash" if cfg.max_ind_range else ("ids" if cfg.skip_id_convert else "vocab")
    if mode == "hash" and cfg.max_ind_range < 2:
        raise CriteoFormatError(f"max_ind_range must be 0 (off) or >= 2, got {cfg.max_ind_range}")
    total = cfg.train_line_count or count_lines(path)
    n_test_lines = total // 7
    if n_test_lines == 0:
        raise CriteoFormatError(f"{path}: {total} lines is too few: the test split is the last N // 7 lines")
    n_train = total - n_test_lines
    return Plan(path=path, tmp=tmp, mode=mode, total=total, n_train=n_train,
                n_val=n_test_lines // 2 if cfg.val_split else 0, dense_dim=cfg.dense_dim, slot_dim=cfg.slot_dim,
                n_buckets=max(1, -(-n_train // cfg.shuffle_bucket_lines)), threshold=cfg.threshold,
                max_ind_range=cfg.max_ind_range, pack_size=cfg.pack_size, chunk_bytes=cfg.chunk_bytes,
                strict=bool(cfg.strict), max_bad_fraction=cfg.max_bad_fraction, seed=cfg.random_seed, rng=np.random.default_rng([cfg.random_seed, 7]))


def _append(rec: np.ndarray, f) -> None:
    """rec.tofile(f), naming the file when the write fails (a full disk or a file-size limit)."""
    try:
        rec.tofile(f)
    except OSError as exc:
        raise OSError(f"cannot write '{f.name}' ({exc})") from None


def _to_records(chunk: Chunk, sel: np.ndarray, dtype: np.dtype) -> np.ndarray:
    rec = np.empty(len(sel), dtype)
    rec["label"] = chunk.label[sel]
    rec["dense"] = chunk.dense[:, sel].T
    rec["keys"] = chunk.keys[:, sel].T
    rec["missing"] = chunk.missing[:, sel].T
    return rec


class _Stats:
    """Running per-feature statistics of the training lines (after the log transform)."""

    def __init__(self, dense_dim: int, slot_dim: int):
        self.n = 0
        self.pos = 0
        self.sum = np.zeros(dense_dim)
        self.sumsq = np.zeros(dense_dim)
        self.max = np.zeros(dense_dim)
        self.cat_missing = np.zeros(slot_dim, np.int64)

    def add(self, chunk: Chunk, sel: np.ndarray) -> None:
        """Add the chunk's lines `sel` (indices)."""
        d = chunk.dense[:, sel].astype(np.float64)
        self.n += len(sel)
        self.pos += int(chunk.label[sel].sum())
        self.sum += d.sum(1)
        self.sumsq += (d * d).sum(1)
        if d.shape[1]:
            self.max = np.maximum(self.max, d.max(1))
        self.cat_missing += chunk.missing[:, sel].sum(1)

    def as_dict(self) -> dict:
        """stats.json: sample count, click rate, per-dense-feature mean/std/max, per-slot missing rate."""
        n = max(self.n, 1)
        mean = self.sum / n
        return {"train_samples": self.n, "positive_rate": self.pos / n,
                "dense_log1p_mean": mean.round(6).tolist(),
                "dense_log1p_std": np.sqrt(np.maximum(self.sumsq / n - mean ** 2, 0)).round(6).tolist(),
                "dense_log1p_max": self.max.round(6).tolist(),
                "categorical_missing_rate": (self.cat_missing / n).round(6).tolist()}


@dataclass
class Scattered:
    """What pass 1 learned: value counts (vocab mode), largest ids (ids mode), statistics, bad lines."""
    counters: Optional[List[SlotCounter]]
    max_ids: np.ndarray
    stats: _Stats
    bad_lines: dict


class _Scatter:
    """Pass 1's sinks: shuffle buckets for training lines, one file per held-out split in file order."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.buckets = [open(plan.bucket_path(b), "wb") for b in range(plan.n_buckets)]
        self.held_out = {s: open(plan.held_out_path(s), "wb") for s in plan.splits if s != "train"}
        self.counters = [SlotCounter() for _ in range(plan.slot_dim)] if plan.mode == "vocab" else None
        self.max_ids = np.zeros(plan.slot_dim, np.int64)
        self.stats = _Stats(plan.dense_dim, plan.slot_dim)
        self.held_out_lines = {s: 0 for s in self.held_out}

    def close(self) -> None:
        """Close every staging file."""
        for f in self.buckets + list(self.held_out.values()):
            f.close()

    def _note_ids(self, chunk: Chunk, sel: np.ndarray, count: bool) -> None:
        for s in range(self.plan.slot_dim):
            vals = chunk.keys[s, sel]
            if count and self.counters is not None:
                self.counters[s].add(vals[~chunk.missing[s, sel]])
            elif self.plan.mode == "ids" and len(vals):
                self.max_ids[s] = max(self.max_ids[s], int(vals.max()))

    def add(self, chunk: Chunk) -> None:
        """Route a parsed chunk: training lines to random buckets (and the counters), held-out lines in order."""
        plan = self.plan
        is_train = chunk.line <= plan.n_train
        tr = np.flatnonzero(is_train)
        if len(tr):
            self.stats.add(chunk, tr)
            self._note_ids(chunk, tr, count=True)
            rec = _to_records(chunk, tr, plan.dtype)
            bucket = plan.rng.integers(0, plan.n_buckets, len(rec))
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(plan.n_buckets + 1))
            for b in range(plan.n_buckets):
                if bounds[b + 1] > bounds[b]:
                    _append(rec[order[bounds[b]:bounds[b + 1]]], self.buckets[b])
        te = np.flatnonzero(~is_train)
        if len(te):
            self._note_ids(chunk, te, count=False)
            rec = _to_records(chunk, te, plan.dtype)
            if plan.n_val:
                in_val = chunk.line[te] <= plan.n_train + plan.n_val
                _append(rec[in_val], self.held_out["val"])
                self.held_out_lines["val"] += int(in_val.sum())
                rec = rec[~in_val]
            _append(rec, self.held_out["test"])
            self.held_out_lines["test"] += len(rec)


def scatter_pass(plan: Plan, progress: bool = True) -> Scattered:
    """Pass 1: parse the text once, count categorical values over the training lines, scatter the
    training lines into random buckets on disk and the held-out lines into their split files."""
    parser = BlockParser(plan.path, plan.dense_dim, plan.slot_dim, strict=plan.strict, int_ids=plan.mode == "ids")
    prog = Progress("preprocess pass 1/2 (parse, count, scatter)", plan.total, "lines", enabled=progress)

    def parsed():
        for first, block, n_lines in iter_blocks(plan.path, plan.chunk_bytes):
            if first + n_lines - 1 > plan.total:
                raise CriteoFormatError(f"{plan.path}: has more than train_line_count={plan.total} lines (line "
                                        f"{plan.total + 1} exists); set train_line_count to the file's line "
                                        f"count, or 0 to count it")
            yield first + n_lines - 1, n_lines, parser.parse(first, block, n_lines)

    sink, last_line = _Scatter(plan), 0
    try:
        for last_line, n_lines, chunk in background(parsed()):
            prog.update(n_lines)
            if chunk is not None:
                sink.add(chunk)
    finally:
        sink.close()
    prog.finish()
    if last_line != plan.total:
        raise CriteoFormatError(f"{plan.path}: has {last_line} lines but train_line_count={plan.total}; set it to "
                                f"the file's line count, or 0 to count it")
    check_enough_good_lines(plan, parser.bad.as_dict(), sink.stats.n, sink.held_out_lines)
    return Scattered(sink.counters, sink.max_ids, sink.stats, parser.bad.as_dict())


def check_enough_good_lines(plan: Plan, bad: dict, n_train: int, n_held_out: Dict[str, int]) -> None:
    """After pass 1: no split may be empty, and at most plan.max_bad_fraction of the lines may be bad.
    The error gives the counts by reason and the first bad lines (the previous dataset stays)."""
    reasons = "; ".join(f"{reason} {n:,} (first at lines {bad['first_lines'][reason]})"
                        for reason, n in bad["counts"].items() if n)
    frac = bad["total"] / plan.total
    empty = [s for s, n in [("train", n_train)] + sorted(n_held_out.items()) if n == 0]
    if empty:
        raise CriteoFormatError(f"{plan.path}: no good lines in the {' and '.join(empty)} split(s): {bad['total']:,} "
                                f"of {plan.total:,} lines are bad ({reasons or 'none'}); the previous dataset, if "
                                f"any, is kept")
    if frac > plan.max_bad_fraction:
        raise CriteoFormatError(f"{plan.path}: {bad['total']:,} of {plan.total:,} lines ({frac:.2%}) are bad, more "
                                f"than max_bad_fraction={plan.max_bad_fraction:g}: {reasons}. Fix the input, or "
                                f"raise max_bad_fraction to keep the good lines; the previous dataset, if any, is kept")


def build_mappers(plan: Plan, scattered: Scattered) -> Tuple[List[SlotMapper], Dict[str, np.ndarray]]:
    """Per-slot id mappers and, in vocab mode, the vocabulary arrays for vocab.npz."""
    mappers, vocab_arrays = [], {}
    for s in range(plan.slot_dim):
        if plan.mode == "vocab":
            keys, counts = scattered.counters[s].frequent(plan.threshold)
            scattered.counters[s] = None
            vocab_arrays[f"C{s + 1}_keys"] = keys
            vocab_arrays[f"C{s + 1}_counts"] = counts
            mappers.append(SlotMapper("vocab", vocab_keys=keys))
        elif plan.mode == "hash":
            mappers.append(SlotMapper("hash", max_ind_range=plan.max_ind_range))
        else:
            if scattered.max_ids[s] >= 2 ** 31 - 1:
                raise CriteoFormatError(f"{plan.path}: slot C{s + 1} holds id {scattered.max_ids[s]}, above the "
                                        f"int32 range")
            mappers.append(SlotMapper("ids", max_id=scattered.max_ids[s]))
    return mappers, vocab_arrays


def _mapped_split(plan: Plan, split: str, mappers: List[SlotMapper]) -> Iterator[Tuple[np.ndarray, ...]]:
    """(ids int32 [n, S], dense float32 [n, Dn], label uint8 [n]) pieces of one split: the training
    buckets each shuffled in memory, the held-out splits in file order. Consumed files are removed."""
    def map_ids(rec):
        ids = np.empty((len(rec), plan.slot_dim), np.int32)
        for s in range(plan.slot_dim):
            ids[:, s] = mappers[s](np.ascontiguousarray(rec["keys"][:, s]), rec["missing"][:, s])
        return ids

    dtype = plan.dtype
    if split == "train":
        for b in range(plan.n_buckets):
            rec = np.fromfile(plan.bucket_path(b), dtype)
            os.remove(plan.bucket_path(b))
            rec = rec[plan.rng.permutation(len(rec))]
            for lo in range(0, len(rec), PIECE):
                piece = rec[lo:lo + PIECE]
                yield map_ids(piece), piece["dense"], piece["label"]
        return
    path = plan.held_out_path(split)
    for lo in range(0, os.path.getsize(path) // dtype.itemsize, PIECE):
        rec = np.fromfile(path, dtype, count=PIECE, offset=lo * dtype.itemsize)
        yield map_ids(rec), rec["dense"], rec["label"]
    os.remove(path)


def write_pass(plan: Plan, mappers: List[SlotMapper], progress: bool = True) -> Dict[str, int]:
    """Pass 2: shuffle each bucket, map values to ids, write packed MindRecord rows per split.
    Returns samples per split."""
    prog = Progress("preprocess pass 2/2 (shuffle, map, write)", plan.total, "lines", enabled=progress)
    counts = {}
    for split in plan.splits:
        writer = PackedWriter(os.path.join(plan.tmp, split_file_name(split)), plan.pack_size)
        for ids, dense, label in background(_mapped_split(plan, split, mappers)):  # mapping overlaps writing
            writer.write(ids, dense, label)
            prog.update(len(label))
        counts[split] = writer.close()
    prog.finish()
    return counts


def vocab_fingerprint(plan: Plan, table_sizes: List[int], vocab_arrays: Dict[str, np.ndarray]) -> str:
    """SHA-256 (hex) of what an id means: the id mode, its parameter, the table sizes and, in vocab mode,
    every slot's values in id order. Equal fingerprints = interchangeable ids."""
    h = hashlib.sha256(json.dumps({"mode": plan.mode, "threshold": plan.threshold if plan.mode == "vocab" else None,
                                   "max_ind_range": plan.max_ind_range, "table_sizes": table_sizes}).encode())
    for s in range(plan.slot_dim):
        keys = vocab_arrays.get(f"C{s + 1}_keys")
        if keys is not None:
            h.update(np.ascontiguousarray(keys, "<u4").tobytes())
    return h.hexdigest()


def build_metadata(plan: Plan, table_sizes: List[int], counts: Dict[str, int], bad_lines: dict,
                   fingerprint: str) -> dict:
    """The metadata.json dict without "files" (see src/data/packed_format.py for the keys every reader checks)."""
    n_held_out = plan.total - plan.n_train
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "input": os.path.abspath(plan.path),
        "dense_dim": plan.dense_dim,
        "slot_dim": plan.slot_dim,
        "id_mode": plan.mode,
        "threshold": plan.threshold if plan.mode == "vocab" else None,
        "max_ind_range": plan.max_ind_range or None,
        "table_sizes": table_sizes,
        "total_rows": int(sum(table_sizes)),
        "pack_size": plan.pack_size,
        "random_seed": plan.seed,
        "lines": {"total": plan.total, "train": plan.n_train, "test": n_held_out - plan.n_val, "val": plan.n_val},
        "split": f"last {n_held_out} lines (N // 7) are held out" +
                 (f"; the first {plan.n_val} of them are validation" if plan.n_val else ""),
        "samples": counts,
        "vocab_fingerprint": fingerprint,
        "bad_lines": bad_lines,
    }


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)


def run_passes(plan: Plan, progress: bool = True) -> dict:
    """Both passes into plan.tmp (vocab.npz, stats.json, the split files, metadata.json); returns the metadata."""
    scattered = scatter_pass(plan, progress)
    mappers, vocab_arrays = build_mappers(plan, scattered)
    counts = write_pass(plan, mappers, progress)
    np.savez(os.path.join(plan.tmp, "vocab.npz"), **vocab_arrays)
    _write_json(os.path.join(plan.tmp, "stats.json"), scattered.stats.as_dict())
    sizes = [m.size for m in mappers]
    meta = build_metadata(plan, sizes, counts, scattered.bad_lines, vocab_fingerprint(plan, sizes, vocab_arrays))
    meta["files"] = {name: file_record(os.path.join(plan.tmp, name)) for name in sorted(os.listdir(plan.tmp))
                     if name not in (METADATA, ".lock")}
    _write_json(os.path.join(plan.tmp, METADATA), meta)
    return meta


def preprocess(cfg, progress: bool = True) -> dict:
    """Preprocess cfg.data_path into DIR/mindrecord (appearing whole or not at all); returns the
    metadata dict plus "dataset_path". Raises CriteoFormatError on bad input."""
    path = open_input(cfg.data_path)
    data_dir = os.path.dirname(os.path.abspath(path))
    out_dir = os.path.join(data_dir, "mindrecord")
    try:
        with staged_dir(out_dir, has_file(METADATA), "the dataset") as tmp:
            meta = run_passes(make_plan(cfg, path, tmp), progress)
    except OSError as exc:      # a full disk, a file-size limit, a read-only folder
        raise OutputError(f"cannot write the dataset for {out_dir}: {exc}. Free space (the dataset needs about "
                          f"2.5x the input's uncompressed size while it is written) and run again; the previous "
                          f"dataset, if any, is kept") from None
    meta["dataset_path"] = out_dir
    return meta


def main(argv: Optional[List[str]] = None) -> None:
    """`python src/preprocess_data.py --data_path=DIR [--key=value ...]`"""
    from src.model_utils.config import get_config
    cfg = get_config(argv)
    try:
        meta = preprocess(cfg)
    except (CriteoFormatError, OutputError) as exc:
        sys.stderr.write(f"preprocess error: {exc}\n")
        sys.exit(2)
    bad = meta["bad_lines"]
    print(f"wrote {meta['dataset_path']}: {describe_splits(meta['samples'])} samples, {meta['total_rows']:,} "
          f"embedding rows, {bad['total']:,} skipped lines")
    if bad["total"]:
        for reason, n in bad["counts"].items():
            if n:
                print(f"  skipped {n:,} lines: {reason} (first at lines {bad['first_lines'][reason]})")


if __name__ == "__main__":
    main()
