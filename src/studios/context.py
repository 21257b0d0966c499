"""The service's long-lived parts, built once by `studios.app.create_app` and shared by the
API, the proxy and the lifecycle engine. Holds no request state."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine
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
