"""The upstream pool takes a connection back only when it can serve the next request: never
paused by a slow viewer, never with bytes of another response behind it, never after the app
answered before it had the whole request. Each test ends with another request on the same
upstream, which would hang or get the wrong answer if a bad connection had been pooled."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
from collections.abc import AsyncIterator

import anyio
import httptools
import httpx
import pytest

from studios.proxy.backend import Target

from .conftest import DEPLOYMENT, USER, Stack, listening_socket

pytestmark = pytest.mark.anyio

ROUNDS = 14
BIG = 4 * 1024 * 1024


class _Response:
    """Finds where one response ends on a raw client connection (httptools)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body = 0
        self.text = ""
        self.status = 0
        self.done = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body += len(body)
        if len(self.text) < 1000:
            self.text += body.decode(errors="replace")

    def on_message_complete(self) -> None:
        self.done = True


async def slow_download(stack: Stack, n: int) -> int:
    """GET /blob?n= as a viewer on a slow link: small socket buffers on both ends of its
    connection (ours, and the proxy's side, which loopback would otherwise grow to megabytes),
    read a few KB at a time, so the proxy's socket to us is full, and its upstream paused,
    after each piece it forwards, the last one included."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        before = set(stack.proxy.viewers)
        await loop.sock_connect(sock, ("127.0.0.1", stack.port))
        with anyio.fail_after(10):
            while not (new := set(stack.proxy.viewers) - before):
                await asyncio.sleep(0)  # the proxy accepts in this loop
        new.pop().transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        h = stack.headers()
        await loop.sock_sendall(sock, (f"GET {stack.prefix()}/blob?n={n} HTTP/1.1\r\nHost: {h['Host']}\r\n"
                                       f"Cookie: {h['Cookie']}\r\n\r\n").encode())
        response = _Response()
        while not response.done:
            data = await loop.sock_recv(sock, 2048)
            assert data, "the proxy closed the connection mid-response"
            response.parser.feed_data(data)
        return response.body
    finally:
        sock.close()


def pooled(stack: Stack) -> list:
    return [c for conns in stack.proxy.pool._idle.values() for c in conns]


async def test_slow_viewer_large_response_then_another_request(stack: Stack, client: httpx.AsyncClient):
    for _ in range(ROUNDS):
        with anyio.fail_after(60):
            assert await slow_download(stack, BIG) == BIG
        for conn in pooled(stack):  # whatever went back to the pool is reading
            assert conn.transport.is_reading()
        with anyio.fail_after(10):  # the next request reuses that connection: it must answer
            r = await client.get(stack.url("/after"), headers=stack.headers())
        assert r.status_code == 200 and r.text.endswith("hello /after</h1>")
    assert len(pooled(stack)) == 1  # and the connections were reused, not replaced


@contextlib.asynccontextmanager
async def raw_app(reply) -> AsyncIterator[tuple[tuple[str, int], list[bytes]]]:
    """A keep-alive 'app' on a raw socket that never reads request bodies: for every request
    head it reads, `await reply(n, head, writer)` answers (n counts requests on that
    connection). Yields its address and every request head it read, in order."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                n += 1
                await reply(n, head, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    sock = listening_socket()
    server = await asyncio.start_server(serve, sock=sock)
    try:
        yield sock.getsockname()[:2], heads
    finally:
        server.close()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


async def test_bytes_after_a_response_never_reach_the_next_request(stack: Stack, client: httpx.AsyncClient):
    # The app answers its first request with a response and a second, unasked-for one behind
    # it (a framing bug, or a smuggled response). Pooling that connection would hand the
    # second response to the next viewer.
    async def reply(n: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"for " + head.split(b" ")[1]) + (ok(b"SMUGGLED") if n == 1 else b""))

    async with raw_app(reply) as (address, _heads):
        stack.backend.put(Target(DEPLOYMENT, 10, "running", "", address), [USER])
        with anyio.fail_after(10):
            first = await client.get(stack.url("/one"), headers=stack.headers())
            assert first.text == "for /one"
            second = await client.get(stack.url("/two"), headers=stack.headers())
        assert second.text == "for /two"


