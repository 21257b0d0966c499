"""Deployment logs into the database: system lines for lifecycle steps, and a pump per live
deployment that moves the runtime's stdout/stderr batches in, with the runtime's cursor saved
in the same transaction (so a restart resumes exactly after the last stored line). A flood
is capped per deployment; the drop is announced by a system line, never silent."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from studios.db.models import Deployment, utcnow
from studios.runtimes.base import Handle, LogLine, Runtime
from studios.store import deployments as dep_store

log = logging.getLogger("studios.logs")


def system_line(session: Session, deployment_id: int, message: str, when: datetime | None = None) -> None:
    """Add a system line in the caller's transaction (committed with the state change)."""
    dep_store.add_logs(session, [{"deployment_id": deployment_id, "created_at": when or utcnow(), "stream": "stdout", "source": "system", "message": message}])


class LogSink:
    def __init__(self, db: sessionmaker[Session], cap: int) -> None:
        self.db = db
        self.cap = cap
        self._pumps: dict[int, asyncio.Task[None]] = {}

    system = staticmethod(system_line)

    def system_now(self, deployment_id: int, message: str) -> None:
        with self.db() as session:
            self.system(session, deployment_id, message)
            session.commit()

    def _store(self, deployment_id: int, lines: list[LogLine], cursor: dict) -> None:
        with self.db() as session:
            dep = session.get(Deployment, deployment_id)
            if dep is None:
                return
            room = max(self.cap - dep.log_lines, 0)
            kept, dropped = lines[:room], len(lines) - min(room, len(lines))
            dep_store.add_user_logs(session, deployment_id, kept)
            if dropped and dep.logs_dropped == 0:
                dep_store.add_logs(session, [{"deployment_id": deployment_id, "created_at": utcnow(), "stream": "stderr", "source": "system", "message": f"log cap of {self.cap} lines reached: further lines are dropped (STUDIOS_LOG_LINE_CAP)"}])
            dep.log_lines += len(kept)
            dep.logs_dropped += dropped
            dep.log_cursor = cursor
            session.commit()

    async def _pump(self, deployment_id: int, runtime: Runtime, handle: Handle, cursor: dict | None) -> None:
        """Reading the next batch overlaps with storing the previous one (a queue of two)."""
        batches: asyncio.Queue[tuple[list[LogLine], dict] | None] = asyncio.Queue(maxsize=2)

        async def store() -> None:
            while (batch := await batches.get()) is not None:
                await asyncio.to_thread(self._store, deployment_id, *batch)

        writer = asyncio.create_task(store())
        try:
            async for lines, new_cursor in runtime.logs(handle, cursor):
                if writer.done():
                    break
                await batches.put((lines, new_cursor))
            await batches.put(None)
            await writer
        except asyncio.CancelledError:
            writer.cancel()
            raise
        except Exception:
            log.exception("log pump of deployment %s failed", deployment_id)
            self.system_now(deployment_id, "log collection failed; see the service log")

    def follow(self, deployment_id: int, runtime: Runtime, handle: Handle, cursor: dict | None) -> None:
        """Start pumping a deployment's logs (once)."""
        if deployment_id in self._pumps and not self._pumps[deployment_id].done():
            return
        self._pumps[deployment_id] = asyncio.create_task(self._pump(deployment_id, runtime, handle, cursor), name=f"logs-{deployment_id}")

    async def drain(self, deployment_id: int, timeout: float = 300.0) -> None:
        """Wait until the pump has read every line of an ended workload."""
        task = self._pumps.get(deployment_id)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        self._pumps.pop(deployment_id, None)

    async def close(self) -> None:
        for task in self._pumps.values():
            task.cancel()
        await asyncio.gather(*self._pumps.values(), return_exceptions=True)
        self._pumps.clear()
