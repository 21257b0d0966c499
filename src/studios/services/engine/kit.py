"""What the lifecycle engine's parts share: the database, the runtimes, the log sink, its
settings and its identity. Built once by `studios.app`; holds no state of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

from studios.db.database import Database
from studios.runtimes.base import Reporter
from studios.runtimes.registry import Runtimes
from studios.services.keys import KeyHasher
from studios.services.log_sink import LogSink
from studios.services.secrets import SecretBox
from studios.services.views import Links


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    start_timeout: float = 120.0
    stop_grace: float = 5.0
    idle_sleep: float = 3600.0
    reconcile_interval: float = 30.0
    usage_interval: float = 2.0
    public_url: str = "http://localhost:8000"
    allow_local_git_repos: bool = False


@dataclasses.dataclass
class Kit:
    db: Database
    runtimes: Runtimes
    sink: LogSink
    settings: EngineSettings
    links: Links
    hasher: KeyHasher
    box: SecretBox
    holder: str
    """This engine's name in the database (claims, leases): `<host>:<pid>:<random>`."""

    def reporter(self, deployment_id: int) -> Reporter:
        """A runtime `Reporter` for one deployment: each line becomes a stored system line and
        a progress event (queued in order; the runtime does not wait for the store). May be
        called from any thread (runtimes report from their blocking SDK calls)."""
        loop = asyncio.get_running_loop()

        def report(message: str) -> None:
            if threading.get_ident() == thread:
                self.sink.report(deployment_id, message)
            else:
                loop.call_soon_threadsafe(self.sink.report, deployment_id, message)

        thread = threading.get_ident()
        return report
