"""A scoring request's body -> the model's inputs, through the transform fitted in training (serve.py).

    {"rows": [{column: raw value, ...}, ...]}    columns by name (a feature spec with a header, or with `names`):
                                                 every dense, categorical and multi-hot column; the label and ignored
                                                 columns may be given and are not read; a value is a string, a number
                                                 or null (missing); a multi-hot value is "a|b" (its separator) or a
                                                 JSON list of strings or numbers
    {"lines": ["raw line", ...]}                 lines in the training files' own format (Criteo: 40 or 39
                                                 tab-separated fields), with or without the label field

Rows are written as lines of the spec's format (`to_lines`, in the request's thread) and every line goes through the
same BlockParser and id mappers as preprocessing, so a request's ids are the ones predict.py computes for the same
values. The lines of all the requests of a micro-batch are parsed and transformed in one go (`score_lines`): a parse
costs about 2 ms whatever its size, which would otherwise be paid per request. The first problem of a body is a
RequestError naming the row (or line) and the column: a malformed body, a wrong type, an unknown or missing column
(at once), a value the column's format cannot read (when its batch is parsed: the batch's other requests are scored
all the same).
"""
import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from src.data.feature_spec import Columns, FeatureSpecError
from src.data.inputs import split_line
from src.data.text_parser import BadLineError, BlockParser, InputFormatError
from src.data.transform import FittedTransform, TransformError

FORMATS = ("rows", "lines")


class RequestError(ValueError):
    """A request the server answers with 400; the message names the first problem."""


