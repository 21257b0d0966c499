"""Who may do what: the author, another user at no access / read / write / manage, and an
admin, across every studio endpoint; and authentication (Basic, Bearer, bad and revoked keys)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from studios.services import keys as key_service

LEVELS = [None, "read", "write", "manage"]
# Expected status for the other user at each level (None: no share at all).
MATRIX: dict[str, dict[str | None, int]] = {
    "get": {None: 404, "read": 200, "write": 200, "manage": 200},
    "put": {None: 404, "read": 403, "write": 200, "manage": 200},
    "patch": {None: 404, "read": 403, "write": 200, "manage": 200},
    "archive": {None: 404, "read": 403, "write": 200, "manage": 200},
    "shares_get": {None: 404, "read": 200, "write": 200, "manage": 200},
    "shares_put": {None: 404, "read": 403, "write": 403, "manage": 200},
    "shares_delete": {None: 404, "read": 403, "write": 403, "manage": 204},
}


def call(api: Any, endpoint: str, sid: int, third_id: int) -> Any:
    """One request to `endpoint` on studio `sid`; shares act on `third_id`, who has read."""
    if endpoint == "get":
        return api.get(f"/studios/{sid}")
    if endpoint == "put":
        return api.put(f"/studios/{sid}", json={"name": "changed by put"})
    if endpoint == "patch":
        return api.patch(f"/studios/{sid}", json={"name": "changed by patch"})
    if endpoint == "archive":
        return api.put(f"/studios/{sid}/archive", json={"status": True})
    if endpoint == "shares_get":
        return api.get(f"/studios/{sid}/shares")
    if endpoint == "shares_put":
        return api.put(f"/studios/{sid}/shares/users", json={"userIds": [third_id], "permissionLevel": "write"})
    if endpoint == "shares_delete":
        return api.delete(f"/studios/{sid}/shares/users/{third_id}")
    raise AssertionError(endpoint)


def snapshot(api: Any, sid: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    studio = api.get(f"/studios/{sid}").json()
    shares = api.get(f"/studios/{sid}/shares").json()
    return studio, shares


@pytest.fixture
def setup(api: Any, author: Any, other: Any, make_user: Any) -> dict[str, Any]:
    third = make_user("theo", name="Theo Third")
    as_author = api.as_(author)
    sid = as_author.post("/studios", json={"name": "secret plans"}).json()["id"]
    assert as_author.put(f"/studios/{sid}/shares/users", json={"userIds": [third.id], "permissionLevel": "read"}).status_code == 200
    return {"sid": sid, "third": third}


def share_with_other(api: Any, author: Any, other: Any, sid: int, level: str | None) -> None:
    if level is not None:
        response = api.as_(author).put(f"/studios/{sid}/shares/users", json={"userIds": [other.id], "permissionLevel": level})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv or "none")
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_other_user_by_level(api: Any, author: Any, other: Any, setup: dict[str, Any], level: str | None, endpoint: str) -> None:
    sid, third = setup["sid"], setup["third"]
    share_with_other(api, author, other, sid, level)
    before = snapshot(api.as_(author), sid)
    response = call(api.as_(other), endpoint, sid, third.id)
    expected = MATRIX[endpoint][level]
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert set(response.json()) == {"error", "errorDescription", "code"}
        assert response.json()["code"] == expected
        if expected == 404:
            # No access looks exactly like no studio.
            assert response.json()["errorDescription"] == api.as_(other).get("/studios/424242").json()["errorDescription"].replace("424242", str(sid))
        assert snapshot(api.as_(author), sid) == before, "a refused request changed something"
    elif endpoint in ("get", "put", "patch", "archive"):
        assert response.json()["myPermissionLevel"] == level
    if endpoint == "shares_delete" and expected == 204:
        assert api.as_(third).get(f"/studios/{sid}").status_code == 404
        assert response.content == b""


@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv or "none")
def test_list_shows_only_what_the_user_may_read(api: Any, author: Any, other: Any, setup: dict[str, Any], level: str | None) -> None:
    sid = setup["sid"]
    own = api.as_(other).post("/studios", json={"name": "own"}).json()["id"]
    share_with_other(api, author, other, sid, level)
    listed = {s["id"]: s["myPermissionLevel"] for s in api.as_(other).get("/studios?archived=all").json()}
    expected = {own: "manage"} | ({sid: level} if level else {})
    assert listed == expected
    total = api.as_(other).get("/studios").headers["X-Pagination-Total-Entries"]
    assert total == str(len(expected))


@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_admin_manages_everything(api: Any, admin: Any, setup: dict[str, Any], endpoint: str) -> None:
    sid, third = setup["sid"], setup["third"]
    response = call(api.as_(admin), endpoint, sid, third.id)
    assert response.status_code == MATRIX[endpoint]["manage"], response.text
    if endpoint in ("get", "put", "patch", "archive"):
        assert response.json()["myPermissionLevel"] == "manage"


def test_admin_lists_every_studio(api: Any, admin: Any, author: Any, other: Any) -> None:
    ids = {api.as_(u).post("/studios", json={}).json()["id"] for u in (author, other)}
    assert {s["id"] for s in api.as_(admin).get("/studios").json()} == ids
    assert {s["id"] for s in api.as_(author).get("/studios").json()} < ids


@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_author_does_everything(api: Any, author: Any, setup: dict[str, Any], endpoint: str) -> None:
    response = call(api.as_(author), endpoint, setup["sid"], setup["third"].id)
    assert response.status_code == MATRIX[endpoint]["manage"], response.text


def test_share_index_lists_levels(api: Any, author: Any, other: Any, setup: dict[str, Any]) -> None:
    sid, third = setup["sid"], setup["third"]
    share_with_other(api, author, other, sid, "write")
    [index] = api.as_(author).get(f"/studios/{sid}/shares").json()
    assert [u["id"] for u in index["owners"]["users"]] == [author.id]
    assert [u["id"] for u in index["writers"]["users"]] == [other.id]
    assert [u["id"] for u in index["readers"]["users"]] == [third.id]
    assert index["totalUserShares"] == 3 and index["totalGroupShares"] == 0
    # Changing a level moves the user; it does not add a second share.
    share_with_other(api, author, other, sid, "read")
    [index] = api.as_(author).get(f"/studios/{sid}/shares").json()
    assert sorted(u["id"] for u in index["readers"]["users"]) == sorted([other.id, third.id])
    assert index["writers"]["users"] == [] and index["totalUserShares"] == 3


def test_manager_may_grant_manage_and_the_grantee_may_share(api: Any, author: Any, other: Any, make_user: Any, setup: dict[str, Any]) -> None:
    sid = setup["sid"]
    share_with_other(api, author, other, sid, "manage")
    fourth = make_user("fay")
    assert api.as_(other).put(f"/studios/{sid}/shares/users", json={"userIds": [fourth.id], "permissionLevel": "read"}).status_code == 200
    assert api.as_(fourth).get(f"/studios/{sid}").json()["myPermissionLevel"] == "read"


def test_unshare_then_no_access(api: Any, author: Any, other: Any, setup: dict[str, Any]) -> None:
    sid = setup["sid"]
    share_with_other(api, author, other, sid, "write")
    assert api.as_(author).delete(f"/studios/{sid}/shares/users/{other.id}").status_code == 204
    assert api.as_(other).get(f"/studios/{sid}").status_code == 404
    again = api.as_(author).delete(f"/studios/{sid}/shares/users/{other.id}")
    assert again.status_code == 404 and set(again.json()) == {"error", "errorDescription", "code"}


def test_author_keeps_manage(api: Any, author: Any, other: Any, setup: dict[str, Any]) -> None:
    sid = setup["sid"]
    share_with_other(api, author, other, sid, "manage")
    demote = api.as_(other).put(f"/studios/{sid}/shares/users", json={"userIds": [author.id], "permissionLevel": "read"})
    assert demote.status_code == 400
    remove = api.as_(other).delete(f"/studios/{sid}/shares/users/{author.id}")
    assert remove.status_code == 400
    assert api.as_(author).get(f"/studios/{sid}").json()["myPermissionLevel"] == "manage"


# ----------------------------------------------------------------------------- authentication


def test_bearer_and_basic_both_work(api: Any, author: Any) -> None:
    assert api.as_(author).get("/users/me").json()["id"] == author.id
    assert api.as_(author, basic=True).get("/users/me").json()["id"] == author.id


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer stu_not-a-real-key",
        "Bearer ",
        "Basic " + base64.b64encode(b"stu_wrong:").decode(),
        "Basic not-base64!!",
        "Basic " + base64.b64encode(b":").decode(),
        "Token abc",
        "Bearer",
    ],
    ids=["missing", "unknown-bearer", "empty-bearer", "unknown-basic", "bad-base64", "empty-basic", "other-scheme", "bare-bearer"],
)
@pytest.mark.parametrize("path", ["/users/me", "/studios", "/studios/1"])
def test_401_carries_www_authenticate(api: Any, header: str | None, path: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = api.get(path, headers=headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    body = response.json()
    assert set(body) == {"error", "errorDescription", "code"} and body["code"] == 401


def test_401_on_writes_changes_nothing(api: Any, author: Any) -> None:
    assert api.post("/studios", json={"name": "anon"}).status_code == 401
    assert api.as_(author).get("/studios").json() == []
    assert api.as_(author).get("/studios").headers["X-Pagination-Total-Entries"] == "0"


def test_revoked_key_is_refused_and_other_keys_still_work(api: Any, ctx: Any, author: Any, make_key: Any) -> None:
    second_key, _ = make_key(author)
    assert api.as_(author).get("/users/me").status_code == 200
    with ctx.db.writing() as session:
        assert key_service.revoke(session, ctx.hasher, author.key_id)
    revoked = api.as_(author).get("/users/me")
    assert revoked.status_code == 401 and "WWW-Authenticate" in revoked.headers
    assert api.get("/users/me", headers={"Authorization": f"Bearer {second_key}"}).json()["id"] == author.id
