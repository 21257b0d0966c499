"""Behind a reverse proxy listed in `STUDIOS_TRUSTED_PROXIES`, the failure limit counts the
address its `X-Forwarded-For` names; any other peer's `X-Forwarded-For` is ignored, so a client
cannot pick a fresh address per request."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Api, bearer_auth

from .test_ratelimit import assert_429, from_address


def fail(api: Api, times: int, forwarded_for: str) -> list[int]:
    return [api.get("/users/me", headers={**bearer_auth("stu_wrong"), "X-Forwarded-For": forwarded_for}).status_code for _ in range(times)]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"trusted_proxies": "127.0.0.1, 198.51.100.0/24"}


def test_the_forwarded_address_is_counted_behind_a_trusted_proxy(api: Api) -> None:
    assert fail(api, 20, "203.0.113.7") == [401] * 20
    assert_429(api.get("/users/me", headers={"X-Forwarded-For": "203.0.113.7"}), 60)
    # Another client behind the same proxy has its own budget; the proxy itself is not blocked.
    assert fail(api, 1, "203.0.113.8") == [401]
    # X-Forwarded-For is read from the right: the last address the trusted proxy added counts,
    # whatever the client put before it.
    assert_429(api.get("/users/me", headers={"X-Forwarded-For": "192.0.2.1, 203.0.113.7"}), 60)
    with from_address(api, "198.51.100.9") as other_proxy:
        assert_429(other_proxy.get("/users/me", headers={"X-Forwarded-For": "203.0.113.7"}), 60)
    # A peer that is not a trusted proxy is counted as itself, whatever it forwards.
    with from_address(api, "192.0.2.50") as untrusted:
        assert fail(untrusted, 20, "203.0.113.99") == [401] * 20
        assert_429(untrusted.get("/users/me", headers={"X-Forwarded-For": "203.0.113.100"}), 60)