def _cell(value: Any, where: str, separator: str = "") -> str:
    """A JSON value as the text of one field (a list only for a multi-hot column: its `separator`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise RequestError(f"{where}: expected a string or a number, got {json.dumps(value)}")
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RequestError(f"{where}: expected a finite number, got {value}")
        return repr(value)
    if isinstance(value, list) and separator:
        items = [_cell(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if any(separator in v for v in items):
            raise RequestError(f"{where}: a list value holds the separator {separator!r}")
        return separator.join(items)
    kind = "a list (only a multi-hot column takes one)" if isinstance(value, list) else type(value).__name__
    raise RequestError(f"{where}: expected a string or a number, got {kind}")


def rows_to_text(transform: FittedTransform, rows: List[Any]) -> Tuple[bytes, Columns]:
    """Rows by column name -> (the lines in the spec's format, their columns)."""
    names, columns = transform.row_layout()
    spec = columns.spec
    separators = {m.name: m.separator for m in spec.multi_hot}
    allowed = set(names) | {spec.label, *spec.ignore}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n") if spec.quoted else None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"rows[{i}]: expected an object of column: value, got {type(row).__name__}")
        unknown = [k for k in row if k not in allowed]
        if unknown:
            raise RequestError(f"rows[{i}]: unknown column {unknown[0]!r}; the model reads {names}")
        missing = [n for n in names if n not in row]
        if missing:
            raise RequestError(f"rows[{i}]: column {missing[0]!r} is missing (send null for a missing value)")
        fields = [_cell(row[n], f"rows[{i}] column {n!r}", separators.get(n, "")) for n in names]
        bad = next((n for n, v in zip(names, fields) if "\n" in v or "\r" in v or (not writer and "\t" in v)), None)
        if bad:
            raise RequestError(f"rows[{i}] column {bad!r}: a value holds a line break"
                               + ("" if writer else " or a tab"))
        if writer:
            writer.writerow(fields)
        else:
            out.write("\t".join(fields) + "\n")
    return out.getvalue().encode(), columns


def lines_to_text(transform: FittedTransform, lines: List[Any]) -> Tuple[bytes, Columns]:
    """Raw lines in the training layout -> (the text, their columns; the label field optional)."""
    for i, line in enumerate(lines):
        if not isinstance(line, str):
            raise RequestError(f"lines[{i}]: expected a string, got {type(line).__name__}")
        if "\n" in line or "\r" in line:
            raise RequestError(f"lines[{i}]: holds a line break; send one line per item")
    spec = transform.spec
    try:
        columns = transform.line_columns(split_line(lines[0], spec), "lines[0]")
    except (TransformError, InputFormatError, FeatureSpecError) as exc:
        raise RequestError(str(exc).removeprefix(f"feature spec '{spec.source}': ")) from None
    return ("\n".join(lines) + "\n").encode(), columns


@dataclass(frozen=True)
class Lines:
    """A request's rows as lines of text in one layout: what the batcher parses, together with other requests' lines of
    the same layout. kind: "rows" or "lines" (how messages name them)."""
    text: bytes
    columns: Columns
    n: int
    kind: str


def to_lines(transform: FittedTransform, body: bytes) -> Lines:
    """A request body -> its Lines (n = 0 for an empty list); RequestError naming the first problem of its shape (the
    values are read when the batch is parsed: score_lines)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not JSON ({exc})") from None
    kinds = [k for k in FORMATS if isinstance(data, dict) and k in data]
    if len(kinds) != 1 or len(data) != 1:
        raise RequestError('expected {"rows": [...]} or {"lines": [...]}, got '
                           + (f"keys {sorted(data)}" if isinstance(data, dict) else type(data).__name__))
    kind = kinds[0]
    items = data[kind]
    if not isinstance(items, list):
        raise RequestError(f"{kind}: expected a list, got {type(items).__name__}")
    if not items:
        return Lines(b"", transform.row_layout()[1], 0, kind)
    try:
        text, columns = (rows_to_text if kind == "rows" else lines_to_text)(transform, items)
    except TransformError as exc:
        raise RequestError(str(exc)) from None
    return Lines(text, columns, len(items), kind)


def score_lines(transform: FittedTransform, predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
                requests: List[Lines]) -> List[Any]:
    """Several requests' Lines scored together: the lines of one layout parsed in one go (what makes many small
    requests cheap), one model call for every good row. Returns, per request, its probabilities float32 [n], or the
    RequestError of its first bad line (the other requests are scored all the same)."""
    out: List[Any] = [None] * len(requests)
    ids_parts, dense_parts, owners = [], [], []
    groups: Dict[Columns, List[int]] = {}
    for i, req in enumerate(requests):
        groups.setdefault(req.columns, []).append(i)
    for columns, members in groups.items():
        text = b"".join(requests[i].text for i in members)
        sizes = [requests[i].n for i in members]
        parser = BlockParser("request", columns, strict=False, mode=transform.parse_mode)
        try:
            chunk = parser.parse(1, text, sum(sizes))
        except InputFormatError:                 # a quoted line break, bytes that are not UTF-8: each on its own
            chunk = None
        good = np.zeros(sum(sizes), bool)
        if chunk is not None:
            ids, dense, ok = transform.apply(columns, chunk)
            good[chunk.line[ok] - 1] = True
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for j, i in enumerate(members):
            lo, hi = starts[j], starts[j + 1]
            if not good[lo:hi].all():
                out[i] = RequestError(_first_problem(requests[i], transform))
                continue
            rows = np.searchsorted(chunk.line - 1, np.arange(lo, hi))          # this request's rows of the chunk
            ids_parts.append(ids[rows])
            dense_parts.append(dense[rows])
            owners.append(i)
    if owners:
        prob = predict(np.concatenate(ids_parts), np.concatenate(dense_parts))
        at = 0
        for i, part in zip(owners, ids_parts):
            out[i] = prob[at:at + len(part)]
            at += len(part)
    return out


def _first_problem(req: Lines, transform: FittedTransform) -> str:
    """The first bad line of a request in words: its row (or line) and what is wrong, naming the column."""
    parser = BlockParser("request", req.columns, strict=True, mode=transform.parse_mode)
    try:
        chunk = parser.parse(1, req.text, req.n)
    except BadLineError as exc:
        return f"{req.kind}[{exc.line - 1}]: {exc.detail}"
    except InputFormatError as exc:
        return str(exc).removeprefix("request:")
    if chunk is not None:
        _, _, ok = transform.apply(req.columns, chunk)
        if not ok.all():
            return f"{req.kind}[{int(chunk.line[np.flatnonzero(~ok)[0]]) - 1}]: an id beyond the model's tables"
    return f"{req.kind}: a value the model cannot read"
