"""Delimited text parsing: lines of a feature spec's columns -> numpy arrays, bad lines counted by reason and column.

The columns are a resolved feature spec's (src/data/feature_spec.py); the Criteo layouts are two such specs: a line
is `label \t I1..I13 \t C1..C26`, dense values integers (may be empty, may be negative), categorical values
hexadecimal strings of at most 8 digits (may be empty). Preprocessing hands the parser pieces of whole lines
(src/data/inputs.py); `BlockParser.parse` tokenises each with pyarrow's CSV reader (on as many threads as the
preprocessing worker owns cores). Checks are vectorised: field counts (tsv: by counting tabs; csv: pyarrow's
quote-aware tokeniser reports the rows), labels in {0,1} (or a number against the spec's min), dense values that parse as numbers (integers for
dense_format int), categorical values that parse as hex (categorical_format hex; a string column takes anything).
Categorical keys: uint32 for hex and decimal ids, uint64 for strings (64-bit FNV-1a of the bytes).
"""
import csv
import gzip
import zlib
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

try:                                    # ISA-L's inflate: about 3x zlib's on .gz day files (docs/benchmarks.md)
    from isal import igzip as _gzip_reader
    from isal.isal_zlib import error as _InflateError
except ImportError:                     # an environment without it reads gzip with the standard library
    _gzip_reader, _InflateError = gzip, zlib.error

from src.data.feature_spec import Columns

REASONS = ("field_count", "label", "dense", "categorical")
REASON_TEXT = {
    "field_count": "wrong number of {sep}-separated fields",
    "label": "label is not 0 or 1",
    "dense": "dense value is not {number}",
    "categorical": "categorical value is not hexadecimal (at most 8 digits)",
}
FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TRUE, _FALSE = ["1", "true", "yes"], ["0", "false", "no"]
MAX_EXAMPLES = 10

_HEX_LUT = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _i
_SHIFTS8 = np.arange(28, -1, -4, dtype=np.uint32)
# two hex digits read as one little-endian uint16 -> their byte value; 256 where either is not a hex digit
_HEX_PAIRS = np.full(1 << 16, 256, np.uint16)
_digits = np.flatnonzero(_HEX_LUT < 16)
_HEX_PAIRS[_digits[:, None] | (_digits[None, :] << 8)] = (_HEX_LUT[_digits][:, None] << 4) | _HEX_LUT[_digits][None, :]


class InputFormatError(ValueError):
    """Bad input that stops preprocessing; the message names the file and line."""


class BadLineError(InputFormatError):
    """strict=1's first bad line: `line` (1-based), `reason` (REASONS) and `detail` (the column, the field count) as
    well as the message."""

    def __init__(self, message: str, line: int, reason: str, detail: str):
        super().__init__(message)
        self.line, self.reason, self.detail = line, reason, detail


@dataclass
class BadLines:
    """Per-reason counts of skipped lines, the first few line numbers (1-based) of each, and per reason the lines
    each column made bad (a line counts once per reason, under every column at fault)."""
    counts: dict = field(default_factory=lambda: {r: 0 for r in REASONS})
    examples: dict = field(default_factory=lambda: {r: [] for r in REASONS})
    columns: dict = field(default_factory=dict)
    truncated: dict = field(default_factory=dict)       # multi_hot column -> lines whose list was cut to max_len

    def add_column(self, reason: str, column: str, n: int) -> None:
        """Count `n` lines skipped for `reason` because of `column`."""
        if n:
            per = self.columns.setdefault(reason, {})
            per[column] = per.get(column, 0) + int(n)

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
        """{"total", "counts": {reason: n}, "first_lines": {reason: [line, ...]}} for metadata.json, and
        "columns": {reason: {column: n}} when a column made lines bad."""
        out = {"total": self.total, "counts": dict(self.counts), "first_lines": dict(self.examples)}
        if self.columns:
            out["columns"] = {r: dict(c) for r, c in self.columns.items()}
        if self.truncated:
            out["truncated"] = dict(self.truncated)
        return out


