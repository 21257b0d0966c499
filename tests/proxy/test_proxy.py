"""The proxy end to end over real sockets: access, pass-through, pages, SSE, WebSockets."""

from __future__ import annotations

import asyncio
import dataclasses
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from studios.proxy.backend import Target

from .conftest import DEPLOYMENT, USER, Stack, make_stack

pytestmark = pytest.mark.anyio


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


async def test_display_url_sets_cookie_and_redirects(stack: Stack, client: httpx.AsyncClient):
    url = stack.links.display_url(DEPLOYMENT, USER)
    r = await client.get(stack.base + path_and_query(url), headers={"Host": stack.host()})
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Domain" not in set_cookie
    value = set_cookie.split(";")[0]
    r = await client.get(stack.base + "/", headers={"Host": stack.host(), "Cookie": value})
    assert r.status_code == 200
    assert "hello /" in r.text


@pytest.mark.parametrize("token", ["forged", "tampered", "other-deployment", "missing"])
async def test_bad_tokens_get_403_page(stack: Stack, client: httpx.AsyncClient, token: str):
    good = stack.links.make_token(DEPLOYMENT, USER)
    value = {
        "forged": "WzEsN10.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "tampered": good[:-3] + ("xyz" if not good.endswith("xyz") else "abc"),
        "other-deployment": stack.links.make_token(2, USER),
        "missing": "",
    }[token]
    r = await client.get(f"{stack.base}/_studios/auth?token={value}", headers={"Host": stack.host()})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "Access denied" in r.text
    assert "set-cookie" not in r.headers


async def test_no_cookie_or_other_deployments_cookie_is_403(stack: Stack, client: httpx.AsyncClient):
    stack.backend.put(Target(2, 10, "running", "", stack.upstream), [USER])
    r = await client.get(stack.base + "/", headers={"Host": stack.host()})
    assert r.status_code == 403 and "Access denied" in r.text
    # a perfectly valid cookie, but for deployment 2, presented to deployment 1
    r = await client.get(stack.base + "/", headers={"Host": stack.host(1), "Cookie": stack.cookie(2)})
    assert r.status_code == 403 and "Access denied" in r.text
    r = await client.get(stack.base + "/", headers=stack.headers(2))
    assert r.status_code == 200
    assert stack.app.requests == 1


async def test_revoked_share_closes_access_at_next_request(stack: Stack, client: httpx.AsyncClient):
    headers = stack.headers()
    assert (await client.get(stack.base + "/a", headers=headers)).status_code == 200
    stack.backend.revoke(USER, DEPLOYMENT)
    r = await client.get(stack.base + "/b", headers=headers)  # same keep-alive connection
    assert r.status_code == 403 and "Access denied" in r.text
    stack.backend.grant(USER, DEPLOYMENT)
    assert (await client.get(stack.base + "/c", headers=headers)).status_code == 200


async def test_revoked_user_cannot_exchange_a_token(stack: Stack, client: httpx.AsyncClient):
    url = stack.links.display_url(DEPLOYMENT, 99)
    r = await client.get(stack.base + path_and_query(url), headers={"Host": stack.host()})
    assert r.status_code == 403


async def test_pass_through_with_forwarded_headers(stack: Stack, client: httpx.AsyncClient):
    headers = stack.headers() | {"Cookie": stack.cookie() + "; theme=dark",
                                 "X-Forwarded-For": "203.0.113.9", "X-Custom": "1"}
    r = await client.get(stack.base + "/headers?a=1&b=2", headers=headers)
    assert r.status_code == 200
    seen = r.json()
    assert seen["path"] == "/headers" and seen["query"] == "a=1&b=2"
    h = seen["headers"]
    assert h["host"] == stack.host()
    assert h["x-forwarded-host"] == stack.host()
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert "x-forwarded-prefix" not in h
    assert h["x-custom"] == "1"
    assert h["cookie"] == "theme=dark"  # the viewer credential never reaches the app
    assert stack.backend.touches[DEPLOYMENT] >= 1


async def test_upstream_connections_are_kept_alive(stack: Stack, client: httpx.AsyncClient):
    for i in range(20):
        r = await client.get(stack.base + f"/{i}", headers=stack.headers())
        assert r.status_code == 200
    idle = stack.proxy.pool._idle[stack.upstream]
    assert len(idle) == 1  # one connection served all 20 sequential requests


async def test_post_body_and_head(stack: Stack, client: httpx.AsyncClient):
    r = await client.post(stack.base + "/upload", headers=stack.headers(), content=b"a" * 100_000)
    assert r.text == "100000"
    r = await client.head(stack.base + "/x", headers=stack.headers())
    assert r.status_code == 200 and r.content == b""
    r = await client.get(stack.base + "/y", headers=stack.headers())  # connection still usable
    assert "hello /y" in r.text


