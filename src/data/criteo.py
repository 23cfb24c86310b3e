"""Criteo text parsing: raw `train.txt` lines -> numpy arrays, bad lines counted by reason.

A line is `label \\t I1..I{dense_dim} \\t C1..C{slot_dim}`; dense values are integers (may be empty,
may be negative), categorical values are hexadecimal strings of at most 8 digits (may be empty).
Preprocessing hands it pieces of whole lines (src/data/inputs.py); `BlockParser.parse` tokenises each
with pyarrow's CSV reader (one thread in the preprocessing workers). Checks are vectorised: field counts by counting tabs,
labels in {0,1}, dense values that parse as integers, categorical values that parse as hex.
"""
import gzip
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

REASONS = ("field_count", "label", "dense", "categorical")
REASON_TEXT = {
    "field_count": "wrong number of tab-separated fields",
    "label": "label is not 0 or 1",
    "dense": "dense value is not an integer",
    "categorical": "categorical value is not hexadecimal (at most 8 digits)",
}
MAX_EXAMPLES = 10

_HEX_LUT = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _i
_SHIFTS8 = np.arange(28, -1, -4, dtype=np.uint32)


class CriteoFormatError(ValueError):
    """Bad input that stops preprocessing; the message names the file and line."""


@dataclass
class BadLines:
    """Per-reason counts of skipped lines and the first few line numbers (1-based) of each."""
    counts: dict = field(default_factory=lambda: {r: 0 for r in REASONS})
    examples: dict = field(default_factory=lambda: {r: [] for r in REASONS})

    def add(self, reason: str, line_numbers: np.ndarray) -> None:
        """Count lines skipped for `reason`; keep the first MAX_EXAMPLES line numbers (1-based)."""
        self.counts[reason] += len(line_numbers)
        room = MAX_EXAMPLES - len(self.examples[reason])
        if room > 0:
            self.examples[reason].extend(int(x) for x in line_numbers[:room])

    @property
    def total(self) -> int:
        """Skipped lines over all reasons."""
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        """{"total", "counts": {reason: n}, "first_lines": {reason: [line, ...]}} for metadata.json."""
        return {"total": self.total, "counts": dict(self.counts), "first_lines": dict(self.examples)}


@dataclass
class Chunk:
    """Parsed good lines of one block.

    Column-major (one contiguous row per feature), which is what counting and mapping want.
    label   uint8   [n]             0/1
    dense   float32 [dense_dim, n]  log(1 + max(x, 0)), missing -> 0
    keys    uint32  [slot_dim, n]   categorical values (hex or decimal), 0 where missing
    missing bool    [slot_dim, n]   True where the categorical field was empty
    line    int64   [n]             1-based line numbers in the input file
    """
    label: np.ndarray
    dense: np.ndarray
    keys: np.ndarray
    missing: np.ndarray
    line: np.ndarray


