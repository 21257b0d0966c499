"""The event-loop lag monitor: a blocked loop shows as lag, and the histogram's windows and
quantiles say what a metrics endpoint or the service's log will say."""

from __future__ import annotations

import asyncio
import time

from studios.services.looplag import BOUNDS, LagSnapshot, LoopLag


def test_a_blocked_loop_shows_as_lag() -> None:
    asyncio.run(_blocked_loop())


async def _blocked_loop() -> None:
    lag = LoopLag(interval=0.005)
    task = asyncio.create_task(lag.run())
    try:
        deadline = time.monotonic() + 10
        while lag.snapshot().count < 3:  # it is measuring
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        before, before_own = lag.snapshot(), lag.snapshot(own=True)
        time.sleep(0.08)  # the loop is blocked: the next wake-up is at least ~75 ms late
        while lag.snapshot().count < before.count + 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        window = lag.snapshot().since(before)
        assert window.max >= 0.07
        assert sum(window.counts[BOUNDS.index(0.075) :]) >= 1  # counted in a bucket above 75 ms
        assert window.sum >= 0.07
        # Blocked by itself, not by other processes: its own lag is as late.
        assert lag.snapshot(own=True).since(before_own).max >= 0.07
    finally:
        task.cancel()


def test_quantiles_and_cumulative_buckets() -> None:
    counts = [0] * (len(BOUNDS) + 1)
    counts[BOUNDS.index(0.001)] = 98  # 98 wake-ups between 0.5 and 1 ms late
    counts[BOUNDS.index(0.05)] = 2  # 2 between 30 and 50 ms
    snap = LagSnapshot(tuple(counts), 100, 0.2, 0.045)
    assert 0.0005 <= snap.quantile(0.5) <= 0.001
    assert 0.03 <= snap.quantile(0.99) <= 0.05
    cumulative = snap.cumulative()
    assert cumulative[-1][1] == 100 and cumulative[-1][0] == float("inf")
    assert dict(cumulative)[0.001] == 98
    lag = LoopLag()
    lag.observe(0.030, waited=0.025)  # 30 ms late, 25 of which waiting for a CPU
    assert lag.snapshot().counts[BOUNDS.index(0.03)] == 1
    assert lag.snapshot(own=True).counts[BOUNDS.index(0.005)] == 1
    empty = snap.since(snap)
    assert empty.count == 0 and empty.quantile(0.99) == 0.0
