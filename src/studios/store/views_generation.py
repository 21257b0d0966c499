"""The "views" generation: a counter that changes whenever anything a studio's view shows
changes (its row, its shares, its author's name or last-seen time, its deployments' shown
columns), bumped by triggers in the database itself (migration 0005, SQLite), so every writer
counts: this server, another process on the same file, the admin commands, a hand-made UPDATE.
`studios.services.read_cache` keeps the API's hot reads while it stays the same.

Two ways to read it: `read(conn)` in a database thread, before the data it guards (so that data
is at least as new as the generation it is kept under); `Probe.read()` on the event loop, to
check a kept answer without a thread hop. The probe's query reads one row of a two-row table
(its page stays in memory), through its own connection that never waits: on SQLite's "busy"
(another process recovering the WAL, or holding the file exclusively) it answers None at once
and the request takes the thread path. Measured on this machine: 6-7 us a read while nothing writes,
about 60 us just after a write (the changed pages are read again from the WAL).

PostgreSQL has no triggers for it (each write would queue on one counter row across servers)
and no probe (a round trip is what the cache saves): there the reads are not kept."""

from __future__ import annotations

import contextlib
import sqlite3

from sqlalchemy import Connection, select

from studios.db.models import Generation

NAME = "views"
_READ = select(Generation.value).where(Generation.name == NAME)
_PROBE = "SELECT value FROM generations WHERE name = 'views'"


def read(conn: Connection) -> int | None:
    """The generation now (None: no counter row, a database emptied by hand)."""
    return conn.execute(_READ).scalar()


class Probe:
    """Reads the generation on the event loop (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def read(self) -> int | None:
        try:
            if self._conn is None:  # on first use: the file exists and is migrated by then
                self._conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
                self._conn.execute("PRAGMA query_only = 1")
            rows = self._conn.execute(_PROBE).fetchall()  # fetchall: the read ends here, holds no snapshot
        except sqlite3.Error:
            return None
        return int(rows[0][0]) if rows else None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

