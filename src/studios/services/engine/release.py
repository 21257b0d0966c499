"""Releasing a terminated deployment: stop its workload, keep its last peak usage and every
log line, free what it held, then record it as released. Each step may be repeated: if any
fails (or this server dies midway), the deployment stays unreleased and the next attempt
(the reconcile, a retried DELETE, another server taking the engine over) does it again. Its
API keys were already revoked by the transition that ended it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from studios.runtimes.base import EngineUnreachable
from studios.services import state
from studios.store import deployments as dep_store

if TYPE_CHECKING:
    from studios.services.engine import Engine

log = logging.getLogger("studios.engine")


async def release(engine: Engine, deployment_id: int) -> None:
    kit = engine.kit
    launching = engine.launching.get(deployment_id)
    if launching is not None:  # a start in progress finishes first (its handle is stored)
        with contextlib.suppress(Exception):
            await asyncio.shield(launching)
    life = engine.end_life(deployment_id)
    if life is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await life
    dep = await kit.db.read(lambda s: dep_store.get(s, deployment_id))
    if dep is None or dep.state != "terminated" or dep.released_at is not None:
        return
    runtime = kit.runtimes.get(dep.runtime)
    try:
        if dep.handle and runtime is not None:
            await runtime.stop(dep.handle, kit.settings.stop_grace)
            engine.usage.remove(deployment_id)
            await engine.usage.sample(extra={deployment_id: (runtime, dep.handle)})
            # The tail of the logs: whoever ran the pump before (this engine, or one that died).
            kit.sink.follow(deployment_id, runtime, dep.handle, dep.log_cursor, dep.log_seq)
            await kit.sink.drain(deployment_id)
            await runtime.cleanup(dep.handle)
        await kit.db.write(lambda s: state.mark_released(s, deployment_id))
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.exception("releasing deployment %s failed; the reconcile tries again", deployment_id)
        with contextlib.suppress(Exception):
            said = str(error) if isinstance(error, EngineUnreachable) else f"{error.__class__.__name__}: {error}"
            kit.sink.report(deployment_id, f"stopping the workload failed ({said}); trying again shortly", "stderr")
    finally:
        engine.usage.remove(deployment_id)