@dataclass
class Chunk:
    """Parsed good lines of one block.

    Column-major (one contiguous row per feature), which is what counting and mapping want.
    label   uint8   [n]             0/1
    dense   float32 [dense_dim, n]  log(1 + max(x, 0)), missing -> 0
    keys    uint32 or uint64 [lookups, n]   categorical keys (hex, decimal, or string hashes), 0 where missing; a
                                    multi_hot column fills max_len rows: its values left-aligned, then pads
    missing bool    [lookups, n]    True where the categorical field was empty, and at a multi_hot column's pads
    line    int64   [n]             1-based line numbers in the input file
    passthrough     one pyarrow binary array [n] per column the parser was asked to pass through as text (a key
                    column of scoring); () otherwise
    A file to score without a label column has label 0 everywhere.
    """
    label: np.ndarray
    dense: np.ndarray
    keys: np.ndarray
    missing: np.ndarray
    line: np.ndarray
    passthrough: tuple = ()


def _raw_open(path):
    return _gzip_reader.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _read(f, size: int, path: str, lines_before: int) -> bytes:
    """f.read(size), with a truncated or corrupt gzip stream (or an I/O error) turned into a
    InputFormatError naming the file and the last whole line read."""
    try:
        return f.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error, _InflateError) as exc:
        raise InputFormatError(f"{path}: not a whole gzip file ({exc}); the last complete line read was line "
                                f"{lines_before:,}: the file is truncated or corrupt, fetch it again") from None
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read it after line {lines_before:,} ({exc})") from None


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
    if np.all(lengths[nonempty] == 8):     # Criteo's values: one table lookup per two digits
        byte = _HEX_PAIRS[data[offsets[0]:offsets[-1]].view("<u2")]            # [4 * values], 256 = not hex
        invalid = np.zeros(n, bool)
        if byte.max(initial=0) > 255:
            bad_rows = (byte.reshape(-1, 4) > 255).any(1)
            invalid[nonempty] = bad_rows
            byte[np.repeat(bad_rows, 4)] = 0
        keys[nonempty] = byte.astype(np.uint8).view(">u4")
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


def _string_keys(col):
    """Any string -> (keys uint64: 64-bit FNV-1a of the bytes, missing bool (empty), invalid bool (none)).
    Hashed once per distinct value of the block."""
    enc = pc.dictionary_encode(col.cast(pa.binary()) if col.type != pa.binary() else col)
    values = enc.dictionary
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)
    data = values.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    h = np.full(len(values), FNV_OFFSET, np.uint64)
    for j in range(int(lengths.max(initial=0))):
        at = np.flatnonzero(lengths > j)
        h[at] = (h[at] ^ data[offsets[at] + j].astype(np.uint64)) * FNV_PRIME
    idx = np.asarray(enc.indices)
    missing = lengths[idx] == 0
    return np.where(missing, np.uint64(0), h[idx]), missing, np.zeros(len(idx), bool)


def _by_chunk(keys_of, column: pa.ChunkedArray):
    """A key function (_hex_keys, ...) applied chunk by chunk (no copy into one array first); outputs concatenated."""
    if column.num_chunks < 2:
        return keys_of(column.combine_chunks())
    return tuple(np.concatenate(x) for x in zip(*(keys_of(c) for c in column.chunks)))


def _utf8(col, path: str, name: str):
    """A text column as pyarrow strings; bytes that are not UTF-8 are an InputFormatError naming the column."""
    try:
        return col.cast(pa.string())
    except pa.ArrowInvalid:
        raise InputFormatError(f"{path}: column {name} holds bytes that are not UTF-8 text") from None


