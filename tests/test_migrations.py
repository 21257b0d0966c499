"""The Alembic tree and the ORM models agree, on SQLite and (when configured) PostgreSQL; and
`studios db upgrade` brings an empty database to the newest schema from the command line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from conftest import TEST_DATABASE_URL, pg_database
from studios.db.engine import alembic_config, upgrade
from studios.db.models import Base

BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])


@contextlib.contextmanager
def empty_database(backend: str, tmp_path: Path, suffix: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with pg_database(suffix) as url:
        yield url


def differences(url: str) -> list[Any]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": conn.dialect.name == "sqlite"})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_head_matches_the_models(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path, "m") as url:
        upgrade(url)
        assert differences(url) == []
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
                tables = set(sa.inspect(conn).get_table_names())
        finally:
            engine.dispose()
        assert current == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert set(Base.metadata.tables) <= tables
        upgrade(url)  # a second upgrade is a no-op, not an error
        assert differences(url) == []


def test_an_empty_database_differs(tmp_path: Path) -> None:
    """The comparison sees a missing schema (so the test above can fail)."""
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    sa.create_engine(url).dispose()
    assert differences(url)


@pytest.mark.parametrize("backend", BACKENDS)
def test_studios_db_upgrade_from_the_cli(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path, "cli") as url:
        env = {**os.environ, "STUDIOS_DATA_DIR": str(tmp_path / "data"), "STUDIOS_DATABASE_URL": url, "STUDIOS_SECRET_KEY": "cli-test"}
        studios = Path(sys.executable).with_name("studios")
        result = subprocess.run([str(studios), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert differences(url) == []
        again = subprocess.run([str(studios), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr


def test_default_database_is_created_in_the_data_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOS_")}
    env |= {"STUDIOS_DATA_DIR": str(tmp_path / "data"), "STUDIOS_SECRET_KEY": "cli-test"}
    studios = Path(sys.executable).with_name("studios")
    result = subprocess.run([str(studios), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert differences(f"sqlite:///{tmp_path / 'data' / 'studios.db'}") == []


def test_log_lines_stored_before_0006_read_back_with_their_times_and_order(tmp_path: Path) -> None:
    """Migration 0006 stores SQLite's log times as the wire shows them (`LogTime`): lines written
    before it come back with the same createdAt, in the same order, and bounds still find them."""
    from alembic import command

    from studios.store import deployments as dep_store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0005")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            # No parent rows: SQLite checks foreign keys only where a connection asks it to.
            old = [("2026-11-26 06:11:22.497999", "b"), ("2026-11-26 06:11:22.497123", "a"), ("2026-11-26 06:11:23.000000", "c")]
            for created, message in old:
                conn.exec_driver_sql("INSERT INTO deployment_logs (deployment_id, created_at, stream, source, message) VALUES (7, ?, 'stdout', 'user', ?)", (created, message))
        upgrade(url)
        with engine.connect() as conn:
            stored = [row[0] for row in conn.exec_driver_sql("SELECT created_at FROM deployment_logs ORDER BY id")]
            body = json.loads(dep_store.logs_body(conn, 7, None, None, 10))
            bounded = json.loads(dep_store.logs_body(conn, 7, None, datetime(2026, 11, 26, 6, 11, 22, 497000, tzinfo=UTC), 10))
    finally:
        engine.dispose()
    assert stored == ["2026-11-26T06:11:22.497Z", "2026-11-26T06:11:22.497Z", "2026-11-26T06:11:23.000Z"]
    # One millisecond now: its lines in arrival order (by id), as the wire shows them.
    assert [(line["message"], line["createdAt"]) for line in body] == [("b", "2026-11-26T06:11:22.497Z"), ("a", "2026-11-26T06:11:22.497Z"), ("c", "2026-11-26T06:11:23.000Z")]
    assert [line["message"] for line in bounded] == ["b", "a"]
