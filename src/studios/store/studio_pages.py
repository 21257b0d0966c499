"""The ordered ids of the studios one kind of list request matches, kept between requests
while no studio and no share changes, so a page of `GET /studios` costs the same with 40
studios or 10,000 (its total is the list's length, its page a slice: no `count()` over every
visible studio, no OFFSET walk to the last page).

Exact, also with several servers on one database: every write to studios or their shares bumps
the "studios" generation in its own transaction (triggers in the database, migration 0005, so
whoever writes: this server, another, the admin commands, SQL by hand), and each list request reads that
generation first (one primary-key lookup) and uses a kept list only if it was made under the
same one. The first list request after any such write pays the full query again.
Bounded: at most `budget` ids in all (8 bytes each), least recently used dropped first."""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

from sqlalchemy import Connection, select

from studios.db.models import Generation

NAME = "studios"
_READ = select(Generation.value).where(Generation.name == NAME)


class StudioPages:
    def __init__(self, budget: int = 200_000) -> None:
        self.budget = budget
        self._kept: OrderedDict[Hashable, tuple[int, array]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def ids(self, conn: Connection, key: Hashable, query: Callable[[], Iterable[int]]) -> array:
        """The ids `query()` gives, from the list kept under `key` if no studio changed since
        it was made. Runs in the database pool (any thread)."""
        generation = conn.execute(_READ).scalar()
        if generation is None:  # no counter row (a database emptied by hand): keep nothing
            return array("q", query())
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == generation:
                self._kept.move_to_end(key)
                return kept[1]
        # Read after the generation: these ids are at least as new as it, so a later reader
        # that still finds this generation finds them current.
        ids = array("q", query())
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._size -= len(old[1])
            if len(ids) <= self.budget:
                self._kept[key] = (generation, ids)
                self._size += len(ids)
                while self._size > self.budget:
                    _, (_, dropped) = self._kept.popitem(last=False)
                    self._size -= len(dropped)
        return ids
