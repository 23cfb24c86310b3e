"""The raw input of preprocessing: which files, which split each belongs to, the columns, and the pieces of work.

The files and columns come from a feature spec (src/data/feature_spec.py). Without one, DIR holding
  train.txt or train.txt.gz   uses the shipped Criteo Kaggle spec (split tail: the last N // 7 lines are held out
                              (test, or with val_split: first half validation, second half test); the rest is training)
  day_A ... day_B[.gz]        uses the shipped Criteo Terabyte spec: any contiguous run of day numbers, at least two
                              (split last_file: the last day is held out; with val_split its first ceil(n/2) lines
                              validation, the rest test), the others are training.
A feature spec's `split` is one of these two (tail: one file; last_file: at least two).

A piece is the unit of parallel work and of resume: piece k of a file holds the lines that *start* at
an uncompressed byte offset in [k*C, (k+1)*C) (C = chunk_bytes). The rule is the same for plain and
gzip files, so a file and its .gz give the same pieces. Plain files are cut by seeking (any worker can
take any piece); a gzip file's task streams its pieces in order, leaving some of them, inflated, to other workers
(src/data/pieces.py). A file with a header has it in
its piece 0 (the worker checks and drops it).
"""
import csv
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional, Tuple

from src.data.feature_spec import Columns, FeatureSpec, list_files, load_feature_spec, resolve
from src.data.text_parser import InputFormatError, _raw_open, _read

DAY_RE = re.compile(r"^day_(\d+)(\.gz)?$")


@dataclass(frozen=True)
class InputFile:
    """One input file: its position in the input, and whether its lines are held out."""
    index: int          # 0.. in input order
    path: str
    name: str           # file name, used in messages ("day_3.gz:120: ...")
    held_out: bool      # split last_file: the last file; split tail: decided per line (the tail)

    @property
    def gzip(self) -> bool:
        """True when the file is gzip-compressed (streamed by one task, which hands some pieces on)."""
        return self.path.endswith(".gz")


@dataclass(frozen=True)
class Layout:
    """The input files, how they split, and their columns."""
    kind: str                   # the split: "tail" | "last_file"
    files: Tuple[InputFile, ...]
    folder: str                 # the folder holding them (DIR/mindrecord is written beside them)
    columns: Columns

    def describe(self) -> str:
        """One line for logs: 'day_0 .. day_23 (24 files, day_23 held out)' or the one file."""
        if self.kind == "tail":
            return self.files[0].path
        return f"{self.files[0].name} .. {self.files[-1].name} ({len(self.files)} files, " \
               f"{self.files[-1].name} held out)"


def _day_files(folder: str) -> List[Tuple[int, str]]:
    days = {}
    for name in os.listdir(folder):
        m = DAY_RE.match(name)
        if m and os.path.isfile(os.path.join(folder, name)):
            day = int(m.group(1))
            if day in days:
                raise InputFormatError(f"'{folder}' holds both {days[day]} and {name}: keep one of them")
            days[day] = name
    return sorted(days.items())


def _check_nonempty(path: str) -> None:
    if os.path.getsize(path) == 0:
        raise InputFormatError(f"input file '{path}' is empty")


def _criteo_files(folder: str) -> Tuple[str, List[str]]:
    """Without a feature spec: (the shipped Criteo spec, the file names) of a folder; errors for anything else."""
    kaggle = [n for n in ("train.txt", "train.txt.gz") if os.path.isfile(os.path.join(folder, n))]
    days = _day_files(folder)
    if kaggle and days:
        raise InputFormatError(f"'{folder}' holds both {kaggle[0]} and day files ({days[0][1]} ..): keep one "
                               f"layout per folder")
    if len(kaggle) == 2:
        raise InputFormatError(f"'{folder}' holds both train.txt and train.txt.gz: keep one of them")
    if kaggle:
        return "criteo_kaggle", kaggle
    if not days:
        raise InputFormatError(f"no train.txt, train.txt.gz or day_N[.gz] files in '{folder}' (for other data, "
                               f"describe its columns in a feature spec: --feature_spec=SPEC.yaml)")
    numbers = [d for d, _ in days]
    gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise InputFormatError(f"'{folder}': the day files must be a contiguous run; day_{gaps[0]} is missing "
                               f"between {days[0][1]} and {days[-1][1]}")
    return "criteo_terabyte", [name for _, name in days]


def first_fields(path: str, spec: FeatureSpec) -> List[str]:
    """The fields of a file's first line (quotes removed for csv)."""
    with _raw_open(path) as f:
        line = _read(f, 1 << 20, path, 0).split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(f"{path}:1: not UTF-8 text ({exc})") from None
    return split_line(text, spec)


def split_line(text: str, spec: FeatureSpec) -> List[str]:
    """The fields of one line of text (quotes removed for csv)."""
    if spec.quoted:
        return next(csv.reader([text], delimiter=spec.delimiter), [])
    return text.split(spec.delimiter)