def _raw_open(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _read(f, size: int, path: str, lines_before: int) -> bytes:
    """f.read(size), with a truncated or corrupt gzip stream (or an I/O error) turned into a
    CriteoFormatError naming the file and the last whole line read."""
    try:
        return f.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise CriteoFormatError(f"{path}: not a whole gzip file ({exc}); the last complete line read was line "
                                f"{lines_before:,}: the file is truncated or corrupt, fetch it again") from None
    except OSError as exc:
        raise CriteoFormatError(f"{path}: cannot read it after line {lines_before:,} ({exc})") from None


def count_lines(path: str, block: int = 16 << 20) -> int:
    """Number of lines (a last line without a newline counts)."""
    n, last = 0, b"\n"
    with _raw_open(path) as f:
        while True:
            buf = _read(f, block, path, n)
            if not buf:
                break
            n += buf.count(b"\n")
            last = buf[-1:]
    return n + (0 if last == b"\n" else 1)


def _split_field_counts(arr, n_fields):
    """Per line: (start, end) byte offsets and whether its tab count is right."""
    nl = np.flatnonzero(arr == 10)
    tabs = np.flatnonzero(arr == 9)
    tabs_before = np.searchsorted(tabs, nl)
    per_line = np.diff(np.concatenate(([0], tabs_before)))
    ok = per_line == n_fields - 1
    starts = np.concatenate(([0], nl[:-1] + 1))
    ok &= nl > starts  # an empty line is bad too
    return starts, nl, ok


def _hex_keys(col):
    """pyarrow string/binary array -> (keys uint32, missing bool, invalid bool)."""
    col = col.cast(pa.binary()) if col.type != pa.binary() else col
    n = len(col)
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32, count=n + 1, offset=col.offset * 4)
    data = col.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    missing = lengths == 0
    keys = np.zeros(n, np.uint32)
    if n == 0:
        return keys, missing, np.zeros(0, bool)
    nonempty = ~missing
    if np.all(lengths[nonempty] == 8):
        nib = _HEX_LUT[data[offsets[0]:offsets[-1]]].reshape(-1, 8)
        byte = (nib[:, 0::2] << 4) | nib[:, 1::2]           # two hex digits -> one byte
        vals = np.ascontiguousarray(byte).view(">u4").reshape(-1)
        invalid = np.zeros(n, bool)
        if nib.max(initial=0) > 15:
            bad_rows = (nib > 15).any(1)
            invalid[nonempty] = bad_rows
            vals = np.where(bad_rows, 0, vals)
        keys[nonempty] = vals
        return keys, missing, invalid
    # General lengths: right-align up to 8 digits.
    invalid = lengths > 8
    use = nonempty & ~invalid
    idx_rows = np.flatnonzero(use)
    ln = lengths[idx_rows]
    pos = offsets[idx_rows][:, None] + np.arange(8)[None, :] - (8 - ln)[:, None]
    valid_pos = np.arange(8)[None, :] >= (8 - ln)[:, None]
    nib = np.where(valid_pos, _HEX_LUT[data[np.clip(pos, 0, max(len(data) - 1, 0))]], 0)
    bad = (nib > 15).any(1)
    vals = (nib.astype(np.uint32) << _SHIFTS8[None, :]).sum(1, dtype=np.uint32)
    keys[idx_rows] = np.where(bad, 0, vals)
    invalid[idx_rows[bad]] = True
    return keys, missing, invalid


def _int_keys(col):
    """skip_id_convert: decimal non-negative ids (< 2**32) -> (keys, missing, invalid)."""
    s = col.cast(pa.string())
    missing = np.asarray(pc.equal(pc.utf8_length(s), 0).fill_null(True))
    ok = np.asarray(pc.match_substring_regex(s, r"^[0-9]{1,10}$").fill_null(False))
    vals = pc.cast(pc.if_else(pa.array(ok), s, pa.scalar("0")), pa.int64())
    vals = np.asarray(vals)
    ok &= vals < 2 ** 32
    invalid = ~ok & ~missing
    keys = np.where(ok, vals, 0).astype(np.uint32)
    return keys, missing, invalid


