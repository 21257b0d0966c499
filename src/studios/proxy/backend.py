"""What the proxy needs from the rest of the service, and an in-memory stand-in for tests.

The proxy never reads the database or calls the lifecycle service directly: it asks a
`ProxyBackend`. The service implements it over the database (with whatever caching keeps it
cheap); tests and the standalone benchmark use `MemoryBackend`. `target` and `can_view` are
called on every proxied request, so an implementation should answer from memory in the common
case (a few microseconds) and must never block the event loop.

A backend may also offer `cached_target(user_id, deployment_id)` (synchronous, optional, not
part of the protocol): the target when both answers are already in memory and fresh and the
user may view it, else None. The proxy asks it first, so the usual request (a viewer of a
running app) is forwarded within the callback that parsed it, without a task; on None it asks
`can_view` and `target` as before. It must give the same answer they would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

RUNNING = "running"
SPENT_LIMIT = 200_000
"""Exchanged tokens `MemoryBackend` remembers at most (past it, the oldest are forgotten)."""
STARTING_STATES = frozenset({"pending", "sleeping"})
"""States for which the proxy shows the "starting" page (which polls until `running`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where a deployment's app is, and what to tell a visitor when it is not running.

    `address` is set only when `state == "running"`; the proxy forwards there. For any other
    state it shows a page with `state` and `state_message` (and `progress` on the starting page).
    """

    deployment_id: int
    studio_id: int
    state: str
    """The deployment's state as the API shows it: pending, running, sleeping, terminated..."""
    state_message: str = ""
    address: tuple[str, int] | None = None
    """(host, port) where the app answers HTTP/1.1, when running."""
    progress: Sequence[str] = ()
    """Recent start-up progress lines (pulls, waiting for the port), newest last; optional."""
    sleeps_at: float | None = None
    """Unix time at which the deployment goes to sleep if still idle, or None; shown by the
    status endpoint."""
    strip_prefix: bool | None = None
    """Path mode only: strip `/_d/<id>` before forwarding (True), forward the whole path
    (False), or None for the proxy's default (`ProxyConfig.strip_prefix`)."""


@runtime_checkable
class ProxyBackend(Protocol):
    """The proxy's only view of the service. All methods must be safe to call concurrently."""

    async def target(self, deployment_id: int) -> Target | None:
        """The deployment's current state and address, or None if no such deployment exists.
        Called on every request: answer from a cache kept fresh by the lifecycle service."""
        ...

    async def can_view(self, user_id: int, deployment_id: int) -> bool:
        """True if the user may open the deployment (read permission on its studio, or owner).
        Called on every request, so a revoked share closes access at the next request."""
        ...

    def touch(self, deployment_id: int) -> None:
        """Record activity (a proxied request, WebSocket traffic, or an open WebSocket, which is
        touched every `ProxyConfig.websocket_touch_interval` seconds). Synchronous, must be
        cheap: store a timestamp, never write to the database here."""
        ...

    async def wake(self, deployment_id: int) -> None:
        """A visitor opened a sleeping deployment: start it again. Must be idempotent (every
        visitor of a sleeping deployment calls it) and return quickly, not when it is running;
        the starting page follows progress through `target`."""
        ...

    async def spend(self, key: str, expires_at: float) -> bool:
        """A displayUrl token was exchanged for a cookie: record its `key`
        (`DisplayLinks.spent_key`) until `expires_at` (unix seconds) and return True, or
        return False if it already was, so each link opens a studio once. Every proxy that
        shares this backend's record must see it (the service's: every server of one
        database)."""
        ...


class MemoryBackend:
    """A `ProxyBackend` held in dicts, for tests, benchmarks and the standalone demo."""

    def __init__(self) -> None:
        self.targets: dict[int, Target] = {}
        self.viewers: dict[int, set[int]] = {}
        self.touches: dict[int, int] = {}
        self.wakes: list[int] = []
        self.spent: dict[str, float] = {}
        """Keys of exchanged tokens -> when they expire (this process only)."""

    def put(self, target: Target, viewers: Sequence[int] = ()) -> None:
        """Add or replace a deployment and (if given) grant these users access."""
        self.targets[target.deployment_id] = target
        self.viewers.setdefault(target.deployment_id, set()).update(viewers)

    def grant(self, user_id: int, deployment_id: int) -> None:
        self.viewers.setdefault(deployment_id, set()).add(user_id)

    def revoke(self, user_id: int, deployment_id: int) -> None:
        self.viewers.get(deployment_id, set()).discard(user_id)

    async def target(self, deployment_id: int) -> Target | None:
        return self.targets.get(deployment_id)

    async def can_view(self, user_id: int, deployment_id: int) -> bool:
        viewers = self.viewers.get(deployment_id)
        return viewers is not None and user_id in viewers

    def cached_target(self, user_id: int, deployment_id: int) -> Target | None:
        viewers = self.viewers.get(deployment_id)
        return self.targets.get(deployment_id) if viewers is not None and user_id in viewers else None

    def touch(self, deployment_id: int) -> None:
        self.touches[deployment_id] = self.touches.get(deployment_id, 0) + 1

    async def wake(self, deployment_id: int) -> None:
        self.wakes.append(deployment_id)
        current = self.targets.get(deployment_id)
        if current is not None and current.state == "sleeping":
            self.targets[deployment_id] = dataclasses.replace(
                current, state="pending", state_message="Waking up", address=None
            )

    async def spend(self, key: str, expires_at: float) -> bool:
        now = time.time()
        known = self.spent.get(key)
        if known is not None and known > now:
            return False
        if len(self.spent) >= SPENT_LIMIT:
            self.spent = {k: t for k, t in self.spent.items() if t > now}
            if len(self.spent) >= SPENT_LIMIT:  # all still live: forget the oldest half
                self.spent = dict(list(self.spent.items())[SPENT_LIMIT // 2:])
        self.spent[key] = expires_at
        return True