class BlockParser:
    """Parses blocks of lines of one file under resolved `columns`; keeps the running BadLines tally.
    mode "ids" (skip_id_convert) reads categorical values as decimal ids, otherwise as the spec's format.
    `passthrough`: names of columns whose text each Chunk carries along (scoring's key column)."""

    def __init__(self, path: str, columns: Columns, strict: bool = False, mode: str = "vocab",
                 threads: int = 1, passthrough: Tuple[str, ...] = ()):
        spec = columns.spec
        self.path, self.columns, self.spec = path, columns, spec
        # >1: pyarrow's tokeniser on its CPU pool (pieces.py sizes it); not for quoted csv, whose bad rows are
        # reported by number, which pyarrow knows only when it reads on one thread
        self.threads = 1 if spec.quoted else threads
        self.dense_dim, self.slots = columns.dense_dim, columns.slots
        self.n_fields = len(columns.names)
        self.strict = strict
        self.names = list(columns.names)
        self.label_name = self.names[columns.label] if columns.has_label else None
        self.passthrough = tuple(passthrough)
        self.dense_names, self.cat_names = columns.dense_names, columns.categorical_names
        self.multi_hot = [(columns.names[i], entry) for i, entry in columns.multi_hot]
        self.lookups = columns.lookups
        self.int_dense = spec.dense_format == "int"
        self.keys = _int_keys if mode == "ids" else _hex_keys if spec.categorical_format == "hex" else _string_keys
        self.key_type = np.uint64 if self.keys is _string_keys else np.uint32
        self.bad = BadLines()
        plain_label = spec.label_min is None
        label = {self.label_name: pa.int64() if plain_label else pa.float64()} if self.label_name else {}
        self.typed = {**label, **{n: pa.int64() if self.int_dense else pa.float64() for n in self.dense_names},
                      **{n: pa.binary() for n in self.cat_names + columns.multi_hot_names + list(self.passthrough)}}
        used = [self.names[i] for i in sorted(set(columns.used) | {self.names.index(n) for n in self.passthrough})]
        self.include = used if len(used) < self.n_fields else []
        self.as_text = {n: pa.binary() for n in used}
        self.text = {**REASON_TEXT, "field_count": REASON_TEXT["field_count"].format(
                         sep="tab" if spec.delimiter == "\t" else "comma"),
                     "dense": REASON_TEXT["dense"].format(number="an integer" if self.int_dense else "a number")}
        if spec.label_min is not None:
            self.text["label"] = f"label is not a number (1 when >= {spec.label_min:g})"
        elif spec.categorical_format != "hex":
            self.text["label"] = "label is not 0/1, true/false or yes/no"
        self._rows: list = []
        handler = (lambda row: self._rows.append(row.number) or "skip") if spec.quoted else None
        self.parse_opts = pacsv.ParseOptions(delimiter=spec.delimiter, quote_char='"' if spec.quoted else False,
                                             escape_char=False, double_quote=spec.quoted,
                                             ignore_empty_lines=spec.quoted, invalid_row_handler=handler)

    def _fail(self, reason, line_no, detail=""):
        raise BadLineError(f"{self.path}:{line_no}: {self.text[reason]}{detail} (strict=1 stops at the first bad "
                           f"line; strict=0 skips and counts them)", int(line_no), reason, self.text[reason] + detail)

    def _read(self, block, types):
        self._rows.clear()
        read_opts = pacsv.ReadOptions(column_names=self.names, use_threads=self.threads > 1, block_size=4 << 20)
        conv = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False, null_values=[""],
                                    quoted_strings_can_be_null=False, include_columns=self.include)
        return pacsv.read_csv(pa.py_buffer(block), read_options=read_opts, parse_options=self.parse_opts,
                              convert_options=conv)

    def parse(self, first_line: int, block: bytes, n_lines: Optional[int] = None) -> Optional[Chunk]:
        """Parse one block of whole lines starting at 1-based line `first_line`; None if all were bad."""
        if n_lines is None:
            n_lines = block.count(b"\n")
        line_numbers = first_line + np.arange(n_lines, dtype=np.int64)
        if self.spec.quoted:
            return self._parse_quoted(block, line_numbers)
        try:  # fast path: pyarrow raises on a wrong field count or a bad integer
            table = self._read(block, self.typed)
            if self._empty_line(table, block):            # an empty line reads as a row of nulls
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

    def _empty_line(self, table, block: bytes) -> bool:
        """True when the fast path read an empty line as a row (of nulls in the label column; a file to score
        without a label is checked in its bytes)."""
        if self.label_name:
            return table.column(self.label_name).null_count > 0
        return block.startswith(b"\n") or b"\n\n" in block

    def _parse_quoted(self, block: bytes, line_numbers: np.ndarray) -> Optional[Chunk]:
        """csv: pyarrow's tokeniser skips (and reports) rows of the wrong field count; empty lines are bad too."""
        arr = np.frombuffer(block, dtype=np.uint8)
        nl = np.flatnonzero(arr == 10)
        starts = np.concatenate(([0], nl[:-1] + 1))
        nonempty = np.flatnonzero(nl > starts)                    # pyarrow numbers the non-empty lines
        try:
            table, text = self._read(block, self.typed), False
        except pa.ArrowInvalid:
            table, text = None, True
        if table is None:
            table = self._read(block, self.as_text)
        ok = np.zeros(len(line_numbers), bool)
        ok[nonempty] = True
        ok[nonempty[np.asarray(self._rows, np.int64) - 1]] = False
        bad_idx = np.flatnonzero(~ok)
        if len(bad_idx):
            if self.strict:
                i = bad_idx[0]
                line = bytes(arr[starts[i]:nl[i]]).decode("utf-8", "replace")
                found = len(next(csv.reader([line], delimiter=self.spec.delimiter), []))
                self._fail("field_count", line_numbers[i], f": expected {self.n_fields}, found {found} (a field "
                           f"holding '{self.spec.delimiter}' must be quoted)")
            self.bad.add("field_count", line_numbers[bad_idx])
        keep = np.flatnonzero(ok)
        if len(table) != len(keep):
            self._quoted_line_break(table, line_numbers[keep])
        if len(keep) == 0:
            return None
        return self._convert(None, line_numbers[keep], table, text)

    def _quoted_line_break(self, table, line_numbers: np.ndarray) -> None:
        """A quoted field holding a line break joined lines: InputFormatError naming the first one."""
        for i in range(len(table)):
            if any(b"\n" in (table.column(n)[i].as_py() or b"") for n in table.column_names
                   if table.column(n).type == pa.binary()):
                raise InputFormatError(f"{self.path}:{line_numbers[min(i, len(line_numbers) - 1)]}: a quoted field "
                                       f"holds a line break; every record must be on one line (replace the line "
                                       f"breaks inside fields)")
        raise InputFormatError(f"{self.path}: near line {line_numbers[0]}: a quoted field holds a line break; every "
                               f"record must be on one line")

    def _labels(self, col, text: bool) -> np.ndarray:
        """The label column -> int64 [n]: 0, 1, or -1 where it is not a valid label."""
        spec = self.spec
        if spec.label_min is not None:
            if text:
                s = _utf8(col, self.path, self.label_name)
                isnum = np.asarray(pc.match_substring_regex(s, _NUMBER).fill_null(False))
                num = np.asarray(pc.cast(pc.if_else(pa.array(isnum), s, pa.scalar("0")), pa.float64()))
            else:
                num = np.asarray(col.fill_null(np.nan))
                isnum = np.isfinite(num)
            return np.where(isnum & np.isfinite(num), (num >= spec.label_min).astype(np.int64), -1)
        if not text:
            return np.asarray(col.fill_null(-1))
        low = pc.utf8_lower(_utf8(col, self.path, self.label_name))
        return np.where(np.asarray(pc.is_in(low, value_set=pa.array(_TRUE)).fill_null(False)), 1,
                        np.where(np.asarray(pc.is_in(low, value_set=pa.array(_FALSE)).fill_null(False)), 0, -1))

    def _dense_text(self, table, n: int):
        """Text dense columns -> (per-column numeric pyarrow arrays with nulls for missing and bad, bad [Dn, n])."""
        cols, bad = [], np.zeros((self.dense_dim, n), bool)
        pattern, kind = (r"^-?[0-9]{1,18}$", pa.int64()) if self.int_dense else (_NUMBER, pa.float64())
        for i, name in enumerate(self.dense_names):
            s = _utf8(table.column(name).combine_chunks(), self.path, name)
            empty = np.asarray(pc.equal(pc.utf8_length(s), 0))
            good = np.asarray(pc.match_substring_regex(s, pattern))
            bad[i] = ~(empty | good)
            cols.append(pc.cast(pc.if_else(pa.array(good), s, pa.nulls(n, pa.string())), kind))
        return cols, bad

    def _convert(self, block, line_numbers, table, text: Optional[bool] = None):
        n = len(line_numbers)
        if table is None:
            try:
                table, text = self._read(block, self.typed), False
            except pa.ArrowInvalid:
                table, text = self._read(block, self.as_text), True
        if len(table) != n:  # cannot happen after the field-count check; guard against silent shifts
            raise InputFormatError(f"{self.path}: parser returned {len(table)} rows for {n} lines "
                                   f"near line {line_numbers[0]}")
        label = self._labels(table.column(self.label_name).combine_chunks(), text) if self.label_name else \
            np.zeros(n, np.int64)
        if text:
            dense_cols, dense_bad = self._dense_text(table, n)
        else:
            dense_cols = [table.column(name).combine_chunks() for name in self.dense_names]
            dense_bad = np.zeros((self.dense_dim, n), bool)
        label_bad = (label != 0) & (label != 1)
        dense = np.empty((self.dense_dim, n), np.float32)
        for i, col in enumerate(dense_cols):
            if self.int_dense:
                np.log1p(np.maximum(np.asarray(col.fill_null(0)), 0).astype(np.float32), out=dense[i])
            else:
                v = np.asarray(col.fill_null(0.0), np.float64)
                finite = np.isfinite(v)
                dense_bad[i] |= ~finite
                np.log1p(np.maximum(np.where(finite, v, 0.0), 0).astype(np.float32), out=dense[i])
        keys, missing = np.zeros((self.lookups, n), self.key_type), np.ones((self.lookups, n), bool)
        cat_bad = np.zeros((self.slots, n), bool)
        for i, name in enumerate(self.cat_names):
            keys[i], missing[i], cat_bad[i] = _by_chunk(self.keys, table.column(name))
        cats = len(self.cat_names)
        for s, ((name, entry), cols) in enumerate(zip(self.multi_hot, self.columns.slot_keys[cats:]), cats):
            cat_bad[s] = self._lists(table.column(name).combine_chunks(), name, entry, line_numbers, keys[cols],
                                     missing[cols])
        passed = tuple(table.column(name).combine_chunks() for name in self.passthrough)
        return self._drop_bad(line_numbers, label, label_bad, dense, dense_bad, keys, missing, cat_bad, passed)

    def _lists(self, col, name: str, entry, line_numbers: np.ndarray, keys: np.ndarray, missing: np.ndarray):
        """A multi_hot column -> its keys and pads written into keys/missing [max_len, n]; returns bad bool [n]
        (a value the column's format cannot read). Empty values are skipped; a list longer than max_len is cut and
        counted (strict: an error naming the line)."""
        n = len(line_numbers)
        lists = pc.split_pattern(col.cast(pa.binary()) if col.type != pa.binary() else col, pattern=entry.separator)
        offsets = np.asarray(lists.offsets)
        flat = lists.flatten()
        keep = np.asarray(pc.greater(pc.binary_length(flat), 0)) if len(flat) else np.zeros(0, bool)
        row = np.repeat(np.arange(n), np.diff(offsets))                  # the line of every value
        kept_before = np.concatenate(([0], np.cumsum(keep)))
        pos = kept_before[:-1] - kept_before[offsets[:-1]][row]          # its place among its line's kept values
        count = kept_before[offsets[1:]] - kept_before[offsets[:-1]]     # kept values per line
        over = count > entry.max_len
        if over.any():
            first = int(np.flatnonzero(over)[0])
            if self.strict:
                detail = f"column {name} holds {count[first]} values, more than its max_len {entry.max_len}"
                raise BadLineError(f"{self.path}:{line_numbers[first]}: {detail} (strict=1 stops here; strict=0 keeps "
                                   f"the first {entry.max_len} and counts the line)", int(line_numbers[first]),
                                   "categorical", detail)
            self.bad.truncated[name] = self.bad.truncated.get(name, 0) + int(np.count_nonzero(over))
        use = np.flatnonzero(keep & (pos < entry.max_len))
        k, m, invalid = self.keys(flat.take(pa.array(use)) if len(use) else pa.array([], pa.binary()))
        keys[pos[use], row[use]] = k
        missing[pos[use], row[use]] = False
        bad = np.zeros(n, bool)
        bad[row[use[invalid]]] = True
        return bad

    def _drop_bad(self, line_numbers, label, label_bad, dense, dense_bad, keys, missing, cat_bad,
                  passed: tuple = ()) -> Chunk:
        """Count each bad line under its first reason (label, dense, categorical) and its columns; the Chunk of
        the good lines."""
        good = np.ones(len(line_numbers), bool)
        dense_any, cat_any = dense_bad.any(0), cat_bad.any(0)
        for reason, mask, per_col, names in (("label", label_bad, None, None),
                                             ("dense", dense_any & ~label_bad, dense_bad, self.dense_names),
                                             ("categorical", cat_any & ~label_bad & ~dense_any, cat_bad,
                                              self.cat_names + [m for m, _ in self.multi_hot])):
            if mask.any():
                idx = np.flatnonzero(mask)
                culprit = [names[c] for c in np.flatnonzero(per_col[:, idx[0]])] if names else [self.label_name]
                if self.strict:
                    self._fail(reason, line_numbers[idx[0]], f" (column {culprit[0]})")
                self.bad.add(reason, line_numbers[idx])
                if names:
                    for c in range(len(names)):
                        self.bad.add_column(reason, names[c], np.count_nonzero(per_col[c] & mask))
                else:
                    self.bad.add_column(reason, self.label_name, len(idx))
                good &= ~mask
        if not good.all():
            return Chunk(label[good].astype(np.uint8), dense[:, good], keys[:, good], missing[:, good],
                         line_numbers[good], tuple(p.filter(pa.array(good)) for p in passed))
        return Chunk(label.astype(np.uint8), dense, keys, missing, line_numbers, passed)
