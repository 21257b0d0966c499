"""Request smuggling: what the proxy forwards must frame the same way for any strict app.

Each case sends one crafted request (conflicting Content-Length and Transfer-Encoding,
obsolete line folding, odd Transfer-Encoding spellings, oversized heads...) whose body hides
a second request for `/smuggled`, then an ordinary signed-in `GET /after` on the same
connection. The app behind the proxy parses with h11, a strict parser independent of ours,
and records every request it reads. A desync shows up as any of:

- the app reads a request the proxy never routed (it lacks the `X-Forwarded-Host` the proxy
  adds to every request it forwards), or one for `/smuggled`;
- the app's parser fails on what the proxy sent (the two disagree on where a message ends);
- the viewer gets a response stream that does not parse, or more responses than requests.

(The hidden request may also reach the proxy as a pipelined request of its own, when the
crafted one ends where the proxy says it does: that is no desync, and the proxy answers it as
any request without a sign-in: `Host: x` is no deployment.)

Seeded random mutations of the same ingredients run after the named cases, bounded in count.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import anyio
import h11
import httptools
import pytest

from studios.proxy.backend import Target

from .conftest import DEPLOYMENT, USER, Stack, listening_socket

pytestmark = pytest.mark.anyio

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


class StrictApp:
    """An app that parses with h11 and records (method, target, headers, body) per request,
    and every parse error."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]] = []
        self.errors: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        current: list = []
        try:
            while True:
                event = conn.next_event()
                if event is h11.PAUSED:  # the viewer proposed an Upgrade this app does not do
                    return
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    current = [event.method, event.target, list(event.headers), b""]
                elif isinstance(event, h11.Data):
                    current[3] += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.requests.append(tuple(current))  # type: ignore[arg-type]
                    body = b"seen " + current[1]
                    writer.write(conn.send(h11.Response(status_code=200, headers=[("Content-Length", str(len(body)))])))
                    writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as error:
            self.errors.append(str(error))
        except ConnectionError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def strict_app() -> AsyncIterator[tuple[StrictApp, tuple[str, int]]]:
    app = StrictApp()
    sock = listening_socket()
    server = await asyncio.start_server(app.serve, sock=sock)
    try:
        yield app, sock.getsockname()[:2]
    finally:
        server.close()


class Responses:
    def __init__(self) -> None:
        self.count = 0
        self.statuses: list[int] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())

    def on_message_complete(self) -> None:
        self.count += 1


def head(stack: Stack, lines: list[bytes], method: bytes = b"POST", version: bytes = b"1.1") -> bytes:
    h = stack.headers()
    start = b"%s %s/upload HTTP/%s\r\n" % (method, stack.prefix().encode(), version)
    auth = b"Host: %s\r\nCookie: %s\r\n" % (h["Host"].encode(), h["Cookie"].encode())
    return start + auth + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def after(stack: Stack) -> bytes:
    h = stack.headers()
    return (f"GET {stack.prefix()}/after HTTP/1.1\r\nHost: {h['Host']}\r\nCookie: {h['Cookie']}\r\n"
            f"Connection: close\r\n\r\n").encode()


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)


