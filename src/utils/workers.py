"""Running independent tasks on N worker processes (or in this process when N is 1).

Workers are started with "spawn" (a fresh interpreter: nothing of the parent's threads or MindSpore
state is inherited) and die with the parent (Linux PR_SET_PDEATHSIG), so a killed run leaves no
worker writing behind it. An exception in a task stops the pool and re-raises here.
"""
import ctypes
import importlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from src.utils.progress import Progress


BYTES_PER_WORKER = 64 << 20     # workers=auto: one worker per this much input text (measured: docs/benchmarks.md)


def cpus_available() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def choose_workers(requested: Union[int, str], input_bytes: int, tasks: int) -> Tuple[int, str]:
    """(process count, the rule in words) for the `workers` config value: a number is used as it is; "auto" takes
    one worker per BYTES_PER_WORKER of input (a smaller input does not pay for a second worker's start), never more
    than the CPUs available nor the tasks there are (pieces of plain files, whole gzip files)."""
    if requested != "auto":
        return int(requested), f"workers={requested}"
    cpus = cpus_available()
    n = max(1, min(cpus, tasks, input_bytes // BYTES_PER_WORKER))
    return n, (f"workers=auto -> {n} (min of {cpus} CPUs, {tasks} tasks, and one worker per "
               f"{BYTES_PER_WORKER >> 20} MB of the {input_bytes / 2 ** 20:,.0f} MB of input)")


def _import_quietly(name: str) -> None:
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the caller's own import of it reports the error where it matters
        pass


@contextmanager
def imported_meanwhile(module: str, enabled: bool = True) -> Iterator[None]:
    """Import `module` in a thread while the block runs (on a core the block leaves idle); the thread is joined before
    the block ends, also on an error, so the interpreter never shuts down in the middle of the import."""
    thread = threading.Thread(target=_import_quietly, args=(module,), daemon=True) if enabled else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        if thread:
            thread.join()


def _start_worker(preload: Sequence[str]) -> None:
    """A worker's start: die with the parent, then import the task modules (while the parent is still busy)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except OSError:
        pass
    for name in preload:
        importlib.import_module(name)


def _call(args):
    i, fn, shared, task = args
    return i, fn(shared, task)


class Workers:
    """A pool of `n` worker processes, started when the context is entered and shared by every phase: each worker
    imports the `preload` modules once, while the parent goes on with its own start (listing and counting the input);
    with n == 1 tasks run in this process. Use as a context manager."""

    def __init__(self, n: int, preload: Sequence[str] = ()):
        self.n = n
        self.preload = tuple(preload)
        self._pool = None

    def __enter__(self) -> "Workers":
        if self.n > 1:
            self._start()
        return self

    def _start(self) -> None:
        self._pool = multiprocessing.get_context("spawn").Pool(self.n, initializer=_start_worker,
                                                               initargs=(self.preload,))

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def run(self, fn: Callable, shared: Any, tasks: Sequence, progress: Optional[Progress] = None,
            weights: Optional[Sequence[int]] = None, here: bool = False) -> List:
        """[fn(shared, task) for task in tasks], results in task order; `progress` advances by weights[i]
        (default 1) as task i ends (in any order). An exception in a task re-raises here. `here`: run them in this
        process, one after the other."""
        weights = weights if weights is not None else [1] * len(tasks)
        results: List = [None] * len(tasks)
        if self.n <= 1 or len(tasks) <= 1 or here:
            for i, task in enumerate(tasks):
                results[i] = fn(shared, task)
                if progress:
                    progress.update(weights[i])
            return results
        if self._pool is None:
            self._start()
        jobs = [(i, fn, shared, t) for i, t in enumerate(tasks)]
        for i, result in self._pool.imap_unordered(_call, jobs, chunksize=1):
            results[i] = result
            if progress:
                progress.update(weights[i])
        return results

    def run_growing(self, fn: Callable, shared: Any, tasks: Sequence, progress: Optional[Progress] = None,
                    weights: Optional[Sequence[int]] = None,
                    found: Optional[Callable[[], List[Any]]] = None) -> List:
        """run(), plus the tasks that the running ones make: `found()` is asked for new tasks while tasks run and
        after they have all ended, until it has none (each is returned once by it); they run with weight 0. Returns
        the given tasks' results, in order."""
        found = found or (lambda: [])
        if self.n <= 1:
            results = self.run(fn, shared, tasks, progress, weights)
            while True:
                more = found()
                if not more:
                    return results
                self.run(fn, shared, more)
        if self._pool is None:
            self._start()
        weights = weights if weights is not None else [1] * len(tasks)
        results: List = [None] * len(tasks)
        pending = [(i, self._pool.apply_async(_call, ((i, fn, shared, t),))) for i, t in enumerate(tasks)]
        while pending:
            pending[0][1].wait(0.25)                # found() is asked at least this often, and after tasks end
            state = [(p, p[1].ready()) for p in pending]           # asked once: a task may end meanwhile
            pending = [p for p, ready in state if not ready]
            for i, res in [p for p, ready in state if ready]:
                _, value = res.get()                 # re-raises a task's exception
                if i is not None:
                    results[i] = value
                    if progress:
                        progress.update(weights[i])
            pending += [(None, self._pool.apply_async(_call, ((None, fn, shared, t),))) for t in found()]
        return results

    def stream(self, fn: Callable, shared: Any, tasks: Iterable, ahead: int = 2) -> Iterator:
        """fn(shared, task) for each task, yielded in task order as the workers finish them, with at most `ahead`
        tasks per worker under way (tasks are drawn from the iterable as room frees up: memory stays bounded). With
        one worker a thread of this process runs them, one task ahead of the consumer."""
        if self.n <= 1:
            from src.utils.progress import background
            yield from background((fn(shared, t) for t in tasks), depth=1)
            return
        if self._pool is None:
            self._start()
        pending: deque = deque()
        it = iter(tasks)
        for task in it:
            pending.append(self._pool.apply_async(_call, ((None, fn, shared, task),)))
            while len(pending) >= ahead * self.n:
                yield pending.popleft().get()[1]
        while pending:
            yield pending.popleft().get()[1]