async def test_path_mode_forwards_the_prefix(path_stack: Stack, client: httpx.AsyncClient):
    s = path_stack
    url = s.links.display_url(DEPLOYMENT, USER)
    r = await client.get(s.base + path_and_query(url))
    assert r.status_code == 303 and r.headers["location"] == "/_d/1/"
    assert "Path=/_d/1/" in r.headers["set-cookie"]
    cookie = {"Cookie": r.headers["set-cookie"].split(";")[0]}
    r = await client.get(s.base + "/_d/1/headers?q=1", headers=cookie)
    seen = r.json()
    # the app sees the path under its STUDIOS_BASE_PATH, as a base_url-aware app expects
    assert seen["path"] == "/_d/1/headers" and seen["query"] == "q=1"
    assert "x-forwarded-prefix" not in seen["headers"]
    r = await client.get(s.base + "/_d/1?x=1", headers=cookie)
    assert r.status_code == 303 and r.headers["location"] == "/_d/1/?x=1"
    r = await client.get(s.base + "/_d/2/", headers=cookie)
    assert r.status_code == 403


@pytest.mark.parametrize("how", ["server default", "studio param"])
async def test_path_mode_strips_the_prefix_when_chosen(how: str, client: httpx.AsyncClient):
    async with make_stack("path") as s:
        if how == "server default":
            s.proxy.config = dataclasses.replace(s.proxy.config, strip_prefix=True)
        else:  # what the service puts in the Target for a studio with STUDIOS_PATH_PREFIX=strip
            s.backend.put(Target(DEPLOYMENT, 10, "running", "", s.upstream, strip_prefix=True))
        r = await client.get(s.url("/headers?q=1"), headers={"Cookie": s.cookie()})
        seen = r.json()
        assert seen["path"] == "/headers" and seen["query"] == "q=1"
        assert seen["headers"]["x-forwarded-prefix"] == "/_d/1"


def test_the_studio_param_that_chooses():
    from studios.proxy.config import strip_prefix_choice

    assert strip_prefix_choice([{"name": "STUDIOS_PATH_PREFIX", "type": "string", "value": "strip"}]) is True
    assert strip_prefix_choice([{"name": "STUDIOS_PATH_PREFIX", "type": "string", "value": "Forward"}]) is False
    assert strip_prefix_choice([{"name": "STUDIOS_PATH_PREFIX", "type": "string", "value": "sideways"}]) is None
    assert strip_prefix_choice([{"name": "OTHER", "type": "string", "value": "strip"}]) is None
    assert strip_prefix_choice(None) is None


async def test_other_hosts_without_fallback_are_404(stack: Stack, client: httpx.AsyncClient):
    r = await client.get(stack.base + "/", headers={"Host": "localhost"})
    assert r.status_code == 404


async def test_fallback_forwards_non_deployment_requests(client: httpx.AsyncClient):
    async with make_stack("host") as s:
        s.proxy.config = dataclasses.replace(s.proxy.config, fallback=s.upstream)
        r = await client.get(s.base + "/headers", headers={"Host": f"localhost:{s.port}"})
        assert r.status_code == 200 and r.json()["path"] == "/headers"


@pytest.mark.parametrize("state", ["terminated", "failed"])
async def test_not_running_page_shows_state_and_message(stack: Stack, client: httpx.AsyncClient, state):
    stack.backend.put(Target(DEPLOYMENT, 10, state, "Exited with code 3 <oops>"))
    r = await client.get(stack.base + "/", headers=stack.headers())
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("text/html")
    assert state in r.text and "Exited with code 3 &lt;oops&gt;" in r.text


async def test_pending_shows_starting_page_and_status(stack: Stack, client: httpx.AsyncClient):
    stack.backend.put(Target(DEPLOYMENT, 10, "pending", "Pulling image", progress=["pull 40%"]))
    r = await client.get(stack.base + "/lab", headers=stack.headers())
    assert r.status_code == 503 and "Starting" in r.text and "Pulling image" in r.text
    assert "/_studios/status" in r.text and "pull 40%" in r.text
    r = await client.get(stack.base + "/_studios/status", headers=stack.headers())
    assert r.json()["state"] == "pending" and r.json()["progress"] == ["pull 40%"]
    stack.backend.put(Target(DEPLOYMENT, 10, "running", "", stack.upstream))
    r = await client.get(stack.base + "/_studios/status", headers=stack.headers())
    assert r.json()["state"] == "running"
    r = await client.get(stack.base + "/lab", headers=stack.headers())
    assert r.status_code == 200 and "hello /lab" in r.text
    r = await client.get(stack.base + "/_studios/status", headers={"Host": stack.host()})
    assert r.status_code == 403


async def test_sleeping_calls_wake(stack: Stack, client: httpx.AsyncClient):
    stack.backend.put(Target(DEPLOYMENT, 10, "sleeping", "Idle for 30 minutes"))
    r = await client.get(stack.base + "/", headers=stack.headers())
    assert r.status_code == 503 and "Starting" in r.text and "sleeping" in r.text
    assert stack.backend.wakes == [DEPLOYMENT]
    assert stack.backend.targets[DEPLOYMENT].state == "pending"


