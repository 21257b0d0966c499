"""ASGI middleware that times every HTTP request into the request-latency histogram, labelled by
the route's template (`/studios/{id}`, never the raw path, so ids do not multiply the series),
the method and the status class. A path no route matches counts as `<unmatched>`. A request is
timed until its response starts (the status and headers are sent: the body follows at once,
and a stream of server-sent events is then open). It reads the route the router chose and the
status, and changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class RequestTimer:
    """Must sit inside any middleware that copies the scope (the router records its route on
    the scope it was given)."""

    def __init__(self, app: ASGIApp, histogram: Any) -> None:
        self.app = app
        self.histogram = histogram
        self._children: dict[tuple[str, int, int], Any] = {}

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        key = (scope["method"], id(route), status)  # routes live as long as the app (and are not hashable)
        child = self._children.get(key)
        if child is None:
            path = getattr(route, "path", None)
            method = scope["method"] if scope["method"] in METHODS else "other"
            child = self.histogram.labels(method, path if isinstance(path, str) else UNMATCHED, _STATUS.get(status // 100, "other"))
            if len(self._children) < 10_000:  # bounded: methods and routes are, statuses too
                self._children[key] = child
        child.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        started = False

        async def timed(message: Message) -> None:
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                self._observe(scope, message["status"], time.perf_counter() - began)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        except BaseException:
            if not started:
                self._observe(scope, 500, time.perf_counter() - began)
            raise
