"""Shared fixtures: a Studios app on a fresh database per test, called in process, and users
with API keys. Generic on purpose: the API, deployment and proxy tests all build on them.

The database is PostgreSQL when `STUDIOS_TEST_DATABASE_URL` is set (a
`postgresql+psycopg://` URL whose role may CREATE DATABASE), else SQLite. Either way each test
starts from an empty, fully migrated schema:

- SQLite: one migrated template file per test session (per xdist worker), copied per test.
- PostgreSQL: one database per xdist worker (`<db>_t_<worker>`), migrated once, every table
  truncated (identities restarted) before each test.

Fixtures (function scope unless said otherwise):

    database_url     str: the fresh database of this test (SQLAlchemy URL).
    settings_overrides  dict: extra `Settings` fields; override it in a module or conftest
                     (e.g. `{"runtime": "process"}`) to change how `settings` is built.
    settings         studios.settings.Settings(data_dir=<tmp>/data, database_url=..., secret_key=...,
                     runtime="process").
    ctx              studios.context.Context built from `settings` (schema already migrated);
                     its engine is disposed after the test.
    app              FastAPI app: `create_app(ctx=ctx)`; its lifespan runs for the test.
    api              Api: a synchronous client calling `app` in process through
                     `httpx.AsyncClient(transport=httpx.ASGITransport(app))`, no credentials.
                     `api.as_(user)` gives one that authenticates as `user` (Bearer);
                     `api.raw(method, path, ...)` sends a path verbatim (e.g. `//studios/1`).
    make_user        make_user(username, *, admin=False, name=None) -> TestUser(id, username,
                     name, is_admin, key, key_id); created with the store and
                     `services.keys.mint`, committed.
    author, other, admin   three TestUsers: two plain users and an admin.
    make_key         make_key(user) -> (key, key_id): another key for the user.

Session-scoped factories, for fixtures of a wider scope:

    fresh_database   fresh_database(directory) -> URL of an empty migrated database.
    open_env         open_env(directory, **settings_overrides) -> context manager of an Env
                     (settings, ctx, app, api, make_user) on a fresh database.

Helpers importable by other test modules: `TestUser`, `Api`, `basic_auth(key)`,
`bearer_auth(key)`, `free_port()`, `wait_until(condition, timeout, what)`,
`TEST_DATABASE_URL` (the URL above, or None), and `pg_database(suffix)`: a context manager of
the URL of a new, empty (unmigrated) PostgreSQL database `<db>_<suffix>_<worker>`, made with
`TEST_DATABASE_URL`'s role and dropped afterwards (only when `TEST_DATABASE_URL` is set).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from studios.app import build_context, create_app
from studios.context import Context
from studios.db.engine import upgrade
from studios.db.models import Base
from studios.runtimes.base import RuntimeSettings
from studios.runtimes.docker.runtime import DockerSettings
from studios.runtimes.process.runtime import ProcessSettings
from studios.services import keys as key_service
from studios.settings import Settings
from studios.store import users as user_store

TEST_DATABASE_URL = os.environ.get("STUDIOS_TEST_DATABASE_URL") or None
DATABASE_ONLY = os.environ.get("STUDIOS_TEST_DATABASE_ONLY") == "1"
"""Set by scripts/test for its second (PostgreSQL) run: run only the tests whose outcome can
depend on the database; the others ran in the first (SQLite) run, on the same code."""
_SERVER_NAMES = ("StudiosServer", "studios_server")
"""Names a module that starts real `studios serve` processes imports (tests/contract/server.py)."""
_DATABASE_NAMES = (*_SERVER_NAMES, "pg_database", "TEST_DATABASE_URL")


def uses_database(item: pytest.Item) -> bool:
    """True if the test reaches a database: through the fixtures (`database_url` and all
    that build on it), or a module that starts real servers or its own PostgreSQL database,
    unless it is marked `database_neutral`."""
    if item.get_closest_marker("database_neutral") is not None:
        return False
    if "_database_template" in getattr(item, "fixturenames", ()):
        return True
    module = getattr(item, "module", None)
    return module is not None and any(name in vars(module) for name in _DATABASE_NAMES)


_LONG_MARKERS = ("browser", "docker", "swarm")


def runs_long(item: pytest.Item) -> bool:
    """True if the test drives real workloads or servers (a browser, Docker, the swarm, a
    `studios serve` of its own): seconds to tens of seconds, against milliseconds for most."""
    if any(item.get_closest_marker(name) is not None for name in _LONG_MARKERS):
        return True
    module = getattr(item, "module", None)
    return module is not None and any(name in vars(module) for name in _SERVER_NAMES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if DATABASE_ONLY:
        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            (kept if uses_database(item) else dropped).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    # The modules with long tests first, each module's tests still together and in order
    # (module-scoped fixtures start once): scripts/test's workers (xdist's worksteal) then end
    # together on the quick ones, instead of one worker running a long test alone at the end.
    # Every worker sorts the same collection the same way, as xdist requires.
    long_modules = {item.nodeid.split("::")[0] for item in items if runs_long(item)}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in long_modules)


TEST_SECRET = "test-secret-key-not-for-production"


# ----------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.02) -> Any:
    """Call `condition()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def bearer_auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic_auth(key: str) -> dict[str, str]:
    """What the civis Python client sends: the key as user name, an empty password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@dataclasses.dataclass(frozen=True)
class TestUser:
    __test__ = False  # not a test class

    id: int
    username: str
    name: str
    is_admin: bool
    key: str
    key_id: int

    @property
    def headers(self) -> dict[str, str]:
        return bearer_auth(self.key)


class Api:
    """A synchronous facade over `httpx.AsyncClient(transport=ASGITransport(app))`.

    Requests run on one event loop (a blocking portal's) shared with the app's lifespan, so
    background tasks the app starts keep running between requests."""

    def __init__(self, portal: Any, client: httpx.AsyncClient, app: Any, headers: dict[str, str] | None = None) -> None:
        self.portal = portal
        self.client = client
        self.app = app
        self.headers = headers or {}

    def as_(self, user: TestUser | None, *, basic: bool = False) -> Api:
        if user is None:
            return Api(self.portal, self.client, self.app)
        return Api(self.portal, self.client, self.app, basic_auth(user.key) if basic else bearer_auth(user.key))

    def with_headers(self, headers: dict[str, str]) -> Api:
        return Api(self.portal, self.client, self.app, {**self.headers, **headers})

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **(kwargs.pop("headers", None) or {})}
        return self.portal.call(lambda: self.client.request(method, path, headers=headers, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def raw(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send `path` to the app verbatim (no URL parsing: `//studios/1` stays as it is)."""
        all_headers = {**self.headers, **(headers or {})}
        if body:
            all_headers.setdefault("content-type", "application/json")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in {**all_headers, "host": "testserver", "content-length": str(len(body))}.items()],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
            "state": {},
        }
        result: dict[str, Any] = {"headers": {}, "body": b""}

        async def run() -> None:
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await anyio.sleep_forever()
                return {"type": "http.disconnect"}  # pragma: no cover

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    result["status"] = message["status"]
                    result["headers"] = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
                elif message["type"] == "http.response.body":
                    result["body"] += message.get("body", b"")

            await self.app(scope, receive, send)

        self.portal.call(run)
        return result["status"], result["headers"], result["body"]