class BlockParser:
    """Parses blocks of Criteo lines; keeps the running BadLines tally."""

    def __init__(self, path: str, dense_dim: int = 13, slot_dim: int = 26, strict: bool = False,
                 int_ids: bool = False, use_threads: bool = True):
        self.path = path
        self.use_threads = use_threads
        self.dense_dim, self.slot_dim = dense_dim, slot_dim
        self.n_fields = 1 + dense_dim + slot_dim
        self.strict = strict
        self.int_ids = int_ids
        self.bad = BadLines()
        self.names = ["label"] + [f"I{i + 1}" for i in range(dense_dim)] + [f"C{i + 1}" for i in range(slot_dim)]
        cat_type = pa.binary()
        self.typed = {**{"label": pa.int64()}, **{f"I{i + 1}": pa.int64() for i in range(dense_dim)},
                      **{f"C{i + 1}": cat_type for i in range(slot_dim)}}
        self.as_text = {n: pa.binary() for n in self.names}
        self.parse_opts = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                             double_quote=False, ignore_empty_lines=False)

    def _fail(self, reason, line_no, detail=""):
        raise CriteoFormatError(f"{self.path}:{line_no}: {REASON_TEXT[reason]}{detail} (strict=1 stops at the "
                                f"first bad line; strict=0 skips and counts them)")

    def _read(self, block, types):
        read_opts = pacsv.ReadOptions(column_names=self.names, use_threads=self.use_threads, block_size=4 << 20)
        conv = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False, null_values=[""],
                                    quoted_strings_can_be_null=False)
        return pacsv.read_csv(pa.py_buffer(block), read_options=read_opts, parse_options=self.parse_opts,
                              convert_options=conv)

    def parse(self, first_line: int, block: bytes, n_lines: Optional[int] = None) -> Optional[Chunk]:
        """Parse one block of whole lines starting at 1-based line `first_line`; None if all were bad."""
        if n_lines is None:
            n_lines = block.count(b"\n")
        line_numbers = first_line + np.arange(n_lines, dtype=np.int64)
        try:  # fast path: pyarrow raises on a wrong field count or a bad integer
            table = self._read(block, self.typed)
            if table.column("label").null_count:  # an empty line reads as a row of nulls
                table = None
        except pa.ArrowInvalid:
            table = None
        if table is None or len(table) != n_lines:
            table = None
            arr = np.frombuffer(block, dtype=np.uint8)
            starts, ends, ok = _split_field_counts(arr, self.n_fields)
            if not ok.all():
                bad_idx = np.flatnonzero(~ok)
                if self.strict:
                    i = bad_idx[0]
                    found = int(np.count_nonzero(arr[starts[i]:ends[i]] == 9)) + 1
                    self._fail("field_count", line_numbers[i], f": expected {self.n_fields}, found {found}")
                self.bad.add("field_count", line_numbers[bad_idx])
                keep_lines = np.flatnonzero(ok)
                if len(keep_lines) == 0:
                    return None
                block = b"".join([block[starts[i]:ends[i] + 1] for i in keep_lines])
                line_numbers = line_numbers[keep_lines]
        return self._convert(block, line_numbers, table)

    def _convert(self, block, line_numbers, table):
        n = len(line_numbers)
        good = np.ones(n, bool)
        try:
            if table is None:
                table = self._read(block, self.typed)
            label = np.asarray(table.column("label").combine_chunks().fill_null(-1))
            dense_cols = [table.column(f"I{i + 1}").combine_chunks() for i in range(self.dense_dim)]
            dense_bad = np.zeros(n, bool)
        except pa.ArrowInvalid:
            table = self._read(block, self.as_text)
            lab = table.column("label").combine_chunks().cast(pa.string())
            label = np.where(np.asarray(pc.equal(lab, "1").fill_null(False)), 1,
                             np.where(np.asarray(pc.equal(lab, "0").fill_null(False)), 0, -1))
            dense_cols, dense_bad = [], np.zeros(n, bool)
            for i in range(self.dense_dim):
                s = table.column(f"I{i + 1}").combine_chunks().cast(pa.string())
                empty = np.asarray(pc.equal(pc.utf8_length(s), 0))
                isint = np.asarray(pc.match_substring_regex(s, r"^-?[0-9]{1,18}$"))
                dense_bad |= ~(empty | isint)
                clean = pc.if_else(pa.array(isint), s, pa.nulls(n, pa.string()))
                dense_cols.append(pc.cast(clean, pa.int64()))
        if len(table) != n:  # cannot happen after the field-count check; guard against silent shifts
            raise CriteoFormatError(f"{self.path}: parser returned {len(table)} rows for {n} lines "
                                    f"near line {line_numbers[0]}")
        label_bad = (label != 0) & (label != 1)
        dense = np.empty((self.dense_dim, n), np.float32)
        for i, col in enumerate(dense_cols):
            np.log1p(np.maximum(np.asarray(col.fill_null(0)), 0).astype(np.float32), out=dense[i])
        keys = np.empty((self.slot_dim, n), np.uint32)
        missing = np.empty((self.slot_dim, n), bool)
        cat_bad = np.zeros(n, bool)
        for i in range(self.slot_dim):
            col = table.column(f"C{i + 1}").combine_chunks()
            k, m, inv = (_int_keys if self.int_ids else _hex_keys)(col)
            keys[i], missing[i] = k, m
            cat_bad |= inv
        for reason, mask in (("label", label_bad), ("dense", dense_bad & ~label_bad),
                             ("categorical", cat_bad & ~label_bad & ~dense_bad)):
            if mask.any():
                idx = np.flatnonzero(mask)
                if self.strict:
                    self._fail(reason, line_numbers[idx[0]])
                self.bad.add(reason, line_numbers[idx])
                good &= ~mask
        if not good.all():
            return Chunk(label[good].astype(np.uint8), dense[:, good], keys[:, good], missing[:, good],
                         line_numbers[good])
        return Chunk(label.astype(np.uint8), dense, keys, missing, line_numbers)
