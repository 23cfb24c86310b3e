"""The raw input of preprocessing: which files, which split each belongs to, and the pieces of work.

Two layouts of DIR (`data_path`):
  Kaggle     DIR/train.txt or DIR/train.txt.gz: the last N // 7 lines are held out (test, or with
             val_split: first half validation, second half test); the rest is training.
  Terabyte   DIR/day_A ... DIR/day_B (each optionally .gz), any contiguous run of day numbers, at least
             two: the last day is held out (with val_split: its first ceil(n/2) lines validation, the
             rest test), the others are training.

A piece is the unit of parallel work and of resume: piece k of a file holds the lines that *start* at
an uncompressed byte offset in [k*C, (k+1)*C) (C = chunk_bytes). The rule is the same for plain and
gzip files, so a file and its .gz give the same pieces. Plain files are cut by seeking (any worker can
take any piece); a gzip file is one task that streams its pieces in order.
"""
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Tuple

from src.data.criteo import CriteoFormatError, _raw_open, _read

DAY_RE = re.compile(r"^day_(\d+)(\.gz)?$")


@dataclass(frozen=True)
class InputFile:
    """One input file: its position in the input, and whether its lines are held out."""
    index: int          # 0.. in input order
    path: str
    name: str           # file name, used in messages ("day_3.gz:120: ...")
    held_out: bool      # day layout: the last day; Kaggle layout: decided per line (the tail)

    @property
    def gzip(self) -> bool:
        """True when the file is gzip-compressed (streamed by one worker)."""
        return self.path.endswith(".gz")


@dataclass(frozen=True)
class Layout:
    """The input files and how they split."""
    kind: str                   # "kaggle" | "days"
    files: Tuple[InputFile, ...]
    folder: str                 # the folder holding them (DIR/mindrecord is written beside them)

    def describe(self) -> str:
        """One line for logs: 'day_0 .. day_23 (24 files, day_23 held out)' or the Kaggle file."""
        if self.kind == "kaggle":
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
                raise CriteoFormatError(f"'{folder}' holds both {days[day]} and {name}: keep one of them")
            days[day] = name
    return sorted(days.items())


def _check_nonempty(path: str) -> None:
    if os.path.getsize(path) == 0:
        raise CriteoFormatError(f"input file '{path}' is empty")


def find_layout(data_path: str) -> Layout:
    """The input layout of data_path (a folder, or a train.txt[.gz] file); clear errors for anything else."""
    if os.path.isfile(data_path):
        _check_nonempty(data_path)
        path = os.path.abspath(data_path)
        return Layout("kaggle", (InputFile(0, path, os.path.basename(path), False),), os.path.dirname(path))
    if not os.path.isdir(data_path):
        raise CriteoFormatError(f"input '{data_path}' does not exist (expected a folder holding train.txt[.gz] "
                                f"or day_0 .. day_23[.gz])")
    folder = os.path.abspath(data_path)
    kaggle = [n for n in ("train.txt", "train.txt.gz") if os.path.isfile(os.path.join(folder, n))]
    days = _day_files(folder)
    if kaggle and days:
        raise CriteoFormatError(f"'{folder}' holds both {kaggle[0]} and day files ({days[0][1]} ..): keep one "
                                f"layout per folder")
    if len(kaggle) == 2:
        raise CriteoFormatError(f"'{folder}' holds both train.txt and train.txt.gz: keep one of them")
    if kaggle:
        path = os.path.join(folder, kaggle[0])
        _check_nonempty(path)
        return Layout("kaggle", (InputFile(0, path, kaggle[0], False),), folder)
    if not days:
        raise CriteoFormatError(f"no train.txt, train.txt.gz or day_N[.gz] files in '{folder}'")
    numbers = [d for d, _ in days]
    gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise CriteoFormatError(f"'{folder}': the day files must be a contiguous run; day_{gaps[0]} is missing "
                                f"between {days[0][1]} and {days[-1][1]}")
    if len(days) < 2:
        raise CriteoFormatError(f"'{folder}' holds one day file ({days[0][1]}); the last day is held out for "
                                f"evaluation, so at least two are needed")
    files = []
    for i, (_, name) in enumerate(days):
        path = os.path.join(folder, name)
        _check_nonempty(path)
        files.append(InputFile(i, path, name, i == len(days) - 1))
    return Layout("days", tuple(files), folder)


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


def stream_pieces(path: str, piece_bytes: int, read_bytes: int = 16 << 20) -> Iterator[Tuple[int, bytes]]:
    """(k, text) of every piece of a file in order, by streaming it (gzip or plain); the same cuts as
    read_piece, and ceil(uncompressed size / piece_bytes) pieces (one without a line start is b"")."""
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
                chunk = _read(f, read_bytes, path, lines)
                eof = not chunk
                buf += chunk
                continue
            piece = buf[:end]
            lines += piece.count(b"\n")
            yield k, (piece if not piece or piece.endswith(b"\n") else piece + b"\n")
            k, base, buf = k + 1, base + end, buf[end:]
