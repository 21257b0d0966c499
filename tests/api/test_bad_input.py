"""Bad input on every field, query parameter and path id: always a 4xx with exactly the Civis
error body naming the field, never a 500, and nothing stored changes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

NAN = object()  # marks a raw (non-standard JSON) body in the tables below


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def assert_civis_error(response: Any, field: str, statuses: tuple[int, ...] = (400,)) -> dict[str, Any]:
    assert response.status_code in statuses, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"error", "errorDescription", "code"}, body
    assert body["code"] == response.status_code
    assert isinstance(body["error"], str) and body["error"]
    description = body["errorDescription"]
    assert isinstance(description, str) and description
    spellings = {field, snake(field)} | {f"{field}".split(".")[-1], snake(field.split(".")[-1])}
    assert any(s.lower() in description.lower() for s in spellings), f"{field!r} not named in {description!r}"
    return body


def state(api: Any) -> list[dict[str, Any]]:
    """Everything the author can see, including shares: compared before and after."""
    studios = api.get("/studios?archived=all&limit=50&order=created_at&order_dir=asc").json()
    return [{"studio": s, "shares": api.get(f"/studios/{s['id']}/shares").json()} for s in studios]


# ----------------------------------------------------------------------------- studio bodies

LONG = "x" * 256
STUDIO_CASES: list[tuple[str, Any, str]] = [
    # (case id, body, the field the error must name)
    ("name-int", {"name": 123}, "name"),
    ("name-empty", {"name": ""}, "name"),
    ("name-long", {"name": LONG}, "name"),
    ("name-list", {"name": ["a"]}, "name"),
    ("image-int", {"dockerImageName": 5}, "dockerImageName"),
    ("image-spaces", {"dockerImageName": "Not An Image!"}, "dockerImageName"),
    ("image-long", {"dockerImageName": "a" * 300}, "dockerImageName"),
    ("image-object", {"dockerImageName": {"a": 1}}, "dockerImageName"),
    ("tag-int", {"dockerImageTag": 5}, "dockerImageTag"),
    ("tag-space", {"dockerImageTag": "bad tag"}, "dockerImageTag"),
    ("tag-dash", {"dockerImageTag": "-bad"}, "dockerImageTag"),
    ("tag-long", {"dockerImageTag": "a" * 200}, "dockerImageTag"),
    ("tag-empty", {"dockerImageTag": ""}, "dockerImageTag"),
    ("type-int", {"instanceType": 5}, "instanceType"),
    ("type-unknown", {"instanceType": "gigantic"}, "instanceType"),
    ("type-long", {"instanceType": "a" * 300}, "instanceType"),
    ("resources-string", {"requiredResources": "big"}, "requiredResources"),
    ("resources-list", {"requiredResources": [1]}, "requiredResources"),
    ("resources-unknown-key", {"requiredResources": {"gpu": 1}}, "requiredResources.gpu"),
    ("memory-negative", {"requiredResources": {"memory": -1}}, "requiredResources.memory"),
    ("memory-zero", {"requiredResources": {"memory": 0}}, "requiredResources.memory"),
    ("memory-string", {"requiredResources": {"memory": "1G"}}, "requiredResources.memory"),
    ("memory-fraction", {"requiredResources": {"memory": 1.5}}, "requiredResources.memory"),
    ("memory-bool", {"requiredResources": {"memory": True}}, "requiredResources.memory"),
    ("memory-absurd", {"requiredResources": {"memory": 10**30}}, "requiredResources.memory"),
    ("memory-over-type", {"requiredResources": {"memory": 100_000}}, "requiredResources.memory"),
    ("cpu-negative", {"requiredResources": {"cpu": -5}}, "requiredResources.cpu"),
    ("cpu-zero", {"requiredResources": {"cpu": 0}}, "requiredResources.cpu"),
    ("cpu-string", {"requiredResources": {"cpu": "x"}}, "requiredResources.cpu"),
    ("cpu-absurd", {"requiredResources": {"cpu": 10**15}}, "requiredResources.cpu"),
    ("cpu-over-type", {"requiredResources": {"cpu": 64_000}}, "requiredResources.cpu"),
    ("disk-negative", {"requiredResources": {"diskSpace": -1}}, "requiredResources.diskSpace"),
    ("disk-zero", {"requiredResources": {"diskSpace": 0}}, "requiredResources.diskSpace"),
    ("disk-string", {"requiredResources": {"diskSpace": "lots"}}, "requiredResources.diskSpace"),
    ("disk-absurd", {"requiredResources": {"diskSpace": 1e300}}, "requiredResources.diskSpace"),
    ("disk-over-type", {"requiredResources": {"diskSpace": 500}}, "requiredResources.diskSpace"),
    ("disk-nan", (NAN, '{"requiredResources": {"diskSpace": NaN}}'), "requiredResources.diskSpace"),
    ("disk-infinity", (NAN, '{"requiredResources": {"diskSpace": Infinity}}'), "requiredResources.diskSpace"),
    ("credential-string", {"gitCredentialId": "abc"}, "gitCredentialId"),
    ("credential-negative", {"gitCredentialId": -1}, "gitCredentialId"),
    ("credential-zero", {"gitCredentialId": 0}, "gitCredentialId"),
    ("credential-huge", {"gitCredentialId": 2**40}, "gitCredentialId"),
    ("credential-unknown", {"gitCredentialId": 999}, "gitCredentialId"),
    ("credential-fraction", {"gitCredentialId": 1.5}, "gitCredentialId"),
    ("params-string", {"params": "A=1"}, "params"),
    ("params-object", {"params": {"name": "A", "type": "string"}}, "params"),
    ("params-item-string", {"params": ["A"]}, "params"),
    ("param-name-digit", {"params": [{"name": "1BAD", "type": "string"}]}, "params"),
    ("param-name-space", {"params": [{"name": "A B", "type": "string"}]}, "params"),
    ("param-name-empty", {"params": [{"name": "", "type": "string"}]}, "params"),
    ("param-name-long", {"params": [{"name": "A" * 300, "type": "string"}]}, "params"),
    ("param-name-int", {"params": [{"name": 7, "type": "string"}]}, "params"),
    ("param-name-missing", {"params": [{"type": "string"}]}, "params"),
    ("param-type-missing", {"params": [{"name": "A"}]}, "params"),
    ("param-type-unknown", {"params": [{"name": "A", "type": "secret"}]}, "params"),
    ("param-type-int", {"params": [{"name": "A", "type": 1}]}, "params"),
    ("param-unknown-key", {"params": [{"name": "A", "type": "string", "default": "x"}]}, "params"),
    ("param-duplicate", {"params": [{"name": "A", "type": "string"}, {"name": "A", "type": "integer", "value": "1"}]}, "params"),
    ("param-integer-text", {"params": [{"name": "A", "type": "integer", "value": "abc"}]}, "params"),
    ("param-integer-fraction", {"params": [{"name": "A", "type": "integer", "value": "1.5"}]}, "params"),
    ("param-integer-float-json", {"params": [{"name": "A", "type": "integer", "value": 1.5}]}, "params"),
    ("param-integer-bool-json", {"params": [{"name": "A", "type": "integer", "value": True}]}, "params"),
    ("param-float-text", {"params": [{"name": "A", "type": "float", "value": "abc"}]}, "params"),
    ("param-float-inf", {"params": [{"name": "A", "type": "float", "value": "inf"}]}, "params"),
    ("param-float-nan", {"params": [{"name": "A", "type": "float", "value": "nan"}]}, "params"),
    ("param-bool-text", {"params": [{"name": "A", "type": "bool", "value": "maybe"}]}, "params"),
    ("param-bool-int", {"params": [{"name": "A", "type": "bool", "value": 7}]}, "params"),
    ("param-credential-text", {"params": [{"name": "A", "type": "credential_aws", "value": "key"}]}, "params"),
    ("param-credential-custom-text", {"params": [{"name": "A", "type": "credential_custom", "value": "-3"}]}, "params"),
    ("param-database-text", {"params": [{"name": "A", "type": "database", "value": "prod"}]}, "params"),
    ("param-value-object", {"params": [{"name": "A", "type": "string", "value": {"a": 1}}]}, "params"),
    ("param-value-list", {"params": [{"name": "A", "type": "string", "value": [1]}]}, "params"),
    ("param-value-long", {"params": [{"name": "A", "type": "string", "value": "v" * 70_000}]}, "params"),
    ("param-description-long", {"params": [{"name": "A", "type": "string", "description": "d" * 1001}]}, "params"),
    ("params-too-many", {"params": [{"name": f"P{i}", "type": "string"} for i in range(201)]}, "params"),
    ("git-url-int", {"gitRepoUrl": 5}, "gitRepoUrl"),
    ("git-url-words", {"gitRepoUrl": "not a url"}, "gitRepoUrl"),
    ("git-url-scheme", {"gitRepoUrl": "javascript:alert(1)"}, "gitRepoUrl"),
    ("git-url-long", {"gitRepoUrl": "https://e.com/" + "a" * 3000}, "gitRepoUrl"),
    ("git-ref-int", {"gitRef": 5}, "gitRef"),
    ("git-ref-space", {"gitRef": "bad ref"}, "gitRef"),
    ("git-ref-tilde", {"gitRef": "main~1"}, "gitRef"),
    ("git-ref-long", {"gitRef": "a" * 300}, "gitRef"),
    ("partition-int", {"partitionLabel": 5}, "partitionLabel"),
    ("partition-unknown", {"partitionLabel": "mars"}, "partitionLabel"),
    ("partition-long", {"partitionLabel": "p" * 300}, "partitionLabel"),
    ("unknown-field", {"nmae": "typo"}, "nmae"),
    ("unknown-nested-camel", {"requiredResources": {"diskSpaceGb": 1}}, "diskSpaceGb"),
]

MALFORMED: list[tuple[str, bytes]] = [
    ("truncated", b'{"name": "x"'),
    ("garbage", b"{bad json"),
    ("single-quotes", b"{'name': 'x'}"),
    ("trailing-comma", b'{"name": "x",}'),
    ("not-utf8", b'{"name": "\xff\xfe"}'),
    ("array", b"[]"),
    ("string", b'"studio"'),
    ("number", b"5"),
]


def send(api: Any, method: str, path: str, body: Any) -> Any:
    if isinstance(body, tuple) and body[0] is NAN:
        return api.request(method, path, content=body[1].encode(), headers={"content-type": "application/json"})
    if isinstance(body, bytes):
        return api.request(method, path, content=body, headers={"content-type": "application/json"})
    return api.request(method, path, json=body)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize(("body", "field"), [pytest.param(b, f, id=i) for i, b, f in STUDIO_CASES])
def test_bad_studio_field(shared: Any, method: str, body: Any, field: str) -> None:
    as_author, studio = shared.as_author, shared.studio
    before = state(as_author)
    path = "/studios" if method == "POST" else f"/studios/{studio['id']}"
    assert_civis_error(send(as_author, method, path, body), field)
    assert state(as_author) == before


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("body", [pytest.param(b, id=i) for i, b in MALFORMED])
def test_malformed_studio_body(shared: Any, method: str, body: bytes) -> None:
    as_author, studio = shared.as_author, shared.studio
    before = state(as_author)
    path = "/studios" if method == "POST" else f"/studios/{studio['id']}"
    response = send(as_author, method, path, body)
    assert_civis_error(response, "body")
    assert state(as_author) == before


def test_bad_value_in_snake_case_names_the_field(shared: Any) -> None:
    as_author, studio = shared.as_author, shared.studio
    response = as_author.patch(f"/studios/{studio['id']}", json={"required_resources": {"disk_space": -2}})
    assert_civis_error(response, "requiredResources.diskSpace")


def test_every_valid_param_type_is_accepted(shared: Any) -> None:
    """The other side of the param cases: one good value per type is stored."""
    as_author = shared.as_author
    good = {"string": "s", "multi_line_string": "a\nb", "integer": "-12", "float": "1e3", "bool": "false", "file": "12",
            "table": "schema.table", "database": "3", "credential_aws": "4", "credential_redshift": "5", "credential_custom": "6"}
    params = [{"name": f"P_{t.upper()}", "type": t, "value": v} for t, v in good.items()]
    response = as_author.post("/studios", json={"params": params})
    assert response.status_code == 201, response.text
    assert {p["type"]: p["value"] for p in response.json()["params"]} == good


# ----------------------------------------------------------------------------- archive and shares


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status"),
        ({"status": "yes"}, "status"),
        ({"status": "true"}, "status"),
        ({"status": 1}, "status"),
        ({"status": None}, "status"),
        ({"status": True, "reason": "x"}, "reason"),
        (b"{oops", "body"),
        (b"", "body"),
    ],
    ids=["missing", "word", "string-true", "int", "null", "unknown-key", "malformed", "empty"],
)
def test_bad_archive_body(shared: Any, body: Any, field: str) -> None:
    as_author, studio = shared.as_author, shared.studio
    before = state(as_author)
    assert_civis_error(send(as_author, "PUT", f"/studios/{studio['id']}/archive", body), field)
    assert state(as_author) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"permissionLevel": "read"}, "userIds"),
        ({"userIds": [], "permissionLevel": "read"}, "userIds"),
        ({"userIds": "2", "permissionLevel": "read"}, "userIds"),
        ({"userIds": 2, "permissionLevel": "read"}, "userIds"),
        ({"userIds": ["2"], "permissionLevel": "read"}, "userIds"),
        ({"userIds": [0], "permissionLevel": "read"}, "userIds"),
        ({"userIds": [-1], "permissionLevel": "read"}, "userIds"),
        ({"userIds": [2**40], "permissionLevel": "read"}, "userIds"),
        ({"userIds": [424242], "permissionLevel": "read"}, "userIds"),
        ({"userIds": list(range(1, 1002)), "permissionLevel": "read"}, "userIds"),
        ({"userIds": ["OTHER"]}, "permissionLevel"),
        ({"userIds": ["OTHER"], "permissionLevel": "owner"}, "permissionLevel"),
        ({"userIds": ["OTHER"], "permissionLevel": 3}, "permissionLevel"),
        ({"userIds": ["OTHER"], "permissionLevel": None}, "permissionLevel"),
        ({"userIds": ["OTHER"], "permissionLevel": "read", "sendSharedEmail": "yes"}, "sendSharedEmail"),
        ({"userIds": ["OTHER"], "permissionLevel": "read", "shareEmailBody": "b" * 10_001}, "shareEmailBody"),
        (b"{nope", "body"),
    ],
    ids=["ids-missing", "ids-empty", "ids-string", "ids-int", "ids-string-item", "ids-zero", "ids-negative",
         "ids-huge", "ids-unknown-user", "ids-too-many", "level-missing", "level-unknown", "level-int", "level-null",
         "email-flag-word", "email-body-long", "malformed"],
)
def test_bad_share_body(shared: Any, body: Any, field: str) -> None:
    as_author, studio, other = shared.as_author, shared.studio, shared.other
    if isinstance(body, dict) and body.get("userIds") == ["OTHER"]:
        body = {**body, "userIds": [other.id]}
    before = state(as_author)
    assert_civis_error(send(as_author, "PUT", f"/studios/{studio['id']}/shares/users", body), field)
    assert state(as_author) == before


# ----------------------------------------------------------------------------- query parameters


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=51", "limit"), ("limit=abc", "limit"),
        ("limit=1.5", "limit"), ("limit=" + "9" * 30, "limit"),
        ("page_num=0", "page_num"), ("page_num=-1", "page_num"), ("page_num=x", "page_num"), ("page_num=" + "9" * 30, "page_num"),
        ("order=id", "order"), ("order=name;drop", "order"), ("order=", "order"),
        ("order_dir=up", "order_dir"), ("order_dir=", "order_dir"),
        ("archived=maybe", "archived"), ("archived=" + "t" * 100, "archived"),
        ("author=x", "author"), ("author=1,,2", "author"), ("author=-1", "author"), ("author=" + "9" * 30, "author"),
        ("author=" + ",".join(["1"] * 1500), "author"),
    ],
)
def test_bad_list_query(shared: Any, query: str, field: str) -> None:
    as_author = shared.as_author
    assert_civis_error(as_author.get(f"/studios?{query}"), field)


# ----------------------------------------------------------------------------- path ids

BAD_IDS = ["0", "-1", "abc", "1.5", "2147483648", "99999999999999999999999999", "1e3"]


def path_calls(sid: str, user_id: str = "2") -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"/studios/{sid}", None),
        ("PUT", f"/studios/{sid}", {"name": "n"}),
        ("PATCH", f"/studios/{sid}", {"name": "n"}),
        ("PUT", f"/studios/{sid}/archive", {"status": True}),
        ("GET", f"/studios/{sid}/shares", None),
        ("PUT", f"/studios/{sid}/shares/users", {"userIds": [2], "permissionLevel": "read"}),
        ("DELETE", f"/studios/{sid}/shares/users/{user_id}", None),
    ]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("call", range(7), ids=["get", "put", "patch", "archive", "shares-get", "shares-put", "shares-delete"])
def test_bad_path_id(shared: Any, bad: str, call: int) -> None:
    as_author = shared.as_author
    before = state(as_author)
    method, path, body = path_calls(bad)[call]
    response = as_author.request(method, path, json=body)
    assert_civis_error(response, "id", (400, 404))
    assert state(as_author) == before


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_share_user_id(shared: Any, bad: str) -> None:
    as_author, studio = shared.as_author, shared.studio
    before = state(as_author)
    response = as_author.delete(f"/studios/{studio['id']}/shares/users/{bad}")
    assert_civis_error(response, "user_id", (400, 404))
    assert state(as_author) == before


@pytest.mark.parametrize("call", range(7), ids=["get", "put", "patch", "archive", "shares-get", "shares-put", "shares-delete"])
def test_largest_valid_id_is_a_plain_404(shared: Any, call: int) -> None:
    as_author, other = shared.as_author, shared.other
    method, path, body = path_calls("2147483647", str(other.id))[call]
    body_ = as_author.request(method, path, json=body)
    assert_civis_error(body_, "2147483647", (404,))


def test_error_bodies_are_json_documents(shared: Any) -> None:
    as_author = shared.as_author
    response = as_author.request("POST", "/studios", content=b"{", headers={"content-type": "application/json"})
    assert response.headers["content-type"].startswith("application/json")
    json.loads(response.content)


# ----------------------------------------------------------------------------- values the database may refuse


@pytest.mark.parametrize("author", ["2147483648", "9999999999"])
def test_author_id_beyond_any_user_is_not_a_500(shared: Any, author: str) -> None:
    """IDs are 32-bit: a larger author id matches nobody (200 []) or is refused naming the
    field; it must not reach the database as an out-of-range integer (a 500 on PostgreSQL)."""
    response = shared.as_author.get(f"/studios?author={author}")
    if response.status_code == 200:
        assert response.json() == []
    else:
        assert_civis_error(response, "author")


@pytest.mark.parametrize(
    ("body", "field", "read"),
    [
        ({"name": "a\u0000b"}, "name", lambda s: s["name"]),
        ({"gitRepoUrl": "https://e.com/a\u0000b.git"}, "gitRepoUrl", lambda s: s["gitRepoUrl"]),
        ({"params": [{"name": "A", "type": "string", "value": "a\u0000b"}]}, "params", lambda s: s["params"][0]["value"]),
        ({"params": [{"name": "A", "type": "string", "description": "a\u0000b"}]}, "params", lambda s: s["params"][0]["description"]),
    ],
    ids=["name", "git-url", "param-value", "param-description"],
)
def test_nul_character_is_kept_or_refused_never_a_500(shared: Any, body: dict[str, Any], field: str, read: Any) -> None:
    """PostgreSQL text cannot hold NUL: the same request must behave alike on both databases
    (stored and returned as sent, or a 400 naming the field)."""
    as_author = shared.as_author
    before = state(as_author)
    response = as_author.post("/studios", json=body)
    if response.status_code == 201:
        assert read(response.json()) == "a\u0000b" or read(response.json()).startswith("https://e.com/a\u0000b")
        assert read(as_author.get(f"/studios/{response.json()['id']}").json()) == read(response.json())
    else:
        assert_civis_error(response, field)
        assert state(as_author) == before
