"""The lifecycle engine: takes pending deployments to running, follows them until they end,
releases what ended (workload stopped, logs drained, resources freed), puts idle ones to sleep
and reconciles the database with what the runtimes really run.

It runs on exactly one server at a time, the holder of the engine lease
(`studios.services.lease`), as that lease's job (`Engine.run`); it learns what to do from
`deployment` events (a deploy, a stop, a wake made by any server's API or proxy) and from a
slow reconcile that catches whatever events missed. It changes state only through
`studios.services.state`. Its parts: `launch.py` (claim and start), `follow.py` (watch and
readiness), `release.py` (stop and free), `idle.py` (sleep), `reconcile.py` (adopt, relaunch,
finish, remove orphans), `usage.py` (peaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from sqlalchemy.orm import Session

from studios.db.database import undo_on_rollback
from studios.db.models import Deployment
from studios.services import state
from studios.services.engine import idle, reconcile, release
from studios.services.engine.follow import follow
from studios.services.engine.kit import EngineSettings, Kit
from studios.services.engine.launch import Prepared, launch, prepare_new
from studios.services.engine.usage import UsageTracker
from studios.services.events import Bus, Event

__all__ = ["Engine", "EngineSettings", "Kit"]
log = logging.getLogger("studios.engine")


class Engine:
    def __init__(self, kit: Kit, bus: Bus) -> None:
        self.kit = kit
        self.bus = bus
        self.usage = UsageTracker(kit)
        self.lives: dict[int, asyncio.Task[None]] = {}
        """A task per deployment being launched or followed."""
        self.launching: dict[int, asyncio.Future[None]] = {}
        """Deployments whose runtime start is in progress (a release waits for it to end)."""
        self.releasing: dict[int, asyncio.Task[None]] = {}
        self.prepared: dict[int, Prepared] = {}
        """Deployments claimed and built in their deploy's own transaction (`prepare`), until
        their launch takes them."""
        self._background: list[asyncio.Task[Any]] = []
        self.running = asyncio.Event()
        """Set while this server runs the engine (tests and `studios serve` wait on it)."""

    # -- the lease's job ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run the engine until cancelled (the lease was lost, or the service stops)."""
        sub = self.bus.subscribe("deployment")
        self.prepared.clear()  # a deploy's, prepared as an earlier run of this engine stopped
        try:
            await reconcile.reconcile(self)
            self._background = [
                asyncio.create_task(reconcile.reconcile_forever(self), name="reconcile"),
                asyncio.create_task(self.usage.run_forever(), name="usage"),
            ]
            if self.kit.settings.idle_sleep > 0:
                self._background.append(asyncio.create_task(idle.sleep_idle_forever(self), name="idle-sleep"))
            self.running.set()
            log.warning("studios: this server runs the lifecycle engine (%s)", self.kit.holder)
            async for event in sub:
                self.on_event(event)
        finally:
            sub.close()
            self.running.clear()
            await self._stop_everything()

    async def _stop_everything(self) -> None:
        tasks = [*self._background, *self.lives.values(), *self.releasing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._background.clear()
        self.lives.clear()
        self.releasing.clear()
        self.launching.clear()
        self.prepared.clear()  # claimed here, never launched: the next engine's reconcile ends them
        await self.kit.sink.close()
        for dep_id in list(self.usage.live):
            self.usage.remove(dep_id)

    def on_event(self, event: Event) -> None:
        if event.topic == "resync":
            self.spawn_background(reconcile.reconcile(self))
            return
        dep_id, new = event.deployment_id, event.data.get("state")
        if new == "pending" and dep_id not in self.lives and dep_id not in self.releasing:
            self.start_life(dep_id)
        elif new == "terminated":
            # Ended before its launch ran (a stop right after the deploy): its prepared launch is
            # dropped, and the launch's claim finds it ended instead of starting it.
            self.prepared.pop(dep_id, None)
            self.release_soon(dep_id)

    def prepare(self, session: Session, dep: Deployment) -> None:
        """In a deploy's own transaction, on the server that runs the engine: claim the new
        deployment and build its launch spec there (`launch.prepare_new`), so that its launch
        starts the workload at once, without a transaction of its own (a write transaction is
        several ms while the loop is busy). Anywhere else, or while the engine is not running,
        nothing: the engine claims the deployment when it hears of it. Runs in the database
        pool; the prepared launch is kept for the engine before the commit announces the
        deployment, and dropped if the transaction rolls back."""
        if not self.running.is_set():
            return
        prepared = prepare_new(self.kit, session, dep)
        if prepared is None:
            return
        deployment_id = dep.id
        self.prepared[deployment_id] = prepared
        undo_on_rollback(session, lambda: self.prepared.pop(deployment_id, None))

    def spawn_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.append(task)

        def done(finished: asyncio.Task[Any]) -> None:
            if finished in self._background:
                self._background.remove(finished)

        task.add_done_callback(done)

    # -- lives -------------------------------------------------------------------------------

    def start_life(self, deployment_id: int, adopted: tuple[Any, dict[str, Any], bool] | None = None) -> None:
        """Launch (or, with `adopted` = (runtime, handle, running), take over) a deployment
        and follow it until it ends; then release it."""
        if deployment_id in self.lives:
            return
        task = asyncio.create_task(self._life(deployment_id, adopted), name=f"deployment-{deployment_id}")
        self.lives[deployment_id] = task
        task.add_done_callback(lambda t: self.lives.get(deployment_id) is t and self.lives.pop(deployment_id))

    async def _life(self, deployment_id: int, adopted: tuple[Any, dict[str, Any], bool] | None) -> None:
        knocking: asyncio.Task[float] | None = None
        try:
            if adopted is None:
                started = asyncio.get_running_loop().create_future()
                self.launching[deployment_id] = started
                try:
                    launched = await launch(self.kit, deployment_id, self.prepared.pop(deployment_id, None))
                finally:
                    self.launching.pop(deployment_id, None)
                    started.set_result(None)
                if launched is None:
                    self.release_soon(deployment_id)
                    return
                runtime, handle, began, knocking, running = launched
            else:
                runtime, handle, running = adopted
                began, knocking = time.monotonic(), None
            self.usage.add(deployment_id, runtime, handle, (None, None))
            await follow(self.kit, deployment_id, runtime, handle, running, began, self.usage, knocking)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if knocking is not None:
                knocking.cancel()  # follow() cancels it, but it may not have begun
            log.exception("deployment %s failed", deployment_id)
            message = f"internal error: {error.__class__.__name__}: {error}"
            with contextlib.suppress(Exception):
                await self.kit.db.write(lambda s: state.transition(s, deployment_id, "terminated", message))
        self.release_soon(deployment_id)

    def end_life(self, deployment_id: int) -> asyncio.Task[None] | None:
        """Stop following a deployment (its workload goes on); the task, to await."""
        task = self.lives.pop(deployment_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            return task
        return None

    # -- release -----------------------------------------------------------------------------

    def release_soon(self, deployment_id: int) -> None:
        """Release a terminated deployment (once at a time; a failure is retried by the
        reconcile)."""
        current = self.releasing.get(deployment_id)
        if current is not None and not current.done():
            return
        task = asyncio.create_task(release.release(self, deployment_id), name=f"release-{deployment_id}")
        self.releasing[deployment_id] = task
        task.add_done_callback(lambda t: self.releasing.get(deployment_id) is t and self.releasing.pop(deployment_id))
