"""Live streams as server-sent events, fed by the event bus (no polling): a deployment's state,
start-up steps and peak usage; a deployment's log lines, followed from a cursor; and the state of
every deployment a user can see. The caller's access is checked when a stream opens, again at
every change of shares, at every revocation of the caller's own keys, and at every heartbeat: a
stream whose caller lost access ends.

Frames follow the SSE format: `event: <name>`, `id: <cursor>` (log streams: the line's id, so a
client that reconnects with `Last-Event-ID` resumes after the last line it got), `data: <JSON>`,
and a comment line as a heartbeat every `HEARTBEAT` seconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from studios.db.database import Database
from studios.errors import StudiosError
from studios.services.events import Bus, Event
from studios.store import deployments as dep_store

HEARTBEAT = 15.0
LOG_BATCH = 1000
LOOKBACK = 256
"""On PostgreSQL, log ids are handed out before their transactions commit, so a line can
become visible after a line with a higher id; each read looks this many ids back (skipping the
lines already sent) so no such line is missed."""

View = Callable[[], Awaitable[dict[str, Any]]]
"""Reads what the stream shows (raising a `StudiosError` when the caller may no longer see it)."""


def frame(event: str | None, data: Any, event_id: int | str | None = None) -> bytes:
    out = ""
    if event:
        out += f"event: {event}\n"
    if event_id is not None:
        out += f"id: {event_id}\n"
    return (out + "data: " + json.dumps(data, separators=(",", ":"), default=str) + "\n\n").encode()


HEARTBEAT_FRAME = b": keep-alive\n\n"
RETRY_FRAME = b"retry: 1000\n\n"
"""First in every stream: a browser's EventSource reconnects 1 s after a drop (not its default 3 s)."""


def _access_event(event: Event, caller_id: int | None) -> bool:
    """Whether an event may change what the caller may see: shares changed, a resync, or keys
    revoked that may be the caller's. A revocation names its keys' owners (`users`): any
    deployment's end revokes its app's key, and every open stream reading again for each end
    cost one read per stream. One without owners (cut short, or from an older server) counts;
    so does every one when the caller is not known (`caller_id` None)."""
    if event.topic == "keys":
        owners = event.data.get("users")
        return caller_id is None or not isinstance(owners, list) or caller_id in owners
    return event.topic in ("shares", "resync")


def _ended(error: StudiosError) -> bytes:
    return frame("error", {"error": error.error, "errorDescription": error.description, "code": error.code})


async def deployment(bus: Bus, deployment_id: int, view: View, steps: Callable[[], Awaitable[list[tuple[int, str]]]], heartbeat: float = HEARTBEAT,
                     caller_id: int | None = None) -> AsyncIterator[bytes]:  # fmt: skip
    """`deployment` (the whole deployment, as GET returns it) on connect and at every change;
    `progress` ({"message"}) for each start-up step (on connect: the latest ones so far, each
    once: a step stored while the stream opened is both read and heard, and is sent once);
    `usage` ({"maxMemoryUsage", "maxCpuUsage"}) when a peak rises."""
    async with bus.subscription("deployment", "progress", "usage", "released", "shares", "keys") as sub:
        try:
            shown = await view()
            yield RETRY_FRAME + frame("deployment", shown)
            sent = set()
            for line_id, message in await steps():
                sent.add(line_id)
                yield frame("progress", {"deploymentId": deployment_id, "message": message})
            while True:
                event = await sub.get(timeout=heartbeat)
                if event is None:
                    await view()  # still allowed?
                    yield HEARTBEAT_FRAME
                elif _access_event(event, caller_id) or (event.deployment_id == deployment_id and event.topic in ("deployment", "released")):
                    # Access is checked again; the deployment is sent only if it changed (an event
                    # heard late, for a change the stream had already read, sends nothing).
                    if not _same(current := await view(), shown):
                        shown = current
                        yield frame("deployment", shown)
                elif event.deployment_id != deployment_id:
                    continue
                elif event.topic == "progress":
                    if event.data.get("id") not in sent:
                        yield frame("progress", {"deploymentId": deployment_id, "message": event.data.get("message", "")})
                elif event.topic == "usage":
                    yield frame("usage", {"deploymentId": deployment_id, **event.data})
        except StudiosError as error:
            yield _ended(error)


def _same(current: dict[str, Any], shown: dict[str, Any]) -> bool:
    """Whether a deployment read again shows what was sent. Its `displayUrl` is signed anew at
    every read (a link opens once): only whether it has one counts."""
    return {**current, "displayUrl": current.get("displayUrl") is not None} == {**shown, "displayUrl": shown.get("displayUrl") is not None}


