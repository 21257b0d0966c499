"""The writers' turns on SQLite (`Database._write_turn`): this process's writers queue on a lock
before SQLite's `BEGIN IMMEDIATE`, bounded by the lock timeout, after which SQLite's own wait and
its "database is locked" take over. A writer that waited out its turn gets that clear error and
leaves the turns as they were; the writer it waited for commits, and the next one goes on.
Readers never take a turn. (PostgreSQL has no turns: its writers wait on row locks.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from studios.db.database import Database
from studios.db.models import SpentDisplayToken

WAIT = 10.0
"""Bound of every wait on another thread here."""


def database(url: str, lock_timeout: float) -> Iterator[Database]:
    if not url.startswith("sqlite"):
        pytest.skip("writers take turns on SQLite only")
    db = Database(url, lock_timeout=lock_timeout)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def impatient(database_url: str) -> Iterator[Database]:
    yield from database(database_url, lock_timeout=0.2)


@pytest.fixture
def patient(database_url: str) -> Iterator[Database]:
    yield from database(database_url, lock_timeout=WAIT)


def tokens(db: Database) -> set[str]:
    with db.reading() as session:
        return set(session.scalars(select(SpentDisplayToken.key)))


def add(db: Database, key: str) -> None:
    with db.writing() as session:
        session.execute(insert(SpentDisplayToken).values(key=key, expires_at=1.0))


class Holder:
    """A writer that holds its write transaction open until released."""

    def __init__(self, db: Database, key: str) -> None:
        self.inside, self.release = threading.Event(), threading.Event()
        self.pool = ThreadPoolExecutor(1)
        self.done = self.pool.submit(self._write, db, key)
        assert self.inside.wait(WAIT), "the holder never got its write transaction"

    def _write(self, db: Database, key: str) -> None:
        with db.writing() as session:
            session.execute(insert(SpentDisplayToken).values(key=key, expires_at=1.0))
            self.inside.set()
            assert self.release.wait(WAIT)

    def finish(self) -> None:
        self.release.set()
        self.done.result(timeout=WAIT)
        self.pool.shutdown()


def test_a_writer_that_waits_out_its_turn_gets_sqlites_error_and_the_others_go_on(impatient: Database) -> None:
    holder = Holder(impatient, "held")
    try:
        # Its turn does not come within the lock timeout, nor SQLite's lock after it: the
        # writer is told the database is locked (not a lock error of this process's own).
        with pytest.raises(OperationalError, match="database is locked"):
            add(impatient, "late")
    finally:
        holder.finish()
    # The held write committed; the one that gave up left nothing; the next writer goes on.
    add(impatient, "next")
    assert tokens(impatient) == {"held", "next"}


def test_a_waiting_writer_goes_on_once_the_other_commits_and_sees_its_rows(patient: Database) -> None:
    holder = Holder(patient, "first")
    seen: list[int] = []

    def second() -> None:
        with patient.writing() as session:
            seen.append(session.scalar(select(func.count()).select_from(SpentDisplayToken)) or 0)
            session.execute(insert(SpentDisplayToken).values(key="second", expires_at=1.0))

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(second)
        holder.finish()
        waiting.result(timeout=WAIT)
    assert seen == [1]  # its transaction began after the first one's commit
    assert tokens(patient) == {"first", "second"}


def test_readers_do_not_wait_for_a_writer(patient: Database) -> None:
    add(patient, "before")
    holder = Holder(patient, "uncommitted")
    try:
        with ThreadPoolExecutor(1) as pool:
            # A reader that queued behind the writer would wait until it is released, which
            # happens only after this read (bounded by WAIT, the read fails the test).
            assert pool.submit(tokens, patient).result(timeout=WAIT) == {"before"}
    finally:
        holder.finish()
    assert tokens(patient) == {"before", "uncommitted"}
