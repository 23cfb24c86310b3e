"""Batch scoring of raw files with a model bundle: the files -> the transform fitted in training -> the model ->
a CSV of one row per data line, in input order (predict.py).

    files   a file or a glob (natural order: day_2 before day_10), plain or .gz, in the layout the bundle's feature
            spec reads (Criteo TSV, CSV/TSV with or without a header); the label column may be there or not
    pieces  each file is cut into pieces of PIECE_BYTES (plain files by byte range, gzip files as they are inflated);
            `workers` processes parse and transform them (src/data/text_parser.py, src/data/transform.py: the same
            code as preprocessing), this process runs the model on them in order and writes the output
    output  a CSV with a header: the key column (key_column), then `probability`; a bad line keeps its row with an
            empty probability and is counted by reason (strict=1: the first one stops the run, naming file, line and
            column). Written to a temporary name, renamed at the end: a failed run leaves no half file.
    summary lines, bad lines by reason, rows/s with the time of parsing + transform and of the model; with labels,
            accuracy, AUC, logloss, normalized entropy and calibration (src/training/metrics.py), exact: the
            probability and label of every labelled line are kept for them (5 bytes a line, as eval.py keeps them)
Memory stays bounded otherwise: at most AHEAD pieces per worker are under way, and the rows are written as they come.
"""
import csv
import glob
import io
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from src.data.feature_spec import Columns, natural_key
from src.data.inputs import first_fields, line_start_at_or_after, lines_before, piece_count, read_piece, split_line, \
    stream_pieces
from src.data.preprocess import GZIP_RATIO
from src.data.text_parser import REASONS, BlockParser, InputFormatError
from src.data.transform import FittedTransform
from src.training.logs import format_metrics
from src.training.metrics import ctr_metrics
from src.utils.workers import Workers, cpus_available

if TYPE_CHECKING:                 # annotations only
    from src.inference import runtime
    from src.inference.bundle import Bundle

PIECE_BYTES = 16 << 20      # text per scoring task: about 70k Criteo lines (small: the first rows come out early)
MODEL_BATCH = {"onnxruntime": 1024, "mindspore": 4096}   # rows a model call: each runtime's fastest batch on the default
                            # model (docs/serving.md, `run_benchmark.sh predict`)
CPUS_PER_WORKER = 4         # workers=auto: the model takes about 3/4 of a line's CPU time (default model: docs/serving.md),
                            # so parsing gets one worker per 4 CPUs, the model the rest
AHEAD = 2                   # pieces under way per worker
UNSEEN_ID = "unseen_id"     # a bad line reason of scoring only: an id-mode id beyond the trained table


class ScoringError(ValueError):
    """Input or output that scoring cannot use; the message names the file, line or column."""


@dataclass(frozen=True)
class ScoringJob:
    """What a worker needs to score pieces (picklable)."""
    bundle: str                     # the bundle folder (its transform is loaded once per process)
    key: Optional[str]              # the key column's name, or None
    strict: bool
    threads: int                    # tokeniser threads per worker


@dataclass(frozen=True)
class Task:
    """One piece of one file: read by the worker (plain files, `text` None) or given (gzip files, inflated here)."""
    path: str
    columns: Columns
    k: int
    text: Optional[bytes] = None
    first_line: Optional[int] = None    # physical line number of the piece's first line, when known


_TRANSFORMS: Dict[str, FittedTransform] = {}


def _transform(folder: str) -> FittedTransform:
    if folder not in _TRANSFORMS:
        _TRANSFORMS[folder] = FittedTransform.load(folder)
    return _TRANSFORMS[folder]


def input_files(input_path: str) -> List[str]:
    """The files of a path or glob, in natural order; ScoringError when there are none."""
    if os.path.isdir(input_path):
        raise ScoringError(f"input_path '{input_path}' is a folder: give a file or a glob ('{input_path}/day_*')")
    files = sorted((p for p in glob.glob(input_path) if os.path.isfile(p)), key=natural_key)
    if not files:
        raise ScoringError(f"input_path '{input_path}' matches no file")
    return files


def resolve_files(transform: FittedTransform, files: List[str], key: Optional[str]) -> List[Columns]:
    """Each file's columns (from its first line); every file must agree with the first on having a label, and the key
    column must be one of its columns that is neither the label nor a dense feature."""
    out = []
    for path in files:
        if os.path.getsize(path) == 0:
            raise ScoringError(f"input file '{path}' is empty")
        try:
            columns = transform.columns(first_fields(path, transform.spec), os.path.basename(path))
        except InputFormatError as exc:
            raise ScoringError(str(exc)) from None
        if out and columns.has_label != out[0].has_label:
            raise ScoringError(f"'{path}' {'has' if columns.has_label else 'lacks'} the label column and "
                               f"'{files[0]}' does not: score files of one layout together")
        if key is not None:
            reads = {columns.names[i] for i in (*columns.dense, *([columns.label] if columns.has_label else []))}
            if key not in columns.names or key in reads:
                why = "is not one of its columns" if key not in columns.names else "is the label or a number"
                raise ScoringError(f"key_column '{key}' {why} in '{path}' (its columns: {list(columns.names)}); "
                                   f"name an id column")
        out.append(columns)
    return out


