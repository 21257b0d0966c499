"""Peak cpu and memory of the deployments this engine follows: sampled from their runtimes
every `usage_interval` seconds (one task for all of them), written only when a peak rises
(one statement for all that rose), and announced as `usage` events."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from studios.db.models import Deployment
from studios.runtimes.base import Handle, Runtime
from studios.services.engine.kit import Kit
from studios.services.events import Event, emit

log = logging.getLogger("studios.engine")
Peaks = tuple[float | None, float | None]

TABLE = cast(Table, Deployment.__table__)
SLICE_SECONDS = 0.002
"""The longest a sampling pass holds the event loop before it yields."""
_UPDATE = update(TABLE).where(TABLE.c.id == bindparam("b_dep_id")).values(max_memory_usage=bindparam("b_memory"), max_cpu_usage=bindparam("b_cpu"))


def _higher(new: float | None, old: float | None) -> float | None:
    if new is None:
        return old
    return round(new, 1) if old is None or new > old else old


class UsageTracker:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.live: dict[int, tuple[Runtime, Handle]] = {}
        self.peaks: dict[int, Peaks] = {}

    def add(self, deployment_id: int, runtime: Runtime, handle: Handle, peaks: Peaks) -> None:
        self.live[deployment_id] = (runtime, handle)
        self.peaks.setdefault(deployment_id, peaks)

    def remove(self, deployment_id: int) -> None:
        self.live.pop(deployment_id, None)
        self.peaks.pop(deployment_id, None)

    async def sample(self, deployment_ids: list[int] | None = None, extra: dict[int, tuple[Runtime, Handle]] | None = None) -> None:
        """Sample these deployments (default: all followed) and store the peaks that rose."""
        targets = {**{d: self.live[d] for d in (deployment_ids if deployment_ids is not None else list(self.live)) if d in self.live}, **(extra or {})}
        risen: dict[int, Peaks] = {}
        slice_began = time.monotonic()
        for dep_id, (runtime, handle) in targets.items():
            if time.monotonic() - slice_began > SLICE_SECONDS:
                # A runtime's usage may be answered without yielding (the process runtime reads
                # small files): give the loop back between slices, or 200 deployments hold it
                # for a whole pass (~15 ms, the loop lag at rest that idle_bench measured).
                await asyncio.sleep(0)
                slice_began = time.monotonic()
            try:
                usage = await runtime.usage(handle)
            except Exception:
                log.exception("reading usage of deployment %s failed", dep_id)
                continue
            if dep_id not in self.live and dep_id not in (extra or {}):
                continue  # removed while this pass yielded: its peaks are no longer followed
            old = self.peaks.get(dep_id, (None, None))
            new = (_higher(usage.max_memory_mb, old[0]), _higher(usage.max_cpu_millicores, old[1]))
            if new != old:
                self.peaks[dep_id] = risen[dep_id] = new
        if not risen:
            return

        def store(session: Session) -> None:
            session.connection().execute(_UPDATE, [{"b_dep_id": d, "b_memory": m, "b_cpu": c} for d, (m, c) in risen.items()])
            for dep_id, (memory, cpu) in risen.items():
                emit(session, Event("usage", dep_id, data={"maxMemoryUsage": memory, "maxCpuUsage": cpu}))

        await self.kit.db.write(store)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.kit.settings.usage_interval)
            try:
                await self.sample()
            except Exception:
                log.exception("sampling usage failed")
