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
import json
import os
import shutil
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from src.criteo import BlockParser, CriteoFormatError, count_lines, iter_blocks, open_input
from src.dataset import METADATA
from src.mindrecord_writer import PackedWriter
from src.progress import Progress, background
from src.staged_dir import staged_dir
from src.vocab import SlotCounter, SlotMapper

FORMAT_VERSION = 1
PIECE = 1 << 17  # lines mapped per step of pass 2 (small pieces let mapping overlap writing)


def record_dtype(dense_dim, slot_dim):
    """On-disk layout of a parsed line between the passes."""
    return np.dtype([("label", "u1"), ("dense", "<f4", (dense_dim,)), ("keys", "<u4", (slot_dim,)),
                     ("missing", "?", (slot_dim,))])


def _to_records(chunk, sel, dtype):
    rec = np.empty(len(sel), dtype)
    rec["label"] = chunk.label[sel]
    rec["dense"] = chunk.dense[:, sel].T
    rec["keys"] = chunk.keys[:, sel].T
    rec["missing"] = chunk.missing[:, sel].T
    return rec


def _cleanup_stale(parent):
    """Remove temporary folders of earlier runs whose process is gone."""
    for name in os.listdir(parent):
        if name.startswith(".mindrecord.tmp-"):
            try:
                pid = int(name.rsplit("-", 1)[1])
                os.kill(pid, 0)
                continue  # still running
            except (ValueError, ProcessLookupError):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            except PermissionError:
                continue


class _Stats:
    """Running per-feature statistics of the training lines (after the log transform)."""

    def __init__(self, dense_dim, slot_dim):
        self.n = 0
        self.pos = 0
        self.sum = np.zeros(dense_dim)
        self.sumsq = np.zeros(dense_dim)
        self.max = np.zeros(dense_dim)
        self.cat_missing = np.zeros(slot_dim, np.int64)

    def add(self, chunk, sel):
        d = chunk.dense[:, sel].astype(np.float64)
        self.n += len(sel)
        self.pos += int(chunk.label[sel].sum())
        self.sum += d.sum(1)
        self.sumsq += (d * d).sum(1)
        if d.shape[1]:
            self.max = np.maximum(self.max, d.max(1))
        self.cat_missing += chunk.missing[:, sel].sum(1)

    def as_dict(self):
        n = max(self.n, 1)
        mean = self.sum / n
        return {"train_samples": self.n, "positive_rate": self.pos / n,
                "dense_log1p_mean": mean.round(6).tolist(),
                "dense_log1p_std": np.sqrt(np.maximum(self.sumsq / n - mean ** 2, 0)).round(6).tolist(),
                "dense_log1p_max": self.max.round(6).tolist(),
                "categorical_missing_rate": (self.cat_missing / n).round(6).tolist()}


def preprocess(cfg, progress=True):
    """Run both passes for `cfg` (a Config); returns the metadata dict. Raises CriteoFormatError."""
    path = open_input(cfg.data_path)
    data_dir = os.path.dirname(os.path.abspath(path))
    out_dir = os.path.join(data_dir, "mindrecord")
    dense_dim, slot_dim = cfg.dense_dim, cfg.slot_dim
    mode = "hash" if cfg.max_ind_range else ("ids" if cfg.skip_id_convert else "vocab")
    if mode == "hash" and cfg.max_ind_range < 2:
        raise CriteoFormatError(f"max_ind_range must be 0 (off) or >= 2, got {cfg.max_ind_range}")

    total = cfg.train_line_count or count_lines(path)
    n_test_lines = total // 7
    n_train_lines = total - n_test_lines
    if n_test_lines == 0:
        raise CriteoFormatError(f"{path}: {total} lines is too few: the test split is the last N // 7 lines")
    n_val_lines = n_test_lines // 2 if cfg.val_split else 0

    _cleanup_stale(data_dir)
    with staged_dir(out_dir, os.path.join(data_dir, f".mindrecord.tmp-{os.getpid()}")) as tmp:
        meta = _run(cfg, path, tmp, mode, total, n_train_lines, n_val_lines, dense_dim, slot_dim, progress)
    meta["dataset_path"] = out_dir
    return meta


