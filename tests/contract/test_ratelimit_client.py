"""The request limits on a real `studios serve`, with the real civis client: it reads our
`X-RateLimit-*` headers, and a 429 with `Retry-After` makes it wait and retry, so a script that
goes past its key's limit slows down instead of failing. Also: `studios serve` trusts no
`X-Forwarded-For` unless told to, so a client cannot pick a new address per wrong key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import civis
import httpx
import pytest

from .server import StudiosServer, studios_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    root = tmp_path_factory.mktemp("ratelimit")
    with studios_server(root, name="ratelimit", runtime="process", env={"STUDIOS_RATE_LIMIT_PER_KEY": "4/second"}) as srv:
        yield srv


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_civis_client_reads_the_headers_and_waits_out_a_429(server: StudiosServer, monkeypatch: pytest.MonkeyPatch) -> None:
    key = server.studios("users", "create", "alice")
    monkeypatch.setenv("CIVIS_API_ENDPOINT", server.url)
    monkeypatch.setenv("HOME", str(server.root))
    client: Any = civis.APIClient(api_key=key, force_refresh_api_spec=True)
    started = time.monotonic()
    answers = [client.users.get_me() for _ in range(9)]  # more than 4 a second: some are refused, then retried
    assert time.monotonic() - started >= 1.0, "nine calls at 4 a second take more than a second"
    assert all(a.username == "alice" for a in answers)
    assert {a.rate_limit for a in answers} == {4}
    assert all(0 <= a.calls_remaining <= 3 for a in answers)


def test_x_forwarded_for_is_not_trusted_by_default(server: StudiosServer) -> None:
    # From 127.0.0.2 (loopback), so the address it gets blocked is not the one the fixture's
    # teardown uses.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10, transport=transport) as http:
        statuses = [http.get("/users/me", headers={"Authorization": f"Bearer stu_wrong{i}", "X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(25)]
        assert statuses == [401] * 20 + [429] * 5
        assert "from 127.0.0.2:" in http.get("/users/me").json()["errorDescription"]
