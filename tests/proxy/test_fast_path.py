"""The usual request (a viewer of a running app, on a connection with an idle upstream
connection waiting) is forwarded from the parser's callback, without a task, from what the
backend has in memory (`ProxyServer.route_now`). These check that it gives the same answers as
the full route, request after request on one keep-alive connection: access and state changes
take effect at the next request, paths and headers are rewritten the same, and one upstream
connection (its response parser kept between responses) serves any mix of responses."""

from __future__ import annotations

import asyncio

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from studios.proxy.backend import Target
from studios.proxy.server import ProxyServer

from .conftest import DEPLOYMENT, USER, Stack, make_stack

pytestmark = pytest.mark.anyio


def routed_now(stack: Stack) -> list[bool]:
    """Record, for each request the proxy routes from now on, whether it went the fast way."""
    seen: list[bool] = []
    original = stack.proxy.route_now

    def spy(viewer, req) -> bool:
        done = original(viewer, req)
        seen.append(done)
        return done

    stack.proxy.route_now = spy
    return seen


async def test_the_second_request_goes_the_fast_way_and_sees_what_the_first_saw(
        stack: Stack, client: httpx.AsyncClient):
    seen = routed_now(stack)
    headers = stack.headers() | {"Cookie": stack.cookie() + "; theme=dark", "X-Forwarded-For": "203.0.113.9"}
    first = (await client.get(stack.base + "/headers?a=1", headers=headers)).json()
    second = (await client.get(stack.base + "/headers?a=1", headers=headers)).json()
    assert seen == [False, True]  # no idle app connection yet, then one
    assert first == second
    h = second["headers"]
    assert h["cookie"] == "theme=dark"  # our cookie never reaches the app
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-forwarded-host"] == stack.host()
    assert stack.backend.touches[DEPLOYMENT] == 2


async def test_access_and_state_changes_apply_at_the_next_request(stack: Stack, client: httpx.AsyncClient):
    seen = routed_now(stack)
    headers = stack.headers()
    assert (await client.get(stack.base + "/a", headers=headers)).status_code == 200
    assert (await client.get(stack.base + "/b", headers=headers)).status_code == 200
    stack.backend.revoke(USER, DEPLOYMENT)
    r = await client.get(stack.base + "/c", headers=headers)
    assert r.status_code == 403 and "Access denied" in r.text
    stack.backend.grant(USER, DEPLOYMENT)
    other = {"Host": stack.host(), "Cookie": stack.cookie(2)}  # another deployment's cookie
    assert (await client.get(stack.base + "/d", headers=other)).status_code == 403
    stack.backend.put(Target(DEPLOYMENT, 10, "sleeping", "Idle for 30 minutes"))
    r = await client.get(stack.base + "/e", headers=headers)
    assert r.status_code == 503 and "Starting" in r.text
    assert stack.backend.wakes == [DEPLOYMENT]
    assert seen == [False, True, False, False, False]
    assert stack.app.requests == 2


async def test_status_and_auth_paths_are_never_forwarded(stack: Stack, client: httpx.AsyncClient):
    seen = routed_now(stack)
    headers = stack.headers()
    assert (await client.get(stack.base + "/", headers=headers)).status_code == 200
    r = await client.get(stack.base + "/_studios/status", headers=headers)
    assert r.json()["state"] == "running"
    r = await client.get(stack.base + "/_studios/elsewhere", headers=headers)
    assert r.status_code == 404
    assert seen == [False, False, False] and stack.app.requests == 1


@pytest.mark.parametrize("strip", [True, False])
async def test_path_mode_rewrites_the_same_way(strip: bool, client: httpx.AsyncClient):
    async with make_stack("path") as s:
        s.backend.put(Target(DEPLOYMENT, 10, "running", "", s.upstream, strip_prefix=strip))
        seen = routed_now(s)
        answers = [(await client.get(s.url("/headers?q=1"), headers={"Cookie": s.cookie()})).json()
                   for _ in range(2)]
        assert seen == [False, True]
        assert answers[0] == answers[1]
        assert answers[1]["query"] == "q=1"
        if strip:
            assert answers[1]["path"] == "/headers"
            assert answers[1]["headers"]["x-forwarded-prefix"] == "/_d/1"
        else:
            assert answers[1]["path"] == "/_d/1/headers"
            assert "x-forwarded-prefix" not in answers[1]["headers"]
        r = await client.get(s.base + "/_d/1", headers={"Cookie": s.cookie()})  # no trailing slash
        assert r.status_code == 303 and r.headers["location"] == "/_d/1/"


async def test_one_app_connection_serves_any_mix_of_responses(stack: Stack, client: httpx.AsyncClient):
    headers = stack.headers()
    for _ in range(3):
        r = await client.get(stack.base + "/download?n=100000", headers=headers)  # chunked
        assert len(r.content) == 100_000
        r = await client.head(stack.base + "/blob?n=5000", headers=headers)  # a head, no body
        assert r.status_code == 200 and r.content == b""
        r = await client.get(stack.base + "/blob?n=5000", headers=headers)  # Content-Length
        assert r.content == b"b" * 5000
        r = await client.post(stack.base + "/upload", headers=headers, content=b"u" * 70_000)
        assert r.text == "70000"
        r = await client.get(stack.base + "/x", headers=headers)
        assert "hello /x" in r.text
    assert len(stack.proxy.pool._idle[stack.upstream]) == 1  # all on one app connection


async def test_a_backend_without_the_fast_answer_gets_every_request_the_full_way(
        stack: Stack, client: httpx.AsyncClient):
    backend = stack.backend

    class Plain:  # a ProxyBackend with only the protocol's methods
        target, can_view, touch = backend.target, backend.can_view, backend.touch
        wake, spend = backend.wake, backend.spend

    stack.proxy = ProxyServer(stack.proxy.config, Plain())
    port = await stack.proxy.start()
    base = f"http://127.0.0.1:{port[1]}"
    try:
        seen = routed_now(stack)
        for path in ("/a", "/b"):
            assert (await client.get(base + path, headers=stack.headers())).status_code == 200
        assert seen == [False, False]
        backend.revoke(USER, DEPLOYMENT)
        assert (await client.get(base + "/c", headers=stack.headers())).status_code == 403
    finally:
        await stack.proxy.close()


async def test_a_websocket_opened_the_fast_way_works_and_is_counted(stack: Stack, client: httpx.AsyncClient):
    assert (await client.get(stack.base + "/", headers=stack.headers())).status_code == 200  # an idle app connection
    seen = routed_now(stack)
    with anyio.fail_after(10):
        async with ws_connect(f"ws://{stack.host()}/ws", host="127.0.0.1", port=stack.port,
                              additional_headers={"Cookie": stack.cookie()}) as ws:
            await ws.send("hi")
            assert await ws.recv() == "echo: hi"
            assert stack.proxy.tunnels == {DEPLOYMENT: 1}
        while stack.proxy.tunnels:  # the close reaches the proxy asynchronously
            await asyncio.sleep(0.005)
    assert seen == [True]
