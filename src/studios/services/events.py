"""Events: what changed, announced once the change is committed, to whoever listens.

The writer of a state queues an `Event` on its session (`emit`); the `Database` announces the
session's events when (and only if) its transaction commits. On SQLite they go straight to this
process's `Bus`; on PostgreSQL they travel as `NOTIFY studios` inside the transaction, and every
server's listener (`studios.services.relay`) hands them to its own bus, this one included, so
several servers see the same events in the same order. Subscribers are caches (the proxy's),
the lifecycle engine, and the live streams; none of them writes what it hears back as the same
state. This module holds the event shape and the in-process bus; it knows no database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

log = logging.getLogger("studios.events")

PENDING = "studios.events"
"""`session.info` key of the events a session will announce at its commit."""

MAX_PAYLOAD = 7900
"""PostgreSQL refuses NOTIFY payloads of 8000 bytes or more."""

TOPICS = frozenset({"deployment", "progress", "logs", "usage", "released", "shares", "keys", "resync"})
"""deployment: a deployment was created or changed state or message (data: state, message,
user id); progress: a start-up step (data: message); logs: lines were stored (data: last log id);
usage: a peak rose; released: a terminated deployment's workload is stopped and cleaned up;
shares: a studio's shares changed; keys: API keys were revoked (data: hashes); resync: events
may have been missed (a listener reconnected): caches must forget everything."""


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    topic: str
    deployment_id: int = 0
    studio_id: int = 0
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        body = {"t": self.topic, "d": self.deployment_id, "s": self.studio_id, "x": dict(self.data)}
        text = json.dumps(body, separators=(",", ":"), default=str)
        if len(text.encode()) > MAX_PAYLOAD:
            # Listeners re-read what they need from the database; the ids always travel.
            body["x"] = {"truncated": True}
            text = json.dumps(body, separators=(",", ":"))
        return text

    @classmethod
    def from_json(cls, text: str) -> Event:
        body = json.loads(text)
        return cls(str(body["t"]), int(body.get("d") or 0), int(body.get("s") or 0), body.get("x") or {})


def emit(session: Session, event: Event) -> None:
    """Queue `event` on the session: announced when its transaction commits, dropped if it
    rolls back."""
    session.info.setdefault(PENDING, []).append(event)


def take(session: Session) -> list[Event]:
    """The session's queued events, removed from it."""
    events: list[Event] = session.info.pop(PENDING, [])
    return events


Listener = Callable[[Event], None]


class Subscription:
    """An async iterator of the events that match, from a bounded queue. If the subscriber falls
    more than `maxsize` events behind, it gets one `resync` event instead of the ones it
    missed, and must re-read its state from the database."""

    def __init__(self, bus: Bus, topics: frozenset[str] | None, deployment_id: int | None, maxsize: int) -> None:
        self._bus = bus
        self.topics = topics
        self.deployment_id = deployment_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.overflowed = False

    def matches(self, event: Event) -> bool:
        if event.topic == "resync":
            return True
        if self.topics is not None and event.topic not in self.topics:
            return False
        return self.deployment_id is None or event.deployment_id == self.deployment_id

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self.overflowed and self.queue.empty():
            self.overflowed = False
            return Event("resync")
        return await self.queue.get()

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None

    def close(self) -> None:
        self._bus._subscriptions.discard(self)


class Bus:
    """This process's event bus. `publish` may be called from any thread; listeners and
    subscriptions are served on the event loop the bus is attached to."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._listeners: dict[str, list[Listener]] = {}
        self._subscriptions: set[Subscription] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    def listen(self, topic: str, listener: Listener) -> None:
        """Call `listener(event)` on the loop for every event of `topic` (and every resync).
        It must be quick and must not raise."""
        self._listeners.setdefault(topic, []).append(listener)

    def subscribe(self, *topics: str, deployment_id: int | None = None, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, frozenset(topics) if topics else None, deployment_id, maxsize)
        self._subscriptions.add(sub)
        return sub

    @contextlib.asynccontextmanager
    async def subscription(self, *topics: str, deployment_id: int | None = None, maxsize: int = 10_000) -> AsyncIterator[Subscription]:
        sub = self.subscribe(*topics, deployment_id=deployment_id, maxsize=maxsize)
        try:
            yield sub
        finally:
            sub.close()

    def publish(self, events: Iterable[Event]) -> None:
        events = list(events)
        if not events or self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._thread:
            self._deliver(events)
        else:
            self._loop.call_soon_threadsafe(self._deliver, events)

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            listeners = self._listeners.get(event.topic, ())
            if event.topic == "resync":
                listeners = list(dict.fromkeys(fn for fns in self._listeners.values() for fn in fns))
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener %r failed on %s", listener, event.topic)
            for sub in list(self._subscriptions):
                if sub.matches(event):
                    sub.offer(event)