def find_layout(data_path: str, feature_spec: str = "") -> Layout:
    """The input of data_path (a folder, or with the Criteo Kaggle layout its train.txt[.gz]) under the feature
    spec (a YAML path or a shipped spec's name; "" = the Criteo layouts); clear errors for anything else."""
    if os.path.isfile(data_path) and not feature_spec:
        folder, names, spec_name = os.path.dirname(os.path.abspath(data_path)), [os.path.basename(data_path)], \
            "criteo_kaggle"
    elif not os.path.isdir(data_path):
        raise InputFormatError(f"input '{data_path}' does not exist (expected a folder holding train.txt[.gz], "
                               f"day_0 .. day_23[.gz], or the files a feature spec names)")
    else:
        folder = os.path.abspath(data_path)
        spec_name, names = (feature_spec, None) if feature_spec else _criteo_files(folder)
    spec = load_feature_spec(spec_name)
    names = names or list_files(folder, spec)
    if spec.split == "tail" and len(names) != 1:
        raise InputFormatError(f"feature spec '{spec.source}': split: tail holds out the end of one file, but "
                               f"{len(names)} files match ({names[:3]}...): use split: last_file, or name one file")
    if spec.split == "last_file" and len(names) < 2:
        raise InputFormatError(f"'{folder}' holds one input file ({names[0]}); the last file is held out for "
                               f"evaluation (split: last_file), so at least two are needed")
    files = []
    for i, name in enumerate(names):
        path = os.path.join(folder, name)
        _check_nonempty(path)
        files.append(InputFile(i, path, name, spec.split == "last_file" and i == len(names) - 1))
    fields = first_fields(files[0].path, spec) if spec.header or not spec.names else None
    columns = resolve(spec, fields, files[0].name)
    return Layout(spec.split, tuple(files), folder, columns)


def piece_count(path: str, piece_bytes: int) -> int:
    """Pieces of a plain file: ceil(size / piece_bytes) (the last ones may be empty of line starts)."""
    return max(1, -(-os.path.getsize(path) // piece_bytes))


def line_start_at_or_after(f: BinaryIO, offset: int) -> int:
    """The offset of the first line starting at or after `offset` in a plain file (EOF if none)."""
    if offset == 0:
        return 0
    f.seek(offset - 1)
    pos = offset - 1
    while True:
        buf = f.read(1 << 16)
        if not buf:
            return pos
        i = buf.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(buf)


def read_piece(path: str, k: int, piece_bytes: int) -> bytes:
    """The text of piece k of a plain file: whole lines, each ending with a newline (one is added to a
    last line without one)."""
    with open(path, "rb") as f:
        start = line_start_at_or_after(f, k * piece_bytes)
        end = line_start_at_or_after(f, (k + 1) * piece_bytes)
        f.seek(start)
        data = f.read(end - start)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data


def lines_before(path: str, offset: int) -> int:
    """Newlines in the first `offset` bytes of a file (for naming a line in a message)."""
    n, done = 0, 0
    with _raw_open(path) as f:
        while done < offset:
            buf = _read(f, min(16 << 20, offset - done), path, n)
            if not buf:
                break
            n += buf.count(b"\n")
            done += len(buf)
    return n


def count_piece_lines(path: str, k: int, piece_bytes: int) -> int:
    """Lines of piece k of a plain file (a count, no parsing)."""
    data = read_piece(path, k, piece_bytes)
    return data.count(b"\n")


def stream_blocks(path: str, piece_bytes: int, read_bytes: int = 16 << 20,
                  block_bytes: Optional[int] = None) -> Iterator[Tuple[int, bytes, bool]]:
    """(k, text, last) for every piece of a file in order, by streaming it (gzip or plain); the same cuts as read_piece,
    and ceil(uncompressed size / piece_bytes) pieces (one without a line start is b""). A piece comes as blocks of whole
    lines, `last` marking its final one: with `block_bytes`, a block goes out as soon as that much of the piece is read
    (its reader can parse while the rest is inflated); without, each piece is one block."""
    k, buf, base, lines, eof = 0, b"", 0, 0, False      # buf holds the text from uncompressed offset `base`
    with _raw_open(path) as f:
        while True:
            end_known = base + len(buf)
            if eof and k * piece_bytes >= end_known:
                return
            rel = (k + 1) * piece_bytes - 1 - base     # the piece ends at the first newline at or after rel
            i = buf.find(b"\n", max(rel, 0)) if rel < len(buf) else -1
            if rel < 0:
                end = 0
            elif i >= 0:
                end = i + 1
            elif eof:
                end = len(buf)
            else:
                j = buf.rfind(b"\n") if block_bytes and len(buf) >= block_bytes else -1
                if j >= 0:                             # every newline in buf comes before the piece's end
                    lines += buf.count(b"\n", 0, j + 1)
                    yield k, buf[:j + 1], False
                    base, buf = base + j + 1, buf[j + 1:]
                    continue
                chunk = _read(f, read_bytes, path, lines)
                eof = not chunk
                buf += chunk
                continue
            piece = buf[:end]
            lines += piece.count(b"\n")
            yield k, (piece if not piece or piece.endswith(b"\n") else piece + b"\n"), True
            k, base, buf = k + 1, base + end, buf[end:]


def stream_pieces(path: str, piece_bytes: int, read_bytes: int = 16 << 20) -> Iterator[Tuple[int, bytes]]:
    """(k, text) of every piece of a file in order, by streaming it (gzip or plain): stream_blocks' pieces whole."""
    for k, text, _ in stream_blocks(path, piece_bytes, read_bytes):
        yield k, text
