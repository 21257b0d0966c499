"""Event-loop lag: how late the loop that serves the API, the proxy and the engine wakes a task.

A task sleeps `interval` seconds again and again and records how much later than asked it woke
up, in a fixed-bucket histogram (cumulative since start, as Prometheus histograms are; take a
`snapshot()` and subtract an earlier one for a window). Anything that blocks the loop (a
synchronous database call, a long parse, a collection pause) shows here as lag, and so does a
machine too busy to run the process at all; so a second histogram (`snapshot(own=True)`)
counts each lag less the time the loop's thread waited for a CPU meanwhile (Linux's
`/proc/thread-self/schedstat`): the lag this process caused itself. This module owns the measuring
task and its histograms; it exports nothing itself: the service logs a summary every
`STUDIOS_LOOP_LAG_LOG_SECONDS`, and a metrics endpoint can read `snapshot()`.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import math
import os

log = logging.getLogger("studios.looplag")

BOUNDS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Upper bounds of the buckets, in seconds (a last bucket holds everything above)."""


@dataclasses.dataclass(frozen=True)
class LagSnapshot:
    """The histogram at one moment: `counts[i]` wake-ups were late by at most `BOUNDS[i]` (and
    more than the bound before); `counts[-1]` by more than the last bound."""

    counts: tuple[int, ...]
    count: int
    sum: float
    """Total lag, seconds."""
    max: float
    """Worst lag since start, seconds (not windowed by `since`)."""

    def since(self, earlier: LagSnapshot) -> LagSnapshot:
        """The wake-ups between `earlier` and this one."""
        counts = tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        return LagSnapshot(counts, self.count - earlier.count, self.sum - earlier.sum, self.max)

    def quantile(self, q: float) -> float:
        """The q-quantile of lag in seconds, interpolated inside its bucket (as Prometheus's
        `histogram_quantile` does); 0.0 with no observation."""
        if self.count == 0:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            if n and seen + n >= rank:
                low = BOUNDS[i - 1] if i > 0 else 0.0
                high = BOUNDS[i] if i < len(BOUNDS) else max(self.max, low)
                return low + (high - low) * (rank - seen) / n
            seen += n
        return BOUNDS[-1]

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, wake-ups at most that late) pairs, the last bound +inf: a Prometheus
        histogram's `_bucket{le=...}` series."""
        out, total = [], 0
        for bound, n in zip((*BOUNDS, math.inf), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def summary(self) -> str:
        mean = self.sum / self.count * 1000 if self.count else 0.0
        return f"p50 {self.quantile(0.5) * 1000:.2f} ms, p99 {self.quantile(0.99) * 1000:.2f} ms, mean {mean:.2f} ms, {self.count} wake-ups"


def _runqueue_wait(fd: int | None) -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (0.0 when unknown)."""
    if fd is None:
        return 0.0
    try:
        return int(os.pread(fd, 128, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def observe(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.counts[bisect.bisect_left(BOUNDS, lag)] += 1
        self.count += 1
        self.sum += lag
        if lag > self.max:
            self.max = lag

    def snapshot(self) -> LagSnapshot:
        return LagSnapshot(tuple(self.counts), self.count, self.sum, self.max)


class LoopLag:
    """Measures the running loop's lag while `run()` runs (a task of the service)."""

    def __init__(self, interval: float = 0.025) -> None:
        self.interval = interval
        self._late = _Histogram()
        self._own = _Histogram()

    def observe(self, lag: float, waited: float = 0.0) -> None:
        """Record one wake-up `lag` seconds late, while the loop's thread waited `waited`
        seconds for a CPU (another process's doing, not this one's)."""
        self._late.observe(lag)
        self._own.observe(lag - waited)

    def snapshot(self, own: bool = False) -> LagSnapshot:
        """Every wake-up's lag (what a request waiting on the loop sees); `own`: only the part
        of each that the loop's thread spent running (what this process caused)."""
        return (self._own if own else self._late).snapshot()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            fd = None  # not Linux: all lag counts as our own
        try:
            while True:
                asked = loop.time() + self.interval
                waited = _runqueue_wait(fd)
                await asyncio.sleep(self.interval)
                self.observe(loop.time() - asked, _runqueue_wait(fd) - waited)
        finally:
            if fd is not None:
                os.close(fd)

    async def log_every(self, seconds: float) -> None:
        """Log the lag of each `seconds`-long window (the service does when
        STUDIOS_LOOP_LAG_LOG_SECONDS is set)."""
        last, last_own = self.snapshot(), self.snapshot(own=True)
        while True:
            await asyncio.sleep(seconds)
            now, now_own = self.snapshot(), self.snapshot(own=True)
            own = now_own.since(last_own)
            log.warning(
                "event-loop lag over %g s: %s; own p99 %.2f ms (max since start %.1f ms)",
                seconds, now.since(last).summary(), own.quantile(0.99) * 1000, now.max * 1000,
            )
            last, last_own = now, now_own
