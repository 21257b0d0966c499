"""Whom a studio can be shared with, and what a refusal tells: an unknown user id is answered
exactly as an id the caller cannot see (an administrator's, for a regular user), so sharing
cannot be used to learn which ids exist beyond the users one can share with."""

from __future__ import annotations

from typing import Any

from conftest import Api, TestUser


def share(api: Api, user: TestUser, studio_id: int, user_ids: list[int], level: str = "read") -> Any:
    return api.as_(user).put(f"/studios/{studio_id}/shares/users", json={"userIds": user_ids, "permissionLevel": level})


def normalised(response: Any, *ids: int) -> tuple[int, dict[str, str], Any]:
    """Status, the headers a client could read, and the body with the given ids blanked."""
    text = response.text
    for user_id in ids:
        text = text.replace(str(user_id), "<id>")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date", "x-ratelimit-remaining", "x-ratelimit-reset")}
    return response.status_code, headers, text


def test_an_unknown_id_is_answered_exactly_as_an_administrators(api: Api, author: TestUser, admin: TestUser) -> None:
    studio = api.as_(author).post("/studios", json={"name": "mine"}).json()
    before = api.as_(author).get(f"/studios/{studio['id']}/shares").json()
    unknown = admin.id + 5  # no such user; as many digits as the admin's id, so lengths compare too
    assert len(str(unknown)) == len(str(admin.id))
    to_unknown = share(api, author, studio["id"], [unknown])
    to_admin = share(api, author, studio["id"], [admin.id])
    assert to_unknown.status_code == 400
    assert to_unknown.json()["errorDescription"] == f"userIds: {unknown} is not a user you can share this studio with."
    assert normalised(to_unknown, unknown) == normalised(to_admin, admin.id)
    # Together, neither is told apart; nothing is stored either way.
    both = share(api, author, studio["id"], sorted([unknown, admin.id]))
    assert both.json()["errorDescription"] == f"userIds: {', '.join(map(str, sorted([unknown, admin.id])))} are not users you can share this studio with."
    assert api.as_(author).get(f"/studios/{studio['id']}/shares").json() == before


def test_one_refused_id_refuses_the_whole_request(api: Api, author: TestUser, other: TestUser) -> None:
    studio = api.as_(author).post("/studios", json={"name": "mine"}).json()
    response = share(api, author, studio["id"], [other.id, 987654])
    assert response.status_code == 400
    [index] = api.as_(author).get(f"/studios/{studio['id']}/shares").json()
    assert [u["id"] for u in index["readers"]["users"]] == []


def test_regular_users_share_with_each_other_and_admins_with_anyone(api: Api, author: TestUser, other: TestUser, admin: TestUser, make_user: Any) -> None:
    studio = api.as_(author).post("/studios", json={"name": "mine"}).json()
    shared = share(api, author, studio["id"], [other.id], "write")
    assert shared.status_code == 200 and [u["id"] for u in shared.json()["writers"]["users"]] == [other.id]
    second_admin = make_user("root2", admin=True)
    by_admin = share(api, admin, studio["id"], [second_admin.id])
    assert by_admin.status_code == 200 and second_admin.id in [u["id"] for u in by_admin.json()["readers"]["users"]]


def test_unsharing_an_unknown_id_is_answered_as_an_id_without_a_share(api: Api, author: TestUser, other: TestUser) -> None:
    studio = api.as_(author).post("/studios", json={"name": "mine"}).json()
    unknown = other.id + 5
    assert len(str(unknown)) == len(str(other.id))
    no_share = api.as_(author).delete(f"/studios/{studio['id']}/shares/users/{other.id}")
    no_user = api.as_(author).delete(f"/studios/{studio['id']}/shares/users/{unknown}")
    assert no_share.status_code == 404
    assert normalised(no_share, other.id) == normalised(no_user, unknown)