async def test_an_app_that_answers_before_reading_the_body_is_not_reused(stack: Stack, client: httpx.AsyncClient):
    # The app starts its answer as soon as it has the head and ends it once the whole body
    # has reached the proxy, never reading that body. Left in the app's socket, the body would
    # be read as the next request on the connection; here it is made to look like one.
    # After that answer it reads nothing more on that connection until the test ends, so a
    # request the proxy sent there would go unanswered.
    body = b"GET /hidden HTTP/1.1\r\n\r\n" + b"b" * 100_000
    finish, done = asyncio.Event(), asyncio.Event()

    async def reply(n: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        answer = ok(b"early %d" % n)
        if n == 1:
            writer.write(answer[:-1])
            await finish.wait()
            writer.write(answer[-1:])
            await done.wait()
        else:
            writer.write(answer)

    async with raw_app(reply) as (address, heads):
        stack.backend.put(Target(DEPLOYMENT, 10, "running", "", address), [USER])
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        h = stack.headers()
        writer.write((f"POST {stack.prefix()}/upload HTTP/1.1\r\nHost: {h['Host']}\r\nCookie: {h['Cookie']}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode())
        with anyio.fail_after(10):
            assert (await reader.readuntil(b"early ")).startswith(b"HTTP/1.1 200")
            writer.write(body)
            await writer.drain()
            while not any(v.current is not None and v.current.complete for v in stack.proxy.viewers):
                await asyncio.sleep(0.005)  # polling the proxy's state (bounded by fail_after)
            finish.set()  # the proxy has the whole request: now the app ends its answer
            assert await reader.readexactly(1) == b"1"
            r = await client.get(stack.url("/next"), headers=h)
        done.set()
        writer.close()
        # /next went to a fresh app connection (its first request there), not behind the body
        assert r.text == "early 1"
        assert [head.split(b" ")[1] for head in heads] == [f"{stack.prefix()}/upload".encode(), f"{stack.prefix()}/next".encode()]


async def test_bytes_sent_after_a_declined_upgrade_never_reach_the_app(stack: Stack):
    # A viewer sends an Upgrade request and, without waiting for the 101, another request.
    # The app declines the upgrade: that second request was never parsed or checked by the
    # proxy (it has no cookie), so it must not reach the app.
    async def reply(n: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"no upgrade"))

    async with raw_app(reply) as (address, heads):
        stack.backend.put(Target(DEPLOYMENT, 10, "running", "", address), [USER])
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        h = stack.headers()
        writer.write((f"GET {stack.prefix()}/ws HTTP/1.1\r\nHost: {h['Host']}\r\nCookie: {h['Cookie']}\r\n"
                      f"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                      f"GET /smuggled HTTP/1.1\r\nHost: {h['Host']}\r\n\r\n").encode())
        with anyio.fail_after(10):
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"no upgrade")
            async with httpx.AsyncClient(timeout=10) as client:  # a later request finds a clean app connection
                assert (await client.get(stack.url("/later"), headers=h)).text == "no upgrade"
        assert not any(b"/smuggled" in head for head in heads), heads


class ThreadedApp:
    """A keep-alive app on blocking sockets in its own threads, apart from the test's event
    loop (which is the proxy's), so that it can close a connection while that loop runs
    nothing. It answers each request (its body read by Content-Length) with the number of
    the connection it came on."""

    def __init__(self) -> None:
        self.listener = listening_socket()
        self.address = self.listener.getsockname()[:2]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.conns.append(conn)
                threading.Thread(target=self._serve, args=(conn, len(self.conns)), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        data = b""
        with contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), b"0"))
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                conn.sendall(ok(b"connection %d" % number))

    def hang_up(self, index: int) -> None:
        """Close one connection now (a shutdown first: its thread is blocked reading it)."""
        with contextlib.suppress(OSError):
            self.conns[index].shutdown(socket.SHUT_RDWR)
        self.conns[index].close()

    def close(self) -> None:
        self.listener.close()
        for index in range(len(self.conns)):
            self.hang_up(index)


def readable(sock_or_fd: object) -> None:
    """Block (the event loop too, on purpose) until this socket has something to read."""
    assert select.select([sock_or_fd], [], [], 10)[0], "nothing arrived within 10 s"


async def test_a_body_never_goes_to_an_idle_connection_the_app_has_just_closed(stack: Stack):
    # An app closes an idle keep-alive connection (uvicorn does after 5 s) just as a viewer
    # sends a POST, before the proxy has read that close. A request with a body is never sent
    # again (the app may have acted on it), so it must not go to that connection at all: it
    # would get the "not answering" page instead of the app's answer.
    app = ThreadedApp()
    try:
        stack.backend.put(Target(DEPLOYMENT, 10, "running", "", app.address), [USER])
        h = stack.headers()
        viewer = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
        loop = asyncio.get_running_loop()

        async def response() -> _Response:
            viewer.setblocking(False)
            answer = _Response()
            with anyio.fail_after(10):
                while not answer.done:
                    answer.parser.feed_data(await loop.sock_recv(viewer, 65536))
            return answer

        viewer.sendall(f"GET /a HTTP/1.1\r\nHost: {h['Host']}\r\nCookie: {h['Cookie']}\r\n\r\n".encode())
        assert (await response()).text == "connection 1"  # now pooled, idle
        [upstream] = pooled(stack)
        proxy_side = next(iter(stack.proxy.viewers)).transport.get_extra_info("socket").fileno()
        # Without letting the event loop run: the viewer's POST arrives first, then the app's close.
        body = b"x" * 1000
        viewer.setblocking(True)
        viewer.sendall(f"POST /b HTTP/1.1\r\nHost: {h['Host']}\r\nCookie: {h['Cookie']}\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        readable(proxy_side)
        app.hang_up(0)
        readable(upstream.transport.get_extra_info("socket").fileno())
        answer = await response()
        assert answer.status == 200 and answer.text == "connection 2"
        viewer.close()
    finally:
        app.close()


async def test_an_idle_connection_is_checked_only_for_a_request_with_a_body(stack: Stack):
    app = ThreadedApp()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            stack.backend.put(Target(DEPLOYMENT, 10, "running", "", app.address), [USER])
            assert (await client.get(stack.url("/a"), headers=stack.headers())).text == "connection 1"
        [upstream] = pooled(stack)
        assert upstream.still_open()
        app.hang_up(0)
        readable(upstream.transport.get_extra_info("socket").fileno())
        assert not upstream.still_open()
        assert stack.proxy.pool.get(app.address) is upstream  # a bodiless request: retried if it fails
        stack.proxy.pool.put(upstream)
        assert stack.proxy.pool.get(app.address, for_body=True) is None
        assert upstream.closed
    finally:
        app.close()
