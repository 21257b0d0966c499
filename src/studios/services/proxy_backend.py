"""The proxy's view of the service (`studios.proxy.backend.ProxyBackend`) over the database:
where a deployment's app is and who may open it, answered from caches that events keep
fresh (a `deployment` or `progress` event drops that deployment's target, a `shares` event
every viewer decision, a `resync` everything), so a stop or a revoked share takes effect at
the next request on every server. A cache miss reads the database in the database thread
pool, never on the event loop. Exchanged displayUrl tokens are recorded in the database, so
a link opens a studio once whichever server's proxy it reaches."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from studios.db.database import Database
from studios.proxy.backend import Target
from studios.proxy.config import strip_prefix_choice
from studios.runtimes.registry import Runtimes
from studios.services import deployments as dep_service
from studios.services import permissions
from studios.services.activity import Activity
from studios.services.events import Bus, Event
from studios.services.keys import Caller
from studios.store import deployments as dep_store
from studios.store import display_tokens
from studios.store import users as user_store

CACHE_SECONDS = 5.0
"""A safety net only: events drop cached entries as soon as something changes."""
PROGRESS_LINES = 8


class DatabaseProxyBackend:
    def __init__(self, db: Database, bus: Bus, runtimes: Runtimes, activity: Activity, idle_sleep: float) -> None:
        self.db = db
        self.runtimes = runtimes
        self.activity = activity
        self.idle_sleep = idle_sleep
        self._targets: dict[int, tuple[float, Target | None]] = {}
        self._viewers: dict[tuple[int, int], tuple[float, bool]] = {}
        bus.listen("deployment", self._forget_target)
        bus.listen("progress", self._forget_target)
        bus.listen("shares", self._forget_viewers)
        bus.listen("resync", self._forget_all)

    def _forget_target(self, event: Event) -> None:
        self._targets.pop(event.deployment_id, None)

    def _forget_viewers(self, _: Event) -> None:
        self._viewers.clear()

    def _forget_all(self, _: Event) -> None:
        self._targets.clear()
        self._viewers.clear()

    def _read_target(self, session: Session, deployment_id: int) -> tuple[Target | None, float]:
        dep = dep_store.get(session, deployment_id)
        if dep is None:
            return None, 0.0
        address = self.runtimes.address(dep.runtime, dep.handle) if dep.state == "running" else None
        progress = [m for _, m in dep_store.recent_system_lines(session, deployment_id, PROGRESS_LINES)] if dep.state in ("pending", "sleeping") else []
        last = max([t.timestamp() for t in (dep.last_activity_at, dep.ready_at) if t is not None] or [0.0])
        return Target(dep.id, dep.studio_id, dep.state, dep.state_message, address, progress=progress, strip_prefix=strip_prefix_choice(dep.params)), last

    async def target(self, deployment_id: int) -> Target | None:
        now = time.monotonic()
        cached = self._targets.get(deployment_id)
        if cached is None or cached[0] <= now:
            target, last = await self.db.read(lambda s: self._read_target(s, deployment_id))
            if target is not None and target.state == "running" and self.idle_sleep > 0:
                # Approximate by up to CACHE_SECONDS: shown to visitors, never acted on.
                last = max(last, self.activity.last.get(deployment_id, 0.0))
                target = dataclasses.replace(target, sleeps_at=last + self.idle_sleep)
            cached = self._targets[deployment_id] = (now + CACHE_SECONDS, target)
        return cached[1]

    def _read_view(self, session: Session, user_id: int, studio_id: int) -> bool:
        user = user_store.get(session, user_id)
        if user is None:
            return False
        return permissions.level_of(session, Caller(user.id, user.username, user.name, user.is_admin), studio_id) is not None

    async def can_view(self, user_id: int, deployment_id: int) -> bool:
        now = time.monotonic()
        cached = self._viewers.get((user_id, deployment_id))
        if cached is not None and cached[0] > now:
            return cached[1]
        allowed = False
        target = await self.target(deployment_id)
        if target is not None:
            studio_id = target.studio_id
            allowed = await self.db.read(lambda s: self._read_view(s, user_id, studio_id))
        self._viewers[(user_id, deployment_id)] = (now + CACHE_SECONDS, allowed)
        return allowed

    def cached_target(self, user_id: int, deployment_id: int) -> Target | None:
        """The proxy's fast path: `target` when it and an allowing `can_view` are both cached
        and fresh, else None (the proxy then awaits those two)."""
        now = time.monotonic()
        view = self._viewers.get((user_id, deployment_id))
        if view is None or not view[1] or view[0] <= now:
            return None
        cached = self._targets.get(deployment_id)
        if cached is None or cached[0] <= now:
            return None
        return cached[1]

    def touch(self, deployment_id: int) -> None:
        self.activity.touch(deployment_id)

    async def wake(self, deployment_id: int) -> None:
        await self.db.write(lambda s: dep_service.wake(s, deployment_id))

    async def spend(self, key: str, expires_at: float) -> bool:
        now = time.time()
        return await self.db.write(lambda s: display_tokens.spend(s, key, expires_at, now))


def sleeps_at(activity: Activity, idle_sleep: float) -> Callable[..., float | None]:
    """For the API: when a running deployment (a row) goes to sleep if it stays idle."""

    def when(dep: object) -> float | None:
        if idle_sleep <= 0 or getattr(dep, "state", None) != "running":
            return None
        times = [t.timestamp() for t in (getattr(dep, "last_activity_at", None), getattr(dep, "ready_at", None)) if t is not None]
        last = max([*times, activity.last.get(getattr(dep, "id", 0), 0.0)])
        return last + idle_sleep

    return when
