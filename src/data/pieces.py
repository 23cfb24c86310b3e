"""Preprocessing phase A: one piece of text -> parsed records and a summary, in the work folder.

For piece k of input file i (see src/data/inputs.py) a worker writes
  f{i:04d}-p{k:06d}.rec   records (`record_dtype`): first the training lines, sorted by their shuffle
                          bucket, then the held-out lines in file order
  f{i:04d}-p{k:06d}.npz   the summary, written last: its presence marks the piece done
Each training line draws a shuffle bucket in [0, FINE_BUCKETS) from a generator seeded by (seed, i, k),
so the buckets, and the whole dataset, are the same whichever worker takes the piece.
The summary holds the line count, the bucket boundaries, the feature-statistic sums, the per-slot value
counts (vocabulary mode) or largest ids (id mode), and the bad lines (line numbers local to the piece).
"""
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from src.data.feature_spec import Columns
from src.data.inputs import InputFile, line_start_at_or_after, lines_before, read_piece, split_line, stream_blocks
from src.data.text_parser import BlockParser, Chunk, InputFormatError
from src.data.vocab import SlotMapper, map_ids
from src.utils.progress import background
from src.utils.staged_dir import write_atomic

FINE_BUCKETS = 1 << 16      # shuffle buckets drawn per line; a training part is a run of them
STREAM_BLOCK_BYTES = 16 << 20   # a streamed (gzip) file is read, and parsed, in blocks of this much text
HANDED = re.compile(r"f(\d{4})-p(\d{6})\.o(\d+)\.txt$")     # a piece left as text: file, piece, lines before it
WORK_FORMAT = 3             # the layout of the pieces' files (2: hashing mode's records hold ids; 3: missing flags
                            # as bits): a work folder of another layout is not resumed


def key_dtype(columns: Columns, mode: str) -> str:
    """The categorical keys' type: uint32 for hex values and decimal ids, uint64 for hashed strings."""
    return "<u8" if mode != "ids" and columns.spec.categorical_format == "string" else "<u4"


