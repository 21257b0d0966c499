"""The service's proxy backend answers the proxy's fast path (`cached_target`) only with what
`can_view` and `target` would answer: both cached, fresh and allowing. Any event that drops
either, a refusal, or the cache's age sends the proxy the full way again."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from studios.proxy.backend import Target
from studios.services import proxy_backend
from studios.services.events import Bus, Event
from studios.services.proxy_backend import DatabaseProxyBackend


class Reads:
    """Stands in for the database: answers each read from these fields, and counts the reads."""

    def __init__(self) -> None:
        self.target = Target(5, 9, "running", "", ("127.0.0.1", 4000))
        self.allowed = True
        self.count = 0

    async def read(self, fn: Any) -> Any:
        self.count += 1
        return fn(None)


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[DatabaseProxyBackend, Reads, Bus]:
    reads, bus = Reads(), Bus()
    backend = DatabaseProxyBackend(reads, bus, None, None, 0)  # type: ignore[arg-type]
    monkeypatch.setattr(backend, "_read_target", lambda _s, _d: (reads.target, 0.0))
    monkeypatch.setattr(backend, "_read_view", lambda _s, _u, _studio: reads.allowed)
    return backend, reads, bus


def test_only_what_the_full_answers_would_say(setup: tuple[DatabaseProxyBackend, Reads, Bus]) -> None:
    backend, reads, bus = setup

    async def scenario() -> None:
        bus.attach(asyncio.get_running_loop())
        assert backend.cached_target(7, 5) is None  # nothing asked yet
        assert await backend.can_view(7, 5) and await backend.target(5) == reads.target
        assert backend.cached_target(7, 5) == reads.target
        assert backend.cached_target(8, 5) is None  # another user: not asked
        before = reads.count
        for _ in range(3):
            assert backend.cached_target(7, 5) == reads.target
        assert reads.count == before  # answered from memory

        reads.allowed = False
        bus.publish([Event("shares", studio_id=9)])  # a share changed: every decision is dropped
        assert backend.cached_target(7, 5) is None
        assert not await backend.can_view(7, 5)
        assert backend.cached_target(7, 5) is None  # a cached refusal is never a fast yes

        reads.allowed = True
        assert await backend.can_view(8, 5)
        reads.target = Target(5, 9, "sleeping", "idle")
        bus.publish([Event("deployment", deployment_id=5)])  # the deployment changed
        assert backend.cached_target(8, 5) is None
        assert (await backend.target(5)).state == "sleeping"  # type: ignore[union-attr]
        assert backend.cached_target(8, 5) == reads.target  # the proxy then shows its page

        bus.publish([Event("resync")])
        assert backend.cached_target(8, 5) is None

    asyncio.run(scenario())


def test_an_old_answer_is_not_used(setup: tuple[DatabaseProxyBackend, Reads, Bus], monkeypatch: pytest.MonkeyPatch) -> None:
    backend, reads, _ = setup
    now = [1000.0]
    # the backend's clock only (asyncio's own loop keeps the real one)
    monkeypatch.setattr(proxy_backend, "time", SimpleNamespace(monotonic=lambda: now[0], time=time.time))

    async def scenario() -> None:
        assert await backend.can_view(7, 5)
        assert backend.cached_target(7, 5) == reads.target
        now[0] += proxy_backend.CACHE_SECONDS
        assert backend.cached_target(7, 5) is None

    asyncio.run(scenario())
