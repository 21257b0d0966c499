"""The API's hot reads (`GET /studios/{id}`, a page of `GET /studios`), kept per caller while
nothing they show changes: the read model of `docs/architecture.md`.

What is kept is what the database said, encoded once (`studios.services.answers`: the body's
JSON with holes, and for a page its total), under the "views" generation read before it
(`studios.store.views_generation`). A request checks the generation on the event loop (a few
microseconds, no thread hop) and, when it is the one its answer was kept under, fills the
holes: the parts that must be new for every request are made then, never kept. Each
`displayUrl` is signed for this request (a link opens once), and `author.online` is judged
against the clock now.

Exact, not eventual: the generation is bumped by triggers in the same transaction as the change,
whichever process makes it, so a request that starts after a commit never gets an answer from
before it. Where the generation cannot be read on the loop (PostgreSQL; SQLite busy) nothing is
kept and every read goes to the database as before.

When the generation moves, every request in flight for an answer misses at once; the first
reads, and the others of the same caller and key await its read (`once`,
`studios.services.single_flight`) instead of each reading too.

The generation is read once per turn of the event loop, by the first request that asks in that
turn; the requests after it in the same turn use that reading. That keeps the rule above: a
request whose step runs in the turn was received before its step was queued, and a step queued
after the reading runs after the reading is forgotten (`current`).

Bounded: at most `budget` rows in all (a studio's answer is one, a page's its rows), least
recently used dropped first."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Connection

from studios.services.single_flight import SingleFlight
from studios.store import views_generation

T = TypeVar("T")
BUDGET_ROWS = 20_000
"""About 1 KB a row: some 20 MB at most."""


def generation_in(conn: Connection) -> int | None:
    """The generation now, read in a database thread before the data it will guard."""
    return views_generation.read(conn)


class ReadCache:
    def __init__(self, probe: Callable[[], int | None] | None, budget: int = BUDGET_ROWS) -> None:
        self.probe = probe
        """Reads the generation on the event loop; None: nothing is kept."""
        self.budget = budget
        self._kept: OrderedDict[Hashable, tuple[int, int, Any]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self.flights = SingleFlight()
        self._this_turn: int | None = None
        """The generation as read in this turn of the event loop (None: not read yet)."""

    @property
    def enabled(self) -> bool:
        return self.probe is not None

    def current(self) -> int | None:
        """The generation now (None: unknown, keep nothing and use nothing kept). On the event
        loop: read once per turn. The reading is forgotten by a callback queued as it is made,
        so every step queued after it (a request received later, a read's result come back)
        runs after it is forgotten and reads again; the steps that use it were queued before it
        was made, for requests received before it (under `wrk -c32`, py-spy found 8% of a
        studio's GET in reading the generation anew for each request of the turn)."""
        if self._this_turn is not None:
            return self._this_turn
        if self.probe is None:
            return None
        value = self.probe()
        if value is not None:
            self._this_turn = value
            asyncio.get_running_loop().call_soon(self._forget_turn)
        return value

    def _forget_turn(self) -> None:
        self._this_turn = None

    def get(self, key: Hashable, generation: int) -> Any | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or kept[0] != generation:
                return None
            self._kept.move_to_end(key)
            return kept[2]

    def put(self, key: Hashable, generation: int, value: Any, rows: int = 1) -> None:
        """Keep `value` (what the database said, read after `generation` was)."""
        if rows > self.budget:
            return
        with self._lock:
            old = self._kept.get(key)
            if old is not None and old[0] > generation:
                return  # a later read kept a newer answer already
            if old is not None:
                del self._kept[key]
                self._rows -= old[1]
            self._kept[key] = (generation, rows, value)
            self._rows += rows
            while self._rows > self.budget:
                _, (_, dropped, _) = self._kept.popitem(last=False)
                self._rows -= dropped

    async def once(self, key: Hashable, generation: int, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, or the outcome of the same read already under way on this event loop for
        `key` under `generation` (its value or its error, e.g. NotFound)."""
        return await self.flights.once((key, generation), read)
