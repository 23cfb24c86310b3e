"""Split tail on a plain file: the lines of each piece, counted in order by a thread while the pieces counted so far
are parsed.

The split needs every line's number and the file's line count (the last N // 7 lines are held out). Counting is a
fast read of the file; parsing is about 50x slower. So instead of a counting phase before the parsing, a thread of
the parent counts the pieces in order and hands out a piece as soon as its split is known:
  * with train_line_count given: as soon as it is counted (its line numbers are known, the total is given);
  * else once it is known to hold only training lines: it ends at or before c - c // 7, c the lines counted so far,
    since the file has at least c lines and its training lines (N - N // 7) grow with N;
  * every other piece once the whole file is counted.
A piece is parsed with the same line numbers and the same training lines either way, so the dataset is unchanged.
"""
import threading
import time
from typing import List, Optional, Tuple

from src.data.inputs import count_piece_lines, piece_count
from src.data.text_parser import InputFormatError


class TailCounter:
    """Counts a plain file's pieces in a thread (started at once); `ready()` gives the pieces whose split is known."""

    def __init__(self, path: str, piece_bytes: int, header: bool, train_line_count: int, val_split: bool):
        self.path, self.piece_bytes, self.header = path, piece_bytes, header
        self.train_line_count, self.val_split = train_line_count, val_split
        self.n = piece_count(path, piece_bytes)
        self.counts: List[int] = []                 # data lines of pieces 0.. (appended in order by the thread)
        self.error: Optional[BaseException] = None
        self.seconds = 0.0                          # the counting's wall time, once finished
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._count, daemon=True)
        self.thread.start()

    def _count(self) -> None:
        start = time.time()
        try:
            for k in range(self.n):
                self.counts.append(count_piece_lines(self.path, k, self.piece_bytes) - (self.header and k == 0))
        except BaseException as exc:  # noqa: BLE001 - raised again by ready() in the parent's thread
            self.error = exc
        finally:
            self.seconds = time.time() - start
            self.finished.set()

    def split(self) -> Tuple[int, int, int]:
        """(data lines, n_train, n_val) once every piece is counted; InputFormatError when train_line_count disagrees
        or the file is too short for a test split."""
        self.finished.wait()
        if self.error is not None:
            raise self.error
        total = sum(self.counts)
        header = " after its header" if self.header else ""
        if self.train_line_count and self.train_line_count != total:
            raise InputFormatError(f"{self.path}: has {total} lines{header} but train_line_count="
                                   f"{self.train_line_count}; set it to the file's line count, or 0 to count it")
        n_test = total // 7
        if n_test == 0:
            raise InputFormatError(f"{self.path}: {total} lines is too few: the test split is the last N // 7 lines")
        return total, total - n_test, n_test // 2 if self.val_split else 0

    def ready(self, start: int) -> List[Tuple[int, int, int]]:
        """(k, data lines before piece k, n_train to parse it with) for the pieces from `start` on whose split is
        known now, in order. Raises the counting's error, and split()'s errors once the file is counted."""
        finished = self.finished.is_set()          # read before the counts: then they are complete when it is set
        counts = list(self.counts)
        if finished:
            n_train = self.split()[1]
        elif self.train_line_count:
            n_train = self.train_line_count - self.train_line_count // 7
        else:
            c = sum(counts)
            n_train = c - c // 7                   # a lower bound: pieces ending by it hold training lines only
        out, offset = [], sum(counts[:start])
        for k in range(start, len(counts)):
            if not (finished or self.train_line_count) and offset + counts[k] > n_train:
                break
            out.append((k, offset, n_train))
            offset += counts[k]
        return out
