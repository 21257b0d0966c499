"""The read model's check on the event loop (`studios.store.views_generation.Probe`) must never
wait: when another connection holds the database file, it answers None at once (the request
then reads in a thread as before), and reads the counter again once the file is free."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from studios.store.views_generation import Probe


def test_the_probe_answers_none_at_once_while_the_file_is_held(tmp_path: Path) -> None:
    path = str(tmp_path / "studios.db")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE generations (name TEXT PRIMARY KEY, value INTEGER)")
    setup.execute("INSERT INTO generations VALUES ('views', 3)")
    setup.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE generations SET value = 4")
    probe = Probe(path)
    started = time.monotonic()
    assert probe.read() is None
    assert time.monotonic() - started < 2.0, "the probe waited for the lock (SQLite's default wait is 5 s)"
    holder.execute("COMMIT")
    holder.close()
    assert probe.read() == 4
    probe.close()


def test_a_missing_counter_is_none(tmp_path: Path) -> None:
    path = str(tmp_path / "empty.db")
    sqlite3.connect(path).close()
    assert Probe(path).read() is None
