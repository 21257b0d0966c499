"""The service's long-lived parts that the API routes use, built once by `studios.app` and
shared by every request. Holds no request state. (The lifecycle engine, the proxy and the
runtimes get only the parts they use, from `studios.app`.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from studios.db.database import Database
from studios.partitions import Partitions
from studios.runtimes.registry import Runtimes
from studios.services.events import Bus
from studios.services.keys import KeyHasher
from studios.services.secrets import SecretBox
from studios.services.views import Links
from studios.settings import Settings
from studios.store.studio_pages import StudioPages


@dataclasses.dataclass
class Context:
    settings: Settings
    db: Database
    bus: Bus
    partitions: Partitions
    hasher: KeyHasher
    box: SecretBox
    """Seals and opens credential secrets."""
    links: Links
    runtimes: Runtimes | None = None
    """The runtimes (set when the service starts): the API asks only which one a partition uses."""
    studio_pages: StudioPages = dataclasses.field(default_factory=StudioPages)
    """The ordered ids behind `GET /studios`, kept while no studio changes."""
    sleeps_at: Callable[[Any], float | None] = lambda _dep: None
    """When a running deployment goes to sleep if it stays idle (unix time), or None."""

    def close(self) -> None:
        self.db.close()
