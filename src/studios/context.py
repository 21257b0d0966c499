"""The service's long-lived parts, built once by `studios.app.create_app` and shared by the
API, the proxy and the lifecycle engine. Holds no request state."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from studios.partitions import Partitions
from studios.services.keys import KeyHasher
from studios.services.secrets import SecretBox
from studios.services.views import Links
from studios.settings import Settings


@dataclasses.dataclass
class Context:
    settings: Settings
    engine: Engine
    db: sessionmaker[Session]
    locking_db: sessionmaker[Session]
    partitions: Partitions
    hasher: KeyHasher
    box: SecretBox
    """Seals and opens credential secrets."""
    links: Links
    deployments: Any = None
    """The lifecycle engine (`studios.services.engine.Engine`), once started."""
    _reader: Connection | None = None

    def reader(self) -> Connection:
        """A Core connection in autocommit mode for the event loop's own reads (GET routes'
        hot path): no pool checkout, no transaction to open or close per request, and none
        held across an `await`. Only ever used from the event-loop thread."""
        conn = self._reader
        if conn is None or conn.closed or conn.invalidated:
            conn = self._reader = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.engine.dispose()
