"""Running independent tasks on N worker processes (or in this process when N is 1).

Workers are started with "spawn" (a fresh interpreter: nothing of the parent's threads or MindSpore
state is inherited) and die with the parent (Linux PR_SET_PDEATHSIG), so a killed run leaves no
worker writing behind it. An exception in a task stops the pool and re-raises here.
"""
import ctypes
import multiprocessing
import os
import signal
from typing import Any, Callable, List, Optional, Sequence

from src.utils.progress import Progress


def default_workers(requested: int) -> int:
    """`workers` config value -> process count: 0 means the CPUs this process may use."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def _call(args):
    i, fn, shared, task = args
    return i, fn(shared, task)


class Workers:
    """A pool of `n` worker processes, started on first use and shared by every phase (each worker
    imports its libraries once); with n == 1 tasks run in this process. Use as a context manager."""

    def __init__(self, n: int):
        self.n = n
        self._pool = None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def run(self, fn: Callable, shared: Any, tasks: Sequence, progress: Optional[Progress] = None,
            weights: Optional[Sequence[int]] = None) -> List:
        """[fn(shared, task) for task in tasks], results in task order; `progress` advances by weights[i]
        (default 1) as task i ends (in any order). An exception in a task re-raises here."""
        weights = weights if weights is not None else [1] * len(tasks)
        results: List = [None] * len(tasks)
        if self.n <= 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                results[i] = fn(shared, task)
                if progress:
                    progress.update(weights[i])
            return results
        if self._pool is None:
            self._pool = multiprocessing.get_context("spawn").Pool(self.n, initializer=_die_with_parent)
        jobs = [(i, fn, shared, t) for i, t in enumerate(tasks)]
        for i, result in self._pool.imap_unordered(_call, jobs, chunksize=1):
            results[i] = result
            if progress:
                progress.update(weights[i])
        return results
