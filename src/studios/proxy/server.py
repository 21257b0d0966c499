"""The reverse proxy's listener and router: which deployment, who is asking, where to send it.

`ProxyServer` accepts viewer connections (`viewer.Viewer`), and for each request finds the
deployment (`d-<id>.<base>` host, or `/_d/<id>/` path prefix), answers `/_studios/auth`
(single-use token → cookie, rate-limited per client address) and `/_studios/status` itself,
verifies the viewer cookie (cached HMAC) and asks the backend `can_view` and `target` on every
request (its synchronous `cached_target` first, when it has one: `route_now` then forwards
from the parser's callback, without a task). Then it rewrites only the request head (the
path prefix kept or stripped as the deployment chooses, our cookie removed, the body's
framing, `X-Forwarded-*`) and forwards through a pooled `upstream.Upstream`. A deployment
that is not running gets a page (`pages`), never a bare 502.

It owns the listener, the upstream pool and the open-WebSocket activity timer, and does not
import the service: everything it needs comes through `backend.ProxyBackend`.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import parse_qs

from . import pages
from .backend import RUNNING, STARTING_STATES, ProxyBackend, Target
from .config import ProxyConfig
from .limits import AttemptLimiter
from .tokens import AUTH_PATH, STATUS_PATH, DisplayLinks, cookie_value, strip_cookie
from .upstream import Pool
from .viewer import Request, Viewer

_VERSION_LINE = {"1.1": b" HTTP/1.1\r\n", "1.0": b" HTTP/1.0\r\n"}


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
        self.auth_limiter = AttemptLimiter(config.auth_attempts_per_minute)
        self.viewers: set[Viewer] = set()
        self.tunnels: dict[int, int] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._servers: list[asyncio.AbstractServer] = []
        self._timer: asyncio.TimerHandle | None = None
        self._proto = config.scheme.encode()
        self._path_mode = config.mode == "path"
        self._cookie_headers: dict[bytes, tuple[list[str], bytes]] = {}
        self._hosts: dict[bytes, int | None] = {}
        self._cached_target = getattr(backend, "cached_target", None)
        """The backend's optional synchronous answer for the usual request (`route_now`)."""
        self.requests = self.bytes_in = 0
        """Requests routed and bytes read from viewers, for metrics (bytes from apps: `bytes_out`)."""

    @property
    def bytes_out(self) -> int:
        return self.pool.received

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
        if self.tunnels:
            self.loop.create_task(self.recheck_tunnels())
        self._timer = self.loop.call_later(self.config.websocket_touch_interval, self._touch_tunnels)

    async def recheck_tunnels(self) -> None:
        """Close open WebSockets whose viewer may no longer view the deployment (run with the
        activity timer, so a revoked share also ends open WebSockets within that interval)."""
        for viewer in [v for v in self.viewers if v.tunnel is not None and v.current is not None]:
            req = viewer.current
            try:
                allowed = await self.backend.can_view(req.user_id, req.deployment_id)  # type: ignore[arg-type, union-attr]
            except Exception:
                continue
            if not allowed and viewer.transport is not None:
                viewer.transport.close()

    # -- routing ---------------------------------------------------------------------------
    def route_now(self, viewer: Viewer, req: Request) -> bool:
        """Forward `req` from within the parser's callback, without a task, when nothing needs
        waiting for: a deployment's URL outside `/_studios/`, a valid viewer cookie, the
        backend's `cached_target` allowing this viewer to a running app, and an idle pooled
        connection to it. The checks are `route`'s, answered from memory. False leaves `req`
        as it was, for `route`."""
        cached_target = self._cached_target
        if cached_target is None or not req.cookie:
            return False
        deployment_id, prefix, path, query = self._locate(req)
        if deployment_id is None or not path or path.startswith("/_studios/"):
            return False
        viewer_user = self._viewer_user(req, deployment_id)
        if viewer_user is None:
            return False
        target = cached_target(viewer_user[0], deployment_id)
        if target is None or target.state != RUNNING or target.address is None:
            return False
        upstream = self.pool.get(target.address, req.has_body)
        if upstream is None:
            return False
        self.requests += 1
        req.deployment_id, (req.user_id, req.cookie) = deployment_id, viewer_user
        self.backend.touch(deployment_id)
        viewer.forward(req, upstream, self._head(viewer, req, *self._app_path(req, target, prefix, path, query)))
        return True

    def _locate(self, req: Request) -> tuple[int | None, str, str, str]:
        """The deployment a request is for (None: not a deployment's), the path prefix that
        named it (path mode), the path after that prefix ("" for `/_d/<id>` without its
        slash) and the query."""
        path, _, query = req.url.decode("latin-1").partition("?")
        if self._path_mode:
            split = self.links.split_path(path)
            if split is None:
                return None, "", path, query
            return split[0], path[: len(path) - len(split[1])], split[1], query
        deployment_id = self._hosts.get(req.host, -1)  # the parse is cached per distinct Host
        if deployment_id == -1:
            deployment_id = self.links.deployment_for_host(req.host.decode("latin-1"))
            if len(self._hosts) >= 10_000:
                self._hosts.clear()
            self._hosts[req.host] = deployment_id
        return deployment_id, "", path, query

    def _app_path(self, req: Request, target: Target, prefix: str, path: str,
                  query: str) -> tuple[bytes, str]:
        """The request target the app gets, and the `X-Forwarded-Prefix` (path mode, when the
        prefix is stripped), else the URL as the viewer sent it and no prefix."""
        if prefix and (self.config.strip_prefix if target.strip_prefix is None else target.strip_prefix):
            return (path + "?" + query if query else path).encode("latin-1"), prefix
        return req.url, ""

    async def route(self, viewer: Viewer, req: Request) -> None:
        self.requests += 1
        deployment_id, prefix, path, query = self._locate(req)
        if deployment_id is None:
            await self._fallback(viewer, req)
            return
        if not path:  # /_d/12 -> /_d/12/
            viewer.respond(req, pages.redirect(prefix + "/" + ("?" + query if query else "")))
            return
        req.deployment_id = deployment_id

        if path.startswith("/_studios/"):
            if path == AUTH_PATH:
                await self._auth(viewer, req, deployment_id, prefix, query)
                return
            if path != STATUS_PATH:
                viewer.respond(req, pages.response(404, b"Not found\n", "text/plain"))
                return

        viewer_user = self._viewer_user(req, deployment_id)
        if viewer_user is None:
            viewer.respond(req, pages.forbidden(
                "No valid sign-in for this studio: the link or cookie is missing, expired, "
                "or belongs to another studio."))
            return
        req.user_id = user_id = viewer_user[0]
        req.cookie = viewer_user[1]  # what the app gets: the header without our cookie
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
        await self._send(viewer, req, target.address, *self._app_path(req, target, prefix, path, query))

    def _viewer_user(self, req: Request, deployment_id: int) -> tuple[int, bytes] | None:
        """The user of a valid cookie for this deployment, and the Cookie header the app gets
        (without ours). Signature, expiry and deployment are checked on every request; the
        header parse is cached per distinct Cookie header."""
        if not req.cookie:
            return None
        parsed = self._cookie_headers.get(req.cookie)
        if parsed is None:
            header = req.cookie.decode("latin-1")
            parsed = (cookie_value(header), strip_cookie(header).encode("latin-1"))
            if len(self._cookie_headers) >= 10_000:
                self._cookie_headers.clear()
            self._cookie_headers[req.cookie] = parsed
        for value in parsed[0]:
            pair = self.links.verify_cookie(value)
            if pair is not None and pair[0] == deployment_id:
                return pair[1], parsed[1]
        return None

    async def _auth(self, viewer: Viewer, req: Request, deployment_id: int, prefix: str,
                    query: str) -> None:
        wait = self.auth_limiter.allow(viewer.peer)
        if wait:
            viewer.respond(req, pages.too_many(wait))
            return
        token = (parse_qs(query).get("token") or [""])[0]
        pair = self.links.verify_token(token) if token else None
        if pair is None or pair[0] != deployment_id:
            viewer.respond(req, pages.forbidden(
                "This link is not valid: it was altered, has expired, or is for another studio."))
            return
        if not await self.backend.can_view(pair[1], deployment_id):
            viewer.respond(req, pages.forbidden("You do not have access to this studio."))
            return
        spent = self.links.spent_key(token)
        if spent is None or not await self.backend.spend(*spent):
            viewer.respond(req, pages.forbidden(
                "This link was already used: each link opens a studio once."))
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
        upstream = self.pool.get(address, req.has_body)
        if upstream is None:
            try:
                upstream = await self.pool.connect(address)
            except (TimeoutError, OSError) as error:
                target = Target(req.deployment_id or 0, 0, RUNNING,
                                f"The app is not answering yet ({error.__class__.__name__}).")
                viewer.respond(req, pages.not_running(target, retry=True))
                return
        viewer.forward(req, upstream, self._head(viewer, req, path, prefix))

    def _head(self, viewer: Viewer, req: Request, path: bytes, prefix: str) -> bytes:
        parts = [req.method, b" ", path, _VERSION_LINE.get(req.version) or f" HTTP/{req.version}\r\n".encode()]
        parts += req.headers  # each forwarded header's name, ": ", value, CRLF
        if req.chunked:  # the framing as we parsed it, never the viewer's own header
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif req.length is not None:
            parts += (b"Content-Length: ", req.length, b"\r\n")
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

