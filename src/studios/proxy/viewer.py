"""One browser connection: parse requests, hand each to the server's router, stream bodies.

A `Viewer` is the asyncio protocol on one viewer connection. httptools parses each request
head; the `Request` goes to `ProxyServer.route_now`, which forwards the usual request at once
from what the backend has in memory, else to `ProxyServer.route` in a task (the backend is
async). Either answers it itself (`respond`) or attaches a pooled `Upstream` (`forward`). Body
bytes go to the upstream as they arrive (re-chunked when the viewer sent chunked), response
bytes come back unchanged through `from_upstream`, and after an app's 101 the connection is a
raw two-way pipe (bytes a viewer sends after an `Upgrade` request are held until then, and
dropped if the app does not switch). Flow control: a full socket on either side pauses reading
the other side. Pipelined requests wait in `queue` and are answered in order.

What reaches an app is never ambiguous: llhttp parses strictly (no obsolete line folding, no
Content-Length next to Transfer-Encoding, no duplicate Content-Length), heads past
`max_head_bytes` get a 431; two `Host` headers, `CONNECT`, chunked HTTP/1.0 bodies and
Upgrade requests with a body a 400,
and the body's framing is rebuilt from what we parsed (`Request.length`/`chunked`) rather than
copied from the viewer's headers.

No policy lives here (routing, access, pages): that is `server.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from . import pages
from .backend import RUNNING, Target
from .upstream import Upstream, nodelay

if TYPE_CHECKING:
    from .server import ProxyServer

log = logging.getLogger("studios.proxy")

_DROP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
    b"proxy-authorization", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-forwarded-prefix", b"x-forwarded-port", b"content-length", b"transfer-encoding",
})
"""Request headers never forwarded as they are: hop-by-hop ones, X-Forwarded-* (we set our
own; X-Forwarded-For is extended, not replaced), and the body's framing (rebuilt from what the
parser found, so the app cannot read the body's length differently from us)."""
_BUFFER_LIMIT = 256 * 1024
_HEADER_COST = 64
"""Bytes each header counts for against `max_head_bytes` beyond its text, so that thousands
of tiny headers (each a Python tuple here and a line at the app) meet the limit too."""


