"""Click logs as delimited text -> packed MindRecord parts, on N worker processes, resumable, in bounded memory.

    python src/preprocess_data.py --data_path=DIR/ [--feature_spec=SPEC.yaml] [--workers=N] [--max_ind_range=M] ...

DIR holds train.txt[.gz] (Criteo Kaggle), day_A .. day_B[.gz] (Criteo Terabyte), or the files a feature spec
names (src/data/feature_spec.py); see src/data/inputs.py for the splits. DIR/mindrecord/ gets:
  {split}-{i:05d}.mindrecord   the parts of each split (train: a uniform random order of the training
                               lines; val/test: the held-out lines in file order)
  vocab.npz                    vocabulary mode: per slot k = 1..S `C{k}_keys` (the keys in id order: uint32
                               values, or uint64 hashes of strings; id = position + 2) and `C{k}_counts`
  stats.json                   per-feature statistics of the training lines
  metadata.json                features, table sizes, parts and sample counts, split, id mode, bad lines, checksums,
                               the feature spec

Phase 0 (split tail only) counts the lines of the file (the split is the last N // 7). Phase A parses every
piece (src/data/pieces.py) into records and a summary. The summaries are merged: vocabulary (by value
ranges, src/data/vocab.py), statistics, bad lines. Phase B writes the parts (src/data/parts.py).
Pieces and parts are independent tasks: the dataset is the same for every number of workers, and all of
it lives in the work folder DIR/.mindrecord.work until it is complete. A killed run's finished pieces
and parts are kept there and the same command continues from them; DIR/mindrecord is replaced only at
the end (or not at all).
"""
import datetime
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from src.data.text_parser import InputFormatError, MAX_EXAMPLES, count_lines
from src.data.feature_spec import Columns, FeatureSpecError
from src.data.inputs import DAY_RE, InputFile, Layout, count_piece_lines, find_layout, piece_count
from src.data.packed_format import FORMAT_VERSION, METADATA, describe_splits, file_record
from src.data.parts import PartJob, PartTask, RecordRange, write_part
from src.data.pieces import FINE_BUCKETS, HANDED, WORK_FORMAT, PieceJob, record_dtype, run_file, run_handed
from src.data.vocab import merge_counts
from src.utils.progress import PhaseTimes, Progress
from src.utils.staged_dir import OutputError, WorkDir, has_file, work_dir, write_json_atomic
from src.utils.workers import Workers, choose_workers, cpus_available, imported_meanwhile


@dataclass
class Preprocessing:
    """What every phase agrees on: input layout, work folder, split and id settings."""
    layout: Layout
    work: WorkDir
    mode: str                 # "vocab" | "hash" | "ids" (see src/data/vocab.py)
    threshold: int
    max_ind_range: int
    pack_size: int
    piece_bytes: int
    part_lines: int           # lines per part (training: per shuffle bucket run)
    strict: bool
    max_bad_fraction: float
    val_split: bool
    val_size: float
    seed: int
    workers: Workers          # the process pool every phase uses
    parent_writes: bool       # phase B runs in this process (a small input: see ONE_WRITER_BELOW)
    progress: bool
    train_line_count: int
    times: PhaseTimes         # wall time per phase, printed at the end

    def path(self, *names: str) -> str:
        """A path inside the work folder."""
        return os.path.join(self.work.path, *names)


@dataclass
class Piece:
    """A finished piece, as the merge sees it."""
    file: InputFile
    k: int
    stem: str
    offset: int               # lines of its file before it
    lines: int
    n_train: int
    n_held_out: int


def id_mode(cfg) -> str:
    """"hash" (max_ind_range > 0), "ids" (skip_id_convert) or "vocab"."""
    if cfg.max_ind_range and cfg.max_ind_range < 2:
        raise InputFormatError(f"max_ind_range must be 0 (off) or >= 2, got {cfg.max_ind_range}")
    return "hash" if cfg.max_ind_range else ("ids" if cfg.skip_id_convert else "vocab")


