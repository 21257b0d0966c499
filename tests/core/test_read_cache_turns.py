"""The views generation is read once per turn of the event loop (`ReadCache.current`): the
requests of one turn share the reading, and anything queued after it reads again, so a request
received after a commit never uses a reading from before it. On both loops the service runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from studios.services.read_cache import ReadCache

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run_on(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())


class Counter:
    """A probe whose generation the test moves, counting its reads."""

    def __init__(self) -> None:
        self.generation = 1
        self.reads = 0

    def __call__(self) -> int | None:
        self.reads += 1
        return self.generation


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_one_turn_shares_one_reading_and_the_next_turn_reads_again(loop_name: str) -> None:
    async def main() -> None:
        probe = Counter()
        cache = ReadCache(probe)
        assert [cache.current(), cache.current(), cache.current()] == [1, 1, 1]
        assert probe.reads == 1
        probe.generation = 2  # a commit, after this turn's reading
        await asyncio.sleep(0)
        assert cache.current() == 2 and probe.reads == 2

    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_step_queued_after_the_reading_reads_again(loop_name: str) -> None:
    """A request received after the reading (its step queued after it), or a read's result come
    back from a thread, must not use it: the commit it follows may be newer."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        probe = Counter()
        cache = ReadCache(probe)
        seen: list[int | None] = []
        queued_before = loop.create_future()
        queued_before.add_done_callback(lambda _: seen.append(cache.current()))
        queued_before.set_result(None)  # its callback is queued now, before the reading
        assert cache.current() == 1
        probe.generation = 2  # committed after the reading ...
        loop.call_soon(lambda: seen.append(cache.current()))  # ... and a step queued after both
        done = loop.create_future()
        loop.call_soon(done.set_result, None)
        await done
        assert seen == [1, 2]

    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_an_unknown_generation_is_not_kept_for_the_turn(loop_name: str) -> None:
    async def main() -> None:
        answers = iter([None, 5])
        cache = ReadCache(lambda: next(answers))  # busy first (the request takes the thread path), then known
        assert cache.current() is None
        assert cache.current() == 5

    run_on(loop_name, main)
