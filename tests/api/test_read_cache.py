"""The API's kept reads (`studios.services.read_cache`): a GET answered from what an earlier GET
read must still show every change committed before it, by anyone: another connection standing
in for another process (the admin commands, a second server on the same file) writes here,
without this server's code or events. On PostgreSQL nothing is kept and the same assertions
hold; the cases that count database reads run on SQLite only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from conftest import TEST_DATABASE_URL
from studios.store.studios import SUMMARY_COLUMNS

sqlite_only = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="reads are kept on SQLite only")


@pytest.fixture
def elsewhere(database_url: str) -> Iterator[Engine]:
    """A connection pool of its own on the same database: writes the server does not make."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def write(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def add_deployment(engine: Engine, studio_id: int, user_id: int, state: str = "sleeping") -> int:
    """A deployment row as another server would store it ("sleeping": the engine leaves it be)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO deployments (studio_id, user_id, name, docker_image_tag, params, state, state_message, log_lines, logs_dropped, log_seq, created_at, updated_at)"
                " VALUES (:sid, :uid, 'dep', 'latest', '[]', :state, 'asleep', 0, 0, 0, :now, :now)"
            ),
            {"sid": studio_id, "uid": user_id, "state": state, "now": now},
        )
        return int(conn.execute(text("SELECT max(id) FROM deployments")).scalar_one())


def test_a_change_made_elsewhere_shows_on_the_next_get(as_author: Any, author: Any, studio: dict[str, Any], elsewhere: Engine) -> None:
    path = f"/studios/{studio['id']}"
    for _ in range(3):  # kept after the first
        assert as_author.get(path).json()["name"] == "Sales dashboard"
    write(elsewhere, "UPDATE studios SET name = 'Renamed elsewhere' WHERE id = :id", id=studio["id"])
    assert as_author.get(path).json()["name"] == "Renamed elsewhere"
    write(elsewhere, "UPDATE users SET name = 'Ann Renamed' WHERE id = :id", id=author.id)
    assert as_author.get(path).json()["author"]["name"] == "Ann Renamed"
    assert as_author.get(path).json()["mostRecentDeployment"] is None
    dep_id = add_deployment(elsewhere, studio["id"], author.id)
    assert as_author.get(path).json()["mostRecentDeployment"]["deploymentId"] == dep_id


WIRE_NAMES = {
    "studio_id": None, "id": None, "user_id": None, "created_at": "createdAt", "updated_at": "updatedAt",
    "name": "name", "docker_image_name": "dockerImageName", "docker_image_tag": "dockerImageTag", "instance_type": "instanceType",
    "memory": "memory", "cpu": "cpu", "state": "state", "state_message": "stateMessage", "max_memory_usage": "maxMemoryUsage", "max_cpu_usage": "maxCpuUsage",
}
NEW_VALUES = {"memory": 777, "cpu": 333, "max_memory_usage": 123.5, "max_cpu_usage": 42.0, "state": "terminated", "updated_at": datetime(2031, 1, 2, 3, 4, 5), "created_at": datetime(2030, 1, 2, 3, 4, 5)}
SHOWN = [c.name for c in SUMMARY_COLUMNS if WIRE_NAMES[c.name] is not None]


@pytest.mark.parametrize("column", SHOWN)
def test_every_shown_deployment_column_changed_elsewhere_shows(column: str, as_author: Any, author: Any, studio: dict[str, Any], elsewhere: Engine) -> None:
    """Each column of a deployment's summary, changed by another writer, is new on the next
    GET of its studio, of the list's page and of the deployment itself (a shown column the
    views generation missed would not be)."""
    dep_id = add_deployment(elsewhere, studio["id"], author.id)
    path, wire = f"/studios/{studio['id']}", WIRE_NAMES[column]
    own = f"{path}/deployments/{dep_id}"
    before = as_author.get(path).json()["mostRecentDeployment"][wire]
    assert as_author.get("/studios").json()[0]["mostRecentDeployment"][wire] == before
    assert as_author.get(own).json()[wire] == as_author.get(own).json()[wire] == before
    assert as_author.get(f"{path}/deployments").json()[0][wire] == before
    value = NEW_VALUES.get(column, f"new {column}")
    write(elsewhere, f"UPDATE deployments SET {column} = :v WHERE id = :id", v=value, id=dep_id)
    after = as_author.get(path).json()["mostRecentDeployment"][wire]
    assert after != before
    assert as_author.get("/studios").json()[0]["mostRecentDeployment"][wire] == after
    assert as_author.get(own).json()[wire] == after
    assert as_author.get(f"{path}/deployments").json()[0][wire] == after


def test_a_deployment_added_elsewhere_shows_on_the_next_page_of_deployments(as_author: Any, author: Any, studio: dict[str, Any], elsewhere: Engine) -> None:
    path = f"/studios/{studio['id']}/deployments"
    first = add_deployment(elsewhere, studio["id"], author.id)
    for _ in range(2):
        page = as_author.get(path, params={"limit": 1})
        assert [d["deploymentId"] for d in page.json()] == [first] and page.headers["X-Pagination-Total-Entries"] == "1"
    second = add_deployment(elsewhere, studio["id"], author.id)
    page = as_author.get(path, params={"limit": 1})
    assert [d["deploymentId"] for d in page.json()] == [second]
    assert page.headers["X-Pagination-Total-Entries"] == page.headers["X-Pagination-Total-Pages"] == "2"
    assert [d["deploymentId"] for d in as_author.get(path, params={"limit": 1, "page_num": 2}).json()] == [first]


def test_a_revoked_share_is_refused_at_once(as_author: Any, api: Any, other: Any, studio: dict[str, Any], elsewhere: Engine) -> None:
    as_other, path = api.as_(other), f"/studios/{studio['id']}"
    own = f"{path}/deployments/{add_deployment(elsewhere, studio['id'], other.id)}"
    assert as_other.get(path).status_code == as_other.get(own).status_code == 404
    assert as_author.put(f"/studios/{studio['id']}/shares/users", json={"userIds": [other.id], "permissionLevel": "read"}).status_code in (200, 204)
    for _ in range(2):
        assert as_other.get(path).json()["myPermissionLevel"] == "read"
        assert [s["id"] for s in as_other.get("/studios").json()] == [studio["id"]]
        assert as_other.get(own).json()["state"] == "sleeping"
        assert [d["state"] for d in as_other.get(f"{path}/deployments").json()] == ["sleeping"]
    write(elsewhere, "DELETE FROM studio_shares WHERE user_id = :uid", uid=other.id)
    assert as_other.get(path).status_code == 404
    assert as_other.get(own).json()["errorDescription"] == f"Studio {studio['id']} was not found."
    assert as_other.get(f"{path}/deployments").status_code == 404
    assert as_other.get("/studios").json() == []
    assert as_author.get(path).json()["myPermissionLevel"] == "manage"
    assert as_author.get(own).status_code == 200


def test_each_get_signs_its_own_display_url(as_author: Any, author: Any, studio: dict[str, Any], elsewhere: Engine) -> None:
    """A link opens once, so a kept answer must not hand out the same one twice."""
    dep_id = add_deployment(elsewhere, studio["id"], author.id)
    path = f"/studios/{studio['id']}"
    urls = [as_author.get(path).json()["mostRecentDeployment"]["displayUrl"] for _ in range(3)]
    urls += [as_author.get("/studios").json()[0]["mostRecentDeployment"]["displayUrl"] for _ in range(2)]
    urls += [as_author.get(f"{path}/deployments/{dep_id}").json()["displayUrl"] for _ in range(2)]
    assert all(urls) and len(set(urls)) == len(urls)


def unsigned(body: Any) -> Any:
    """A body with each `displayUrl` blanked: every GET signs its own (the test above)."""
    if isinstance(body, list):
        return [unsigned(item) for item in body]
    if isinstance(body, dict):
        return {k: None if k == "displayUrl" else unsigned(v) for k, v in body.items()}
    return body


@sqlite_only
def test_repeated_gets_read_the_database_once(as_author: Any, author: Any, ctx: Any, studio: dict[str, Any], elsewhere: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = ctx.db.fast_read

    async def counted(fn: Any) -> Any:
        reads.append(fn)
        return await real(fn)

    monkeypatch.setattr(ctx.db, "fast_read", counted)
    path = f"/studios/{studio['id']}"
    own = f"{path}/deployments/{add_deployment(elsewhere, studio['id'], author.id)}"
    answers = [unsigned(as_author.get(path).json()) for _ in range(5)]
    pages = [unsigned(as_author.get("/studios").json()) for _ in range(5)]
    deployments = [unsigned(as_author.get(own).json()) for _ in range(5)]
    assert len(reads) == 3, "one read for the studio, one for the page, one for the deployment"
    assert all(a == answers[0] for a in answers) and all(p == pages[0] for p in pages) and all(d == deployments[0] for d in deployments)
    write(elsewhere, "UPDATE deployments SET log_lines = 5")  # nothing a view shows: still kept
    as_author.get(path)
    as_author.get(own)
    assert len(reads) == 3
    write(elsewhere, "UPDATE studios SET git_ref = 'other' WHERE id = :id", id=studio["id"])
    assert as_author.get(path).json()["gitRef"] == "other"
    assert len(reads) == 4


@sqlite_only
def test_a_get_hashes_its_key_once_whether_kept_or_read(as_author: Any, ctx: Any, studio: dict[str, Any], elsewhere: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GET that must read the database names its caller once, as one answered from what was
    kept does (the key's keyed hash is a cost on every request)."""
    hashed = []
    real = ctx.hasher.candidates

    def counted(key: str) -> list[str]:
        hashed.append(None)  # not the key itself: a failing assertion prints the list
        return real(key)

    monkeypatch.setattr(ctx.hasher, "candidates", counted)
    path = f"/studios/{studio['id']}"
    as_author.get(path)  # the key verified and the answer kept: from here on, a hit
    hashed.clear()
    as_author.get(path)
    on_a_hit = len(hashed)
    write(elsewhere, "UPDATE studios SET git_ref = 'other' WHERE id = :id", id=studio["id"])
    hashed.clear()
    assert as_author.get(path).json()["gitRef"] == "other"  # a miss: read again
    assert on_a_hit >= 1 and len(hashed) == on_a_hit