def _run(cfg, path, tmp, mode, total, n_train_lines, n_val_lines, dense_dim, slot_dim, progress):
    rng = np.random.default_rng([cfg.random_seed, 7])
    dtype = record_dtype(dense_dim, slot_dim)
    n_buckets = max(1, -(-n_train_lines // cfg.shuffle_bucket_lines))
    bucket_files = [open(os.path.join(tmp, f"bucket{b:04d}.bin"), "wb") for b in range(n_buckets)]
    val_file = open(os.path.join(tmp, "val.bin"), "wb") if n_val_lines else None
    test_file = open(os.path.join(tmp, "test.bin"), "wb")
    counters = [SlotCounter() for _ in range(slot_dim)] if mode == "vocab" else None
    max_ids = np.zeros(slot_dim, np.int64)
    stats = _Stats(dense_dim, slot_dim)
    parser = BlockParser(path, dense_dim, slot_dim, strict=bool(cfg.strict), int_ids=(mode == "ids"))
    prog = Progress("preprocess pass 1/2 (parse, count, scatter)", total, "lines", enabled=progress)
    last_line = 0
    try:
        def parsed():
            for first, block, n_lines in iter_blocks(path, cfg.chunk_bytes):
                if first + n_lines - 1 > total:
                    raise CriteoFormatError(f"{path}: has more than train_line_count={total} lines (line "
                                            f"{total + 1} exists); set train_line_count to the file's line "
                                            f"count, or 0 to count it")
                yield first + n_lines - 1, n_lines, parser.parse(first, block, n_lines)

        for last_line, n_lines, chunk in background(parsed()):
            prog.update(n_lines)
            if chunk is None:
                continue
            is_train = chunk.line <= n_train_lines
            tr = np.flatnonzero(is_train)
            if len(tr):
                stats.add(chunk, tr)
                for s in range(slot_dim):
                    vals = chunk.keys[s, tr]
                    if counters is not None:
                        counters[s].add(vals[~chunk.missing[s, tr]])
                    elif len(vals):
                        max_ids[s] = max(max_ids[s], int(vals.max()))
                rec = _to_records(chunk, tr, dtype)
                bucket = rng.integers(0, n_buckets, len(rec))
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
                for b in range(n_buckets):
                    if bounds[b + 1] > bounds[b]:
                        rec[order[bounds[b]:bounds[b + 1]]].tofile(bucket_files[b])
            te = np.flatnonzero(~is_train)
            if len(te):
                if mode == "ids":
                    for s in range(slot_dim):
                        max_ids[s] = max(max_ids[s], int(chunk.keys[s, te].max()))
                rec = _to_records(chunk, te, dtype)
                if val_file is not None:
                    in_val = chunk.line[te] <= n_train_lines + n_val_lines
                    rec[in_val].tofile(val_file)
                    rec = rec[~in_val]
                rec.tofile(test_file)
    finally:
        for f in bucket_files + [test_file] + ([val_file] if val_file else []):
            f.close()
    prog.finish()
    if last_line != total:
        raise CriteoFormatError(f"{path}: has {last_line} lines but train_line_count={total}; set it to the "
                                f"file's line count, or 0 to count it")

    # Vocabulary / id mappers.
    mappers, vocab_arrays = [], {}
    for s in range(slot_dim):
        if mode == "vocab":
            keys, counts = counters[s].frequent(cfg.threshold)
            counters[s] = None
            vocab_arrays[f"C{s + 1}_keys"] = keys
            vocab_arrays[f"C{s + 1}_counts"] = counts
            mappers.append(SlotMapper("vocab", vocab_keys=keys))
        elif mode == "hash":
            mappers.append(SlotMapper("hash", max_ind_range=cfg.max_ind_range))
        else:
            if max_ids[s] >= 2 ** 31 - 1:
                raise CriteoFormatError(f"{path}: slot C{s + 1} holds id {max_ids[s]}, above the int32 range")
            mappers.append(SlotMapper("ids", max_id=max_ids[s]))
    table_sizes = [m.size for m in mappers]

    def map_ids(rec):
        ids = np.empty((len(rec), slot_dim), np.int32)
        for s in range(slot_dim):
            ids[:, s] = mappers[s](np.ascontiguousarray(rec["keys"][:, s]), rec["missing"][:, s])
        return ids

    def mapped(split):
        """Yield (ids, dense, label) pieces of one split, shuffled for train, in file order otherwise."""
        if split == "train":
            for b in range(n_buckets):
                bpath = os.path.join(tmp, f"bucket{b:04d}.bin")
                rec = np.fromfile(bpath, dtype)
                os.remove(bpath)
                rec = rec[rng.permutation(len(rec))]
                for lo in range(0, len(rec), PIECE):
                    piece = rec[lo:lo + PIECE]
                    yield map_ids(piece), piece["dense"], piece["label"]
            return
        bpath = os.path.join(tmp, f"{split}.bin")
        step = PIECE
        for lo in range(0, os.path.getsize(bpath) // dtype.itemsize, step):
            rec = np.fromfile(bpath, dtype, count=step, offset=lo * dtype.itemsize)
            yield map_ids(rec), rec["dense"], rec["label"]
        os.remove(bpath)

    prog = Progress("preprocess pass 2/2 (shuffle, map, write)", total, "lines", enabled=progress)
    counts = {}
    for split in ("train",) + (("val", "test") if n_val_lines else ("test",)):
        writer = PackedWriter(os.path.join(tmp, f"{split}.mindrecord"), cfg.pack_size)
        for ids, dense, label in background(mapped(split)):  # mapping overlaps the MindRecord writes
            writer.write(ids, dense, label)
            prog.update(len(label))
        counts[split] = writer.close()
    prog.finish()

    np.savez(os.path.join(tmp, "vocab.npz"), **vocab_arrays)
    with open(os.path.join(tmp, "stats.json"), "w") as f:
        json.dump(stats.as_dict(), f, indent=1)
    n_test_lines = total - n_train_lines
    meta = {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "input": os.path.abspath(path),
        "dense_dim": dense_dim,
        "slot_dim": slot_dim,
        "id_mode": mode,
        "threshold": cfg.threshold if mode == "vocab" else None,
        "max_ind_range": cfg.max_ind_range or None,
        "table_sizes": table_sizes,
        "total_rows": int(sum(table_sizes)),
        "pack_size": cfg.pack_size,
        "random_seed": cfg.random_seed,
        "lines": {"total": total, "train": n_train_lines, "test": n_test_lines - n_val_lines,
                  "val": n_val_lines},
        "split": f"last {n_test_lines} lines (N // 7) are held out" +
                 (f"; the first {n_val_lines} of them are validation" if n_val_lines else ""),
        "samples": counts,
        "files": {k: f"{k}.mindrecord" for k in counts},
        "bad_lines": parser.bad.as_dict(),
    }
    with open(os.path.join(tmp, METADATA), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv=None):
    from src.model_utils.config import get_config
    cfg = get_config(argv)
    try:
        meta = preprocess(cfg)
    except CriteoFormatError as exc:
        sys.stderr.write(f"preprocess error: {exc}\n")
        sys.exit(2)
    bad = meta["bad_lines"]
    print(f"wrote {meta['dataset_path']}: train {meta['samples']['train']:,} / test {meta['samples']['test']:,}"
          + (f" / val {meta['samples']['val']:,}" if "val" in meta["samples"] else "")
          + f" samples, {meta['total_rows']:,} embedding rows, {bad['total']:,} skipped lines")
    if bad["total"]:
        for reason, n in bad["counts"].items():
            if n:
                print(f"  skipped {n:,} lines: {reason} (first at lines {bad['first_lines'][reason]})")


if __name__ == "__main__":
    main()
