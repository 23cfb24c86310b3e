"""Progress lines with rate and ETA for long work (preprocessing, training, evaluation)."""
import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional


def fmt_seconds(sec: float) -> str:
    """3725 -> '1h02m05s'."""
    sec = int(max(sec, 0))
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Prints `label: done/total unit (pct), rate unit/s, ETA` at most every `every` seconds."""

    def __init__(self, label: str, total: int, unit: str = "lines", every: float = 2.0, stream=None,
                 enabled: bool = True):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.start = self.last = time.time()
        self.done = 0

    def update(self, n: int) -> None:
        """Count n more units; print a line if `every` seconds have passed."""
        self.done += n
        now = time.time()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def rate(self, now: Optional[float] = None) -> float:
        """Units per second so far."""
        return self.done / max((now or time.time()) - self.start, 1e-9)

    def line(self, now: Optional[float] = None) -> str:
        """'label: done/total unit (pct), rate unit/s, ETA ...'."""
        rate = self.rate(now)
        text = f"{self.label}: {self.done:,}"
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            text += f"/{self.total:,} {self.unit} ({100.0 * self.done / self.total:.1f}%), {rate:,.0f} {self.unit}/s, " \
                    f"ETA {fmt_seconds(eta)}"
        else:
            text += f" {self.unit}, {rate:,.0f} {self.unit}/s"
        return text

    def finish(self) -> None:
        """Print the final line with the total time."""
        if self.enabled:
            self.stream.write(self.line() + f", done in {fmt_seconds(time.time() - self.start)}\n")
            self.stream.flush()


def background(iterable: Iterable, depth: int = 2) -> Iterator:
    """Iterate `iterable` in a worker thread, `depth` items ahead (overlaps I/O and parsing with the
    consumer; pyarrow and large numpy operations release the GIL). Exceptions re-raise here."""
    import queue
    import threading
    q = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                q.put((True, item))
            q.put((True, done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((False, exc))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def with_next(iterable: Iterable) -> Iterator:
    """item -> (item, the item after it or None for the last): a one-item look-ahead."""
    it = iter(iterable)
    sentinel = object()
    current = next(it, sentinel)
    while current is not sentinel:
        upcoming = next(it, sentinel)
        yield current, (None if upcoming is sentinel else upcoming)
        current = upcoming


class PhaseTimes:
    """Wall time of a job's phases, in the order they first ran: `with times.phase("parse"): ...`; a phase entered
    twice adds up. `summary()` also gives the start-up (process start to this object's creation)."""

    def __init__(self):
        import psutil
        self.created = time.time()
        self.startup = self.created - psutil.Process().create_time()
        self.seconds = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A context manager adding its wall time to phase `name`."""
        t = time.time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.time() - t

    def summary(self) -> str:
        """'start-up 1.2 s, count 0.4 s, parse 5.1 s, ...; total 9.8 s' (total: since the process started)."""
        parts = [f"start-up {self.startup:.1f} s"] + [f"{k} {v:.1f} s" for k, v in self.seconds.items()]
        return ", ".join(parts) + f"; total {time.time() - self.created + self.startup:.1f} s"
