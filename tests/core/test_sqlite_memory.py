"""`STUDIOS_SQLITE_MEMORY_MB` bounds SQLite's memory in a server process: reading a database
much larger than the bound through several connections leaves SQLite holding about the bound,
where without it every connection keeps its own 2 MB of pages."""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from studios.db.engine import make_engine

_LIB = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")  # the sqlite3 module's library
_LIB.sqlite3_memory_used.restype = ctypes.c_longlong
MB = 1 << 20
CONNECTIONS = 6


@pytest.fixture
def big_db(tmp_path: Path) -> Iterator[str]:
    """A 12 MB table: each connection that reads it fills its 2 MB page cache."""
    path = tmp_path / "big.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO t (body) VALUES (?)", (("x" * 1000,) for _ in range(12_000)))
    yield f"sqlite:///{path}"
    with sqlite3.connect(":memory:") as conn:
        conn.execute("PRAGMA soft_heap_limit=0")  # the limit is the process's: leave none behind


def sqlite_memory_after_reading(url: str, bound_mb: int) -> int:
    engine = make_engine(url, pool_size=CONNECTIONS, sqlite_memory_mb=bound_mb)
    before = _LIB.sqlite3_memory_used()
    conns = [engine.connect() for _ in range(CONNECTIONS)]
    try:
        for i, conn in enumerate(conns):  # each reads a different part, so no page is shared
            conn.execute(text("SELECT sum(length(body)) FROM t WHERE id > :lo AND id <= :hi"), {"lo": i * 2000, "hi": (i + 1) * 2000}).one()
        return int(_LIB.sqlite3_memory_used() - before)
    finally:
        for conn in conns:
            conn.close()
        engine.dispose()


def test_the_bound_keeps_sqlite_memory_near_it_and_none_lets_each_connection_fill(big_db: str) -> None:
    bounded = sqlite_memory_after_reading(big_db, 2)
    with sqlite3.connect(":memory:") as conn:
        conn.execute("PRAGMA soft_heap_limit=0")
    unbounded = sqlite_memory_after_reading(big_db, 0)
    assert bounded < 3 * MB, f"SQLite holds {bounded / MB:.1f} MB with a 2 MB bound"
    assert unbounded > 8 * MB, f"without a bound, {CONNECTIONS} connections' caches should hold more than 8 MB, not {unbounded / MB:.1f}"
