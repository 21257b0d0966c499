"""A displayUrl opens a studio once across every server of one database: the record of spent
tokens (`store.display_tokens`) is in the database, and two servers that exchange the same
token at the same moment let exactly one of them through. (The proxy's own test of single
use is `tests/proxy/test_auth.py`; two real servers on PostgreSQL: `test_several_servers.py`.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from studios.db.database import Database
from studios.db.models import SpentDisplayToken
from studios.store import display_tokens


@pytest.fixture
def two_servers(database_url: str) -> Iterator[tuple[Database, Database]]:
    """Two servers' connections to one database (each its own engine and pool)."""
    first, second = Database(database_url), Database(database_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def spend(db: Database, key: str, expires_at: float, now: float) -> bool:
    def write() -> bool:
        with db.writing() as session:
            return display_tokens.spend(session, key, expires_at, now)

    return db.retrying(write)


def test_a_token_exchanged_on_two_servers_at_once_opens_once(two_servers: tuple[Database, Database]) -> None:
    now = time.time()
    start = threading.Barrier(16)

    def exchange(n: int) -> bool:
        start.wait(timeout=30)
        return spend(two_servers[n % 2], "a" * 64, now + 3600, now)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(exchange, range(16)))
    assert results.count(True) == 1, results
    # Another token is not affected, and a replay later on either server is refused.
    assert spend(two_servers[1], "b" * 64, now + 3600, now)
    assert not spend(two_servers[0], "a" * 64, now + 3600, now + 60)
    assert not spend(two_servers[1], "b" * 64, now + 3600, now + 60)


def test_records_of_expired_tokens_are_dropped(two_servers: tuple[Database, Database]) -> None:
    db = two_servers[0]
    now = time.time()
    assert spend(db, "c" * 64, now + 10, now)
    assert not spend(db, "c" * 64, now + 10, now + 5)
    assert spend(db, "d" * 64, now + 30, now + 11)  # "c" has expired by then: its record goes
    with db.reading() as session:
        kept = session.scalars(select(SpentDisplayToken.key)).all()
        assert kept == ["d" * 64], kept
        assert session.scalar(select(func.count()).select_from(SpentDisplayToken)) == 1
