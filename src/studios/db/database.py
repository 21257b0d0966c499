"""The service's database handle: the engine, read and write sessions, and the bounded thread
pool in which every blocking database call runs, so the event loop that serves the API, the
proxy and the engine never waits on the database.

- `await db.read(fn)` runs `fn(session)` in the pool on a read session (no commit).
- `await db.write(fn)` runs `fn(session)` on a write session and commits: on SQLite the
  transaction starts with BEGIN IMMEDIATE (it holds the write lock from its first statement,
  so a read-then-write can't fail on a lock upgrade), and this process's writers take turns on
  a lock first (`_write_turn`); on PostgreSQL writers lock rows with SELECT ... FOR UPDATE
  where they race. Lock waits are bounded by the engine's lock timeout.
- `await db.fast_read(fn)` runs `fn(connection)` in the readers' own threads, on that
  thread's autocommit Core connection (the API's hot GETs: no pool checkout, no transaction to
  open or close, and never queued behind a write). Calls reach those threads, and their results
  come back, in batches (`studios.db.readers`). Two reader threads on SQLite by default: its
  reads are CPU work under Python's GIL, and more threads contending for the GIL with the event
  loop cost more than they overlap (`bench/api_bench.py`, same run: with two readers GET
  /studios/{id} answered 1.2x and the list 1.6x the requests of eight); four on PostgreSQL,
  whose reads wait on the network.
- Events queued on a write session (`studios.services.events.emit`) are announced when it
  commits: on SQLite to this process's bus after the commit, on PostgreSQL as NOTIFY inside
  the transaction (every server's listener, this one's included, receives them at commit).

Sync twins (`reading()`, `writing()`) serve the command line and code already in the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from studios.db.engine import make_engine
from studios.db.readers import Readers
from studios.services.events import Bus, take
from studios.store.views_generation import Probe

T = TypeVar("T")
UNDO = "studios.undo_on_rollback"
NOTIFY = text("SELECT pg_notify('studios', :payload)")
RETRYABLE = {"40P01": "deadlock detected", "40001": "serialization failure"}
log = logging.getLogger("studios.db")


def undo_on_rollback(session: Session, undo: Callable[[], object]) -> None:
    """Call `undo()` if the session's transaction rolls back (a failed commit included): for
    what a transaction records outside the database (the engine's prepared launches). On
    SQLite it runs before this process's next writer takes its turn."""
    session.info.setdefault(UNDO, []).append(undo)


def _rolled_back(session: Session) -> None:
    take(session)  # its events are dropped
    for undo in session.info.pop(UNDO, []):
        undo()


def _committed(session: Session) -> None:
    session.info.pop(UNDO, None)


class Database:
    def __init__(self, url: str, bus: Bus | None = None, *, threads: int = 8, read_threads: int | None = None, lock_timeout: float = 10.0, sqlite_memory_mb: int = 0) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.read_threads = read_threads or (4 if self.dialect == "postgresql" else 2)
        self.engine = make_engine(url, lock_timeout, pool_size=threads + self.read_threads + 4, sqlite_memory_mb=sqlite_memory_mb)
        self.bus = bus
        self.lock_timeout = lock_timeout
        path = make_url(url).database if self.dialect == "sqlite" else None
        self.views_probe = Probe(path) if path and path != ":memory:" and not path.startswith("file:") else None
        """Reads the views generation on the event loop (`studios.store.views_generation`);
        None where there is none to read (PostgreSQL, an in-memory database)."""
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="studios-db")
        self.readers = Readers(self.read_threads, "studios-db-read")
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._turns: threading.RLock | None = threading.RLock() if self.dialect == "sqlite" else None
        if self.dialect == "postgresql":
            event.listen(self._writes, "before_commit", self._notify)
        else:
            event.listen(self._writes, "after_commit", self._announce)
        event.listen(self._writes, "after_rollback", _rolled_back)
        event.listen(self._writes, "after_commit", _committed)

    @property
    def postgresql(self) -> bool:
        return self.dialect == "postgresql"

    # -- announcing events -------------------------------------------------------------------

    def _notify(self, session: Session) -> None:
        for item in take(session):
            session.execute(NOTIFY, {"payload": item.to_json()})

    def _announce(self, session: Session) -> None:
        events = take(session)
        if events and self.bus is not None:
            self.bus.publish(events)

    # -- sync --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        with self._reads() as session:
            yield session

    def retrying(self, fn: Callable[[], T], attempts: int = 4) -> T:
        """`fn()` (a whole transaction), run again if PostgreSQL chose it as the victim of a
        deadlock or a serialization failure: it was rolled back, so it may run anew."""
        for attempt in range(attempts):
            try:
                return fn()
            except DBAPIError as error:
                code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
                if code not in RETRYABLE or attempt == attempts - 1:
                    raise
                log.info("retrying a transaction after %s (%s)", code, RETRYABLE[code])
                time.sleep(0.005 * (attempt + 1) + random.random() * 0.01)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction, committed when the block ends without an exception."""
        with self._write_turn(), self._writes() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextlib.contextmanager
    def _write_turn(self) -> Iterator[None]:
        """On SQLite, this process's writers take turns on a lock before BEGIN IMMEDIATE.
        SQLite's own busy wait sleeps 1, 2, 5, 10, 15... ms between tries, so a writer that
        arrives during another's 1 ms transaction used to wait 10 ms and more (the state writer
        behind a batch of log lines); on the lock it goes on the moment the other commits.
        Bounded by the lock timeout, after which SQLite's own wait (and its error) take over;
        other processes on the same file (the CLI, `--workers`) still meet SQLite's wait."""
        if self._turns is None:
            yield
            return
        took = self._turns.acquire(timeout=self.lock_timeout)
        try:
            yield
        finally:
            if took:
                self._turns.release()

    def connection(self) -> Connection:
        """This thread's autocommit Core connection (made on first use, remade if broken)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    # -- async -------------------------------------------------------------------------------

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` in the database thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def read(self, fn: Callable[[Session], T]) -> T:
        def call() -> T:
            with self.reading() as session:
                return fn(session)

        return await self.run(call)

    async def write(self, fn: Callable[[Session], T]) -> T:
        def call() -> T:
            with self.writing() as session:
                return fn(session)

        return await self.run(lambda: self.retrying(call))

    async def fast_read(self, fn: Callable[[Connection], T]) -> T:
        """`fn(connection)` in a reader thread (see the module's docstring)."""
        return await self.readers.submit(lambda: fn(self.connection()))

    def close(self) -> None:
        if self.views_probe is not None:
            self.views_probe.close()
        self.readers.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(Exception):
                    conn.close()
            self._connections.clear()
        self.engine.dispose()