def tasks(files: List[str], columns: List[Columns], piece_bytes: int = PIECE_BYTES) -> Iterator[Task]:
    """The pieces of every file in order (gzip files are inflated here, piece by piece, as the tasks are drawn)."""
    for path, cols in zip(files, columns):
        if path.endswith(".gz"):
            line = 1
            for k, text in stream_pieces(path, piece_bytes):
                yield Task(path, cols, k, text, line)
                line += text.count(b"\n")
        else:
            for k in range(piece_count(path, piece_bytes)):
                yield Task(path, cols, k)


def _lines_of(task: Task, text: bytes, piece_bytes: int) -> int:
    """The physical line number of the piece's first line (counted in the file when not known)."""
    if task.first_line is not None:
        return task.first_line
    if task.k == 0:
        return 1
    with open(task.path, "rb") as f:
        return lines_before(task.path, line_start_at_or_after(f, task.k * piece_bytes)) + 1


def _keys_of_bad_lines(text: bytes, bad: np.ndarray, columns: Columns, key: str) -> List[str]:
    """The key field of bad lines (0-based in `text`), '' where a line has too few fields to hold it."""
    lines = text.split(b"\n")
    at = columns.names.index(key)
    out = []
    for i in bad:
        fields = split_line(lines[i].decode("utf-8", "replace").rstrip("\r"), columns.spec)
        out.append(fields[at] if at < len(fields) else "")
    return out


def score_piece(job: ScoringJob, task: Task, piece_bytes: int = PIECE_BYTES) -> dict:
    """Parse and transform one piece: {lines, good (int64 [g], 0-based lines of the piece), ids int32 [g, L], dense
    float32 [g, Dn], label uint8 [g] or None, keys (str [lines]) or None, bad {reason: n}, seconds}."""
    start = time.perf_counter()
    transform = _transform(job.bundle)
    cols = task.columns
    text = task.text if task.text is not None else read_piece(task.path, task.k, piece_bytes)
    first = 1
    if task.k == 0 and cols.header and text:
        text = text[text.find(b"\n") + 1:]            # the header line (checked against the first file's columns)
        first = 2
    n = text.count(b"\n")
    parser = BlockParser(task.path, cols, strict=job.strict, mode=transform.parse_mode, threads=job.threads,
                         passthrough=(job.key,) if job.key else ())
    try:
        chunk = parser.parse(1, text, n) if n else None
    except InputFormatError:                          # strict: raised again with the line's number in the file
        chunk = parser.parse(_lines_of(task, text, piece_bytes) + first - 1, text, n)
    result = {"lines": n, "bytes": len(text), "bad": dict(parser.bad.counts), "label": None, "keys": None}
    if chunk is None:
        good = np.zeros(0, np.int64)
        ids = np.zeros((0, cols.lookups), np.int32)
        dense = np.zeros((0, cols.dense_dim), np.float32)
    else:
        ids, dense, ok = transform.apply(cols, chunk)
        if not ok.all():
            if job.strict:
                line = int(chunk.line[np.flatnonzero(~ok)[0]])
                raise InputFormatError(f"{task.path}: piece {task.k} line {line}: an id beyond the trained table "
                                       f"(strict=1 stops at the first bad line)")
            result["bad"][UNSEEN_ID] = int(np.count_nonzero(~ok))
        good = chunk.line[ok] - 1
        ids, dense = ids[ok], dense[ok]
        if cols.has_label:
            result["label"] = chunk.label[ok]
    if job.key:
        keys = np.full(n, "", object)
        if chunk is not None:
            keys[chunk.line - 1] = chunk.passthrough[0].cast(pa.string()).to_numpy(zero_copy_only=False)
        bad = np.setdiff1d(np.arange(n), good)
        keys[bad] = _keys_of_bad_lines(text, bad, cols, job.key)
        result["keys"] = keys
    result.update(good=good, ids=ids, dense=dense, seconds=time.perf_counter() - start)
    return result


