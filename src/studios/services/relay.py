"""PostgreSQL's `LISTEN studios` to this server's event bus: every event any server (this one
included) commits arrives here as a NOTIFY and is handed to the bus, in commit order. If the
listening connection drops, it is reopened and a `resync` event tells every listener to
forget what it cached (events sent meanwhile are lost to this server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from sqlalchemy.engine import make_url

from studios.services.events import Bus, Event

log = logging.getLogger("studios.events")


class PgRelay:
    def __init__(self, database_url: str, bus: Bus) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._bus = bus
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await conn.execute("LISTEN studios")
                    if not first:
                        self._bus.publish([Event("resync")])
                    first = False
                    self.ready.set()
                    async for note in conn.notifies():
                        try:
                            event = Event.from_json(note.payload)
                        except (ValueError, KeyError, TypeError):
                            log.warning("ignoring a malformed event: %.200s", note.payload)
                            continue
                        self._bus.publish([event])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("listening for events failed (%s); reconnecting", error)
            await asyncio.sleep(1.0)

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-relay")
        async with asyncio.timeout(timeout):
            await self.ready.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
