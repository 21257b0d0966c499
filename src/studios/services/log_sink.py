"""Deployment logs into the database: a pump per live deployment reads the runtime's batches,
and one writer stores what every pump (and every start-up step reported) has queued, many
deployments' lines in one transaction, with each deployment's runtime cursor in the same
transaction (so whoever resumes, after a restart or a takeover, continues exactly after the
last stored line).

A batch is stored only if the deployment's `log_seq` is still the one its pump started from:
if another engine stored a batch meanwhile (two servers briefly both believing they hold the
engine), the stale pump's batch is dropped and that pump stops, so no line is stored twice.
A flood is capped per deployment; the drop is announced by a system line, never silent. Each
stored batch is announced as a `logs` event, each start-up step as a `progress` event.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from studios.db.database import Database
from studios.db.models import Deployment, utcnow
from studios.runtimes.base import Handle, LogCursor, LogLine, Runtime
from studios.services.events import Event, emit
from studios.store import deployments as dep_store

log = logging.getLogger("studios.logs")
MAX_LINES_PER_WRITE = 50_000
DRAIN_SECONDS = 60.0
"""Longest wait for the rest of an ended workload's log (`LogSink.drain`)."""


@dataclasses.dataclass
class _Batch:
    deployment_id: int
    lines: list[LogLine]
    cursor: LogCursor
    seq: int
    stored: asyncio.Future[bool]
    dropped: int = 0


@dataclasses.dataclass
class _System:
    deployment_id: int
    message: str
    when: datetime
    stream: str
    stored: asyncio.Future[bool]


TABLE = cast(Table, Deployment.__table__)
_UPDATE = (
    update(TABLE)
    .where(TABLE.c.id == bindparam("b_dep_id"))
    .values(log_lines=bindparam("b_lines"), logs_dropped=bindparam("b_dropped"), log_seq=bindparam("b_seq"), log_cursor=bindparam("b_cursor"))
)


