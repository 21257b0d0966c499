"""Following a started workload until it ends: the runtime's `watch` stream says what happens
(placed, running, moved, lost its node, ended) without polling; a readiness probe says when the
app answers HTTP. Each step is a transition through the one writer:

    pending ── the app answers ──> running ── its node is lost ──> pending (then running again)
    any ── the workload ended ──> terminated (after its last log line is stored)
    pending ── no answer within STUDIOS_START_TIMEOUT_SECONDS ──> terminated

The start timeout counts from the moment the runtime says the workload runs: a workload no
node can place stays pending, with the scheduler's reason, for as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from studios.db.models import utcnow
from studios.runtimes.base import Exit, Handle, Runtime, Status
from studios.services import state
from studios.services.engine.kit import Kit
from studios.services.engine.usage import UsageTracker
from studios.store import deployments as dep_store

CONNECT_TIMEOUT, ANSWER_TIMEOUT = 1.0, 2.0
WAITING_SAID_AFTER = 0.05
"""A workload runs but its app has not answered for this long: its deployment says it is
waiting for the app (`waiting for the app on port N`)."""


async def answers(host: str, port: int) -> bool:
    """Whether the app answers an HTTP request (any status) on its address. Raw asyncio, not an
    HTTP client: a refused connection costs ~0.1 ms of CPU here against ~1.4 ms through httpx,
    and the knocking runs every 2 ms while the app starts, on the cores the app starts on."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: studios-readiness\r\n\r\n" % (host.encode(), port))
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT):
            return await reader.readexactly(5) == b"HTTP/"
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()


async def knock(kit: Kit, address: tuple[str, int], began: float) -> float:
    """Until the app answers any HTTP request: often at first (an app ready in a few ms is
    seen a few ms later), then every 100 ms. Returns the time it answered (monotonic)."""
    host, port = address
    delay = 0.002
    while True:
        if await answers(host, port):
            return time.monotonic()
        await asyncio.sleep(delay)
        if time.monotonic() - began > 2.0:
            delay = min(delay * 2, 0.1)


def ready_after(answered: float, began: float, address: tuple[str, int] | None) -> str:
    """The system line of a deployment whose app answered: how long after its start began."""
    port = address[1] if address else "?"
    return f"ready after {(answered - began) * 1000:.0f} ms: the app answers on port {port}"


async def _next(stream: AsyncIterator[Status]) -> Status | None:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


async def follow(kit: Kit, deployment_id: int, runtime: Runtime, handle: Handle, running: bool, began: float, usage: UsageTracker,
                 knocking: asyncio.Task[float] | None = None) -> None:
    """Follow the workload until it has ended and the deployment is terminated, or until the
    deployment is ended by someone else (a transition refused) or this task is cancelled.
    `knocking`: a `knock` on the app's address the launch began already (while the handle, the
    runtime's first status and the "waiting" line are on their way); otherwise the knocking
    begins with the first status that says the workload runs."""
    timeout = kit.settings.start_timeout
    ready = running
    deadline: float | None = None
    stream = runtime.watch(handle)
    nxt: asyncio.Task[Status | None] = asyncio.ensure_future(_next(stream))
    probe: asyncio.Task[float] | None = knocking
    said_waiting = False

    async def move(new: str, message: str, **fields: Any) -> bool:
        return await kit.db.write(lambda s: state.transition(s, deployment_id, new, message, **fields))

    if probe is not None:
        deadline = time.monotonic() + timeout

    try:
        while True:
            waits: set[asyncio.Future[object]] = {nxt}  # type: ignore[arg-type]
            if probe is not None:
                waits.add(probe)  # type: ignore[arg-type]
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                address = runtime.address(handle)
                where = f" on port {address[1]}" if address else ""
                await move("terminated", f"the app did not answer HTTP{where} within {timeout:g} s (STUDIOS_START_TIMEOUT_SECONDS)")
                return
            if probe is not None and probe in done:
                line = ready_after(probe.result(), began, runtime.address(handle))
                probe = None
                if not await move("running", "running", log_line=line, ready_at=utcnow(), last_activity_at=utcnow()):
                    return
                ready, deadline = True, None
            if nxt not in done:
                continue
            status = nxt.result()
            if status is None:  # the stream ended without saying how: look once
                ended = await runtime.poll(handle) or Exit(None, None, False, "the workload is gone")
                status = Status(ended.message, running=False, exit=ended)
            nxt = asyncio.ensure_future(_next(stream))
            if status.handle is not None:
                handle = status.handle
                await kit.db.write(partial(dep_store.set_fields, deployment_id=deployment_id, handle=handle))
            if status.exit is not None:
                if probe is not None:
                    probe.cancel()
                # Its last peak usage and every line it wrote are stored before the API says it
                # has ended.
                await usage.sample(extra={deployment_id: (runtime, handle)})
                await kit.sink.drain(deployment_id)
                await move("terminated", status.exit.message)
                return
            if status.log:
                kit.sink.report(deployment_id, status.log)
            if not status.running:
                if probe is not None:
                    probe.cancel()
                    probe = None
                if ready:  # it was running: it can't serve now (its node was lost...)
                    ready, began = False, time.monotonic()
                deadline, said_waiting = None, False
                if not await move("pending", status.message):
                    return
            elif not ready and (probe is None or not said_waiting):
                address = runtime.address(handle)
                if address is None:
                    continue
                if probe is None:
                    deadline = time.monotonic() + timeout
                    probe = asyncio.ensure_future(knock(kit, address, began))
                said_waiting = True
                # Said only when there is a wait: an app that answers at once goes straight to
                # running, one write sooner (a write takes 7-15 ms here while a container starts).
                await asyncio.wait({probe}, timeout=WAITING_SAID_AFTER)
                if probe.done():
                    continue
                if not await move("pending", f"waiting for the app on port {address[1]}"):
                    return
            elif not ready and status.handle is not None and probe is not None:
                probe.cancel()  # it moved while starting: probe the new address
                address = runtime.address(handle)
                probe = asyncio.ensure_future(knock(kit, address, began)) if address else None
    finally:
        for task in (nxt, probe):
            if task is not None:
                task.cancel()
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
