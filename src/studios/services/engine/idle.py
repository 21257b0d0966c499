"""Idle sleep: a running deployment whose display URL has had no traffic for
STUDIOS_IDLE_SLEEP_SECONDS goes to `sleeping` (its workload stopped, its record kept); opening
its display URL wakes it (the proxy asks for `pending`, the engine launches it again).

Traffic is counted by every server's proxy and written to `last_activity_at` every few
seconds (`studios.services.activity`), so the engine sees it whichever server served it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from studios.db.models import Deployment
from studios.services import state
from studios.store import deployments as dep_store

if TYPE_CHECKING:
    from studios.services.engine import Engine

log = logging.getLogger("studios.engine")


def idle_since(dep: Deployment) -> float:
    """Unix time of the deployment's last traffic (or of its becoming ready)."""
    times = [t.timestamp() for t in (dep.last_activity_at, dep.ready_at) if t is not None]
    return max(times) if times else time.time()


async def sleep(engine: Engine, deployment_id: int, reason: str) -> None:
    kit = engine.kit
    dep = await kit.db.read(lambda s: dep_store.get(s, deployment_id))
    if dep is None or dep.state != "running":
        return
    life = engine.end_life(deployment_id)
    if life is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await life
    runtime = kit.runtimes.get(dep.runtime)
    if dep.handle and runtime is not None:
        await runtime.stop(dep.handle, kit.settings.stop_grace)
        engine.usage.remove(deployment_id)
        await engine.usage.sample(extra={deployment_id: (runtime, dep.handle)})
        await kit.sink.drain(deployment_id)
        await runtime.cleanup(dep.handle)
        engine.usage.remove(deployment_id)
    await kit.db.write(lambda s: state.transition(s, deployment_id, "sleeping", "sleeping", log_line=f"sleeping: {reason}", handle=None, log_cursor=None, claimed_by=None))


async def sleep_idle_forever(engine: Engine) -> None:
    idle = engine.kit.settings.idle_sleep
    while True:
        await asyncio.sleep(min(max(idle / 10, 0.2), 30.0))
        now = time.time()
        running = await engine.kit.db.read(lambda s: [(d.id, idle_since(d)) for d in dep_store.in_states(s, ("running",))])
        for dep_id, last in running:
            if now - last >= idle:
                try:
                    await sleep(engine, dep_id, f"no traffic for {idle:g} s (STUDIOS_IDLE_SLEEP_SECONDS)")
                except Exception:
                    log.exception("putting deployment %s to sleep failed", dep_id)