class LogSink:
    def __init__(self, db: Database, cap: int) -> None:
        self.db = db
        self.cap = cap
        self._queue: asyncio.Queue[_Batch | _System] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self.counted: Callable[[int, int], None] | None = None
        """Told (lines stored, lines dropped) of apps' output after each committed write (metrics)."""

    # -- queueing ----------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_forever(), name="log-writer")

    def report(self, deployment_id: int, message: str, stream: str = "stdout") -> asyncio.Future[bool]:
        """Queue a system line (a start-up step, a lifecycle note); stored in order with the
        deployment's other lines and announced as a `progress` event. Returns when stored."""
        self._ensure_writer()
        item = _System(deployment_id, message, utcnow(), stream, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        return item.stored

    # -- the writer --------------------------------------------------------------------------

    async def _write_forever(self) -> None:
        while True:
            items = [await self._queue.get()]
            count = len(getattr(items[0], "lines", ()))
            while not self._queue.empty() and count < MAX_LINES_PER_WRITE:
                item = self._queue.get_nowait()
                items.append(item)
                count += len(getattr(item, "lines", ()))
            try:
                results = await self.db.write(lambda session, items=items: self._store(session, items))  # type: ignore[misc]
            except asyncio.CancelledError:
                for item in items:
                    if not item.stored.done():
                        item.stored.cancel()
                raise
            except Exception as error:
                log.exception("storing %d log items failed", len(items))
                for item in items:
                    if not item.stored.done():
                        item.stored.set_exception(error)
                continue
            for item, ok in zip(items, results, strict=True):
                if not item.stored.done():
                    item.stored.set_result(ok)
            if self.counted is not None:
                done = [item for item, ok in zip(items, results, strict=True) if ok and isinstance(item, _Batch)]
                self.counted(sum(len(b.lines) - b.dropped for b in done), sum(b.dropped for b in done))

    def _store(self, session: Session, items: list[_Batch | _System]) -> list[bool]:
        ids = {item.deployment_id for item in items if isinstance(item, _Batch)}
        rows: dict[int, dict[str, Any]] = {}
        if ids:
            query = select(Deployment.id, Deployment.log_lines, Deployment.logs_dropped, Deployment.log_seq).where(Deployment.id.in_(ids))
            if self.db.postgresql:
                query = query.with_for_update(key_share=True)
            rows = {r.id: {"b_dep_id": r.id, "b_lines": r.log_lines, "b_dropped": r.logs_dropped, "b_seq": r.log_seq, "b_cursor": None} for r in session.execute(query)}
        results: list[bool] = []
        changed: set[int] = set()
        for item in items:
            if isinstance(item, _System):
                line_id = dep_store.add_system_line(session, item.deployment_id, item.message, item.when, item.stream)
                emit(session, Event("progress", item.deployment_id, data={"message": item.message[:500], "id": line_id}))
                results.append(True)
                continue
            row = rows.get(item.deployment_id)
            if row is None or row["b_seq"] != item.seq:
                results.append(False)
                continue
            room = max(self.cap - row["b_lines"], 0)
            kept, dropped = item.lines[:room], len(item.lines) - min(room, len(item.lines))
            item.dropped = dropped
            dep_store.add_user_logs(session, item.deployment_id, kept)
            if dropped and row["b_dropped"] == 0:
                dep_store.add_system_line(session, item.deployment_id, f"log cap of {self.cap} lines reached: further lines are dropped (STUDIOS_LOG_LINE_CAP)", utcnow(), "stderr")
            row["b_lines"] += len(kept)
            row["b_dropped"] += dropped
            row["b_seq"] += 1
            row["b_cursor"] = item.cursor
            changed.add(item.deployment_id)
            results.append(True)
        if changed:
            session.connection().execute(_UPDATE, [rows[d] for d in changed])
            for dep_id in changed:
                emit(session, Event("logs", dep_id, data={"lines": rows[dep_id]["b_lines"]}))
        return results

    # -- pumps -------------------------------------------------------------------------------

    async def _pump(self, deployment_id: int, runtime: Runtime, handle: Handle, cursor: LogCursor | None, seq: int) -> None:
        """Reading the next batch overlaps with storing the previous one (two in flight)."""
        self._ensure_writer()
        loop = asyncio.get_running_loop()
        in_flight: collections.deque[asyncio.Future[bool]] = collections.deque()
        try:
            async for lines, new_cursor in runtime.logs(handle, cursor):
                batch = _Batch(deployment_id, lines, new_cursor, seq, loop.create_future())
                seq += 1
                self._queue.put_nowait(batch)
                in_flight.append(batch.stored)
                if len(in_flight) >= 2 and not await in_flight.popleft():
                    log.warning("deployment %s: another engine stores its logs now; this pump stops", deployment_id)
                    return
            for stored in in_flight:
                if not await stored:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("log pump of deployment %s failed", deployment_id)
            with contextlib.suppress(Exception):
                await self.report(deployment_id, "log collection failed; see the service log", "stderr")

    def follow(self, deployment_id: int, runtime: Runtime, handle: Handle, cursor: LogCursor | None, seq: int) -> None:
        """Start pumping a deployment's logs from `cursor` (once; `seq`: its stored `log_seq`)."""
        task = self._pumps.get(deployment_id)
        if task is not None and not task.done():
            return
        self._pumps[deployment_id] = asyncio.get_running_loop().create_task(self._pump(deployment_id, runtime, handle, cursor, seq), name=f"logs-{deployment_id}")

    def following(self, deployment_id: int) -> bool:
        task = self._pumps.get(deployment_id)
        return task is not None and not task.done()

    async def drain(self, deployment_id: int, timeout: float = DRAIN_SECONDS) -> None:
        """Wait until the pump has stored every line of an ended workload; past `timeout` the
        rest is given up (said in the service log), so a runtime whose log never ends cannot
        hold a release (and the workload's removal) back."""
        task = self._pumps.get(deployment_id)
        if task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("deployment %s: its runtime's log did not end within %.0f s of the workload's end; the rest is given up", deployment_id, timeout)
            task.cancel()
        except asyncio.CancelledError:  # the caller is cancelled: so is the pump, and so it stays
            task.cancel()
            raise
        finally:
            if self._pumps.get(deployment_id) is task:
                del self._pumps[deployment_id]

    async def stop(self, deployment_id: int) -> None:
        """Stop pumping (the workload goes on; whoever resumes starts from the stored cursor)."""
        task = self._pumps.pop(deployment_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        tasks = [*self._pumps.values(), *([self._writer] if self._writer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pumps.clear()
        self._writer = None
