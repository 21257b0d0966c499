"""The usage sampler shares the event loop with every request: a pass over many deployments
whose runtime answers without yielding (the process runtime reads small files) must give the
loop back as it goes, or a request waits for the whole pass (with 200 deployments, ~15 ms every
2 s: the loop lag at rest that bench/idle_bench.py measured)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
import uvloop

from studios.runtimes.base import Usage
from studios.services.engine.kit import Kit
from studios.services.engine.usage import UsageTracker


class _SlowToAnswer:
    """A runtime whose usage takes 1 ms of the loop's own time, without yielding."""

    def __init__(self, usage: Usage = Usage(None, None)) -> None:
        self.answer = usage

    async def usage(self, handle: Any) -> Usage:
        until = time.monotonic() + 0.001
        while time.monotonic() < until:
            pass
        return self.answer


class _Writes:
    """Stands in for the database: keeps what would be written."""

    def __init__(self) -> None:
        self.writes: list[Any] = []

    async def write(self, fn: Any) -> None:
        self.writes.append(fn)


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_a_sampling_pass_gives_the_loop_back_as_it_goes(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    # uvloop (what the service runs) as well as asyncio's own loop: their clocks differ.
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_sample_while_ticking())


async def _sample_while_ticking() -> None:
    tracker = UsageTracker(cast(Kit, None))  # nothing rises: the database is never written
    runtime: Any = _SlowToAnswer()
    for dep_id in range(60):
        tracker.add(dep_id, runtime, {"deployment_id": dep_id}, (None, None))
    ticks = 0
    passing = True

    async def tick() -> None:
        nonlocal ticks
        while passing:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    await tracker.sample()  # 60 ms of the loop's time in all
    during = ticks - before
    passing = False
    await ticker
    # Unsliced, the ticker never runs inside the pass; sliced at 2 ms, about 20 times.
    assert during >= 10, f"the loop was given back only {during} times during a 60 ms pass"


def test_a_deployment_removed_during_a_pass_is_not_followed_again() -> None:
    asyncio.run(_remove_while_sampling())


async def _remove_while_sampling() -> None:
    db = _Writes()
    tracker = UsageTracker(cast(Kit, SimpleNamespace(db=db)))
    runtime: Any = _SlowToAnswer(Usage(12.0, 250.0))
    for dep_id in range(60):
        tracker.add(dep_id, runtime, {"deployment_id": dep_id}, (None, None))

    async def remove_soon() -> None:
        await asyncio.sleep(0)
        tracker.remove(59)

    remover = asyncio.create_task(remove_soon())
    await tracker.sample()
    await remover
    assert len(db.writes) == 1  # the peaks that rose, in one write
    assert tracker.peaks[0] == (12.0, 250.0)
    assert 59 not in tracker.peaks and 59 not in tracker.live
