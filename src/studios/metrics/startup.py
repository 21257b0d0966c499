"""Start-up durations by phase, timed from the `deployment` events every server hears:

- `queued`: from `queued` (a deploy) or `waking up` (a sleeping deployment's link opened) until
  an engine takes it (its message becomes `starting` or `cloning ...`); about 0 for a deploy
  made on the server that runs the engine, whose own transaction takes it;
- `starting`: from then until `running` (the app answers HTTP).

Every server hears every event, but only the one holding the engine's lease records them, so
the servers' figures add up to each start counted once. A start whose beginning this server
did not hear (it started meanwhile) is not recorded. Owns its small table of deployments being
started; reads a deployment's runtime from the database once, when it is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from studios.services.events import Bus, Event

log = logging.getLogger("studios.metrics")

QUEUED = frozenset({"queued", "waking up"})
MAX_TRACKED = 10_000


@dataclasses.dataclass
class _Start:
    queued_at: float | None
    starting_at: float | None = None


class StartupTimer:
    def __init__(self, histogram: Any, holds_engine: Callable[[], bool], runtime_of: Callable[[int], Awaitable[str | None]], clock: Callable[[], float] | None = None) -> None:
        self.histogram = histogram
        self.holds_engine = holds_engine
        self.runtime_of = runtime_of
        self.clock = clock or asyncio.get_running_loop().time
        self.starts: dict[int, _Start] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def listen(self, bus: Bus) -> None:
        bus.listen("deployment", self.on_event)  # resync comes to every listener

    def on_event(self, event: Event) -> None:
        if event.topic == "resync":
            self.starts.clear()
            return
        state, message = event.data.get("state"), event.data.get("message")
        dep_id, now = event.deployment_id, self.clock()
        start = self.starts.get(dep_id)
        if state == "pending":
            if message in QUEUED:
                if len(self.starts) >= MAX_TRACKED:
                    self.starts.pop(next(iter(self.starts)))
                self.starts[dep_id] = _Start(queued_at=now)
            elif start is not None and start.starting_at is None:
                start.starting_at = now
        elif state == "running" and start is not None:
            del self.starts[dep_id]
            if start.starting_at is not None and self.holds_engine():
                task = asyncio.get_running_loop().create_task(self._record(dep_id, start, now))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        elif state in ("terminated", "sleeping"):
            self.starts.pop(dep_id, None)

    async def _record(self, deployment_id: int, start: _Start, running_at: float) -> None:
        try:
            runtime = await self.runtime_of(deployment_id) or "unknown"
        except Exception:
            log.exception("start-up metrics: reading deployment %s's runtime failed", deployment_id)
            return
        assert start.starting_at is not None
        if start.queued_at is not None:
            self.histogram.labels("queued", runtime).observe(start.starting_at - start.queued_at)
        self.histogram.labels("starting", runtime).observe(running_at - start.starting_at)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
