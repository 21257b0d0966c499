"""SQLite: many connections opening one database file at once. A copied or restored database
(no -wal, no -shm beside it) needs its wal-index rebuilt by its first opener, and SQLite answers
some concurrent openers "database is locked" without its busy wait; a server starting with
`--workers`, or a burst of requests on a fresh pool, must not fail for it."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine, text

from studios.db.engine import make_engine, upgrade


def open_at_once(engines: list[Engine], connections: int) -> list[int]:
    """`connections` threads, spread over the engines, connect at the same moment and read."""
    start = threading.Barrier(connections)

    def open_and_read(n: int) -> int:
        start.wait(timeout=30)
        with engines[n % len(engines)].connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one())

    with ThreadPoolExecutor(connections) as pool:
        return list(pool.map(open_and_read, range(connections)))


def test_sixteen_connections_open_a_copied_database_at_once(tmp_path: Path) -> None:
    template = tmp_path / "template.db"
    upgrade(f"sqlite:///{template}")
    for round_ in range(100):
        copy = tmp_path / f"copy{round_}.db"
        shutil.copyfile(template, copy)  # no -wal, no -shm: the first opener rebuilds the index
        engines = [make_engine(f"sqlite:///{copy}") for _ in range(4)]
        assert open_at_once(engines, 16) == [1] * 16
        for engine in engines:
            engine.dispose()
