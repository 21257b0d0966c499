"""Out-of-memory kills that a container survives: a child process of the app killed by the
kernel for memory while the app's main process (and so the container) lives on.

When the main process is killed the container ends and its exit says so (`docker/exits.py`);
a child's kill otherwise leaves no trace. `oom_kill_lines` follows the engine's event stream
for one container (`oom` and `die` events, read in a thread) and, while no event comes, reads
the kill counter every `RECHECK_SECONDS` (the engine can miss a kill: one in a container's
first moments, under load, raised no `oom` event). It yields one system
log line per burst of `oom` events the container outlives, with how many processes the kernel
killed (the memory cgroup's `oom_kill` counter: cgroup v2 `memory.events` of the deployment's
parent, v1 `memory.oom_control` of the container's own cgroup) and the limit:

    a process in the app was killed: out of memory (limit 64 MB)

The kernel raises several `oom` events for one kill, so events are gathered until none has
come for `SETTLE_SECONDS`. Then the app must have survived it, or nothing is said here (the
exit tells): no `die` event came, the engine still calls the container running, and the
container's init (the runtime starts every container with one) still has a live child, the
app's main process, read from `/proc` when the engine runs on this machine. That last check
does not wait on the engine noticing the exit, so a main process killed for memory is never
reported as a child, however slow the engine is. Knows nothing of the database or the engine
proper: the runtime hands each line to its reporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import docker.errors

from studios.runtimes.base import Handle, Reporter
from studios.runtimes.docker.streams import read_in_threads

log = logging.getLogger("studios.runtimes.docker")

SETTLE_SECONDS = 1.0
"""Quiet time after the last `oom` event before a burst is reported."""
SETTLE_AT_MOST = 5.0
"""A burst that keeps raising events is reported after this long anyway."""
RECHECK_SECONDS = 5.0
"""While no event comes, the kill counter is read this often, so a kill the engine did not
announce is reported too, this much later."""


def kill_line(count: int | None, memory_mb: int | None) -> str:
    """The system log line for `count` processes (None: at least one) killed for memory."""
    limit = f" (limit {memory_mb} MB)" if memory_mb else ""
    if count is not None and count > 1:
        return f"{count} processes in the app were killed: out of memory{limit}"
    return f"a process in the app was killed: out of memory{limit}"


def oom_kill_count(memory_dir: str | None, container_id: str) -> int | None:
    """How many processes the kernel has OOM-killed in the container so far, or None when no
    counter can be read (no cgroup access, an old kernel)."""
    if not memory_dir:
        return None
    parent = Path(memory_dir)
    for path in (parent / "memory.events", parent / container_id / "memory.oom_control",
                 parent / f"docker-{container_id}.scope" / "memory.oom_control"):
        try:
            for line in path.read_text().splitlines():
                key, _, number = line.partition(" ")
                if key == "oom_kill":
                    return int(number)
        except (OSError, ValueError):
            continue
    return None


def _action(event: Any) -> str:
    return str(event.get("Action") or event.get("status") or "") if isinstance(event, dict) else ""


async def oom_kill_lines(api: Any, container_id: str, *, memory_mb: int | None, memory_dir: str | None,
                         since: float | None = None) -> AsyncIterator[str]:
    """Yield a line for each burst of OOM kills inside the container that it survives; return
    when the container dies. `api` is the SDK's low-level `APIClient`; `since` (unix time)
    replays the events from then, so a kill between the start and this call is not missed;
    `memory_dir` is the deployment's memory cgroup directory (the parent of the container's)."""

    def opener() -> tuple[Iterable[Any], Any]:
        stream = api.events(since=since, filters={"container": container_id, "event": ["oom", "die"]}, decode=True)
        return stream, stream.close

    events: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for batch in read_in_threads([opener], name=f"oom-{container_id[:12]}"):
                for event in batch:
                    events.put_nowait(event)
        except Exception as error:  # the engine went away or refused the stream: nothing more to follow
            log.warning("studios: docker: no more OOM events of container %s: %s", container_id[:12], error)
        finally:
            events.put_nowait(None)

    reported = 0 if since is not None else oom_kill_count(memory_dir, container_id)
    reader = asyncio.get_running_loop().create_task(pump(), name=f"studios-oom-{container_id[:12]}")
    try:
        while True:
            try:
                async with asyncio.timeout(RECHECK_SECONDS):
                    event = await events.get()
            except TimeoutError:
                kills = oom_kill_count(memory_dir, container_id)
                if kills is None or reported is None or kills <= reported:
                    continue
                event = {"Action": "oom"}  # a kill the engine did not announce: a burst as any other
            if event is None or _action(event) == "die":
                return
            if _action(event) != "oom":
                continue
            # Gather the burst; the main process dying in it is the exit's to tell.
            until = time.monotonic() + SETTLE_AT_MOST
            while time.monotonic() < until:
                try:
                    async with asyncio.timeout(SETTLE_SECONDS):
                        event = await events.get()
                except TimeoutError:
                    break
                if event is None or _action(event) == "die":
                    return
            if not await _survived(api, container_id):
                return
            kills = oom_kill_count(memory_dir, container_id)
            if kills is not None and reported is not None:
                if kills <= reported:
                    continue  # an OOM event without a kill (the kernel found memory after all)
                count: int | None = kills - reported
            else:
                count = None
            reported = kills
            yield kill_line(count, memory_mb)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def report_oom_kills(api: Any, handle: Handle, report: Reporter, *, since: float | None) -> asyncio.Task[None]:
    """What the runtime calls once the container of `handle` (the Docker runtime's handle) has
    started: a task that passes each line of `oom_kill_lines` to `report` until the container
    dies. Cancel it to stop following."""
    container_id = handle["container_id"]

    async def run() -> None:
        lines = oom_kill_lines(api, container_id, memory_mb=handle.get("memory_mb"),
                               memory_dir=(handle.get("cgroup") or {}).get("paths", {}).get("memory"), since=since)
        async for line in lines:
            report(line)

    return asyncio.get_running_loop().create_task(run(), name=f"studios-oom-{container_id[:12]}")


def _init_has_live_child(init_pid: int) -> bool | None:
    """Whether the container's init still has a child that is not a zombie (the app's main
    process), or None when `/proc` does not show it (an engine on another machine)."""
    if init_pid <= 0:
        return None
    try:
        children = Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone since: not alive
        if state not in ("Z", "X"):
            return True
    return False


async def _survived(api: Any, container_id: str) -> bool:
    """After an OOM burst: is the container's app (its main process) still alive?"""

    def check() -> bool:
        try:
            state = api.inspect_container(container_id).get("State") or {}
        except docker.errors.NotFound:
            return False
        if not state.get("Running"):
            return False
        alive = _init_has_live_child(int(state.get("Pid") or 0))
        return True if alive is None else alive

    try:
        return await asyncio.to_thread(check)
    except Exception:  # the engine did not answer: say what we saw
        return True