# ----------------------------------------------------------------------------- databases


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_admin_url() -> sa.URL:
    assert TEST_DATABASE_URL is not None
    return make_url(TEST_DATABASE_URL)


@contextlib.contextmanager
def pg_database(suffix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named after the test database; dropped afterwards."""
    admin_url = _pg_admin_url()
    name = f"{admin_url.database}_{suffix}_{_worker()}".lower()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def _database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite: the path of a migrated template file. PostgreSQL: the URL of this worker's
    migrated database."""
    if TEST_DATABASE_URL:
        with pg_database("t") as url:
            upgrade(url)
            yield url
    else:
        path = tmp_path_factory.mktemp("template") / "studios.db"
        upgrade(f"sqlite:///{path}")
        yield str(path)


@pytest.fixture(scope="session")
def _pg_truncate(_database_template: str) -> Iterator[Callable[[], None] | None]:
    if not TEST_DATABASE_URL:
        yield None
        return
    engine = sa.create_engine(_database_template, poolclass=sa.pool.NullPool)
    # The generation counters stay (their row is the migration's; they only ever grow).
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "generations")

    def truncate() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

    yield truncate
    engine.dispose()


@pytest.fixture(scope="session")
def fresh_database(_database_template: str, _pg_truncate: Callable[[], None] | None) -> Callable[[Path], str]:
    """fresh_database(directory) -> URL of an empty migrated database (SQLite: a file in
    `directory`; PostgreSQL: this worker's database, truncated)."""

    def fresh(directory: Path) -> str:
        if _pg_truncate is not None:
            _pg_truncate()
            return _database_template
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "studios.db"
        shutil.copyfile(_database_template, path)
        return f"sqlite:///{path}"

    return fresh


@pytest.fixture
def database_url(fresh_database: Callable[[Path], str], tmp_path: Path) -> str:
    return fresh_database(tmp_path)


# ----------------------------------------------------------------------------- app


