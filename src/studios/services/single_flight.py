"""One call for many concurrent askers: while a call for a key is under way on this event loop,
a request asking for the same key awaits its outcome (its value, or its error) instead of
making the same call again. For moments when many requests miss a cache at once: a kept answer
whose generation moved, a caller's key whose verification expired (every 5 s for a busy key:
32 connections each verified it in the database and read the page again, about 170 ms of
stall each time in `bench/api_bench.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._under_way: dict[Hashable, asyncio.Future[Any]] = {}

    async def once(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, or the outcome of the call already under way for `key`."""
        under_way = self._under_way.get(key)
        if under_way is not None:
            try:
                return await asyncio.shield(under_way)
            except asyncio.CancelledError:
                if not under_way.cancelled():
                    raise  # this request was cancelled
            return await call()  # the first asker was cancelled: call for this one
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._under_way[key] = future
        try:
            value = await call()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            del self._under_way[key]
        future.set_result(value)
        return value

    def __len__(self) -> int:
        return len(self._under_way)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Nobody else may have awaited it: its error is the first asker's, already raised."""
    if not future.cancelled():
        future.exception()
