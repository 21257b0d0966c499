"""Leases: a job exactly one server does at a time (the lifecycle engine), held as a row in the
`leases` table with an expiry, renewed well before it lapses, taken over by another server once
it has (its holder died, hung, or lost the database).

Time is the database's clock on PostgreSQL (servers on several machines agree on it) and this
machine's on SQLite (one machine). A holder that cannot renew within most of the lease's life
gives up its job before the lease can lapse, so two holders never act at once for longer than
one renewal round trip; the engine's own writes are guarded as well (a launch is claimed in the
database; a log batch is stored only if no one else stored one since it was read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from studios.db.database import Database
from studios.db.models import Lease as LeaseRow

log = logging.getLogger("studios.lease")
DB_CLOCK = text("SELECT extract(epoch from clock_timestamp())")


class Lease:
    def __init__(self, db: Database, name: str, holder: str, *, ttl: float = 6.0) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.renew_every = ttl / 3
        self.retry_every = min(1.0, ttl / 4)
        self.held = False
        self.changed = asyncio.Event()
        """Set whenever `held` flips (tests and the CLI wait on it)."""

    def _clock(self, session: Session) -> float:
        if self.db.postgresql:
            return float(session.execute(DB_CLOCK).scalar_one())
        return time.time()

    def try_hold(self, session: Session) -> bool:
        """Take or renew the lease in the caller's write transaction; True if held."""
        now = self._clock(session)
        row = session.scalar(select(LeaseRow).where(LeaseRow.name == self.name).with_for_update())
        if row is None:
            session.add(LeaseRow(name=self.name, holder=self.holder, expires_at=now + self.ttl, acquired_at=now))
            session.flush()
            return True
        if row.holder != self.holder and row.expires_at > now:
            return False
        if row.holder != self.holder:
            row.acquired_at = now
            log.warning("lease %s: taken over from %s (expired %.1f s ago)", self.name, row.holder, now - row.expires_at)
        row.holder, row.expires_at = self.holder, now + self.ttl
        return True

    def release(self, session: Session) -> None:
        session.execute(delete(LeaseRow).where(LeaseRow.name == self.name, LeaseRow.holder == self.holder))

    async def _attempt(self) -> bool:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the write's result
            # and drops a cancellation that arrives in the same turn (the service's shutdown),
            # and `run` would go on holding the lease.
            async with asyncio.timeout(self.ttl / 2):
                return await self.db.write(self.try_hold)
        except (OperationalError, IntegrityError, TimeoutError) as error:
            log.warning("lease %s: could not renew: %s", self.name, error.__class__.__name__)
            return False

    def _set(self, held: bool) -> None:
        if held != self.held:
            self.held = held
            self.changed.set()
            self.changed = asyncio.Event()

    async def run(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: hold the lease and run `job()` while it is held; cancel the job when the
        lease is lost (it is started again if the lease comes back). Cancel `run` to stop; it
        then releases the lease so another server takes over at once."""
        task: asyncio.Task[None] | None = None
        renewed = 0.0
        try:
            while True:
                held = await self._attempt()
                now = time.monotonic()
                if held:
                    renewed = now
                elif task is not None and now - renewed < self.ttl * 0.7:
                    held = True  # one failed renewal: still well inside the lease's life
                if held and (task is None or task.done()):
                    if task is not None and not task.cancelled() and task.exception() is not None:
                        log.error("lease %s: its job failed; starting it again", self.name, exc_info=task.exception())
                    task = asyncio.create_task(job(), name=f"lease-{self.name}")
                elif not held and task is not None:
                    log.warning("lease %s: lost; stopping its job", self.name)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    task = None
                self._set(held)
                await asyncio.sleep(self.renew_every if held else self.retry_every)
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.held:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.db.write(self.release))
            self._set(False)