class Rejected(Exception):
    """Raised from a parser callback: answer `status` and close the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Request:
    """One parsed request head and the body bytes waiting for an upstream connection."""

    __slots__ = ("method", "url", "headers", "version", "keep_alive", "upgrade", "host", "hosts",
                 "cookie", "xff", "upgrade_to", "chunked", "length", "has_body", "complete", "pending", "pending_size",
                 "upstream", "deployment_id", "user_id", "early")
    # Set when the head is complete (`Viewer.on_headers_complete`):
    method: bytes
    version: str
    keep_alive: bool
    upgrade: bool

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[bytes] = []
        """The headers forwarded as they came: name, b": ", value, CRLF for each."""
        self.host = b""
        self.hosts = 0
        self.cookie = b""
        self.xff = b""
        self.upgrade_to = b"websocket"
        self.chunked = False
        self.length: bytes | None = None
        """The Content-Length the parser accepted (digits only), forwarded as the framing."""
        self.has_body = False
        self.complete = False
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.upstream: Upstream | None = None
        self.deployment_id: int | None = None
        self.user_id: int | None = None
        self.early = False
        """The app began its response before the whole request had arrived."""


class Viewer(asyncio.Protocol):
    """The proxy's side of one browser connection."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.parsing: Request | None = None
        self.current: Request | None = None
        self.queue: deque[Request] = deque()
        self.paused: set[str] = set()
        self.write_paused = False
        self.tunnel: Upstream | None = None
        self.upgrade_pending = False
        self.held: list[bytes] = []
        """Bytes sent after an Upgrade request, held until the app answers 101."""
        self.held_size = 0
        self.in_head = False
        self.head_size = 0
        """Bytes of the head being parsed, as the parser reported its parts: bounds a head
        that arrived within one read (`head_read` bounds those that did not)."""
        self.head_read = 0
        """Bytes read while that head was incomplete."""
        self.max_head = server.config.max_head_bytes
        self.closed = False
        self.last_touch = 0.0

    # -- connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        nodelay(transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0] if isinstance(peer, tuple) else "unix").encode()
        self.server.viewers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.viewers.discard(self)
        req = self.current
        if req is not None and req.upstream is not None:
            req.upstream.close()
        if self.tunnel is not None:
            self.tunnel.close()
            self.server.tunnel_closed(self.current)

    def data_received(self, data: bytes) -> None:
        self.server.bytes_in += len(data)
        if self.tunnel is not None:
            self.tunnel.write(data)
            self.server.tunnel_activity(self)
            return
        if self.upgrade_pending:  # bytes after an Upgrade request, before the app's answer
            self._hold(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade_pending = True
            rest = data[upgrade.args[0]:]
            if rest:
                self._hold(rest)
        except httptools.HttpParserError as error:
            self.reject(error.__context__.status if isinstance(error.__context__, Rejected) else 400)
            return
        if self.in_head:  # a head still incomplete after this read: bound what httptools buffers
            self.head_read += len(data)
            if self.head_read > self.max_head:
                self.reject(431)

    def reject(self, status: int) -> None:
        """Answer a request we will not forward (bad framing, oversized head) and close."""
        if not self.closed and self.current is None:
            self.transport.write(pages.bad_request(status))  # type: ignore[union-attr]
        self.transport.close()  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        self.write_paused = True
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None:
            upstream.pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None:
            upstream.resume()

    def pause_reading(self, reason: str) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()  # type: ignore[union-attr]
        self.paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and not self.closed:
                self.transport.resume_reading()  # type: ignore[union-attr]

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.parsing = Request()
        self.in_head = True
        self.head_size = self.head_read = 0

    def on_url(self, url: bytes) -> None:
        self.parsing.url += url  # type: ignore[union-attr]
        self.head_size += len(url)
        if self.head_size > self.max_head:
            raise Rejected(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:  # a chunked body's trailer fields: dropped
            return
        req = self.parsing
        assert req is not None  # httptools calls on_message_begin first
        self.head_size += len(name) + len(value) + 4 + _HEADER_COST
        if self.head_size > self.max_head:
            raise Rejected(431)
        lname = name.lower()
        if lname == b"host":
            req.host = value
            req.hosts += 1
        elif lname == b"cookie":
            req.cookie = value if not req.cookie else req.cookie + b"; " + value
            return
        elif lname == b"x-forwarded-for":
            req.xff = value
        elif lname == b"upgrade":
            req.upgrade_to = value
        elif lname == b"content-length":
            req.length = value
            req.has_body = value.strip(b"0") != b""
        elif lname == b"transfer-encoding":
            req.chunked = req.has_body = b"chunked" in value.lower()
        if lname not in _DROP:
            req.headers += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        parser = self.parser
        req.method = parser.get_method()
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        req.upgrade = parser.should_upgrade()
        self.in_head = False
        if (req.hosts > 1 or req.method == b"CONNECT" or (req.chunked and req.version == "1.0")
                or (req.upgrade and req.has_body)):
            # an ambiguous target, a tunnel we do not offer, framing HTTP/1.0 lacks, or an
            # Upgrade with a body (llhttp reads what follows the head as the new protocol)
            raise Rejected(400)
        if self.current is None:
            self.current = req
            self.start(req)
        else:  # pipelined: hold it until the current response is done
            self.queue.append(req)
            self.pause_reading("queue")

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        assert req is not None
        if req.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        self._send_body(req, body)

    def on_message_complete(self) -> None:
        req = self.parsing
        assert req is not None
        req.complete = True
        if req.chunked:
            self._send_body(req, b"0\r\n\r\n")

    def _hold(self, data: bytes) -> None:
        self.held.append(data)
        self.held_size += len(data)
        if self.held_size > _BUFFER_LIMIT:
            self.pause_reading("buffer")

    def _send_body(self, req: Request, data: bytes) -> None:
        if req.upstream is not None:
            req.upstream.write(data)
        else:
            req.pending.append(data)
            req.pending_size += len(data)
            if req.pending_size > _BUFFER_LIMIT:
                self.pause_reading("buffer")

    # -- one request -----------------------------------------------------------------------
    def start(self, req: Request) -> None:
        """Route the current request: at once when the server can (`ProxyServer.route_now`,
        the usual case), else in a task (`handle`)."""
        try:
            if self.server.route_now(self, req):
                return
        except Exception:
            log.exception("proxy: failed to route %r", req.url)
            if req.upstream is not None:  # it was forwarded: never send it twice
                self.transport.close()  # type: ignore[union-attr]
                return
        self.server.loop.create_task(self.handle(req))

    async def handle(self, req: Request) -> None:
        try:
            await self.server.route(self, req)
        except Exception:  # a backend failure must not kill the connection silently
            log.exception("proxy: failed to handle %r", req.url)
            if not self.closed and req is self.current and req.upstream is None:
                target = Target(req.deployment_id or 0, 0, "unavailable",
                                "The proxy could not reach the Studios service.")
                self.respond(req, pages.not_running(target, retry=True))

    def respond(self, req: Request, response: bytes) -> None:
        """Answer `req` ourselves (a page, a redirect, status JSON)."""
        if self.closed:
            return
        keep = req.keep_alive and req.complete and not req.upgrade
        if not keep:
            response = response.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        self.transport.write(response)  # type: ignore[union-attr]
        self.finish(req, keep)

    def forward(self, req: Request, upstream: Upstream, head: bytes) -> None:
        """Send `req` to `upstream`; the response streams back through `from_upstream`."""
        if self.closed:
            self.server.pool.put(upstream)
            return
        req.upstream = upstream
        upstream.begin(self, req.method == b"HEAD")
        upstream.write(head)
        if req.pending:
            upstream.write(b"".join(req.pending))
            req.pending.clear()
            req.pending_size = 0
            self.resume_reading("buffer")
        if self.write_paused:
            upstream.pause()

    def from_upstream(self, data: bytes) -> None:
        req = self.current
        if req is not None and not req.complete:
            req.early = True
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def response_complete(self, upstream: Upstream, upstream_keep_alive: bool) -> None:
        req = self.current
        assert req is not None
        req.upstream = None
        # Reuse the app connection only when the exchange ended cleanly on both sides: the app
        # keeps it alive, our whole request reached it before it answered, and it was not an
        # Upgrade the app declined (bytes sent after that head were never forwarded, but the
        # app may not have expected the request to end there). `Pool.put` checks the rest.
        if upstream_keep_alive and req.complete and not req.early and not req.upgrade:
            self.server.pool.put(upstream)
        else:
            upstream.close()
        self.finish(req, upstream_keep_alive and req.complete and req.keep_alive and not req.upgrade)

    def upgraded(self, upstream: Upstream) -> None:
        """The app answered 101: from now on this connection is a two-way pipe."""
        self.tunnel = upstream
        self.upgrade_pending = False
        if self.held:
            upstream.write(b"".join(self.held))
            self.held.clear()
            self.held_size = 0
            self.resume_reading("buffer")
        self.server.tunnel_opened(self.current)
        self.server.tunnel_activity(self)

    def upstream_lost(self, upstream: Upstream) -> None:
        if self.tunnel is upstream:
            self.transport.close()  # type: ignore[union-attr]
            return
        req = self.current
        if req is None or req.upstream is not upstream:
            return
        req.upstream = None
        if upstream.received:  # the response had started (or was close-delimited): end it
            self.transport.close()  # type: ignore[union-attr]
        elif upstream.reused and not req.has_body:  # a stale keep-alive connection: retry
            self.server.loop.create_task(self.handle(req))
        else:
            self.upstream_failed(upstream, "the app closed the connection")

    def upstream_failed(self, upstream: Upstream, why: str) -> None:
        upstream.close()
        req = self.current
        if req is None:
            return
        req.upstream = None
        if upstream.received:
            self.transport.close()  # type: ignore[union-attr]
            return
        target = Target(req.deployment_id or 0, 0, RUNNING, f"The app is not answering: {why}.")
        self.respond(req, pages.not_running(target, retry=True))

    def finish(self, req: Request, keep_alive: bool) -> None:
        self.current = None
        # Whatever paused reading for this request's sake ends with it (an app's full socket,
        # a body buffered before the upstream was chosen); a stale reason would stall the
        # next request on this connection for good.
        req.pending.clear()
        if self.paused:
            self.resume_reading("upstream")
            self.resume_reading("buffer")
        if not keep_alive:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.queue:
            nxt = self.queue.popleft()
            self.current = nxt
            if not self.queue:
                self.resume_reading("queue")
            self.start(nxt)
