"""Traffic through display URLs, per deployment: counted in memory by this server's proxy (a
timestamp per request, nothing more on the hot path) and written to `last_activity_at` every
`flush_every` seconds, one statement for every deployment touched, so the engine's idle sleep
sees traffic whichever server's proxy carried it."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, bindparam, or_, update
from sqlalchemy.orm import Session

from studios.db.database import Database
from studios.db.models import Deployment

log = logging.getLogger("studios.activity")

TABLE = cast(Table, Deployment.__table__)
_UPDATE = (
    update(TABLE)
    .where(TABLE.c.id == bindparam("b_dep_id"), or_(TABLE.c.last_activity_at.is_(None), TABLE.c.last_activity_at < bindparam("b_at")))
    .values(last_activity_at=bindparam("b_at"))
)


class Activity:
    def __init__(self, db: Database, flush_every: float) -> None:
        self.db = db
        self.flush_every = flush_every
        self.last: dict[int, float] = {}
        """deployment id -> unix time of this server's last proxied traffic for it."""
        self._dirty: set[int] = set()

    def touch(self, deployment_id: int) -> None:
        self.last[deployment_id] = time.time()
        self._dirty.add(deployment_id)

    async def flush(self) -> None:
        if not self._dirty:
            return
        rows = [{"b_dep_id": d, "b_at": datetime.fromtimestamp(self.last[d], UTC)} for d in self._dirty]
        self._dirty = set()

        def store(session: Session) -> None:
            session.connection().execute(_UPDATE, rows)

        await self.db.write(store)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            try:
                await self.flush()
            except Exception:
                log.exception("writing proxied activity failed")
