"""Request limits (studios/api/ratelimit.py): failed authentications per client address, and
requests per API key with the `X-RateLimit-*` headers the civis client reads."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Api, TestUser, basic_auth, bearer_auth


@contextlib.contextmanager
def from_address(api: Api, address: str) -> Iterator[Api]:
    """An `Api` on the same app whose requests come from `address`."""
    client = httpx.AsyncClient(transport=httpx.ASGITransport(api.app, client=(address, 40000)), base_url="http://testserver")
    try:
        yield Api(api.portal, client, api.app)
    finally:
        api.portal.call(client.aclose)


def assert_429(response: httpx.Response, max_wait: int) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"error", "errorDescription", "code"} and body["code"] == 429 and body["error"] == "too_many_requests"
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= max_wait
    assert f"try again in {wait} s" in body["errorDescription"]
    return wait


def test_500_wrong_keys_are_stopped_after_the_failure_limit(api: Api, author: TestUser) -> None:
    """The acceptance run's attack: 500 wrong keys as fast as they go. With the default of 20
    failures a minute per address, 20 are answered 401 and the other 480 are a 429."""
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    last = None
    for i in range(500):
        last = api.get("/users/me", headers=bearer_auth(f"stu_wrong-{i:04d}"))
        statuses[last.status_code] += 1
    windows = 1 + int((time.monotonic() - started) // 60)  # a machine slow enough to span windows
    assert statuses[401] <= 20 * windows and statuses[401] >= 20, statuses
    assert statuses[401] + statuses[429] == 500, statuses
    assert last is not None
    assert "Too many failed authentications from 127.0.0.1" in last.json()["errorDescription"]
    assert_429(last, 60)
    # Every request from the blocked address waits, a valid key too; another address does not.
    assert_429(api.as_(author).get("/users/me"), 60)
    with from_address(api, "192.0.2.10") as elsewhere:
        assert elsewhere.as_(author).get("/users/me").status_code == 200
        assert elsewhere.get("/users/me", headers=bearer_auth("stu_wrong")).status_code == 401


def test_a_malformed_key_or_a_forged_cookie_counts_as_a_failure(api: Api) -> None:
    statuses = [api.get("/studios", headers=headers).status_code for headers in ({"Authorization": "Basic !!"}, {"Authorization": "Token x"}, {"Cookie": "studios_ui=forged"}) * 7]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429, statuses
    assert_429(api.get("/studios"), 60)


def test_a_request_without_any_credential_is_not_counted(api: Api) -> None:
    """A signed-out browser asking whether it is signed in guesses nothing: many of them behind
    one address must not lock it out."""
    for _ in range(30):
        assert api.get("/ui/session").status_code == 401
        assert api.get("/ui/session", headers={"Cookie": "studios_session=a-display-url-viewer"}).status_code == 401  # not a UI session
        assert api.get("/studios").status_code == 401
    assert api.get("/studios", headers=bearer_auth("stu_wrong")).status_code == 401  # still counting from zero


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_per_key": "5/minute"}


def test_each_key_has_its_own_window_and_headers(api: Api, author: TestUser, make_key: Any) -> None:
    me = api.as_(author)
    started = time.time()
    for expected_remaining in (4, 3, 2, 1, 0):
        response = me.get("/users/me")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["X-RateLimit-Remaining"] == str(expected_remaining)
        reset = int(response.headers["X-RateLimit-Reset"])
        assert started <= reset <= time.time() + 61
    refused = me.get("/users/me")
    wait = assert_429(refused, 60)
    assert refused.headers["X-RateLimit-Remaining"] == "0" and refused.headers["X-RateLimit-Limit"] == "5"
    assert "This API key made more than 5 requests in 1 minute" in refused.json()["errorDescription"]
    assert abs((int(refused.headers["X-RateLimit-Reset"]) - time.time()) - wait) <= 2
    # Writes are counted and refused alike, and nothing is written.
    assert me.post("/studios", json={"name": "over the limit"}).status_code == 429
    # The same user's other key, and the Basic spelling of a fresh key, have their own windows.
    key, _ = make_key(author)
    other = api.get("/users/me", headers=bearer_auth(key))
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining"] == "4"
    assert api.get("/users/me", headers=basic_auth(key)).headers["X-RateLimit-Remaining"] == "3"
    assert api.get("/studios", headers=basic_auth(key)).json() == []  # the refused POST wrote nothing
    with from_address(api, "192.0.2.11") as elsewhere:  # per key, wherever it comes from
        assert elsewhere.as_(author).get("/users/me").status_code == 429


def test_401_answers_carry_no_rate_limit_headers(api: Api) -> None:
    response = api.get("/users/me", headers=bearer_auth("stu_wrong"))
    assert response.status_code == 401 and "X-RateLimit-Limit" not in response.headers


def test_fixed_windows_close_and_are_swept() -> None:
    """The counter itself, on a clock the test drives: a window closes `seconds` after its first
    hit, and closed windows do not pile up (an attacker's one-off keys cost no memory for long)."""
    from studios.api.ratelimit import FixedWindows

    windows = FixedWindows(amount=3, seconds=60)
    assert [windows.hit("a", 100.0 + i) for i in range(4)] == [(1, 160.0), (2, 160.0), (3, 160.0), (4, 160.0)]
    assert windows.over("a", 159.9) == 160.0 and windows.over("a", 160.0) is None and windows.over("b", 100.0) is None
    assert windows.hit("a", 160.0) == (1, 220.0)  # a new window
    for i in range(5000):
        windows.hit(f"one-off-{i}", 200.0 + i / 1000)
    for i in range(5000):
        windows.hit(f"later-{i}", 400.0 + i / 1000)  # every earlier window has closed by now
    assert len(windows._windows) <= 2 * 5000 and not any(k.startswith("one-off") for k in windows._windows)
