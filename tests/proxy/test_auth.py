"""The token exchange (`/_studios/auth`): each displayUrl token opens a studio once, and a
client address that makes too many exchanges gets 429 with Retry-After."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

import httpx
import pytest

from studios.proxy.limits import AttemptLimiter

from .conftest import DEPLOYMENT, USER, Stack

pytestmark = pytest.mark.anyio


def auth_path(stack: Stack, user: int = USER) -> str:
    parts = urlsplit(stack.links.display_url(DEPLOYMENT, user))
    return stack.base + parts.path + "?" + parts.query


async def test_a_token_opens_the_studio_once(stack: Stack, client: httpx.AsyncClient):
    url = auth_path(stack)
    first = await client.get(url, headers={"Host": stack.host()})
    assert first.status_code == 303 and first.headers["set-cookie"].startswith("studios_session=")
    again = await client.get(url, headers={"Host": stack.host()})  # replayed: from history, a log, a proxy
    assert again.status_code == 403 and "already used" in again.text and "set-cookie" not in again.headers
    # the cookie the first exchange gave keeps working; a new link (another token) works too
    cookie = first.headers["set-cookie"].split(";")[0]
    assert (await client.get(stack.base + "/", headers={"Host": stack.host(), "Cookie": cookie})).status_code == 200
    stack.backend.grant(8, DEPLOYMENT)
    assert (await client.get(auth_path(stack, user=8), headers={"Host": stack.host()})).status_code == 303


async def test_a_refused_exchange_does_not_spend_the_token(stack: Stack, client: httpx.AsyncClient):
    url = auth_path(stack)
    stack.backend.revoke(USER, DEPLOYMENT)
    assert (await client.get(url, headers={"Host": stack.host()})).status_code == 403
    stack.backend.grant(USER, DEPLOYMENT)  # shared again while the link is still fresh
    assert (await client.get(url, headers={"Host": stack.host()})).status_code == 303


async def test_too_many_exchanges_from_one_address_get_429(stack: Stack, client: httpx.AsyncClient):
    stack.proxy.config = dataclasses.replace(stack.proxy.config, auth_attempts_per_minute=5)
    stack.proxy.auth_limiter = AttemptLimiter(5)
    forged = f"{stack.base}/_studios/auth?token=WzEsN10.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb"
    for _ in range(5):
        assert (await client.get(forged, headers={"Host": stack.host()})).status_code == 403
    limited = await client.get(forged, headers={"Host": stack.host()})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # a good link from that address waits too; the app itself is not limited
    assert (await client.get(auth_path(stack), headers={"Host": stack.host()})).status_code == 429
    assert (await client.get(stack.base + "/", headers=stack.headers())).status_code == 200
    # another client address is not affected
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as other:
        assert (await other.get(auth_path(stack), headers={"Host": stack.host()})).status_code == 303


def test_the_limiter_refills_over_a_minute():
    limiter = AttemptLimiter(6)  # one attempt back every 10 s
    assert [limiter.allow(b"a", now=0.0) for _ in range(6)] == [0] * 6
    assert limiter.allow(b"a", now=0.0) == 10
    assert limiter.allow(b"a", now=5.0) == 5
    assert limiter.allow(b"a", now=10.0) == 0
    assert limiter.allow(b"b", now=10.0) == 0
    assert AttemptLimiter(0).allow(b"a") == 0  # 0: no limit


def test_the_limiter_table_stays_bounded():
    limiter = AttemptLimiter(2, max_addresses=100)
    for i in range(1000):
        limiter.allow(str(i).encode(), now=float(i))
    assert len(limiter._buckets) <= 100
