"""Database engine and sessions: SQLite tuned at connect (WAL, foreign keys, busy timeout),
PostgreSQL by URL, and `upgrade()` which runs the Alembic migrations. Owns no queries."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, lock_timeout: float = 10.0, pool_size: int = 16, sqlite_memory_mb: int = 0) -> Engine:
    """An engine whose lock waits are bounded by `lock_timeout` seconds: SQLite's busy
    timeout, PostgreSQL's `lock_timeout` (a statement waiting longer fails with an
    OperationalError, which the API answers with a 503 and Retry-After).

    On SQLite, `sqlite_memory_mb` (when not 0) is SQLite's soft heap limit, which bounds
    the library's memory in the whole process: past it, connections' page caches give back
    their least recently used pages. Without it each connection keeps up to 2 MB of pages,
    so a server's memory keeps rising with its database for a while (`mixed_bench.py
    --probe-memory` showed SQLite's share going from 2 to 13.5 MB over four minutes)."""
    ms = max(1, int(lock_timeout * 1000))
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, connect_args={"check_same_thread": False, "timeout": lock_timeout})

        @event.listens_for(engine, "connect")
        def _tune(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            _wal(cur, lock_timeout)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={ms}")
            if sqlite_memory_mb:
                cur.execute(f"PRAGMA soft_heap_limit={sqlite_memory_mb << 20}")
            cur.close()

        # Take over pysqlite's transaction handling so a write transaction can start with
        # BEGIN IMMEDIATE (the database write lock up front: no lock-upgrade deadlocks).
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            options = conn.get_execution_options()
            if options.get("isolation_level") != "AUTOCOMMIT":
                conn.exec_driver_sql("BEGIN " + options.get("sqlite_begin", ""))

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args={"options": f"-c lock_timeout={ms} -c idle_in_transaction_session_timeout=60000"})


def _wal(cur: sqlite3.Cursor, lock_timeout: float) -> None:
    """Put the database in WAL mode (a no-op once it is). When several connections open a file
    at once whose wal-index must first be rebuilt (a copied or restored database, the first
    open after a crash), SQLite answers some of them "database is locked" at once, without its
    busy wait: those try again, within the lock timeout."""
    deadline = time.monotonic() + lock_timeout
    attempt = 0
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            attempt += 1
            time.sleep(min(0.002 * attempt, 0.05))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reads and ordinary writes."""
    return sessionmaker(engine, expire_on_commit=False)


def make_locking_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-then-write changes that race (state changes, shares): on SQLite
    they begin with BEGIN IMMEDIATE; on PostgreSQL callers add SELECT ... FOR UPDATE."""
    return sessionmaker(engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (what `studios db upgrade` runs)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
