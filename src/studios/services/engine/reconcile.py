"""Reconcile: match the database with what the runtimes really run. At the engine's start (a
service restart, or another server taking the engine over) and every
STUDIOS_RECONCILE_INTERVAL_SECONDS:

- a pending deployment nobody has claimed is launched;
- one claimed by this engine in its deploy's transaction (`Engine.prepare`) is launched (the
  event that announced it may not be heard yet);
- one claimed by an engine that is gone, with no workload yet, ends: its start was interrupted;
- one with a workload is adopted if the workload lives (its logs resume from the stored cursor)
  and ends with the workload's own exit message if not; if its runtime cannot tell (its engine
  does not answer), it is left as it is until a later round can;
- a terminated deployment not yet released is released (stop, drain, free);
- a workload that belongs to no live deployment (an orphan) is removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from studios.db.models import Deployment
from studios.lifecycle import ACTIVE
from studios.runtimes.base import EngineUnreachable
from studios.services import state

if TYPE_CHECKING:
    from studios.services.engine import Engine

log = logging.getLogger("studios.engine")


def _unfinished(session: Session) -> list[Deployment]:
    query = select(Deployment).where(or_(Deployment.state.in_(ACTIVE), Deployment.released_at.is_(None))).where(Deployment.state != "sleeping").order_by(Deployment.id)
    return list(session.scalars(query))


def end(session: Session, deployment_id: int, message: str) -> None:
    state.transition(session, deployment_id, "terminated", message)


async def reconcile(engine: Engine) -> None:
    kit = engine.kit
    deployments = await kit.db.read(_unfinished)
    known = {dep.id for dep in deployments}
    for dep in deployments:
        if dep.id in engine.lives or dep.id in engine.releasing:
            continue
        if dep.state == "terminated":
            engine.release_soon(dep.id)
            continue
        runtime = kit.runtimes.get(dep.runtime)
        if not dep.handle:
            if dep.state == "pending" and (dep.claimed_by is None or dep.id in engine.prepared):
                engine.start_life(dep.id)
            elif dep.state == "pending":  # claimed, yet no engine task has it: its start died
                message = "interrupted: the server starting it stopped before the app was started; deploy again"
                await kit.db.write(partial(end, deployment_id=dep.id, message=message))
            continue
        if runtime is None:
            message = f"the {dep.runtime} runtime is not available on this service"
            await kit.db.write(partial(end, deployment_id=dep.id, message=message))
            continue
        try:
            alive = await runtime.adopt(dep.handle)
        except EngineUnreachable as error:  # not known: asked again next round
            log.warning("deployment %s: whether its workload lives could not be told (%s); trying again at the next reconcile", dep.id, error)
            continue
        except Exception:  # not known either; the others are still adopted
            log.exception("deployment %s: adopting it failed; trying again at the next reconcile", dep.id)
            continue
        if alive:
            kit.sink.report(dep.id, "adopted after a service restart")
            kit.sink.follow(dep.id, runtime, dep.handle, dep.log_cursor, dep.log_seq)
            engine.usage.peaks[dep.id] = (dep.max_memory_usage, dep.max_cpu_usage)
            engine.start_life(dep.id, adopted=(runtime, dep.handle, dep.state == "running"))
            continue
        ended = await runtime.poll(dep.handle)
        kit.sink.follow(dep.id, runtime, dep.handle, dep.log_cursor, dep.log_seq)
        await kit.sink.drain(dep.id, timeout=30.0)
        message = f"{ended.message} (while the service was down)" if ended else "vanished while the service was down"
        await kit.db.write(partial(end, deployment_id=dep.id, message=message))
        engine.release_soon(dep.id)
    for runtime in kit.runtimes.by_name.values():
        try:
            found = await runtime.orphans(known)
            if found:
                # A deployment launched while this reconcile ran is no orphan: look again.
                live = {dep.id for dep in await kit.db.read(_unfinished)} | set(engine.lives)
                found = [orphan for orphan in found if orphan not in live]
            for orphan in found:
                log.warning("removing orphan workload of deployment %s (%s runtime)", orphan, runtime.name)
                await runtime.remove_orphan(orphan)
        except Exception:
            log.exception("looking for orphans of the %s runtime failed", runtime.name)


async def reconcile_forever(engine: Engine) -> None:
    while True:
        await asyncio.sleep(engine.kit.settings.reconcile_interval)
        began = time.monotonic()
        try:
            await reconcile(engine)
        except Exception:
            log.exception("reconcile failed")
        if time.monotonic() - began > 5:
            log.warning("reconcile took %.1f s", time.monotonic() - began)
