"""`/studios` as a user sees it: create, get, replace, update, archive, list and paginate,
the paths and bodies the civis client and CLI send, and `GET /users/me`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .conftest import FULL_BODY

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STUDIO_KEYS = {
    "id", "author", "name", "dockerImageName", "dockerImageTag", "instanceType", "requiredResources",
    "createdAt", "updatedAt", "mostRecentDeployment", "gitCredentialId", "params", "gitRepoId",
    "gitRepoUrl", "gitRef", "partitionLabel", "myPermissionLevel", "archived",
}
SMALL = {"memory": 2048, "cpu": 1000, "diskSpace": 8.0}  # the built-in default partition's default type
MEDIUM = {"memory": 8192, "cpu": 2000, "diskSpace": 32.0}


def create(api: Any, **body: Any) -> dict[str, Any]:
    response = api.post("/studios", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# ----------------------------------------------------------------------------- create / get


def test_post_with_nothing_gives_defaults_and_makes_the_caller_author(as_author: Any, author: Any) -> None:
    response = as_author.post("/studios", json={})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == STUDIO_KEYS
    assert body["author"] == {"id": author.id, "name": "Ann Author", "username": "ann", "initials": "AA", "online": True}
    assert body["myPermissionLevel"] == "manage"
    assert body["dockerImageTag"] == "latest"
    assert body["instanceType"] == "small"
    assert body["requiredResources"] == SMALL
    assert body["name"]  # a default name, never empty
    assert body["mostRecentDeployment"] is None
    assert body["params"] == [] and body["archived"] is False
    assert body["dockerImageName"] is None and body["gitRepoUrl"] is None and body["gitRepoId"] is None
    assert TIME.match(body["createdAt"]) and TIME.match(body["updatedAt"])


def test_post_without_any_body_works_like_an_empty_one(as_author: Any) -> None:
    response = as_author.post("/studios")
    assert response.status_code == 201
    assert response.json()["dockerImageTag"] == "latest"


def test_post_stores_every_attribute_and_get_returns_it(as_author: Any, studio: dict[str, Any]) -> None:
    assert studio["name"] == "Sales dashboard"
    assert studio["dockerImageName"] == "studios-test/busybox"
    assert studio["dockerImageTag"] == "v1.2"
    assert studio["instanceType"] == "medium"
    assert studio["requiredResources"] == {"memory": 4096, "cpu": 1500, "diskSpace": 0.25}
    assert studio["params"] == [
        {"name": "GREETING", "type": "string", "value": "hi", "description": "said first"},
        {"name": "COUNT", "type": "integer", "value": "3", "description": None},
    ]
    assert studio["gitRepoUrl"] == "https://github.com/example/dash.git"
    assert isinstance(studio["gitRepoId"], int)
    assert studio["gitRef"] == "main"
    assert studio["partitionLabel"] == "default"
    fetched = as_author.get(f"/studios/{studio['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == studio


def test_instance_type_alone_brings_its_resources(as_author: Any) -> None:
    assert create(as_author, instanceType="medium")["requiredResources"] == MEDIUM


def test_param_values_of_json_types_are_stored_as_text(as_author: Any) -> None:
    params = [{"name": "N", "type": "integer", "value": 5}, {"name": "F", "type": "float", "value": 0.5}, {"name": "B", "type": "bool", "value": True}]
    body = create(as_author, params=params)
    assert [(p["name"], p["value"]) for p in body["params"]] == [("N", "5"), ("F", "0.5"), ("B", "true")]


def test_same_git_url_gets_the_same_repo_id(as_author: Any) -> None:
    one = create(as_author, gitRepoUrl="https://example.com/a.git")
    two = create(as_author, gitRepoUrl="https://example.com/a.git")
    three = create(as_author, gitRepoUrl="https://example.com/b.git")
    assert one["gitRepoId"] == two["gitRepoId"] != three["gitRepoId"]


def test_get_unknown_studio_is_a_civis_404(as_author: Any) -> None:
    response = as_author.get("/studios/999")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "errorDescription": "Studio 999 was not found.", "code": 404}


# ----------------------------------------------------------------------------- PUT / PATCH


def test_put_replaces_every_attribute_absent_ones_go_to_defaults(as_author: Any, studio: dict[str, Any]) -> None:
    response = as_author.put(f"/studios/{studio['id']}", json={"name": "Only a name"})
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Only a name"
    assert body["dockerImageName"] is None
    assert body["dockerImageTag"] == "latest"
    assert body["instanceType"] == "small" and body["requiredResources"] == SMALL
    assert body["params"] == []
    assert body["gitRepoUrl"] is None and body["gitRef"] is None and body["gitRepoId"] is None
    assert body["partitionLabel"] is None
    assert body["id"] == studio["id"] and body["createdAt"] == studio["createdAt"]
    assert body["updatedAt"] >= studio["updatedAt"]
    assert as_author.get(f"/studios/{studio['id']}").json() == body


def test_put_with_everything_sets_everything(as_author: Any) -> None:
    bare = create(as_author)
    body = as_author.put(f"/studios/{bare['id']}", json=FULL_BODY).json()
    assert {k: body[k] for k in ("name", "dockerImageName", "dockerImageTag", "instanceType", "gitRef", "partitionLabel")} == {
        "name": "Sales dashboard", "dockerImageName": "studios-test/busybox", "dockerImageTag": "v1.2",
        "instanceType": "medium", "gitRef": "main", "partitionLabel": "default",
    }
    assert len(body["params"]) == 2


def test_patch_changes_only_what_is_given(as_author: Any, studio: dict[str, Any]) -> None:
    response = as_author.patch(f"/studios/{studio['id']}", json={"name": "Renamed"})
    assert response.status_code == 200
    body = response.json()
    expected = {**studio, "name": "Renamed", "updatedAt": body["updatedAt"]}
    assert body == expected
    assert as_author.get(f"/studios/{studio['id']}").json() == expected


def test_patch_explicit_null_clears_missing_keeps(as_author: Any, studio: dict[str, Any]) -> None:
    body = as_author.patch(f"/studios/{studio['id']}", json={"gitRef": None, "dockerImageTag": None, "params": None}).json()
    assert body["gitRef"] is None
    assert body["dockerImageTag"] == "latest"  # null restores the default
    assert body["params"] == []
    assert body["gitRepoUrl"] == studio["gitRepoUrl"]
    assert body["name"] == studio["name"]
    assert body["requiredResources"] == studio["requiredResources"]


def test_patch_one_resource_keeps_the_others(as_author: Any, studio: dict[str, Any]) -> None:
    body = as_author.patch(f"/studios/{studio['id']}", json={"requiredResources": {"cpu": 500}}).json()
    assert body["requiredResources"] == {"memory": 4096, "cpu": 500, "diskSpace": 0.25}


def test_patch_empty_body_changes_nothing(as_author: Any, studio: dict[str, Any]) -> None:
    body = as_author.patch(f"/studios/{studio['id']}", json={}).json()
    assert {k: v for k, v in body.items() if k != "updatedAt"} == {k: v for k, v in studio.items() if k != "updatedAt"}


# ----------------------------------------------------------------------------- archive and list


def test_archive_hides_from_default_list_and_unarchive_restores(as_author: Any) -> None:
    kept, gone = create(as_author, name="kept"), create(as_author, name="gone")
    response = as_author.put(f"/studios/{gone['id']}/archive", json={"status": True})
    assert response.status_code == 200 and response.json()["archived"] is True
    assert as_author.get(f"/studios/{gone['id']}").json()["archived"] is True

    def ids(query: str) -> list[int]:
        response = as_author.get(f"/studios{query}")
        assert response.status_code == 200, response.text
        return sorted(s["id"] for s in response.json())

    assert ids("") == [kept["id"]]
    assert ids("?archived=false") == [kept["id"]]
    assert ids("?archived=true") == [gone["id"]]
    assert ids("?archived=True") == [gone["id"]]  # the client may send Python booleans
    assert ids("?archived=all") == sorted([kept["id"], gone["id"]])
    assert ids("?archived=") == [kept["id"]]

    as_author.put(f"/studios/{gone['id']}/archive", json={"status": False})
    assert ids("") == sorted([kept["id"], gone["id"]])


def test_list_author_filter(api: Any, author: Any, other: Any) -> None:
    mine = create(api.as_(author))
    theirs = create(api.as_(other))
    api.as_(other).put(f"/studios/{theirs['id']}/shares/users", json={"userIds": [author.id], "permissionLevel": "read"})
    as_author = api.as_(author)
    assert {s["id"] for s in as_author.get("/studios").json()} == {mine["id"], theirs["id"]}
    assert [s["id"] for s in as_author.get(f"/studios?author={other.id}").json()] == [theirs["id"]]
    assert {s["id"] for s in as_author.get(f"/studios?author={author.id},{other.id}").json()} == {mine["id"], theirs["id"]}
    assert as_author.get("/studios?author=99999").json() == []


def test_list_pagination_limits_and_headers(as_author: Any) -> None:
    made = [create(as_author, name=f"s{i:02d}")["id"] for i in range(23)]
    first = as_author.get("/studios")
    assert first.status_code == 200 and len(first.json()) == 20  # default limit
    assert first.headers["X-Pagination-Per-Page"] == "20"
    assert first.headers["X-Pagination-Current-Page"] == "1"
    assert first.headers["X-Pagination-Total-Pages"] == "2"
    assert first.headers["X-Pagination-Total-Entries"] == "23"
    second = as_author.get("/studios?page_num=2")
    assert len(second.json()) == 3 and second.headers["X-Pagination-Current-Page"] == "2"
    assert sorted(s["id"] for s in first.json() + second.json()) == sorted(made)
    past = as_author.get("/studios?page_num=3")
    assert past.status_code == 200 and past.json() == []
    assert as_author.get("/studios?page_num=999").json() == []
    assert len(as_author.get("/studios?limit=50").json()) == 23
    assert len(as_author.get("/studios?limit=5&page_num=5").json()) == 3
    over = as_author.get("/studios?limit=51")
    assert over.status_code == 400 and "limit" in over.json()["errorDescription"]


@pytest.mark.parametrize("order", ["name", "created_at", "updated_at"])
@pytest.mark.parametrize("order_dir", ["asc", "desc"])
def test_list_order(as_author: Any, order: str, order_dir: str) -> None:
    # Created in an order that differs from name order; then touched to differ in updated_at.
    ids = {name: create(as_author, name=name)["id"] for name in ("b", "c", "a")}
    as_author.patch(f"/studios/{ids['c']}", json={"gitRef": "x"})  # c is now the most recently updated
    names = [s["name"] for s in as_author.get(f"/studios?order={order}&order_dir={order_dir}").json()]
    expected = {"name": ["a", "b", "c"], "created_at": ["b", "c", "a"], "updated_at": ["b", "a", "c"]}[order]
    assert names == (expected if order_dir == "asc" else expected[::-1])


def test_list_default_order_is_updated_at_desc(as_author: Any) -> None:
    ids = [create(as_author, name=n)["id"] for n in ("x", "y", "z")]
    as_author.patch(f"/studios/{ids[0]}", json={"gitRef": "touched"})
    assert [s["name"] for s in as_author.get("/studios").json()] == ["x", "z", "y"]


# ----------------------------------------------------------------------------- paths and bodies


def test_trailing_slash_on_collection_and_item(as_author: Any, studio: dict[str, Any]) -> None:
    response = as_author.post("/studios/", json={"name": "from the CLI"})
    assert response.status_code == 201
    assert as_author.get(f"/studios/{studio['id']}/").json()["id"] == studio["id"]
    assert len(as_author.get("/studios/").json()) == 2


def test_double_leading_slash(as_author: Any, studio: dict[str, Any]) -> None:
    status, _, body = as_author.raw("GET", f"//studios/{studio['id']}")
    assert status == 200 and json.loads(body)["id"] == studio["id"]
    status, _, body = as_author.raw("POST", "//studios/", b'{"name": "double"}')
    assert status == 201 and json.loads(body)["name"] == "double"


def test_empty_json_bodies_on_get_and_delete(api: Any, author: Any, other: Any, studio: dict[str, Any]) -> None:
    as_author = api.as_(author)
    sid = studio["id"]
    assert as_author.request("GET", f"/studios/{sid}", json={}).status_code == 200
    assert as_author.request("GET", "/studios", json={}).status_code == 200
    assert as_author.request("GET", f"/studios/{sid}/shares", json={}).status_code == 200
    assert as_author.request("GET", "/users/me", json={}).status_code == 200
    as_author.put(f"/studios/{sid}/shares/users", json={"userIds": [other.id], "permissionLevel": "read"})
    assert as_author.request("DELETE", f"/studios/{sid}/shares/users/{other.id}", json={}).status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {"docker_image_name": "a/b", "required_resources": {"disk_space": 1.5, "memory": 1000}, "git_ref": "dev", "params": [{"name": "X", "type": "string", "value": "v"}]},
        {"dockerImageName": "a/b", "requiredResources": {"diskSpace": 1.5, "memory": 1000}, "gitRef": "dev", "params": [{"name": "X", "type": "string", "value": "v"}]},
        {"docker_image_name": "a/b", "requiredResources": {"disk_space": 1.5, "memory": 1000}, "gitRef": "dev", "params": [{"name": "X", "type": "string", "value": "v"}]},
    ],
    ids=["snake", "camel", "mixed"],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_snake_camel_and_mixed_keys_at_every_level(as_author: Any, body: dict[str, Any], method: str) -> None:
    path = "/studios" if method == "POST" else f"/studios/{create(as_author)['id']}"
    response = as_author.request(method, path, json=body)
    assert response.status_code in (200, 201), response.text
    got = response.json()
    assert got["dockerImageName"] == "a/b" and got["gitRef"] == "dev"
    assert got["requiredResources"]["diskSpace"] == 1.5 and got["requiredResources"]["memory"] == 1000
    assert got["params"] == [{"name": "X", "type": "string", "value": "v", "description": None}]


def test_snake_case_share_body(api: Any, author: Any, other: Any, studio: dict[str, Any]) -> None:
    response = api.as_(author).put(f"/studios/{studio['id']}/shares/users", json={"user_ids": [other.id], "permission_level": "write"})
    assert response.status_code == 200
    assert api.as_(other).get(f"/studios/{studio['id']}").json()["myPermissionLevel"] == "write"


# ----------------------------------------------------------------------------- users/me


def test_users_me(api: Any, author: Any, admin: Any) -> None:
    me = api.as_(author).get("/users/me")
    assert me.status_code == 200
    body = me.json()
    assert (body["id"], body["username"], body["name"], body["initials"], body["email"]) == (author.id, "ann", "Ann Author", "AA", "ann@example.com")
    assert TIME.match(body["createdAt"])
    assert "admin" not in body["roles"]
    assert "admin" in api.as_(admin).get("/users/me").json()["roles"]


def test_unknown_route_is_a_civis_404(as_author: Any) -> None:
    response = as_author.get("/nothing/here")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "errorDescription", "code"}


def test_wrong_method_is_a_civis_405(as_author: Any, studio: dict[str, Any]) -> None:
    response = as_author.delete(f"/studios/{studio['id']}")
    assert response.status_code == 405
    assert response.json()["code"] == 405


@pytest.mark.parametrize("stored", ["2026-01-02 03:04:05.678901", "2026-01-02 03:04:05"])
def test_times_are_shown_as_stored_to_the_millisecond_in_the_get_and_the_list(as_author: Any, ctx: Any, stored: str) -> None:
    """Views read times straight as their wire text (`CivisTime`); a time written without a
    fraction (by hand, or by another tool) is shown as well as one the service wrote."""
    from sqlalchemy import text

    studio = create(as_author, name="timed")
    with ctx.db.engine.begin() as conn:
        conn.execute(text("UPDATE studios SET created_at = :t, updated_at = :t WHERE id = :id"), {"t": stored, "id": studio["id"]})
    want = "2026-01-02T03:04:05.678Z" if "." in stored else "2026-01-02T03:04:05.000Z"
    got = as_author.get(f"/studios/{studio['id']}").json()
    assert (got["createdAt"], got["updatedAt"]) == (want, want)
    listed = {s["id"]: s for s in as_author.get("/studios", params={"limit": 50}).json()}
    assert listed[studio["id"]]["createdAt"] == want