def named_cases(stack: Stack) -> dict[str, bytes]:
    s = SMUGGLED
    return {
        "CL then TE": head(stack, [b"Content-Length: %d" % len(chunked(s)), b"Transfer-Encoding: chunked"]) + b"0\r\n\r\n" + s,
        "TE then CL": head(stack, [b"Transfer-Encoding: chunked", b"Content-Length: 4"]) + b"0\r\n\r\n" + s,
        "two Content-Length": head(stack, [b"Content-Length: 0", b"Content-Length: %d" % len(s)]) + s,
        "Content-Length list": head(stack, [b"Content-Length: %d, 0" % len(s)]) + s,
        "Content-Length sign": head(stack, [b"Content-Length: +%d" % len(s)]) + s,
        "obs-fold in a header": head(stack, [b"X-A: 1", b" folded", b"Content-Length: 0"]) + s,
        "obs-fold Transfer-Encoding": head(stack, [b"Transfer-Encoding:", b" chunked"]) + chunked(b"") + s,
        "TE chunked, identity": head(stack, [b"Transfer-Encoding: chunked, identity"]) + b"0\r\n\r\n" + s,
        "TE identity, chunked": head(stack, [b"Transfer-Encoding: identity, chunked"]) + b"0\r\n\r\n" + s,
        "TE xchunked": head(stack, [b"Transfer-Encoding: xchunked"]) + b"0\r\n\r\n" + s,
        "TE with tab": head(stack, [b"Transfer-Encoding:\tchunked"]) + b"0\r\n\r\n" + s,
        "TE space before colon": head(stack, [b"Transfer-Encoding : chunked"]) + b"0\r\n\r\n" + s,
        "TE twice": head(stack, [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"]) + b"0\r\n\r\n" + s,
        "TE on HTTP/1.0": head(stack, [b"Transfer-Encoding: chunked"], version=b"1.0") + b"0\r\n\r\n" + s,
        "chunk size overflow": head(stack, [b"Transfer-Encoding: chunked"]) + b"1" * 20 + b"\r\n" + s + b"\r\n0\r\n\r\n",
        "chunk with bare LF": head(stack, [b"Transfer-Encoding: chunked"]) + b"%x\n%b\n0\n\n" % (len(s), s),
        "chunk extension": head(stack, [b"Transfer-Encoding: chunked"]) + b"%x;ext=\"x\"\r\n%b\r\n0\r\n\r\n" % (len(s), s),
        "trailer fields": head(stack, [b"Transfer-Encoding: chunked"]) + b"%x\r\n%b\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(s), s),
        "bare LF head": head(stack, [b"Content-Length: 0"]).replace(b"\r\n", b"\n") + s,
        "bare CR in a header": head(stack, [b"X-A: 1\rContent-Length: %d" % len(s)]) + s,
        "NUL in a header": head(stack, [b"X-A: 1\x00", b"Content-Length: 0"]) + s,
        "two Host headers": head(stack, [b"Host: d-2.localhost", b"Content-Length: 0"]) + s,
        "GET with a body": head(stack, [b"Content-Length: %d" % len(s)], method=b"GET") + s,
        "CONNECT": b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n" + s,
        "oversized head": head(stack, [b"X-Big: " + b"a" * 70_000, b"Content-Length: 0"]) + s,
        "many headers": head(stack, [b"X-%d: 1" % i for i in range(5000)] + [b"Content-Length: 0"]) + s,
        "Upgrade with a body": head(stack, [b"Connection: Upgrade", b"Upgrade: websocket", b"Content-Length: %d" % len(s)]) + s,
    }


def random_cases(stack: Stack, count: int, seed: int = 14) -> dict[str, bytes]:
    """Random mixes of framing headers (valid, duplicated, conflicting, misspelt) and bodies."""
    rng = random.Random(seed)
    s = SMUGGLED
    framing = [b"Content-Length: %d" % len(s), b"Content-Length: 0", b"Content-Length: %d" % (len(s) + 5),
               b"Transfer-Encoding: chunked", b"Transfer-Encoding: CHUNKED", b"Transfer-Encoding: gzip, chunked",
               b"Transfer-Encoding: chunked ", b"transfer-encoding: chunked", b"Content-Length:%d" % len(s),
               b"Content-Length: 0%d" % len(s), b"X-Filler: a", b" folded", b"Connection: keep-alive",
               b"Connection: close", b"Expect: 100-continue"]
    bodies = [s, chunked(s), b"0\r\n\r\n" + s, chunked(b"") + s, b"%x\r\n%b\r\n" % (len(s), s) + b"0\r\n\r\n"]
    out = {}
    for i in range(count):
        lines = [rng.choice(framing) for _ in range(rng.randint(1, 3))]
        method = rng.choice([b"POST", b"GET", b"PUT"])
        version = rng.choice([b"1.1", b"1.1", b"1.0"])
        out[f"random {i}: {method.decode()} HTTP/{version.decode()} {lines}"] = head(stack, lines, method, version) + rng.choice(bodies)
    return out


async def exchange(stack: Stack, payload: bytes) -> tuple[Responses, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    try:
        writer.write(payload + after(stack))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        raw = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                raw += chunk
    finally:
        writer.close()
    responses = Responses()
    responses.parser.feed_data(raw)  # raises if the viewer's byte stream is not clean HTTP
    return responses, raw


async def test_no_framing_trick_gets_a_request_past_the_proxy(stack: Stack):
    async with strict_app() as (app, address):
        stack.backend.put(Target(DEPLOYMENT, 10, "running", "", address), [USER])
        cases = named_cases(stack) | random_cases(stack, 150)
        outcomes: dict[str, list[int]] = {}
        for name, payload in cases.items():
            before = len(app.requests)
            with anyio.fail_after(10):
                responses, raw = await exchange(stack, payload)
            outcomes[name] = responses.statuses
            seen = app.requests[before:]
            # every request the app read was routed by the proxy, and none is the hidden one
            for method, target, headers, _body in seen:
                names = [k for k, _ in headers]
                assert names.count(b"x-forwarded-host") == 1, f"{name}: the app read a request the proxy did not route: {method} {target}"
                assert b"/smuggled" not in target, f"{name}: smuggled request reached the app"
            assert not app.errors, f"{name}: the app could not parse what the proxy sent: {app.errors}"
            # the viewer got whole responses in a clean stream: at most one per request the
            # payload holds (the crafted one, the hidden one when the proxy parses it as a
            # pipelined request of its own, and /after)
            assert responses.count == len(responses.statuses) <= 3, f"{name}: {responses.statuses} {raw[:300]!r}"
            assert len(seen) <= 2, f"{name}: the app read {len(seen)} requests"
            if responses.statuses and responses.statuses[0] in (400, 431):
                assert seen == [], f"{name}: rejected, yet forwarded"
        # refused: a 400/431, or (a bad body after a good head) the connection closed unanswered
        rejected = {n: st for n, st in outcomes.items() if not st or st[0] in (400, 431)}
        # the ambiguous ones among the named cases are refused outright, not guessed at
        for name in ("CL then TE", "TE then CL", "two Content-Length", "obs-fold in a header",
                     "obs-fold Transfer-Encoding", "TE twice", "TE on HTTP/1.0", "two Host headers",
                     "bare LF head", "bare CR in a header", "CONNECT", "chunk size overflow",
                     "chunk with bare LF", "Upgrade with a body", "NUL in a header", "TE xchunked"):
            assert name in rejected, f"{name}: {outcomes[name]}"
        assert outcomes["oversized head"][:1] == [431] and outcomes["many headers"][:1] == [431]
        # and ordinary ones still work: the body reached the app whole, then /after
        assert outcomes["chunk extension"] == [200, 200] and outcomes["GET with a body"] == [200, 200]
        assert outcomes["TE identity, chunked"] == [200, 404, 200]  # chunked ends at 0; then the hidden one, refused


async def test_the_app_sees_one_framing_header_whatever_the_viewer_sent(stack: Stack):
    async with strict_app() as (app, address):
        stack.backend.put(Target(DEPLOYMENT, 10, "running", "", address), [USER])
        with anyio.fail_after(10):
            await exchange(stack, head(stack, [b"Transfer-Encoding: identity, chunked"]) + chunked(b"hello"))
            await exchange(stack, head(stack, [b"Content-Length: 005"]) + b"hello")
        (_, _, first, body1), _after1, (_, _, second, body2), _after2 = app.requests
        assert [v for k, v in first if k in (b"transfer-encoding", b"content-length")] == [b"chunked"]
        assert [v for k, v in second if k in (b"transfer-encoding", b"content-length")] == [b"005"]
        assert body1 == body2 == b"hello"
