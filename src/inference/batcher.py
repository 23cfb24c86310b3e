"""Micro-batching for the server: concurrent requests are parsed, transformed and scored together.

A request joins a bounded queue (`max_queue_rows` rows in all: past it, `submit` raises Overloaded at once and the
server answers 503, so memory never grows with the load). One task takes requests off the queue, in order, until
`max_batch_rows` rows or `max_wait_ms` after the first of them, whichever comes first (a request larger than
max_batch_rows goes alone), and hands them to `process` in one thread beside the event loop, which returns each
request's result or its own error (requests.score_lines). A failing batch fails its requests only.
"""
import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, List, Optional, Tuple


class Overloaded(RuntimeError):
    """The queue holds max_queue_rows rows already: answer 503."""


class MicroBatcher:
    """`await submit(item, rows)` -> item's result, computed with others' by process([items]) -> [results or
    exceptions] in a thread of its own (module docstring)."""

    def __init__(self, process: Callable[[List[Any]], List[Any]], max_batch_rows: int, max_wait_ms: float,
                 max_queue_rows: int):
        self.process = process
        self.max_batch_rows, self.max_wait = max_batch_rows, max_wait_ms / 1000.0
        self.max_queue_rows = max_queue_rows
        self.queue: Deque[Tuple[Any, int, asyncio.Future, float]] = deque()
        self.queued_rows = 0
        self.arrived = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="batch")
        self.task: Optional[asyncio.Task] = None
        self.batches = self.rows = 0

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop (the server drains its requests before calling this)."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, item: Any, rows: int) -> Any:
        """Queue one request of `rows` rows; its result, or its error raised; Overloaded when the queue is full."""
        if self.queued_rows + rows > self.max_queue_rows:
            raise Overloaded(f"the server is busy: {self.queued_rows:,} rows are queued (max_queue_rows="
                             f"{self.max_queue_rows:,}); retry shortly")
        future = asyncio.get_running_loop().create_future()
        self.queue.append((item, rows, future, time.perf_counter()))
        self.queued_rows += rows
        self.arrived.set()
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    def _take(self) -> List[Tuple[Any, int, asyncio.Future, float]]:
        """The requests of the next batch: from the queue's front while they fit in max_batch_rows (at least one)."""
        batch, rows = [], 0
        while self.queue and (not batch or rows + self.queue[0][1] <= self.max_batch_rows):
            entry = self.queue.popleft()
            rows += entry[1]
            batch.append(entry)
        self.queued_rows -= rows
        return batch

    async def _wait_for_more(self) -> None:
        """Wait until the queue holds max_batch_rows rows or the oldest request has waited max_wait."""
        while self.queued_rows < self.max_batch_rows:
            left = self.max_wait - (time.perf_counter() - self.queue[0][3])
            if left <= 0:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self.arrived.clear()
                await self.arrived.wait()
                continue
            await self._wait_for_more()
            batch = self._take()
            try:
                results = await loop.run_in_executor(self.executor, self.process, [b[0] for b in batch])
            except Exception as exc:  # noqa: BLE001 - the batch's requests get the error, the server goes on
                results = [exc] * len(batch)
            self.batches += 1
            self.rows += sum(b[1] for b in batch)
            for (_, _, future, _), result in zip(batch, results):
                if not future.done():                        # a client that went away leaves its future cancelled
                    future.set_result(result)
