"""`GET /studios` keeps the ordered ids of a list between requests (`studios.store.studio_pages`):
a change made through *another* server on the same database (which this server's events never
hear of on SQLite) must show in this server's very next list, in its items and its total."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Api, TestUser, running_api
from studios.app import build_context, create_app
from studios.settings import Settings
from studios.store.studio_pages import StudioPages


@pytest.fixture
def second(settings: Settings, api: Api) -> Iterator[Api]:
    """A second server on the test's database (the `api` fixture's schema is ready)."""
    context = build_context(settings, migrate=False)
    try:
        with running_api(create_app(ctx=context, serve_proxy=False)) as client:
            yield client
    finally:
        context.close()


def listed(api: Api, **params: Any) -> tuple[list[str], int]:
    response = api.get("/studios", params=params)
    assert response.status_code == 200, response.text
    return [s["name"] for s in response.json()], int(response.headers["X-Pagination-Total-Entries"])


def test_changes_through_another_server_show_in_the_next_list(api: Api, second: Api, author: TestUser, other: TestUser) -> None:
    here, there = api.as_(author), second.as_(author)
    for name in ("a", "b", "c"):
        assert here.post("/studios", json={"name": name}).status_code == 201
    assert listed(here, limit=2) == (["c", "b"], 3)  # kept from here on

    made = there.post("/studios", json={"name": "d"}).json()
    assert listed(here, limit=2) == (["d", "c"], 4)

    assert there.put(f"/studios/{made['id']}/archive", json={"status": True}).status_code == 200
    assert listed(here, limit=2) == (["c", "b"], 3)
    assert listed(here, archived="true") == (["d"], 1)

    first = here.get("/studios", params={"order": "name", "order_dir": "asc", "limit": 1}).json()[0]
    assert there.patch(f"/studios/{first['id']}", json={"name": "z"}).status_code == 200
    assert listed(here, order="name", order_dir="asc") == (["b", "c", "z"], 3)
    assert listed(here, page_num=2, limit=2) == (["b"], 3)  # "z" was updated last: it leads

    theirs = api.as_(other)
    assert listed(theirs) == ([], 0)
    assert there.put(f"/studios/{first['id']}/shares/users", json={"userIds": [other.id], "permissionLevel": "read"}).status_code == 200
    assert listed(theirs) == (["z"], 1)
    assert there.delete(f"/studios/{first['id']}/shares/users/{other.id}").status_code == 204
    assert listed(theirs) == ([], 0)


def test_the_kept_lists_stay_within_their_budget(api: Api) -> None:
    pages = StudioPages(budget=10)
    ctx = api.app.state.ctx
    queried: list[str] = []

    def ids(key: str, count: int) -> list[int]:
        def query() -> list[int]:
            queried.append(key)
            return list(range(count))

        with ctx.db.engine.connect() as conn:
            return pages.ids(conn, key, query).tolist()

    assert ids("six", 6) == list(range(6)) and ids("six", 6) == list(range(6))
    assert queried == ["six"]  # the second came from the kept list
    ids("four", 4)
    ids("five", 5)  # 6 + 4 + 5 > 10: "six", the least recently used, is dropped
    ids("six", 6)
    assert queried == ["six", "four", "five", "six"]
    ids("eleven", 11)  # over the budget on its own: answered, not kept
    ids("eleven", 11)
    assert queried[-2:] == ["eleven", "eleven"]