def record_dtype(columns: Columns, mode: str) -> np.dtype:
    """On-disk layout of a parsed line between the phases: label u1, dense f4[Dn], then (K = columns.lookups)
    hashing mode: ids i4[K], the dataset's ids (no vocabulary is needed, so phase A maps them: one pass);
    vocabulary and id modes: keys u4 or u8 [K] (key_dtype) and missing u1[ceil(K / 8)] (one bit per key, little
    bit order: pack_missing), mapped in phase B;
    and line u4 (1-based line number among its file's data lines, within its piece). Criteo: 161 B in hashing mode,
    165 B otherwise."""
    keys = [("ids", "<i4", (columns.lookups,))] if mode == "hash" else \
        [("keys", key_dtype(columns, mode), (columns.lookups,)), ("missing", "u1", (-(-columns.lookups // 8),))]
    return np.dtype([("label", "u1"), ("dense", "<f4", (columns.dense_dim,)), *keys, ("line", "<u4")])


@dataclass(frozen=True)
class PieceJob:
    """What a worker needs to process pieces (picklable)."""
    folder: str             # the work folder's pieces/ directory
    columns: Columns
    piece_bytes: int
    mode: str               # "vocab" | "hash" | "ids"
    strict: bool
    seed: int
    n_train: int            # data lines 1..n_train of the boundary file are training, the rest held out (0: none)
    offsets: Optional[tuple] = None   # the boundary file, plain: data lines before every piece
    boundary_file: int = 0  # the file whose lines n_train splits (split tail: the file; last_file: the last training
                            # file, whose end is validation)
    max_ind_range: int = 0  # hashing mode: the ids' range (the records hold ids)
    threads: int = 1        # tokeniser threads (the cores this worker owns)
    hand_off: int = 0       # a gzip file's task leaves up to this many inflated pieces at a time to other workers

    def stem(self, file: InputFile, k: int) -> str:
        """The path without extension of piece k of `file`."""
        return os.path.join(self.folder, f"f{file.index:04d}-p{k:06d}")

    def done(self, file: InputFile, k: int) -> bool:
        """True when the piece's summary exists (its records were written before it)."""
        return os.path.isfile(self.stem(file, k) + ".npz")

    def handed(self, file: InputFile) -> List[int]:
        """The pieces of `file` left as text for another worker (HANDED: `{stem}.o{offset}.txt`) and not yet parsed."""
        found = (HANDED.match(n) for n in os.listdir(self.folder))
        return [int(m[2]) for m in found if m and int(m[1]) == file.index]


def _sums(chunk: Chunk, sel: np.ndarray) -> Dict[str, np.ndarray]:
    d = (chunk.dense if len(sel) == len(chunk.label) else chunk.dense[:, sel]).astype(np.float64)   # sel: all or some
    return {"n": np.int64(len(sel)), "pos": np.int64(chunk.label[sel].sum()), "sum": d.sum(1), "sumsq": (d * d).sum(1),
            "max": d.max(1) if len(sel) else np.zeros(d.shape[0]), "cat_missing": chunk.missing[:, sel].sum(1)}


def _records(chunk: Chunk, ids: Optional[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Every line of the chunk as a record, in chunk order (ids int32 [K, n]: hashing mode's mapped keys)."""
    rec = np.empty(len(chunk.label), dtype)
    rec["label"] = chunk.label
    rec["dense"] = chunk.dense.T
    if ids is not None:
        rec["ids"] = ids.T
    else:
        rec["keys"] = chunk.keys.T
        rec["missing"] = pack_missing(chunk.missing)
    rec["line"] = chunk.line
    return rec


def pack_missing(missing: np.ndarray) -> np.ndarray:
    """missing bool [K, n] -> the records' bits uint8 [n, ceil(K / 8)] (key j: bit j % 8 of byte j // 8)."""
    return np.packbits(missing.T, axis=1, bitorder="little")


def unpack_missing(bits: np.ndarray, lookups: int) -> np.ndarray:
    """The records' bits uint8 [n, ceil(K / 8)] -> missing bool [K, n] (pack_missing's inverse)."""
    return np.unpackbits(bits, axis=1, count=lookups, bitorder="little").T.astype(bool, order="C")


def _value_counts(chunk: Chunk, sel: np.ndarray, columns: Columns) -> Dict[str, np.ndarray]:
    """Per slot: the distinct values of the selected lines (sorted) and how often each occurs (a multi_hot slot:
    over all its values)."""
    out = {}
    for s, rows in enumerate(columns.slot_keys):
        vals = chunk.keys[rows, sel][~chunk.missing[rows, sel]]               # [columns, lines] -> present values
        keys, counts = np.unique(vals, return_counts=True)
        out[f"k{s}"], out[f"c{s}"] = keys, counts.astype(np.int64)
    return out


def strip_header(job: PieceJob, file: InputFile, k: int, text: bytes) -> bytes:
    """Piece 0 of a file with a header: the header checked against the first file's, and dropped."""
    if k != 0 or not job.columns.header or not text:
        return text
    end = text.find(b"\n") + 1
    try:
        fields = split_line(text[:end].rstrip(b"\r\n").decode("utf-8"), job.columns.spec)
    except UnicodeDecodeError:
        fields = None
    if fields != list(job.columns.header):
        raise InputFormatError(f"{file.path}:1: the header differs from the first file's: expected "
                               f"{list(job.columns.header)}, found {fields}; every file must have the same columns")
    return text[end:]


def _parse(job: PieceJob, file: InputFile, k: int, text: bytes, parser: BlockParser,
           offset: Optional[int], n: int, first: int) -> Optional[Chunk]:
    """Parse the n lines of a block of piece k whose first line is the piece's line `first` (piece-local data-line
    numbers); an error (strict mode's first bad line, a line break in a quoted field) is raised again with the
    line's number in the file (`offset`: data lines before the piece, counted here when unknown; a header is line 1)."""
    if n == 0:
        return None
    try:
        return parser.parse(first, text, n)
    except InputFormatError:
        header = 1 if job.columns.header else 0
        if offset is None:
            with open(file.path, "rb") as f:
                before = lines_before(file.path, line_start_at_or_after(f, k * job.piece_bytes))
            physical = before + (header if k == 0 else 0)
        else:
            physical = offset + header
        return parser.parse(physical + first, text, n)      # raises again, naming the line in the file


def parse_piece(job: PieceJob, file: InputFile, k: int, blocks: Iterable[bytes], parser: BlockParser,
                offset: Optional[int]) -> Tuple[Chunk, int]:
    """(the good lines of piece k, its line count) from its text in blocks of whole lines, parsed as they come."""
    chunks, n_lines = [], 0
    for i, text in enumerate(blocks):
        text = strip_header(job, file, k, text) if i == 0 else text
        n = text.count(b"\n")
        chunk = _parse(job, file, k, text, parser, offset, n, n_lines + 1)
        n_lines += n
        if chunk is not None:
            chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0], n_lines
    if not chunks:
        dense_dim, lookups = job.columns.dense_dim, job.columns.lookups
        return Chunk(np.zeros(0, np.uint8), np.zeros((dense_dim, 0), np.float32),
                     np.zeros((lookups, 0), key_dtype(job.columns, job.mode)), np.zeros((lookups, 0), bool),
                     np.zeros(0, np.int64)), n_lines
    return Chunk(*(np.concatenate([getattr(c, f) for c in chunks], axis=-1)
                   for f in ("label", "dense", "keys", "missing", "line"))), n_lines


def process_piece(job: PieceJob, file: InputFile, k: int, blocks: Iterable[bytes],
                  offset: Optional[int] = None) -> int:
    """Parse piece k of `file` (its text, in one or more blocks of whole lines; `offset` lines come before it, None
    when not known) and write its records and summary; returns its line count."""
    parser = BlockParser(file.path, job.columns, strict=job.strict, mode=job.mode, threads=job.threads)
    chunk, n_lines = parse_piece(job, file, k, blocks, parser, offset)
    dtype = record_dtype(job.columns, job.mode)
    if file.held_out:
        is_train = np.zeros(len(chunk.label), bool)
    elif job.n_train and file.index == job.boundary_file:
        is_train = offset + chunk.line <= job.n_train
    else:
        is_train = np.ones(len(chunk.label), bool)
    tr, ho = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    bucket = np.random.default_rng([job.seed, 11, file.index, k]).integers(0, FINE_BUCKETS, len(tr))
    order = np.argsort(bucket, kind="stable")
    summary = {"lines": np.int64(n_lines), "n_train": np.int64(len(tr)), "n_held_out": np.int64(len(ho)),
               "bounds": np.searchsorted(bucket[order], np.arange(FINE_BUCKETS + 1)).astype(np.uint32),
               "bad": np.frombuffer(json.dumps(parser.bad.as_dict()).encode(), np.uint8)}
    summary.update({f"stat_{key}": v for key, v in _sums(chunk, tr).items()})
    if job.mode == "vocab":
        summary.update(_value_counts(chunk, tr, job.columns))
    elif job.mode == "ids":
        summary["max_ids"] = np.array([chunk.keys[rows].max() if len(chunk.label) else 0
                                       for rows in job.columns.slot_keys], np.int64)
    ids = None
    if job.mode == "hash":
        mappers = [SlotMapper("hash", max_ind_range=job.max_ind_range)] * job.columns.slots
        ids = map_ids(job.columns, mappers, chunk.keys, chunk.missing)
    rec = _records(chunk, ids, dtype)
    stem = job.stem(file, k)
    # a whole-record gather (np.take copies each record at once; fancy indexing goes field by field)
    write_atomic(stem + ".rec", lambda f: np.take(rec, np.concatenate([tr[order], ho])).tofile(f))
    write_atomic(stem + ".npz", lambda f: np.savez(f, **summary))
    return n_lines


def run_file(job: PieceJob, file: InputFile, k: Optional[int] = None) -> List[int]:
    """A task: piece k of a plain file, or every piece of a gzip file (k None) in order; pieces already
    done are skipped. Returns the piece numbers it processed."""
    if job.threads > 1 and pa.cpu_count() != job.threads:
        pa.set_cpu_count(job.threads)           # pyarrow's pool: the cores this worker owns
    if k is not None:
        if job.done(file, k):
            return []
        offset = job.offsets[k] if job.offsets and file.index == job.boundary_file else None
        process_piece(job, file, k, [read_piece(file.path, k, job.piece_bytes)], offset)
        return [k]
    done, offset = [], 0
    # a thread reads (and for gzip, inflates: the inflater releases the GIL) the file in blocks while they are parsed
    blocks = background(stream_blocks(file.path, job.piece_bytes, STREAM_BLOCK_BYTES, STREAM_BLOCK_BYTES), depth=2)
    for i, piece in by_piece(blocks):
        waiting = job.handed(file) if job.hand_off else []
        if job.done(file, i) or i in waiting:
            offset += data_lines(job, i, piece)
        elif len(waiting) < job.hand_off:       # another worker parses it (preprocess.py finds the file)
            text = b"".join(piece)
            write_atomic(f"{job.stem(file, i)}.o{offset}.txt", lambda f: f.write(text))
            offset += data_lines(job, i, [text])
        else:
            offset += process_piece(job, file, i, piece, offset)
            done.append(i)
    return done


def run_handed(job: PieceJob, file: InputFile, name: str) -> List[int]:
    """A task: the piece a gzip file's task left as text (`name`, matching HANDED), parsed; the text is then removed."""
    m = HANDED.match(name)
    k, path = int(m[2]), os.path.join(job.folder, name)
    if not job.done(file, k):
        with open(path, "rb") as f:
            text = f.read()
        process_piece(job, file, k, [text], int(m[3]))
    os.remove(path)
    return [k]


def data_lines(job: PieceJob, k: int, blocks: Iterable[bytes]) -> int:
    """The data lines of piece k's text (in blocks): its lines, less the header in piece 0 of a file with one."""
    n = sum(text.count(b"\n") for text in blocks)
    return n - 1 if k == 0 and job.columns.header and n else n


def by_piece(blocks: Iterable[Tuple[int, bytes, bool]]) -> Iterator[Tuple[int, Iterator[bytes]]]:
    """stream_blocks' (k, text, last) as (k, the blocks of piece k), each piece's blocks read as they are consumed
    (a piece must be read to its end before the next is asked for)."""
    it = iter(blocks)
    for k, text, last in it:
        def piece(text: bytes = text, last: bool = last) -> Iterator[bytes]:
            yield text
            while not last:
                _, text, last = next(it)
                yield text
        yield k, piece()
