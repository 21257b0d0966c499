"""The reverse proxy: one asyncio listener that routes viewers to deployments' apps.

A `Viewer` is the protocol on one browser connection. It parses requests with httptools,
finds the deployment (`d-<id>.<base>` host, or `/_d/<id>/` path prefix), answers the
`/_studios/auth` and `/_studios/status` endpoints itself, verifies the viewer cookie (cached
HMAC) and asks the backend `can_view` and `target` on every request. Then it rewrites only the
request head (path prefix, our cookie removed, `X-Forwarded-*`) and pipes bodies both ways
through a pooled `upstream.Upstream`; `Upgrade` requests become a raw two-way pipe after the
app's 101. A deployment that is not running gets a page (`pages`), never a bare 502.

`ProxyServer` owns the listener, the pool and the open-WebSocket activity timer. It does not
import the service; everything it needs comes through `backend.ProxyBackend`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from urllib.parse import parse_qs

import httptools

from . import pages
from .backend import RUNNING, STARTING_STATES, ProxyBackend, Target
from .config import ProxyConfig
from .tokens import AUTH_PATH, STATUS_PATH, DisplayLinks, cookie_value, strip_cookie
from .upstream import Pool, Upstream, nodelay

log = logging.getLogger("studios.proxy")

_DROP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
    b"proxy-authorization", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-forwarded-prefix", b"x-forwarded-port",
})
_BUFFER_LIMIT = 256 * 1024


class Request:
    """One parsed request head and the body bytes waiting for an upstream connection."""

    __slots__ = ("method", "url", "headers", "version", "keep_alive", "upgrade", "host",
                 "cookie", "xff", "upgrade_to", "chunked", "has_body", "complete", "pending", "pending_size",
                 "upstream", "deployment_id")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.host = b""
        self.cookie = b""
        self.xff = b""
        self.upgrade_to = b"websocket"
        self.chunked = False
        self.has_body = False
        self.complete = False
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.upstream: Upstream | None = None
        self.deployment_id: int | None = None


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
        if self.tunnel is not None:
            self.tunnel.write(data)
            self.server.tunnel_activity(self)
            return
        if self.upgrade_pending:  # bytes after an Upgrade request, before the app's answer
            self._body(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade_pending = True
            rest = data[upgrade.args[0]:]
            if rest:
                self._body(rest)
        except httptools.HttpParserError:
            self.transport.write(pages.bad_request())  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        self.write_paused = True
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        upstream = self.tunnel or (self.current.upstream if self.current else None)
        if upstream is not None and upstream.transport is not None:
            upstream.transport.resume_reading()

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

    def on_url(self, url: bytes) -> None:
        self.parsing.url += url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.parsing
        lname = name.lower()
        if lname == b"host":
            req.host = value
        elif lname == b"cookie":
            req.cookie = value if not req.cookie else req.cookie + b"; " + value
            return
        elif lname == b"x-forwarded-for":
            req.xff = value
        elif lname == b"upgrade":
            req.upgrade_to = value
        elif lname == b"content-length":
            req.has_body = value != b"0"
        elif lname == b"transfer-encoding":
            req.chunked = req.has_body = b"chunked" in value.lower()
        if lname not in _DROP:
            req.headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = self.parsing
        parser = self.parser
        req.method = parser.get_method()
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        req.upgrade = parser.should_upgrade()
        if self.current is None:
            self.current = req
            self.server.loop.create_task(self.handle(req))
        else:  # pipelined: hold it until the current response is done
            self.queue.append(req)
            self.pause_reading("queue")

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        self._send_body(req, body)

    def on_message_complete(self) -> None:
        req = self.parsing
        req.complete = True
        if req.chunked:
            self._send_body(req, b"0\r\n\r\n")

    def _body(self, data: bytes) -> None:
        self._send_body(self.current, data)  # type: ignore[arg-type]

    def _send_body(self, req: Request, data: bytes) -> None:
        if req.upstream is not None:
            req.upstream.write(data)
        else:
            req.pending.append(data)
            req.pending_size += len(data)
            if req.pending_size > _BUFFER_LIMIT:
                self.pause_reading("buffer")

    # -- one request -----------------------------------------------------------------------
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
            upstream.transport.pause_reading()  # type: ignore[union-attr]

    def from_upstream(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def response_complete(self, upstream: Upstream, upstream_keep_alive: bool) -> None:
        req = self.current
        req.upstream = None  # type: ignore[union-attr]
        keep = upstream_keep_alive and req.complete  # type: ignore[union-attr]
        if keep:
            self.server.pool.put(upstream)
        else:
            upstream.close()
        self.resume_reading("upstream")
        self.finish(req, keep and req.keep_alive and not req.upgrade)  # type: ignore[arg-type, union-attr]

    def upgraded(self, upstream: Upstream) -> None:
        """The app answered 101: from now on this connection is a two-way pipe."""
        self.tunnel = upstream
        self.upgrade_pending = False
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
        if not keep_alive:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.queue:
            nxt = self.queue.popleft()
            self.current = nxt
            if not self.queue:
                self.resume_reading("queue")
            self.server.loop.create_task(self.handle(nxt))


class ProxyServer:
    """The proxy listener. Start it inside the service's event loop, or alone for scale.

    >>> proxy = ProxyServer(config, backend)
    >>> await proxy.start("0.0.0.0", 8001)
    >>> ...
    >>> await proxy.close()
    """

    def __init__(self, config: ProxyConfig, backend: ProxyBackend,
                 links: DisplayLinks | None = None) -> None:
        self.config = config
        self.backend = backend
        self.links = links or DisplayLinks(config)
        self.pool = Pool(config.pool_size, config.connect_timeout)
        self.viewers: set[Viewer] = set()
        self.tunnels: dict[int, int] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._servers: list[asyncio.AbstractServer] = []
        self._timer: asyncio.TimerHandle | None = None
        self._proto = config.scheme.encode()
        self._path_mode = config.mode == "path"
        self._cookie_headers: dict[bytes, tuple[list[str], bytes]] = {}
        self._hosts: dict[bytes, int | None] = {}

    async def start(self, host: str = "127.0.0.1", port: int = 0,
                    sock: socket.socket | None = None) -> tuple[str, int]:
        """Listen on (host, port) or an already bound `sock`; returns the bound address."""
        self.loop = asyncio.get_running_loop()
        if sock is not None:
            server = await self.loop.create_server(lambda: Viewer(self), sock=sock, backlog=1024)
        else:
            server = await self.loop.create_server(lambda: Viewer(self), host, port,
                                                   reuse_address=True, backlog=1024)
        self._servers.append(server)
        if self._timer is None:
            self._timer = self.loop.call_later(self.config.websocket_touch_interval, self._touch_tunnels)
        return server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        """Stop listening, close viewers' connections and pooled upstream connections."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for server in self._servers:
            server.close()
        for viewer in list(self.viewers):
            if viewer.transport is not None:
                viewer.transport.close()
        self.pool.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- activity --------------------------------------------------------------------------
    def tunnel_opened(self, req: Request | None) -> None:
        if req is not None and req.deployment_id is not None:
            self.tunnels[req.deployment_id] = self.tunnels.get(req.deployment_id, 0) + 1

    def tunnel_closed(self, req: Request | None) -> None:
        if req is not None and req.deployment_id is not None:
            left = self.tunnels.get(req.deployment_id, 0) - 1
            if left > 0:
                self.tunnels[req.deployment_id] = left
            else:
                self.tunnels.pop(req.deployment_id, None)

    def tunnel_activity(self, viewer: Viewer) -> None:
        now = self.loop.time()
        if now - viewer.last_touch > 1.0 and viewer.current and viewer.current.deployment_id is not None:
            viewer.last_touch = now
            self.backend.touch(viewer.current.deployment_id)

    def _touch_tunnels(self) -> None:
        for deployment_id in list(self.tunnels):
            self.backend.touch(deployment_id)
        self._timer = self.loop.call_later(self.config.websocket_touch_interval, self._touch_tunnels)

    # -- routing ---------------------------------------------------------------------------
    async def route(self, viewer: Viewer, req: Request) -> None:
        links = self.links
        url = req.url.decode("latin-1")
        path, _, query = url.partition("?")
        prefix = ""
        if self._path_mode:
            split = links.split_path(path)
            deployment_id = split[0] if split else None
            if split is not None:
                prefix, path = path[: len(path) - len(split[1])], split[1]
                if not path:  # /_d/12 -> /_d/12/
                    location = prefix + "/" + ("?" + query if query else "")
                    viewer.respond(req, pages.redirect(location))
                    return
        else:
            deployment_id = self._hosts.get(req.host, -1)
            if deployment_id == -1:
                deployment_id = links.deployment_for_host(req.host.decode("latin-1"))
                if len(self._hosts) >= 10_000:
                    self._hosts.clear()
                self._hosts[req.host] = deployment_id
        if deployment_id is None:
            await self._fallback(viewer, req)
            return
        req.deployment_id = deployment_id

        if path.startswith("/_studios/"):
            if path == AUTH_PATH:
                await self._auth(viewer, req, deployment_id, prefix, query)
                return
            if path != STATUS_PATH:
                viewer.respond(req, pages.response(404, b"Not found\n", "text/plain"))
                return

        user_id = self._viewer_user(req, deployment_id)
        if user_id is None:
            viewer.respond(req, pages.forbidden(
                "No valid sign-in for this studio: the link or cookie is missing, expired, "
                "or belongs to another studio."))
            return
        backend = self.backend
        if not await backend.can_view(user_id, deployment_id):
            viewer.respond(req, pages.forbidden("You do not have access to this studio."))
            return
        target = await backend.target(deployment_id)
        if target is None:
            viewer.respond(req, pages.not_found(deployment_id))
            return
        if path == STATUS_PATH:
            viewer.respond(req, pages.status(target))
            return
        if target.state != RUNNING or target.address is None:
            if target.state in STARTING_STATES:
                if target.state == "sleeping":
                    await backend.wake(deployment_id)
                viewer.respond(req, pages.starting(target, prefix + STATUS_PATH))
            else:
                viewer.respond(req, pages.not_running(target))
            return

        backend.touch(deployment_id)
        target_path = (path + "?" + query if query else path).encode("latin-1") if prefix else req.url
        await self._send(viewer, req, target.address, target_path, prefix)

    def _viewer_user(self, req: Request, deployment_id: int) -> int | None:
        """The user of a valid cookie for this deployment (signature, expiry and deployment
        checked on every request; the header parse is cached per distinct Cookie header)."""
        if not req.cookie:
            return None
        parsed = self._cookie_headers.get(req.cookie)
        if parsed is None:
            header = req.cookie.decode("latin-1")
            parsed = (cookie_value(header), strip_cookie(header).encode("latin-1"))
            if len(self._cookie_headers) >= 10_000:
                self._cookie_headers.clear()
            self._cookie_headers[req.cookie] = parsed
        req.cookie = parsed[1]  # what the app gets: the header without our cookie
        for value in parsed[0]:
            pair = self.links.verify_cookie(value)
            if pair is not None and pair[0] == deployment_id:
                return pair[1]
        return None

    async def _auth(self, viewer: Viewer, req: Request, deployment_id: int, prefix: str,
                    query: str) -> None:
        token = (parse_qs(query).get("token") or [""])[0]
        pair = self.links.verify_token(token) if token else None
        if pair is None or pair[0] != deployment_id:
            viewer.respond(req, pages.forbidden(
                "This link is not valid: it was altered, has expired, or is for another studio."))
            return
        if not await self.backend.can_view(pair[1], deployment_id):
            viewer.respond(req, pages.forbidden("You do not have access to this studio."))
            return
        cookie = self.links.set_cookie(deployment_id, pair[1])
        viewer.respond(req, pages.redirect(prefix + "/", set_cookie=cookie))

    async def _fallback(self, viewer: Viewer, req: Request) -> None:
        if self.config.fallback is None:
            viewer.respond(req, pages.response(404, b"Not a Studios deployment\n", "text/plain"))
            return
        await self._send(viewer, req, self.config.fallback, req.url, "")

    async def _send(self, viewer: Viewer, req: Request, address: tuple[str, int], path: bytes,
                    prefix: str) -> None:
        upstream = self.pool.get(address)
        if upstream is None:
            try:
                upstream = await self.pool.connect(address)
            except (OSError, asyncio.TimeoutError) as error:
                target = Target(req.deployment_id or 0, 0, RUNNING,
                                f"The app is not answering yet ({error.__class__.__name__}).")
                viewer.respond(req, pages.not_running(target, retry=True))
                return
        viewer.forward(req, upstream, self._head(viewer, req, path, prefix))

    def _head(self, viewer: Viewer, req: Request, path: bytes, prefix: str) -> bytes:
        parts = [req.method, b" ", path, b" HTTP/", req.version.encode(), b"\r\n"]
        for name, value in req.headers:
            parts += (name, b": ", value, b"\r\n")
        if req.cookie:  # already stripped of our cookie by _viewer_user (deployment requests)
            parts += (b"Cookie: ", req.cookie, b"\r\n")
        xff = req.xff + b", " + viewer.peer if req.xff else viewer.peer
        parts += (b"X-Forwarded-For: ", xff, b"\r\nX-Forwarded-Proto: ", self._proto,
                  b"\r\nX-Forwarded-Host: ", req.host, b"\r\n")
        if prefix:
            parts += (b"X-Forwarded-Prefix: ", prefix.encode(), b"\r\n")
        if req.upgrade:
            parts += (b"Connection: Upgrade\r\nUpgrade: ", req.upgrade_to, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

