"""Bridging the docker SDK's blocking streams (pull progress, followed logs) into asyncio.

Each stream is read by its own daemon thread, not by the default executor: a followed log can
stay open for days, and a handful of them would otherwise starve every `asyncio.to_thread`
call of the service. Items reach the event loop through `call_soon_threadsafe`; the consumer
gets them in batches (everything that arrived since it last looked). Leaving the `async for`
closes the underlying HTTP responses so the threads end. Knows nothing of Docker itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

Opener = Callable[[], tuple[Iterable[T], Callable[[], None]]]
"""Opens one blocking stream (runs in the worker thread): returns its items and a `close`
that aborts a read blocked on it from another thread."""


class _Done:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Source(Generic[T]):
    def __init__(self, opener: Opener[T], post: Callable[[object], None]) -> None:
        self.opener = opener
        self.post = post
        self.lock = threading.Lock()
        self.closer: Callable[[], None] | None = None
        self.cancelled = False

    def run(self) -> None:
        error: BaseException | None = None
        try:
            items, closer = self.opener()
            with self.lock:
                self.closer = closer
                cancelled = self.cancelled
            if cancelled:
                closer()
                return
            for item in items:
                if self.cancelled:
                    break
                self.post(item)
        except BaseException as exc:  # handed to the consumer, which decides
            error = exc
        finally:
            self.post(_Done(None if self.cancelled else error))

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            closer = self.closer
        if closer is not None:
            try:
                closer()
            except Exception:  # closing a half-dead connection may fail; the thread ends anyway
                pass


async def read_in_threads(openers: Sequence[Opener[T]], name: str = "stream") -> AsyncGenerator[list[T], None]:
    """Read every stream in its own thread; yield batches of items until all have ended.

    An exception raised by an opener or while reading is re-raised here once that stream has
    ended (the other streams are closed by the `finally`)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def post(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    sources = [_Source(opener, post) for opener in openers]
    for index, source in enumerate(sources):
        threading.Thread(target=source.run, name=f"studios-{name}-{index}", daemon=True).start()
    running = len(sources)
    try:
        while running:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            batch: list[T] = []
            for item in items:
                if isinstance(item, _Done):
                    running -= 1
                    if item.error is not None:
                        if batch:
                            yield batch
                        raise item.error
                else:
                    batch.append(item)  # type: ignore[arg-type]
            if batch:
                yield batch
    finally:
        for source in sources:
            source.cancel()