RUNTIME_OVERRIDES = {"image_commands": ("process", "image_commands"), "process_run_as": ("process", "run_as"), "process_apps_dir": ("process", "apps_dir"), "docker_url": ("docker", "url")}
"""Overrides that are runtimes' settings, not the service's: `settings_overrides` may name them."""


def test_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    # The process runtime by default: no Docker probe per test; override with settings_overrides.
    values: dict[str, Any] = {"data_dir": data_dir, "database_url": database_url, "secret_key": TEST_SECRET, "runtime": "process", "proxy_port": free_port()}
    service = {k: v for k, v in overrides.items() if k not in RUNTIME_OVERRIDES}
    return Settings(**{**values, **service})


def runtime_settings(overrides: dict[str, Any]) -> dict[str, RuntimeSettings]:
    """Each runtime's settings for a test: its defaults plus what `overrides` names."""
    # Tests are one person's: apps run as the service's user unless a test asks for authors'
    # own users (tests/deployments/test_isolation.py, the contract suite's process-users kind).
    fields: dict[str, dict[str, Any]] = {"process": {"run_as": "service"}, "docker": {}}
    for key, value in overrides.items():
        if key in RUNTIME_OVERRIDES:
            runtime, field = RUNTIME_OVERRIDES[key]
            fields[runtime][field] = value
    return {"process": ProcessSettings(**fields["process"]), "docker": DockerSettings(**fields["docker"])}


@contextlib.contextmanager
def running_api(app: Any) -> Iterator[Api]:
    """An `Api` on `app`, its lifespan entered on the portal's event loop."""
    with anyio.from_thread.start_blocking_portal() as portal:
        lifespan = portal.wrap_async_context_manager(app.router.lifespan_context(app))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver")
        with lifespan:
            try:
                yield Api(portal, client, app)
            finally:
                portal.call(client.aclose)


def user_maker(ctx: Context) -> Callable[..., TestUser]:
    def make(username: str, *, admin: bool = False, name: str | None = None) -> TestUser:
        with ctx.db.writing() as session:
            user = user_store.create(session, username, name or username.title(), f"{username}@example.com", admin)
            key = key_service.mint(session, ctx.hasher, user.id, "test")
            key_id = user_store.keys_of(session, user.id)[-1].id
            session.commit()
            return TestUser(user.id, user.username, user.name, user.is_admin, key, key_id)

    return make


@dataclasses.dataclass
class Env:
    settings: Settings
    ctx: Context
    app: Any
    api: Api
    make_user: Callable[..., TestUser]


@pytest.fixture(scope="session")
def open_env(fresh_database: Callable[[Path], str]) -> Callable[..., contextlib.AbstractContextManager[Env]]:
    """open_env(directory, **settings_overrides) -> context manager of an `Env` (settings,
    ctx, app, api, make_user) on a fresh database: for fixtures of a wider scope than a test
    (e.g. one app shared by many read-only parametrized cases)."""

    @contextlib.contextmanager
    def open_(directory: Path, **overrides: Any) -> Iterator[Env]:
        settings = test_settings(directory / "data", fresh_database(directory), **overrides)
        context = build_context(settings, migrate=False)
        try:
            application = create_app(ctx=context, runtime_settings=runtime_settings(overrides))
            with running_api(application) as client:
                yield Env(settings, context, application, client, user_maker(context))
        finally:
            context.close()

    return open_


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return test_settings(tmp_path / "data", database_url, **settings_overrides)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    context = build_context(settings, migrate=False)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def app(ctx: Context, settings_overrides: dict[str, Any]) -> Any:
    return create_app(ctx=ctx, runtime_settings=runtime_settings(settings_overrides))


@pytest.fixture
def api(app: Any) -> Iterator[Api]:
    with running_api(app) as client:
        yield client


@pytest.fixture
def make_key(ctx: Context) -> Callable[[TestUser], tuple[str, int]]:
    def make(user: TestUser) -> tuple[str, int]:
        with ctx.db.writing() as session:
            key = key_service.mint(session, ctx.hasher, user.id, f"test-{uuid.uuid4().hex[:6]}")
            key_id = user_store.keys_of(session, user.id)[-1].id
            session.commit()
        return key, key_id

    return make


@pytest.fixture
def make_user(ctx: Context) -> Callable[..., TestUser]:
    return user_maker(ctx)


@pytest.fixture
def author(make_user: Callable[..., TestUser]) -> TestUser:
    return make_user("ann", name="Ann Author")


@pytest.fixture
def other(make_user: Callable[..., TestUser]) -> TestUser:
    return make_user("otto", name="Otto Other")


@pytest.fixture
def admin(make_user: Callable[..., TestUser]) -> TestUser:
    return make_user("ada", admin=True, name="Ada Admin")