def fingerprint(cfg, layout: Layout) -> dict:
    """What the dataset depends on (inputs and settings; not the worker count): a work folder with
    another fingerprint is not resumed."""
    files = [[f.name, os.path.getsize(f.path), os.stat(f.path).st_mtime_ns] for f in layout.files]
    keys = ("threshold", "max_ind_range", "skip_id_convert", "pack_size", "chunk_bytes",
            "shuffle_bucket_lines", "strict", "val_split", "val_size", "random_seed", "train_line_count")
    return {"format_version": FORMAT_VERSION, "work_format": WORK_FORMAT, "layout": layout.kind, "files": files,
            "feature_spec": layout.columns.spec.to_json(),
            **{k: getattr(cfg, k) for k in keys}}


@dataclass(frozen=True)
class SplitPlan:
    """Where the splits fall, known before the pieces are parsed: data lines 1..n_train of file `boundary` are
    training and the rest of it held out (n_train 0: no such file), and per file index the range of data lines that
    are validation (first, last; last None: up to half the file, MLPerf's split of the last day, known once it is
    read). `total`: split tail's line count (None for last_file)."""
    boundary: int = 0
    n_train: int = 0
    offsets: Optional[tuple] = None
    val: Tuple[Tuple[int, int, Optional[int]], ...] = ()
    total: Optional[int] = None


def val_count(val_size: float, lines: int) -> int:
    """Validation lines out of `lines` training lines: a fraction (0 < val_size < 1, at least one line) or a count
    (val_size >= 1), always leaving one training line; 0 when val_size is 0."""
    if val_size <= 0 or lines < 2:
        return 0
    want = max(1, round(val_size * lines)) if val_size < 1 else int(val_size)
    return min(want, lines - 1)


def count_file(prep: Preprocessing, file: InputFile, expected: int = 0) -> Tuple[Optional[tuple], int]:
    """(data lines before every piece (plain file; None for gzip), data lines) of a file; a header is not a data line.
    `expected` (train_line_count): the count to take for a gzip file, and to check a plain one against."""
    header = 1 if prep.layout.columns.header else 0
    if file.gzip:
        return None, expected or count_lines(file.path) - header
    n = piece_count(file.path, prep.piece_bytes)
    prog = Progress("preprocess: counting lines", n, "pieces", enabled=prep.progress)
    counts = prep.workers.run(_count_task, (file.path, prep.piece_bytes), list(range(n)), prog)
    prog.finish()
    counts[0] -= header
    total = int(sum(counts))
    if expected and expected != total:
        raise InputFormatError(f"{file.path}: has {total} lines{' after its header' if header else ''} but "
                               f"train_line_count={expected}; set it to the file's line count, or 0 to count it")
    return tuple(int(x) for x in np.concatenate([[0], np.cumsum(counts)[:-1]])), total


def plan_split(prep: Preprocessing) -> SplitPlan:
    """The split of the input: split tail holds out the file's last N // 7 lines as test; last_file the last file.
    Validation is, by default, the end of the training lines (val_size of them: the period just before the test
    lines); with val_split, MLPerf's instead: the first half of the held-out lines."""
    files = prep.layout.files
    if prep.layout.kind == "tail":
        offsets, total = count_file(prep, files[0], prep.train_line_count)
        n_test = total // 7
        if n_test == 0:
            raise InputFormatError(f"{files[0].path}: {total} lines is too few: the test split is the last N // 7 "
                                   f"lines")
        n_val = n_test // 2 if prep.val_split else val_count(prep.val_size, total - n_test)
        n_train = total - n_test - (0 if prep.val_split else n_val)
        return SplitPlan(0, n_train, offsets, ((0, n_train + 1, n_train + n_val),) if n_val else (), total)
    if prep.val_split:
        return SplitPlan(val=((files[-1].index, 1, None),))
    if not prep.val_size:
        return SplitPlan()
    offsets, lines = count_file(prep, files[-2])
    n_val = val_count(prep.val_size, lines)
    return SplitPlan(files[-2].index, lines - n_val, offsets, ((files[-2].index, lines - n_val + 1, lines),))


def _count_task(shared: Tuple[str, int], k: int) -> int:
    return count_piece_lines(shared[0], k, shared[1])


def _piece_task(job: PieceJob, task: Tuple[InputFile, Union[int, str, None]]) -> List[int]:
    if isinstance(task[1], str):            # a piece a gzip file's task left as text
        return run_handed(job, task[0], task[1])
    return run_file(job, task[0], task[1])


