"""ASGI middleware that makes the paths the civis client and CLI send all land on one route:
`//studios/1` (a base URL with a trailing slash) and `/studios/` (the CLI's collection path)
become `/studios/1` and `/studios`."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_SLASHES = re.compile(r"/{2,}")


class NormalizePath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if "//" in path or (len(path) > 1 and path.endswith("/")):
                path = _SLASHES.sub("/", path)
                if len(path) > 1:
                    path = path.rstrip("/") or "/"
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