class CsvOutput:
    """The output CSV, written to a temporary name beside `path` and renamed by `commit()`. A file already at `path`
    is replaced only when it is an earlier output of predict.py (its first line is this header)."""

    def __init__(self, path: str, key: Optional[str]):
        self.path, self.key = path, key
        self.header = ([key] if key else []) + ["probability"]
        if os.path.isdir(path):
            raise ScoringError(f"output_path '{path}' is a folder; give a file name such as {path}/predictions.csv")
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                if next(csv.reader([f.readline()]), []) != self.header:
                    raise ScoringError(f"'{path}' exists and is not an earlier output of predict.py (its first line "
                                       f"is not {','.join(self.header)}): choose another output_path or move it "
                                       f"away")
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
        self.f = open(self.tmp, "wb")
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(self.header)
        self.f.write(line.getvalue().encode())

    def write(self, keys: Optional[np.ndarray], prob: np.ndarray) -> None:
        """Rows of one piece: keys (str [n]) or None, probabilities float32 [n] (nan: a bad line, written empty)."""
        cols = {"probability": pa.array(prob, mask=np.isnan(prob))}
        if self.key:
            cols = {self.key: pa.array(keys, pa.string()), **cols}
        pacsv.write_csv(pa.table(cols), self.f, pacsv.WriteOptions(include_header=False, quoting_style="needed"))

    def commit(self) -> None:
        """Close and rename into place (an input without data lines still gets the header)."""
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Close and remove the temporary file: nothing is left where the next step would read it."""
        self.f.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


@dataclass
class Summary:
    """What a scoring run did: lines, bad lines by reason, times and, with labels, the metrics."""
    lines: int = 0
    bad: Dict[str, int] = None
    parse_seconds: float = 0.0
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    metrics: Optional[dict] = None
    workers: int = 1

    def text(self) -> List[str]:
        """The summary's lines, as predict.py prints them."""
        bad = sum(self.bad.values())
        rate = self.lines / max(self.wall_seconds, 1e-9)
        out = [f"scored {self.lines:,} lines ({self.lines - bad:,} with a probability, {bad:,} bad) in "
               f"{self.wall_seconds:.1f} s: {rate:,.0f} lines/s; parse + transform {self.parse_seconds:.1f} s on "
               f"{self.workers} worker(s), model {self.model_seconds:.1f} s"]
        out += [f"  bad lines: {reason} {n:,}" for reason, n in self.bad.items() if n]
        if self.metrics:
            out.append(format_metrics(self.metrics))
        return out


def predict_rows(model: "runtime.OnnxModel", ids: np.ndarray, dense: np.ndarray, batch: int) -> np.ndarray:
    """The model's probabilities float32 [n] for ids int32 [n, L] and dense float32 [n, Dn], `batch` rows a call."""
    out = [model.predict(ids[lo:lo + batch], dense[lo:lo + batch]) for lo in range(0, len(ids), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def scoring_workers(workers: Union[int, str]) -> int:
    """The parsing workers for the `workers` config value: a number as it is; auto one per CPUS_PER_WORKER CPUs (at
    least one: then a thread of this process parses while the model runs)."""
    return max(1, cpus_available() // CPUS_PER_WORKER) if workers == "auto" else int(workers)


def input_bytes(files: List[str]) -> int:
    """The text the files hold (a gzip file counted as GZIP_RATIO times its size: an estimate for progress)."""
    return sum(os.path.getsize(p) * (GZIP_RATIO if p.endswith(".gz") else 1) for p in files)


def score_files(bundle: "Bundle", input_path: str, output_path: str, key: Optional[str] = None, strict: bool = False,
                workers: Union[int, str] = "auto", progress=None, runtime: str = "auto") -> Summary:
    """Score every data line of the files of `input_path` with an opened bundle into output_path (see the module
    docstring); returns the Summary. `progress` (a Progress over input_bytes) advances by the text scored.
    ScoringError / InputFormatError name what is wrong; the output then is not written."""
    start = time.perf_counter()
    files = input_files(input_path)
    columns = resolve_files(bundle.transform, files, key)
    size = input_bytes(files)
    if progress is not None:
        progress.total = size
    n_workers, cpus = scoring_workers(workers), cpus_available()
    job = ScoringJob(bundle.path, key, strict, max(1, cpus // n_workers))
    summary = Summary(bad={r: 0 for r in REASONS + (UNSEEN_ID,)}, workers=n_workers)
    scored = ([], []) if columns[0].has_label else None      # probabilities and labels, for the exact metrics
    runtime = bundle.pick(runtime)
    model = bundle.model(cpus if n_workers == 1 else max(1, cpus - n_workers), runtime)
    out = CsvOutput(output_path, key)
    try:
        with Workers(n_workers, preload=("src.inference.scoring",)) as pool:
            for piece in pool.stream(score_piece, job, tasks(files, columns), AHEAD):
                t = time.perf_counter()
                prob = predict_rows(model, piece["ids"], piece["dense"], MODEL_BATCH[runtime])
                summary.model_seconds += time.perf_counter() - t
                row = np.full(piece["lines"], np.nan, np.float32)
                row[piece["good"]] = prob
                out.write(piece["keys"], row)
                summary.lines += piece["lines"]
                summary.parse_seconds += piece["seconds"]
                for reason, n in piece["bad"].items():
                    summary.bad[reason] = summary.bad.get(reason, 0) + n
                if scored is not None:
                    scored[0].append(prob)
                    scored[1].append(piece["label"])
                if progress is not None:
                    progress.update(piece["bytes"])
        out.commit()
    except BaseException:
        out.abort()
        raise
    summary.wall_seconds = time.perf_counter() - start
    if scored is not None and sum(map(len, scored[0])):
        summary.metrics = ctr_metrics(np.concatenate(scored[0]), np.concatenate(scored[1]), bundle.train_ctr)
    return summary