async def logs(db: Database, bus: Bus, deployment_id: int, view: View, after_id: int | None, since: datetime | None, tail: int, heartbeat: float = HEARTBEAT, batch: bool = False,
               caller_id: int | None = None) -> AsyncIterator[bytes]:  # fmt: skip
    """`log` frames ({"id", "createdAt", "message", "stream", "source"}, `id:` the line's id):
    after line `after_id` (a reconnecting client's Last-Event-ID), else from `since`, else the
    last `tail` lines; then every line as it is stored. With `batch`, the lines of one read
    from the database go out as one `logs` frame ({"lines": [...]}, `id:` the last one's id).
    `caught-up` ({"id": the last line's id, or null}) once every line stored when the stream
    opened was sent; `end` ({"deploymentId"}) when the deployment has ended and its workload is
    released (no line can follow), and the stream closes. `view()` answers {"released": bool}
    (and raises when access is lost). The frames of one read go out as one chunk."""
    async with bus.subscription("logs", "progress", "deployment", "released", "shares", "keys") as sub:
        try:
            released = bool((await view()).get("released"))
            yield RETRY_FRAME
            if after_id is None and since is None:
                after_id = await db.read(lambda s: dep_store.tail_start(s, deployment_id, tail))
            # Never a line at or before where the stream starts (the tail's first line, the
            # client's Last-Event-ID), nor one older than `since`: on PostgreSQL the reads look
            # back LOOKBACK ids for lines committed late, but not past that floor.
            floor = last = after_id or 0
            sent: set[int] = set()
            since = since if after_id is None else None
            caught_up = False
            while True:
                while True:
                    start = max(floor, last - LOOKBACK) if db.postgresql and sent else last
                    rows = await db.read(partial(dep_store.logs_after, deployment_id=deployment_id, after_id=start, limit=LOG_BATCH, since=since))
                    fresh: list[dict[str, Any]] = []
                    for line_id, created, stream, source, message in rows:
                        if line_id in sent:
                            continue
                        fresh.append({"id": line_id, "createdAt": created, "message": message, "stream": stream, "source": source})
                        last = max(last, line_id)
                        if db.postgresql:
                            sent.add(line_id)
                    if db.postgresql:
                        sent = {i for i in sent if i > last - LOOKBACK}
                    if batch and len(fresh) > 1:
                        yield frame("logs", {"lines": fresh}, last)
                    elif fresh:
                        yield b"".join(frame("log", line, int(line["id"])) for line in fresh)
                    if len(rows) < LOG_BATCH:
                        break
                if not caught_up:
                    caught_up = True
                    yield frame("caught-up", {"id": last or None})
                if released:
                    yield frame("end", {"deploymentId": deployment_id})
                    return
                event = await _next_for(sub, deployment_id, heartbeat, caller_id)
                if event is None:
                    released = bool((await view()).get("released"))
                    yield HEARTBEAT_FRAME
                elif _access_event(event, caller_id):
                    released = bool((await view()).get("released"))
                elif event.topic == "released":
                    released = True
        except StudiosError as error:
            yield _ended(error)


async def _next_for(sub: Any, deployment_id: int, heartbeat: float, caller_id: int | None) -> Event | None:
    """The next event that concerns this deployment's lines (or access), None at a heartbeat."""
    while True:
        event: Event | None = await sub.get(timeout=heartbeat)
        if event is None or _access_event(event, caller_id) or (event.deployment_id == deployment_id and event.topic != "keys"):
            return event


async def deployments(bus: Bus, visible: Callable[[Event], Awaitable[dict[str, Any] | None]], recheck: Callable[[], Awaitable[None]], heartbeat: float = HEARTBEAT,
                      caller_id: int | None = None) -> AsyncIterator[bytes]:  # fmt: skip
    """`deployment` frames (the deployment's summary, with `studioId`) for every change of a
    deployment the caller can see (`visible` answers None for the others)."""
    async with bus.subscription("deployment", "released", "shares", "keys") as sub:
        try:
            yield RETRY_FRAME
            while True:
                event = await sub.get(timeout=heartbeat)
                if event is None or _access_event(event, caller_id):
                    await recheck()
                    if event is None:
                        yield HEARTBEAT_FRAME
                    continue
                if event.topic not in ("deployment", "released"):  # keys revoked for someone else
                    continue
                summary = await visible(event)
                if summary is not None:
                    yield frame("deployment", summary)
        except StudiosError as error:
            yield _ended(error)
