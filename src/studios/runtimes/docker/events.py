"""One Docker events stream per runtime, waking whoever waits on a container's end.

The engine's `/events` stream, filtered to this installation's containers (by label) and to
the events that can end one (`die`, `oom`, `destroy`), is read by one thread
(`streams.read_in_threads`); each event wakes the waiters of its container. So watching 200
containers costs one connection and no polling. When the stream breaks (the daemon restarted)
it is reopened after a short pause and every waiter is woken to look again, so nothing that
happened in between is missed. `oom` events while the container lives on are handed to
`on_oom` (a process inside was killed for memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from studios.runtimes.docker.streams import read_in_threads

log = logging.getLogger("studios.runtimes.docker")


class ContainerEvents:
    def __init__(self, client: Callable[[], Any], label: str) -> None:
        self._client = client
        self._label = label
        self._waiters: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.on_oom: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> tuple[Iterable[dict[str, Any]], Callable[[], None]]:
        stream = self._client().api.events(decode=True, filters={"type": "container", "label": [self._label], "event": ["die", "oom", "destroy"]})
        # Subscribed from here on: whoever armed before now looks again (an end between their
        # look and this moment was not streamed).
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake_all)
        return stream, stream.close

    async def _run(self) -> None:
        while True:
            try:
                async for batch in read_in_threads([self._open], name="docker-events"):
                    for item in batch:
                        cid = str(item.get("id") or (item.get("Actor") or {}).get("ID") or "")
                        if item.get("status") == "oom" and self.on_oom is not None:
                            self.on_oom(cid)
                        self._wake(cid)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("docker events stream ended (%s); reopening", error)
            self._wake_all()
            await asyncio.sleep(1.0)

    def _ensure(self) -> None:
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="docker-events")

    def _wake(self, container_id: str) -> None:
        for cid in [c for c in self._waiters if c == container_id or container_id.startswith(c)]:
            self._waiters.pop(cid).set()

    def _wake_all(self) -> None:
        for event in self._waiters.values():
            event.set()
        self._waiters.clear()

    def arm(self, container_id: str) -> asyncio.Event:
        """An event set at the container's next die/oom/destroy event (or when the stream
        reconnects): take it, then look at the container, then wait on it."""
        self._ensure()
        event = self._waiters.get(container_id)
        if event is None:
            event = self._waiters[container_id] = asyncio.Event()
        return event

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._wake_all()
