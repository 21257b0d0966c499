"""The threads that run the API's hot reads (`Database.fast_read`), handed over in batches.

`loop.run_in_executor` costs each call a `concurrent.futures.Future` chained to an asyncio one,
a wake-up of the event loop, and two hand-overs of the GIL: for a read that itself takes 0.1 ms,
the hand-over costs more than the read (a bare FastAPI route reading one SQLite row in a thread
pool: 0.41-0.46 ms of CPU per request under 32 connections; the same route without the thread,
0.14 ms). With the hand-over below, `GET /studios/{id}` took 0.61-0.79 ms of CPU per request
where it had taken 0.90-0.92 ms in runs of the same hour (`bench/api_bench.py`, 32
connections); `bench/compare_revisions.py` on a busier machine: 0.96 against 1.02 ms.

Here a reader thread runs the calls queued one after the other and holds their results until
the queue is empty, `BATCH` are done or `HOLD_SECONDS` have passed since the first of them
began; then it hands them back in one callback on the event loop. Under load one wake-up and one GIL
hand-over serve many calls; a lone call costs what it did. A result waits at most
`HOLD_SECONDS` and the one call run after it, and a call queued behind a slow one waits for it:
only short reads come here (the writes, and every read that may take long, keep the general
pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
BATCH = 32
"""Most calls one thread takes at once."""
HOLD_SECONDS = 0.001
"""How long finished results may wait for the calls after them to be handed back together (a
studio's read takes ~0.2 ms, a page of the list ~3 ms)."""

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class Readers:
    def __init__(self, threads: int, name: str) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """`fn()` in a reader thread; its result (or exception) on the calling event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn))
        return future

    def _work(self) -> None:
        done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], bool, Any]] = []
        since = 0.0
        while True:
            try:
                item = self._queue.get_nowait() if done else self._queue.get()
            except queue.Empty:  # nothing more queued: hand back what is done, then wait
                _hand_back(done)
                done = []
                continue
            if item is None:
                _hand_back(done)
                return
            if not done:
                since = time.perf_counter()
            loop, future, fn = item
            try:
                done.append((loop, future, True, fn()))
            except BaseException as error:  # handed to the caller, as an executor would
                done.append((loop, future, False, error))
            if len(done) >= BATCH or time.perf_counter() - since >= HOLD_SECONDS:
                _hand_back(done)
                done = []

    def close(self) -> None:
        """Let the threads finish what is queued, then end them."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


def _hand_back(done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], bool, Any]]) -> None:
    """Results to their event loops, one callback per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for loop, future, ok, value in done:
        by_loop.setdefault(loop, []).append((future, ok, value))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
            loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
