"""The proxy's view of the service (`studios.proxy.backend.ProxyBackend`) over the database:
where a deployment's app is and who may open it, answered from a short-lived cache that the
lifecycle engine and share changes invalidate, so state changes and revoked shares take effect
at the next request. Also keeps the in-memory activity clock that idle sleep reads."""

from __future__ import annotations

import time
from collections.abc import Callable

from studios.context import Context
from studios.proxy.backend import Target
from studios.proxy.config import strip_prefix_choice
from studios.services import permissions
from studios.services.keys import Caller
from studios.store import deployments as dep_store
from studios.store import users as user_store

CACHE_SECONDS = 1.0


class DatabaseProxyBackend:
    def __init__(self, ctx: Context, runtime_address: Callable[[str, dict], tuple[str, int]]) -> None:
        self.ctx = ctx
        self.runtime_address = runtime_address
        self.activity: dict[int, float] = {}
        """deployment id -> time.time() of the last proxied request or WebSocket traffic."""
        self._targets: dict[int, tuple[float, Target | None]] = {}
        self._viewers: dict[tuple[int, int], tuple[float, int, bool]] = {}

    def forget(self, deployment_id: int) -> None:
        """Called by the engine on every state change of the deployment."""
        self._targets.pop(deployment_id, None)

    async def target(self, deployment_id: int) -> Target | None:
        now = time.monotonic()
        cached = self._targets.get(deployment_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.ctx.db() as session:
            dep = dep_store.get(session, deployment_id)
            target = None
            if dep is not None:
                address = self.runtime_address(dep.runtime or "", dep.handle) if dep.state == "running" and dep.handle else None
                target = Target(dep.id, dep.studio_id, dep.state, dep.state_message, address, sleeps_at=self.sleeps_at(dep.id, dep.ready_at.timestamp() if dep.ready_at else None) if dep.state == "running" else None, strip_prefix=strip_prefix_choice(dep.params))
        self._targets[deployment_id] = (now + CACHE_SECONDS, target)
        return target

    async def can_view(self, user_id: int, deployment_id: int) -> bool:
        now = time.monotonic()
        epoch = permissions.epoch()
        cached = self._viewers.get((user_id, deployment_id))
        if cached is not None and cached[0] > now and cached[1] == epoch:
            return cached[2]
        allowed = False
        target = await self.target(deployment_id)
        if target is not None:
            with self.ctx.db() as session:
                user = user_store.get(session, user_id)
                if user is not None:
                    allowed = permissions.level_of(session, Caller(user.id, user.username, user.name, user.is_admin), target.studio_id) is not None
        self._viewers[(user_id, deployment_id)] = (now + CACHE_SECONDS, epoch, allowed)
        return allowed

    def touch(self, deployment_id: int) -> None:
        self.activity[deployment_id] = time.time()

    def sleeps_at(self, deployment_id: int, ready_at: float | None) -> float | None:
        """Unix time at which a running deployment goes to sleep if nobody uses it."""
        idle = self.ctx.settings.idle_sleep_seconds
        if idle <= 0:
            return None
        last = max(self.activity.get(deployment_id, 0.0), ready_at or 0.0) or time.time()
        return last + idle

    async def wake(self, deployment_id: int) -> None:
        await self.ctx.deployments.wake(deployment_id)