async def test_running_but_not_answering_is_a_page_not_a_bare_502(stack: Stack, client: httpx.AsyncClient):
    from .conftest import listening_socket

    sock = listening_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    stack.backend.put(Target(DEPLOYMENT, 10, "running", "", ("127.0.0.1", port)))
    r = await client.get(stack.base + "/", headers=stack.headers())
    assert r.status_code == 503 and "not answering" in r.text
    assert r.headers["content-type"].startswith("text/html")


async def test_server_sent_events_arrive_incrementally(stack: Stack, client: httpx.AsyncClient):
    with anyio.fail_after(10):
        async with client.stream("GET", stack.base + "/sse", headers=stack.headers()) as r:
            assert r.headers["content-type"] == "text/event-stream"
            chunks = r.aiter_text()
            first = await anext(chunks)
            # the app sends the second event only after we saw the first through the proxy
            assert first == "data: one\n\n"
            stack.app.release.set()
            rest = "".join([c async for c in chunks])
            assert rest == "data: two\n\n"


async def test_websocket_echo(stack: Stack):
    uri = f"ws://{stack.host()}/ws"
    with anyio.fail_after(10):
        async with ws_connect(uri, host="127.0.0.1", port=stack.port,
                              additional_headers={"Cookie": stack.cookie()}) as ws:
            await ws.send("hi")
            assert await ws.recv() == "echo: hi"
            big = bytes(range(256)) * 4096
            await ws.send(big)
            assert await ws.recv() == big
            assert stack.proxy.tunnels == {DEPLOYMENT: 1}
            before = stack.backend.touches.get(DEPLOYMENT, 0)
            stack.proxy._touch_tunnels()  # the periodic timer: open WebSockets count as activity
            assert stack.backend.touches[DEPLOYMENT] == before + 1
        with anyio.fail_after(10):  # the close reaches the proxy asynchronously: wait for it, bounded in time
            while stack.proxy.tunnels:
                await asyncio.sleep(0.005)
    assert stack.proxy.tunnels == {}


async def test_websocket_needs_cookie(stack: Stack):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(f"ws://{stack.host()}/ws", host="127.0.0.1", port=stack.port):
            pass
    assert info.value.response.status_code == 403


async def test_chunked_upload_and_download(stack: Stack, client: httpx.AsyncClient):
    async def body():
        for _ in range(10):
            yield b"y" * 10_000

    r = await client.post(stack.base + "/upload", headers=stack.headers(), content=body())
    assert r.text == "100000"
    r = await client.get(stack.base + "/download?n=300000", headers=stack.headers())
    assert len(r.content) == 300_000


async def test_bad_request_is_400(stack: Stack):
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    data = await reader.read()
    assert data.startswith(b"HTTP/1.1 400")
    writer.close()


async def test_pipelined_requests_answered_in_order(stack: Stack):
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    h = stack.headers()

    def req(p: str) -> bytes:
        return f"GET {p} HTTP/1.1\r\nHost: {h['Host']}\r\nCookie: {h['Cookie']}\r\n\r\n".encode()

    writer.write(req("/one") + req("/two") + req("/three").replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    data = await reader.read()
    writer.close()
    assert data.count(b"HTTP/1.1 200") == 3
    assert data.index(b"hello /one") < data.index(b"hello /two") < data.index(b"hello /three")


async def test_backend_failure_is_a_page(stack: Stack, client: httpx.AsyncClient, caplog):
    async def broken(user_id: int, deployment_id: int) -> bool:
        raise RuntimeError("database is down")

    stack.backend.can_view = broken  # type: ignore[method-assign]
    r = await client.get(stack.base + "/", headers=stack.headers())
    assert r.status_code == 503 and "unavailable" in r.text
    assert "database is down" in caplog.text


async def test_client_gone_mid_download_does_not_pool_the_connection(stack: Stack):
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    h = stack.headers()
    writer.write(f"GET /download?n=50000000 HTTP/1.1\r\nHost: {h['Host']}\r\nCookie: {h['Cookie']}\r\n\r\n".encode())
    assert (await reader.read(65536)).startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()
    # a fresh request still works (a half-read upstream connection was not reused)
    async with httpx.AsyncClient() as client:
        r = await client.get(stack.base + "/after", headers=h)
        assert r.status_code == 200 and "hello /after" in r.text


async def test_revoked_share_closes_open_websockets(stack: Stack):
    from websockets.exceptions import ConnectionClosed

    with anyio.fail_after(10):
        async with ws_connect(f"ws://{stack.host()}/ws", host="127.0.0.1", port=stack.port,
                              additional_headers={"Cookie": stack.cookie()}) as ws:
            await ws.send("hi")
            assert await ws.recv() == "echo: hi"
            await stack.proxy.recheck_tunnels()  # still allowed: stays open
            await ws.send("again")
            assert await ws.recv() == "echo: again"
            stack.backend.revoke(USER, DEPLOYMENT)
            await stack.proxy.recheck_tunnels()  # what the activity timer runs
            with pytest.raises(ConnectionClosed):
                await ws.recv()