def hand_off(prep: Preprocessing) -> int:
    """How many inflated pieces each gzip file's task may leave as text for other workers at a time: the workers'
    share per gzip file (none with one worker). Bounds the text waiting on disk to about that many pieces per file."""
    n_gzip = sum(1 for f in prep.layout.files if f.gzip)
    return 0 if prep.workers.n < 2 or not n_gzip else -(-prep.workers.n // n_gzip)


def handed_pieces(prep: Preprocessing, job: PieceJob) -> Callable[[], List[Tuple[InputFile, str]]]:
    """found() for Workers.run_growing: the pieces gzip files' tasks have left as text since the last call."""
    seen, files = set(), {f.index: f for f in prep.layout.files}

    def found() -> List[Tuple[InputFile, str]]:
        new = [n for n in sorted(os.listdir(job.folder)) if HANDED.match(n) and n not in seen]
        seen.update(new)
        return [(files[int(HANDED.match(n)[1])], n) for n in new]
    return found


def parse_phase(prep: Preprocessing, job: PieceJob) -> None:
    """Phase A: every piece not yet done, on prep.workers processes (a gzip file's task streams it and leaves some of
    its pieces, inflated, to the other workers: they are found and handed out while the phase runs)."""
    tasks, weights = [], []
    for f in prep.layout.files:
        if f.gzip:
            tasks.append((f, None))
            weights.append(os.path.getsize(f.path))
        else:
            n = piece_count(f.path, prep.piece_bytes)
            todo = [k for k in range(n) if not job.done(f, k)]
            tasks += [(f, k) for k in todo]
            weights += [min(prep.piece_bytes, os.path.getsize(f.path) - k * prep.piece_bytes) for k in todo]
    finished = sum(1 for name in os.listdir(job.folder) if name.endswith(".npz"))
    if finished:
        print(f"preprocess: resuming in {prep.work.path}: {finished:,} finished pieces are kept and skipped",
              file=sys.stderr)
    prog = Progress("preprocess phase A (parse, count, bucket)", sum(weights), "bytes", enabled=prep.progress)
    # only gzip files' tasks leave pieces behind: without them nothing is looked for
    found = handed_pieces(prep, job) if job.hand_off else None
    prep.workers.run_growing(_piece_task, job, tasks, prog, weights, found)
    prog.finish()


def list_pieces(prep: Preprocessing, job: PieceJob) -> List[Piece]:
    """Every finished piece in input order, with its line offset in its file."""
    pieces = []
    for f in prep.layout.files:
        k, offset = 0, 0
        n = None if f.gzip else piece_count(f.path, prep.piece_bytes)
        while (k < n) if n is not None else job.done(f, k):
            stem = job.stem(f, k)
            with np.load(stem + ".npz") as z:
                lines, n_train, n_held = int(z["lines"]), int(z["n_train"]), int(z["n_held_out"])
            pieces.append(Piece(f, k, stem, offset, lines, n_train, n_held))
            offset += lines
            k += 1
    return pieces


def merge_bad_lines(prep: Preprocessing, pieces: List[Piece]) -> dict:
    """The bad-line summary over all pieces, with line numbers in their files (split last_file: 'day_3:120'), and
    per reason the lines each column made bad (when any did)."""
    counts, first, columns, truncated = {}, {}, {}, {}
    for p in pieces:
        with np.load(p.stem + ".npz") as z:
            bad = json.loads(bytes(z["bad"]).decode())
        for name, n in bad.get("truncated", {}).items():
            truncated[name] = truncated.get(name, 0) + n
        for reason, per in bad.get("columns", {}).items():
            into = columns.setdefault(reason, {})
            for name, n in per.items():
                into[name] = into.get(name, 0) + n
        for reason, n in bad["counts"].items():
            counts[reason] = counts.get(reason, 0) + n
            got = first.setdefault(reason, [])
            for line in bad["first_lines"][reason][:MAX_EXAMPLES - len(got)]:
                line += p.offset + (1 if prep.layout.columns.header else 0)      # the line's number in its file
                got.append(line if prep.layout.kind == "tail" else f"{p.file.name}:{line}")
    out = {"total": sum(counts.values()), "counts": counts, "first_lines": first}
    if columns:
        out["columns"] = columns
    if truncated:
        out["truncated"] = truncated          # kept lines whose multi_hot list was cut to max_len (not bad lines)
    return out


def merge_stats(pieces: List[Piece], columns: Columns) -> dict:
    """stats.json over the training lines: sample count, click rate, dense log1p mean/std/max, per categorical slot
    the missing rate and, per multi_hot slot, the rate of empty lists and the mean list length."""
    n, pos, dense_dim = 0, 0, columns.dense_dim
    s, sq, mx, miss = np.zeros(dense_dim), np.zeros(dense_dim), np.zeros(dense_dim), np.zeros(columns.lookups, np.int64)
    for p in pieces:
        with np.load(p.stem + ".npz") as z:
            n += int(z["stat_n"])
            pos += int(z["stat_pos"])
            s, sq, mx = s + z["stat_sum"], sq + z["stat_sumsq"], np.maximum(mx, z["stat_max"])
            miss += z["stat_cat_missing"]
    d = max(n, 1)
    mean = s / d
    cats = len(columns.categorical)
    out = {"train_samples": n, "positive_rate": pos / d, "dense_log1p_mean": mean.round(6).tolist(),
           "dense_log1p_std": np.sqrt(np.maximum(sq / d - mean ** 2, 0)).round(6).tolist(),
           "dense_log1p_max": mx.round(6).tolist(), "categorical_missing_rate": (miss[:cats] / d).round(6).tolist()}
    if columns.multi_hot:
        lists = columns.slot_keys[cats:]
        out.update(multi_hot_empty_rate=[round(float(miss[k.start]) / d, 6) for k in lists],  # first place a pad: empty
                   multi_hot_mean_length=[round(float((k.stop - k.start) * n - miss[k].sum()) / d, 6) for k in lists])
    return out


def check_enough_good_lines(path: str, total: int, max_bad_fraction: float, bad: dict,
                            split_lines: Dict[str, int]) -> None:
    """After phase A: no split may be empty, and at most max_bad_fraction of the lines may be bad.
    The error gives the counts by reason and the first bad lines (the previous dataset stays)."""
    reasons = "; ".join(f"{reason} {n:,} (first at lines {bad['first_lines'][reason]})"
                        for reason, n in bad["counts"].items() if n)
    frac = bad["total"] / max(total, 1)
    empty = [s for s, n in split_lines.items() if n == 0]
    if empty:
        raise InputFormatError(f"{path}: no good lines in the {' and '.join(empty)} split(s): {bad['total']:,} "
                                f"of {total:,} lines are bad ({reasons or 'none'}); the previous dataset, if "
                                f"any, is kept")
    if frac > max_bad_fraction:
        raise InputFormatError(f"{path}: {bad['total']:,} of {total:,} lines ({frac:.2%}) are bad, more "
                                f"than max_bad_fraction={max_bad_fraction:g}: {reasons}. Fix the input, or "
                                f"raise max_bad_fraction to keep the good lines; the previous dataset, if any, is kept")


def _merge_slot(shared: Tuple[List[str], int], s: int) -> Tuple[np.ndarray, np.ndarray]:
    stems, threshold = shared
    parts = []
    for stem in stems:
        with np.load(stem + ".npz") as z:
            parts.append((z[f"k{s}"], z[f"c{s}"]))
    return merge_counts(parts, threshold)


def build_vocab(prep: Preprocessing, pieces: List[Piece]) -> Tuple[Dict[str, np.ndarray], List[int], Optional[tuple]]:
    """(vocab.npz arrays, table sizes, largest ids (id mode)) from the piece summaries."""
    if prep.mode == "hash":
        return {}, [prep.max_ind_range] * prep.layout.columns.slots, None
    if prep.mode == "ids":
        max_ids = np.zeros(prep.layout.columns.slots, np.int64)
        for p in pieces:
            with np.load(p.stem + ".npz") as z:
                max_ids = np.maximum(max_ids, z["max_ids"])
        bad = np.flatnonzero(max_ids >= 2 ** 31 - 1)
        if len(bad):
            raise InputFormatError(f"{prep.layout.describe()}: slot C{bad[0] + 1} holds id {max_ids[bad[0]]}, above "
                                   f"the int32 range")
        return {}, [int(m) + 1 for m in max_ids], tuple(int(m) for m in max_ids)
    stems = [p.stem for p in pieces if p.n_train]
    slots = prep.layout.columns.slots
    prog = Progress("preprocess: merging value counts", slots, "slots", enabled=prep.progress)
    merged = prep.workers.run(_merge_slot, (stems, prep.threshold), list(range(slots)), prog)
    prog.finish()
    arrays = {}
    for s, (keys, counts) in enumerate(merged):
        arrays[f"C{s + 1}_keys"], arrays[f"C{s + 1}_counts"] = keys, counts
    return arrays, [len(k) + 2 for k, _ in merged], None


def train_parts(prep: Preprocessing, pieces: List[Piece]) -> List[PartTask]:
    """Training parts: runs of the FINE_BUCKETS shuffle buckets of about part_lines lines each. Writes the
    bucket table the part workers read: `cuts.npy` [training pieces, parts + 1] (record offsets of the
    part boundaries in each piece) and `pieces.json` (their record files)."""
    train = [p for p in pieces if p.n_train]
    n_train = sum(p.n_train for p in train)
    n_parts = min(FINE_BUCKETS, max(1, -(-n_train // prep.part_lines)))
    cuts = [i * FINE_BUCKETS // n_parts for i in range(n_parts + 1)]
    table = np.lib.format.open_memmap(prep.path("parts", "cuts.npy.tmp"), "w+", np.uint32, (len(train), n_parts + 1))
    samples = np.zeros(n_parts, np.int64)
    for r, p in enumerate(train):
        with np.load(p.stem + ".npz") as z:
            table[r] = z["bounds"][cuts]
        samples += np.diff(table[r].astype(np.int64))
    table.flush()
    del table
    os.replace(prep.path("parts", "cuts.npy.tmp"), prep.path("parts", "cuts.npy"))
    write_json_atomic(prep.path("parts", "pieces.json"), [p.stem + ".rec" for p in train])
    return [PartTask("train", i, int(n)) for i, n in enumerate(samples)]


def held_out_parts(prep: Preprocessing, pieces: List[Piece], val: Dict[int, Tuple[int, int]]) -> Dict[str, List[PartTask]]:
    """val/test parts: held-out lines in file order; a line is validation when its line number lies in its file's
    validation range (`val`: file index -> first, last; the validation lines of a file come before its test lines).
    Parts are whole piece ranges of about part_lines lines."""
    segs = {"val": [], "test": []}
    for p in pieces:
        if not p.n_held_out:
            continue
        rec = np.memmap(p.stem + ".rec", mode="r", dtype=_dtype(prep))[p.n_train:]
        last = val[p.file.index][1] if p.file.index in val else 0
        n_val = int(np.searchsorted(rec["line"].astype(np.int64) + p.offset, last, side="right"))
        segs["val"].append(RecordRange(p.stem + ".rec", p.n_train, p.n_train + n_val))
        segs["test"].append(RecordRange(p.stem + ".rec", p.n_train + n_val, p.n_train + p.n_held_out))
    out = {}
    for split, seg in segs.items():
        parts, cur, n_cur = [], [], 0
        for sg in seg:
            if sg.end > sg.start:
                cur.append(sg)
                n_cur += sg.end - sg.start
            if n_cur >= prep.part_lines:
                parts.append(cur)
                cur, n_cur = [], 0
        if cur:
            parts.append(cur)
        if parts or split == "test" or val:
            out[split] = [PartTask(split, i, sum(x.end - x.start for x in c), tuple(c)) for i, c in enumerate(parts)]
    return out


def _dtype(prep: Preprocessing) -> np.dtype:
    return record_dtype(prep.layout.columns, prep.mode)


def _part_task(job: PartJob, task: PartTask) -> dict:
    return write_part(job, task)


def write_phase(prep: Preprocessing, job: PartJob, parts: Dict[str, List[PartTask]]) -> Tuple[dict, dict]:
    """Phase B: every part not yet written; returns (per split the [file name, samples] of its parts,
    {file name: {bytes, sha256}} of the files written)."""
    tasks = [t for split in ("train", "val", "test") for t in parts.get(split, [])]
    done = sum(1 for t in tasks if job.done(t) is not None)
    if done:
        print(f"preprocess: {done:,} of {len(tasks):,} parts were written by an earlier run; skipping them",
              file=sys.stderr)
    prog = Progress("preprocess phase B (shuffle, map, write)", sum(t.samples for t in tasks), "lines",
                    enabled=prep.progress)
    results = prep.workers.run(_part_task, job, tasks, prog, [t.samples for t in tasks], here=prep.parent_writes)
    prog.finish()
    out, files = {}, {}
    for t, r in zip(tasks, results):
        out.setdefault(t.split, []).append([t.name, r["samples"]])
        files.update(r["files"])
    return out, files


def vocab_fingerprint(mode: str, threshold: int, max_ind_range: int, table_sizes: List[int],
                      vocab_arrays: Dict[str, np.ndarray]) -> str:
    """SHA-256 (hex) of what an id means: the id mode, its parameter, the table sizes and, in vocab mode,
    every slot's values in id order. Equal fingerprints = interchangeable ids."""
    h = hashlib.sha256(json.dumps({"mode": mode, "threshold": threshold if mode == "vocab" else None,
                                   "max_ind_range": max_ind_range, "table_sizes": table_sizes}).encode())
    for s in range(len(table_sizes)):
        keys = vocab_arrays.get(f"C{s + 1}_keys")
        if keys is not None:
            h.update(np.ascontiguousarray(keys, keys.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def features(columns: Columns, table_sizes: List[int]) -> List[dict]:
    """metadata.json "features": each dense, categorical and multi_hot feature with its kind, table rows (and for
    multi_hot its max_len and pooling), in model order (the DLRMSpec features of the dataset)."""
    return [f.record() for f in columns.features(table_sizes)]


def build_metadata(prep: Preprocessing, table_sizes: List[int], parts: Dict[str, List[Tuple[str, int]]], lines: dict,
                   split_text: str, bad_lines: dict, fingerprint_hex: str) -> dict:
    """The metadata.json dict without "files" (see src/data/packed_format.py for the keys every reader checks)."""
    layout = prep.layout
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "input": layout.files[0].path if layout.kind == "tail" else layout.folder,
        "input_files": [f.name for f in layout.files],
        "feature_spec": layout.columns.spec.to_json(),
        # a header's columns in file order: raw lines sent for scoring are read in this layout (a spec without a header
        # names its columns itself; the Criteo datasets stay as they were)
        **({"columns": list(layout.columns.header)} if layout.columns.header else {}),
        "features": features(layout.columns, table_sizes),
        "dense_dim": layout.columns.dense_dim,
        "slot_dim": layout.columns.slots,
        **({"ids_per_sample": layout.columns.lookups} if layout.columns.multi_hot else {}),
        "id_mode": prep.mode,
        "threshold": prep.threshold if prep.mode == "vocab" else None,
        "max_ind_range": prep.max_ind_range or None,
        "table_sizes": table_sizes,
        "total_rows": int(sum(table_sizes)),
        "pack_size": prep.pack_size,
        "random_seed": prep.seed,
        "lines": lines,
        "split": split_text,
        "samples": {split: sum(n for _, n in p) for split, p in parts.items()},
        "parts": parts,
        "vocab_fingerprint": fingerprint_hex,
        "bad_lines": bad_lines,
    }


def split_lines(prep: Preprocessing, pieces: List[Piece], plan: SplitPlan) -> Tuple[dict, dict, str]:
    """(metadata "lines", the validation range of data lines per file index, the split in words)."""
    files = prep.layout.files
    lines_of = {f.index: sum(p.lines for p in pieces if p.file == f) for f in files}
    total = sum(lines_of.values())
    if plan.total is not None and total != plan.total:
        raise InputFormatError(f"{files[0].path}: has {total} lines but train_line_count={plan.total}; set it to the "
                               f"file's line count (without its header), or 0 to count it")
    val = {i: (lo, hi if hi is not None else -(-lines_of[i] // 2)) for i, lo, hi in plan.val}
    n_val = sum(hi - lo + 1 for lo, hi in val.values())
    last = files[-1]
    if prep.layout.kind == "tail":
        n_test = total // 7
        text = f"last {n_test} lines (N // 7) are held out" + (
            f"; the first {n_val} of them are validation" if prep.val_split and n_val else
            f" as the test split; the {n_val} lines before them (val_size) are validation" if n_val else "")
        if prep.val_split:
            n_test -= n_val
    else:
        held = lines_of[last.index]
        n_test = held - (n_val if prep.val_split else 0)
        kind = "day" if DAY_RE.match(last.name) else "file"
        text = f"{last.name} (the last {kind}) is held out" + (
            f"; its first {n_val} lines (ceil(n/2), the half MLPerf's reference evaluates on) are validation, the "
            f"other {n_test} test" if prep.val_split else
            f" as the test split; the last {n_val} lines of {files[-2].name} (val_size) are validation" if n_val else
            ", all of it test")
    return {"total": total, "train": total - n_test - n_val, "test": n_test, "val": n_val}, val, text


def run_phases(prep: Preprocessing) -> dict:
    """All phases into the work folder; returns the metadata written to the staged dataset."""
    if prep.layout.kind != "tail" and prep.train_line_count:
        raise InputFormatError(f"train_line_count={prep.train_line_count} applies to split tail (one file, such as "
                               f"train.txt); the files of split last_file are counted as they are read: set it to 0")
    with prep.times.phase("count"):
        plan = plan_split(prep)
    os.makedirs(prep.path("pieces"), exist_ok=True)
    os.makedirs(prep.path("parts"), exist_ok=True)
    job = PieceJob(folder=prep.path("pieces"), columns=prep.layout.columns, piece_bytes=prep.piece_bytes,
                   mode=prep.mode, strict=prep.strict, seed=prep.seed, n_train=plan.n_train, offsets=plan.offsets,
                   boundary_file=plan.boundary, max_ind_range=prep.max_ind_range,
                   threads=max(1, cpus_available() // prep.workers.n), hand_off=hand_off(prep))
    with prep.times.phase("parse"):
        parse_phase(prep, job)
    with prep.times.phase("merge"):
        pieces = list_pieces(prep, job)
        lines, val, split_text = split_lines(prep, pieces, plan)
        bad = merge_bad_lines(prep, pieces)
        parts = {"train": train_parts(prep, pieces), **held_out_parts(prep, pieces, val)}
        check_enough_good_lines(prep.layout.describe(), lines["total"], prep.max_bad_fraction, bad,
                                {s: sum(t.samples for t in p) for s, p in parts.items()})
        arrays, sizes, max_ids = build_vocab(prep, pieces)
        out = prep.work.staged()
        np.savez(os.path.join(out, "vocab.npz"), **arrays)
        write_json_atomic(os.path.join(out, "stats.json"),
                          merge_stats(pieces, prep.layout.columns))
    part_job = PartJob(out=out, markers=prep.path("parts"), columns=prep.layout.columns, pack_size=prep.pack_size,
                       seed=prep.seed, mode=prep.mode, vocab_file=os.path.join(out, "vocab.npz"),
                       max_ids=max_ids, bucket_table=prep.path("parts"))
    with prep.times.phase("write"):
        written, files = write_phase(prep, part_job, parts)
    meta = build_metadata(prep, sizes, written, lines, split_text, bad,
                          vocab_fingerprint(prep.mode, prep.threshold, prep.max_ind_range, sizes, arrays))
    files.update({name: file_record(os.path.join(out, name)) for name in ("vocab.npz", "stats.json")})
    meta["files"] = dict(sorted(files.items()))
    write_json_atomic(os.path.join(out, METADATA), meta)
    return meta


GZIP_RATIO = 4          # workers=auto counts a gzip file as this many times its size of text
# Below this much input text this process writes every part: a writing worker first imports MindSpore (about 2 s of
# CPU), which costs more than a second writer saves on fewer than about 2M lines (docs/benchmarks.md)
ONE_WRITER_BELOW = 512 << 20


def input_size(layout: Layout, piece_bytes: int) -> Tuple[int, int]:
    """(bytes of text, parallel tasks) of the input: plain files by their size and pieces, a gzip file as GZIP_RATIO
    times its size and as many pieces as that much text makes (its task hands pieces on to other workers)."""
    size = sum(os.path.getsize(f.path) * (GZIP_RATIO if f.gzip else 1) for f in layout.files)
    tasks = sum(max(1, -(-os.path.getsize(f.path) * GZIP_RATIO // piece_bytes)) if f.gzip
                else piece_count(f.path, piece_bytes) for f in layout.files)
    return size, tasks


def preprocess(cfg, progress: bool = True) -> dict:
    """Preprocess cfg.data_path into DIR/mindrecord (appearing whole or not at all; a killed run resumes
    from its finished pieces and parts); returns the metadata dict plus "dataset_path".
    Raises InputFormatError on bad input, OutputError when the output cannot be written."""
    times = PhaseTimes()
    layout = find_layout(cfg.data_path, cfg.feature_spec)
    from src.model_utils.config import check_feature_counts
    check_feature_counts(cfg, layout.columns.dense_dim, layout.columns.slots, f"the data in {layout.describe()}")
    out_dir = os.path.join(layout.folder, "mindrecord")
    size, tasks = input_size(layout, cfg.chunk_bytes)
    n_workers, rule = choose_workers(cfg.workers, size, tasks)
    parent_writes = n_workers == 1 or size < ONE_WRITER_BELOW
    if progress:
        print(f"preprocess: {rule}; the parts are written by "
              + (f"this process (under {ONE_WRITER_BELOW >> 20} MB of input)" if parent_writes and n_workers > 1
                 else "this process" if parent_writes else "the workers"), file=sys.stderr)
    # when this process writes the parts, it imports MindRecord's writer (and so MindSpore) in a thread while the pieces
    # are parsed. Writing workers import it at their first part: on cores the workers keep busy, an import in a thread
    # while they parse was measured slower (docs/benchmarks.md)
    try:
        with imported_meanwhile("src.data.writer", parent_writes), \
                work_dir(out_dir, fingerprint(cfg, layout), has_file(METADATA), "the dataset") as work, \
                Workers(n_workers, preload=("src.data.preprocess",)) as workers:
            prep = Preprocessing(layout=layout, work=work, mode=id_mode(cfg), threshold=cfg.threshold,
                                 max_ind_range=cfg.max_ind_range, parent_writes=parent_writes,
                                 pack_size=cfg.pack_size, piece_bytes=cfg.chunk_bytes,
                                 part_lines=cfg.shuffle_bucket_lines, strict=bool(cfg.strict),
                                 max_bad_fraction=cfg.max_bad_fraction, val_split=bool(cfg.val_split),
                                 val_size=cfg.val_size,
                                 seed=cfg.random_seed, workers=workers, progress=progress,
                                 train_line_count=cfg.train_line_count, times=times)
            meta = run_phases(prep)
    except OSError as exc:      # a full disk, a file-size limit, a read-only folder
        raise OutputError(f"cannot write the dataset for {out_dir}: {exc}. Free space (the dataset needs about "
                          f"2.5x the input's uncompressed size while it is written) and run again: finished pieces "
                          f"are kept in {os.path.join(layout.folder, '.mindrecord.work')}; the previous dataset, if "
                          f"any, is kept") from None
    meta["dataset_path"] = out_dir
    meta["phase_times"] = times.summary()
    return meta


def main(argv: Optional[List[str]] = None) -> None:
    """`python src/preprocess_data.py --data_path=DIR [--key=value ...]`"""
    from src.model_utils.config import ConfigError, get_config
    from src.utils.cli import run_or_exit
    cfg = get_config(argv, description=__doc__)
    meta = run_or_exit("preprocess", lambda: preprocess(cfg),
                       (InputFormatError, FeatureSpecError, OutputError, ConfigError), code=2)
    bad = meta["bad_lines"]
    print(f"wrote {meta['dataset_path']}: {describe_splits(meta['samples'])} samples in "
          f"{sum(len(p) for p in meta['parts'].values())} parts, {meta['total_rows']:,} embedding rows, "
          f"{bad['total']:,} skipped lines")
    for reason, n in bad["counts"].items():
        if n:
            print(f"  skipped {n:,} lines: {reason} (first at lines {bad['first_lines'][reason]})")
    print(f"wall time by phase: {meta['phase_times']}")


if __name__ == "__main__":
    main()
