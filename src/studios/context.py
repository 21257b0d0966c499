"""The service's long-lived parts that the API routes use, built once (`build_context`) and
shared by every request. Holds no request state. (The lifecycle engine, the proxy and the
runtimes get only the parts they use, from `studios.app`.) Built here rather than in
`studios.app` so the admin commands (`studios users create`...) need not import the web app:
about 1 s of a 3 s command on this machine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from studios.db.database import Database
from studios.db.engine import upgrade
from studios.partitions import Partitions
from studios.proxy.config import ProxyConfig
from studios.proxy.tokens import DisplayLinks
from studios.runtimes.registry import Runtimes
from studios.services.events import Bus
from studios.services.keys import KeyHasher
from studios.services.read_cache import ReadCache
from studios.services.secrets import SecretBox
from studios.services.single_flight import SingleFlight
from studios.services.views import Links
from studios.settings import Settings
from studios.store.studio_pages import StudioPages

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from studios.db.models import Deployment


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
    prepare_launch: Callable[[Session, Deployment], None] = lambda _session, _dep: None
    """Called in a deploy's transaction with the new deployment: the engine claims it there
    when this server runs the engine (`Engine.prepare`), so it starts without a transaction of
    its own."""
    studio_pages: StudioPages = dataclasses.field(default_factory=StudioPages)
    """The ordered ids behind `GET /studios`, kept while no studio changes."""
    reads: ReadCache = dataclasses.field(default_factory=lambda: ReadCache(None))
    """The API's hot reads, kept per caller while nothing they show changes (SQLite)."""
    key_checks: SingleFlight = dataclasses.field(default_factory=SingleFlight)
    """Verifications of an API key in the database under way, shared by the requests that carry it."""
    sleeps_at: Callable[[Any], float | None] = lambda _dep: None
    """When a running deployment goes to sleep if it stays idle (unix time), or None."""

    def close(self) -> None:
        self.db.close()


def proxy_config(settings: Settings) -> ProxyConfig:
    return ProxyConfig.from_settings(settings)


def build_context(settings: Settings, *, migrate: bool = True) -> Context:
    """The context of one server (or command), migrating the database first unless told not to."""
    url = settings.effective_database_url
    if migrate:
        upgrade(url)
    bus = Bus()
    db = Database(url, bus, threads=settings.db_threads, read_threads=settings.db_read_threads, lock_timeout=settings.db_lock_timeout_seconds, sqlite_memory_mb=settings.sqlite_memory_mb)
    return Context(
        settings=settings,
        db=db,
        bus=bus,
        partitions=Partitions.load(settings.partitions_file),
        hasher=KeyHasher(settings.secret_keys),
        box=SecretBox(settings.secret_keys),
        links=DisplayLinks(proxy_config(settings)),
        reads=ReadCache(db.views_probe.read if db.views_probe is not None else None),
    )
