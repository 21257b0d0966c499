"""Keep-alive connections to deployments' apps, and the pool that reuses them.

An `Upstream` is an asyncio protocol on one TCP connection to an app. While it serves a
request it parses the response only to find where it ends (httptools), and writes the bytes
to the viewer's connection unchanged as they arrive: no body is ever held whole. After a
`101 Switching Protocols` it becomes a plain two-way pipe. Flow control is symmetric: a full
viewer socket pauses reading from the app, a full app socket pauses reading from the viewer.

This module knows nothing of tokens, cookies or the backend; `server.Viewer` drives it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from .server import Viewer

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class Upstream(asyncio.Protocol):
    """One connection to an app. `viewer` is set while it serves one of that viewer's requests."""

    __slots__ = ("address", "pool", "transport", "viewer", "parser", "head_only", "status",
                 "done", "keep_alive", "upgraded", "received", "reused", "closed", "paused", "excess",
                 "clean")

    def __init__(self, address: tuple[str, int], pool: Pool) -> None:
        self.address = address
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.viewer: Viewer | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.head_only = False
        self.status = 0
        self.done = False
        self.keep_alive = False
        self.upgraded = False
        self.received = False
        self.reused = False
        self.closed = False
        self.paused = False
        """Reading paused because the viewer's socket is full (`pause`/`resume`)."""
        self.excess = False
        """The app sent bytes beyond the end of its response: never reuse the connection."""
        self.clean = False
        """The parser saw the last response end as a message (not a HEAD's head alone), so it
        is back at its start and can parse the next response on this connection."""

    # -- driven by the viewer ---------------------------------------------------------------
    def begin(self, viewer: Viewer, head_only: bool) -> None:
        """Serve one request for `viewer` (`head_only`: a HEAD request, no body follows)."""
        self.viewer = viewer
        if not self.clean:
            self.parser = httptools.HttpResponseParser(self)
        self.clean = False
        self.head_only = head_only
        self.status = 0
        self.done = False
        self.received = False
        self.excess = False

    def pause(self) -> None:
        """Stop reading from the app (the viewer's socket is full)."""
        if not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if not self.closed:
                self.transport.resume_reading()  # type: ignore[union-attr]

    def reusable(self) -> bool:
        """True when the connection can serve another request as it is: open, its response
        read to the end and nothing beyond it, and every byte of our request handed to the
        kernel. (A paused connection is resumed by `Pool.put` first.)"""
        return (not self.closed and not self.excess and not self.upgraded and not self.done
                and self.viewer is None and self.transport is not None
                and self.transport.get_write_buffer_size() == 0)

    def still_open(self) -> bool:
        """True unless the app has closed this idle connection, or sent bytes on it, in a way
        our event loop has not read yet: a look at the socket (`MSG_PEEK`), which takes
        nothing from it. A system call, so the pool asks only for requests that are never
        sent twice."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return True
        look = socket.socket(sock.family, socket.SOCK_STREAM, 0, sock.fileno())
        try:
            look.recv(1, _PEEK)
        except BlockingIOError:
            return True  # nothing to read: open and quiet
        except OSError:
            return False
        finally:
            look.detach()  # the transport's socket stays open
        return False  # the app closed it (b"") or spoke unasked

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.viewer = None
            if self.transport is not None:
                self.transport.close()

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        nodelay(transport)

    def data_received(self, data: bytes) -> None:
        self.pool.received += len(data)
        viewer = self.viewer
        if viewer is None:  # an idle pooled connection should not speak: drop it
            self.close()
            return
        if self.upgraded:
            viewer.from_upstream(data)
            return
        self.received = True
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            if not self.done:
                viewer.upstream_failed(self, "the app sent an invalid HTTP response")
                return
            self.excess = True  # the response was whole; what followed it was not HTTP
        viewer.from_upstream(data)
        if self.upgraded:
            viewer.upgraded(self)
        elif self.done:
            self.done = False
            self.viewer = None
            viewer.response_complete(self, self.keep_alive and not self.excess)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        viewer = self.viewer
        self.viewer = None
        if viewer is not None:
            viewer.upstream_lost(self)

    def pause_writing(self) -> None:
        if self.viewer is not None:
            self.viewer.pause_reading("upstream")

    def resume_writing(self) -> None:
        if self.viewer is not None:
            self.viewer.resume_reading("upstream")

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.done:  # a second response to one request: the app and we disagree on framing
            self.excess = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()  # type: ignore[union-attr]
        self.status = status
        if status == 101:
            self.upgraded = True
        elif self.head_only and status >= 200:
            self.done = True
            self.keep_alive = self.parser.should_keep_alive()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if self.status >= 200 and not self.upgraded and not self.done:
            self.done = True
            self.clean = not self.excess
            # read it now: httptools resets should_keep_alive() once the message is complete
            self.keep_alive = self.parser.should_keep_alive()  # type: ignore[union-attr]


class Pool:
    """Idle keep-alive connections per app address (at most `size` each)."""

    def __init__(self, size: int = 64, connect_timeout: float = 10.0) -> None:
        self.size = size
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], list[Upstream]] = {}
        self.received = 0
        """Bytes read from apps (for metrics)."""

    def get(self, address: tuple[str, int], for_body: bool = False) -> Upstream | None:
        """An idle connection to `address`, or None. `for_body`: for a request with a body,
        which is never sent again if the connection turns out closed (a request without one
        is), so connections the app has closed are left out even before we have read that
        (`Upstream.still_open`)."""
        idle = self._idle.get(address)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if for_body and not conn.still_open():
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    async def connect(self, address: tuple[str, int]) -> Upstream:
        """A new connection (raises OSError or TimeoutError when the app does not answer)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(lambda: Upstream(address, self), address[0], address[1])
        return conn

    def put(self, conn: Upstream) -> None:
        """Take back a connection whose response is complete and that the app keeps alive;
        it is resumed if a viewer's full socket had paused it, and closed instead of pooled
        unless `reusable()`."""
        if conn.closed:
            return
        if conn.paused:
            conn.resume()
        idle = self._idle.setdefault(conn.address, [])
        if len(idle) >= self.size or not conn.reusable():
            conn.close()
        else:
            idle.append(conn)

    def forget(self, conn: Upstream) -> None:
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: we forward each piece as it arrives. asyncio skips it for sockets
    created with proto 0 (as `socket.socket()` makes them), so do it explicitly."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
