"""Database engine and sessions: SQLite tuned at connect (WAL, foreign keys, busy timeout),
PostgreSQL by URL, and `upgrade()` which runs the Alembic migrations. Owns no queries."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=16, max_overflow=16, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _tune(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
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
    return create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)


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
