"""The web UI's server side, in process: the page and its assets, signing in with an API key
for a session cookie (its flags, expiry, key rotation and revocation), the CSRF rule (a
cookie alone may read; a change needs the session's token in a header, or nothing happens),
signing out, and the small read-only and wake routes the pages use."""

from __future__ import annotations

import time
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from conftest import TEST_DATABASE_URL, TEST_SECRET
from studios.api.session_cookie import COOKIE, SALT
from studios.services import keys as key_service
from studios.store import deployments as dep_store


def sign_in(api: Any, key: str) -> tuple[str, str]:
    """POST /ui/session; returns (cookie value, CSRF token). The client keeps no cookie."""
    response = api.post("/ui/session", json={"apiKey": key})
    assert response.status_code == 200, response.text
    api.client.cookies.clear()
    cookie = response.cookies[COOKIE]
    return cookie, response.json()["csrfToken"]


def with_cookie(api: Any, cookie: str, csrf: str | None = None) -> Any:
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return api.as_(None).with_headers(headers)


def test_the_page_is_served_at_root_and_under_ui_with_a_strict_policy(api: Any) -> None:
    for path in ("/", "/ui", "/ui/", "/ui/studios/12/deployments/3"):
        response = api.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert '<main id="main"' in response.text
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    script = api.get("/ui/static/js/main.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert api.get("/ui/static/js/nothing-here.js").status_code == 404
    status, _, body = api.raw("GET", "/ui/static/../routes.py")  # sent verbatim, not normalised by the client
    assert status == 404 and b"import" not in body


def test_ui_routes_are_not_in_discovery(api: Any) -> None:
    paths = api.get("/endpoints").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui") or p == "/"]
    listing = paths["/studios/"]["get"]["parameters"]
    assert "name" not in [p["name"] for p in listing]


def test_sign_in_sets_a_signed_httponly_strict_cookie(api: Any, author: Any) -> None:
    response = api.post("/ui/session", json={"apiKey": author.key})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["username"] == author.username and body["csrfToken"]
    set_cookie = response.headers["set-cookie"]
    flags = [f.strip().lower() for f in set_cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert author.key not in set_cookie  # the key itself never travels in the cookie
    api.client.cookies.clear()
    cookie = response.cookies[COOKIE]
    me = with_cookie(api, cookie).get("/ui/session")
    assert me.status_code == 200 and me.json() == body


def test_bad_keys_and_bodies_are_refused_at_sign_in(api: Any, author: Any) -> None:
    wrong = api.post("/ui/session", json={"apiKey": "stu_not-a-key"})
    assert wrong.status_code == 401 and wrong.json()["errorDescription"].startswith("apiKey:")
    assert COOKIE not in wrong.cookies
    empty = api.post("/ui/session", json={"apiKey": ""})
    assert empty.status_code == 400 and empty.json()["errorDescription"].startswith("apiKey")
    # a cross-site HTML form can only send form encodings: refused
    form = api.post("/ui/session", content=f'{{"apiKey": "{author.key}"}}', headers={"Content-Type": "text/plain"})
    assert form.status_code == 400 and COOKIE not in form.cookies
    assert api.get("/ui/session").status_code == 401


def test_a_cookie_reads_but_changes_need_the_csrf_header(api: Any, author: Any) -> None:
    cookie, csrf = sign_in(api, author.key)
    assert with_cookie(api, cookie).get("/studios").status_code == 200

    for token in (None, "", "wrong-token"):
        refused = with_cookie(api, cookie, token).post("/studios", json={"name": "forged"})
        assert refused.status_code == 403, refused.text
        assert "X-CSRF-Token" in refused.json()["errorDescription"]
    assert api.as_(author).get("/studios").json() == []  # nothing was created

    made = with_cookie(api, cookie, csrf).post("/studios", json={"name": "by the page"})
    assert made.status_code == 201, made.text
    # another session's token does not fit this session
    _, other_csrf = sign_in(api, author.key)
    assert with_cookie(api, cookie, other_csrf).patch(f"/studios/{made.json()['id']}", json={"name": "x"}).status_code == 403
    assert api.as_(author).get(f"/studios/{made.json()['id']}").json()["name"] == "by the page"


def test_tampered_foreign_and_expired_cookies_are_refused(api: Any, author: Any) -> None:
    cookie, _ = sign_in(api, author.key)
    tampered = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    foreign = URLSafeTimedSerializer("another-secret", salt=SALT).dumps(URLSafeTimedSerializer(TEST_SECRET, salt=SALT).loads(cookie))

    class Yesterday(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 86_400

    expired = URLSafeTimedSerializer(TEST_SECRET, salt=SALT, signer=Yesterday).dumps(URLSafeTimedSerializer(TEST_SECRET, salt=SALT).loads(cookie))
    for bad in (tampered, foreign, expired, "garbage"):
        response = with_cookie(api, bad).get("/studios")
        assert response.status_code == 401, bad
        assert "sign in again" in response.json()["errorDescription"]
    assert with_cookie(api, cookie).get("/studios").status_code == 200


def test_revoking_the_key_ends_its_sessions(api: Any, ctx: Any, author: Any, make_key: Any) -> None:
    key, key_id = make_key(author)
    cookie, _ = sign_in(api, key)
    assert with_cookie(api, cookie).get("/studios").status_code == 200
    with ctx.db.writing() as session:
        assert key_service.revoke(session, ctx.hasher, key_id)
    assert with_cookie(api, cookie).get("/studios").status_code == 401
    assert with_cookie(api, cookie).get("/ui/session").status_code == 401


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="reads are kept on SQLite only")
def test_a_pages_repeated_reads_are_answered_without_the_database(api: Any, ctx: Any, author: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI's reads (a cookie, no key) use the read model as a key's do: after the first read,
    the studio and the list come from memory, and say what a key's reads say."""
    studio = api.as_(author).post("/studios", json={"name": "from the page"}).json()
    cookie, _ = sign_in(api, author.key)
    page = with_cookie(api, cookie)
    assert page.get(f"/studios/{studio['id']}").json()["name"] == "from the page"
    calls: list[str] = []
    for name in ("run", "fast_read"):
        real = getattr(ctx.db, name)

        async def counted(fn: Any, real: Any = real, name: str = name) -> Any:
            calls.append(name)
            return await real(fn)

        monkeypatch.setattr(ctx.db, name, counted)
    page.get("/studios")  # its first read
    calls.clear()
    for _ in range(3):
        assert page.get(f"/studios/{studio['id']}").json() == api.as_(author).get(f"/studios/{studio['id']}").json()
        assert [s["id"] for s in page.get("/studios").json()] == [studio["id"]]
    assert calls == [], calls


@pytest.mark.parametrize("settings_overrides", [{"secret_key": f"brand-new-key,{TEST_SECRET}"}])
def test_sessions_signed_with_an_older_key_survive_rotation(api: Any, author: Any) -> None:
    old = URLSafeTimedSerializer(TEST_SECRET, salt=SALT).dumps([key_service.KeyHasher(["brand-new-key"]).hash(author.key), "old-token"])
    assert with_cookie(api, old).get("/studios").status_code == 200
    assert with_cookie(api, old, "old-token").post("/studios", json={"name": "after rotation"}).status_code == 201
    cookie, _ = sign_in(api, author.key)  # new sessions are signed with the newest key
    URLSafeTimedSerializer("brand-new-key", salt=SALT).loads(cookie)


def test_sign_out_needs_the_token_and_clears_the_cookie(api: Any, author: Any) -> None:
    cookie, csrf = sign_in(api, author.key)
    assert with_cookie(api, cookie).delete("/ui/session").status_code == 403
    out = with_cookie(api, cookie, csrf).delete("/ui/session")
    assert out.status_code == 204
    cleared = out.headers["set-cookie"].lower()
    assert cleared.startswith(f"{COOKIE}=") and "max-age=0" in cleared


def test_an_api_key_still_wins_over_a_cookie(api: Any, author: Any, other: Any) -> None:
    cookie, _ = sign_in(api, author.key)
    mixed = api.as_(other).with_headers({"Cookie": f"{COOKIE}={cookie}"})
    assert mixed.get("/users/me").json()["username"] == other.username
    # and with a key, no CSRF header is needed (scripts and the civis client are unaffected)
    assert mixed.post("/studios", json={"name": "by key"}).status_code == 201


def test_search_by_name_is_case_insensitive_and_literal(api: Any, author: Any, other: Any) -> None:
    as_author = api.as_(author)
    for name in ("Sales dashboard", "sales_2024", "Marketing 100%", "Ops"):
        assert as_author.post("/studios", json={"name": name}).status_code == 201
    api.as_(other).post("/studios", json={"name": "Other's sales"})

    def names(query: str) -> list[str]:
        response = as_author.get("/studios", params={"name": query, "order": "name", "order_dir": "asc"})
        assert response.status_code == 200, response.text
        return [s["name"] for s in response.json()]

    assert names("SALES") == ["Sales dashboard", "sales_2024"]  # not the other user's
    assert names("s_") == ["sales_2024"]  # _ is a character, not a wildcard
    assert names("100%") == ["Marketing 100%"]
    assert names("%") == ["Marketing 100%"]
    assert names("  ") == ["Marketing 100%", "Ops", "Sales dashboard", "sales_2024"]
    page = as_author.get("/studios", params={"name": "sales", "limit": 1})
    assert page.headers["x-pagination-total-entries"] == "2"
    assert as_author.get("/studios", params={"name": "a\x00b"}).status_code == 400


def test_partitions_need_a_caller_and_list_instance_types(api: Any, author: Any) -> None:
    assert api.get("/ui/partitions").status_code == 401
    body = api.as_(author).get("/ui/partitions").json()
    assert body["defaultPartition"] == "default"
    (default,) = body["partitions"]
    assert default["defaultInstanceType"] == "small"
    assert {"name": "medium", "cpu": 2000, "memory": 8192, "diskSpace": 32.0} in default["instanceTypes"]


def test_wake_starts_a_sleeping_deployment_for_a_viewer_only(api: Any, ctx: Any, author: Any, other: Any) -> None:
    as_author = api.as_(author)
    sid = as_author.post("/studios", json={"name": "sleepy", "dockerImageName": "no-such-image-for-the-process-runtime"}).json()["id"]
    with ctx.db.writing() as session:
        dep = dep_store.create(session, {"studio_id": sid, "user_id": author.id, "name": "sleepy", "runtime": "process", "state": "sleeping", "state_message": "sleeping", "docker_image_name": "no-such-image-for-the-process-runtime", "docker_image_tag": "latest", "params": []})
        session.commit()
        did = dep.id
    path = f"/ui/studios/{sid}/deployments/{did}/wake"
    assert api.as_(other).post(path).status_code == 404  # no access: as if it did not exist
    woke = as_author.post(path)
    assert woke.status_code == 200, woke.text
    assert woke.json()["state"] == "pending" and woke.json()["stateMessage"] == "waking up"
    assert as_author.post(path).status_code == 409  # no longer sleeping
    logs = as_author.get(f"/studios/{sid}/deployments/{did}/logs").json()
    assert "waking up: the display URL was opened" in [line["message"] for line in logs]


def test_every_ui_asset_ships_in_the_package() -> None:
    """Each file under ui/static matches a package-data pattern of pyproject.toml (else an
    installed wheel would serve a page without it)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["studios"]
    package = repo / "src" / "studios"
    files = [p.relative_to(package).as_posix() for p in (package / "ui" / "static").rglob("*") if p.is_file()]
    assert files
    # setuptools' * does not cross a slash
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)]
    assert missing == []
