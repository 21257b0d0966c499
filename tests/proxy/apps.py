"""A small ASGI app standing in for a deployed studio: echo, SSE, WebSocket, big bodies."""

from __future__ import annotations

import asyncio
import json
import re

CHUNK = b"x" * 65536


class UpstreamApp:
    """Routes: /headers (JSON of path, query, headers), /sse (one event, then waits for
    `release`, then a second), /ws (echo), /upload (counts body bytes), /download?n= (streams
    n bytes, chunked), /blob?n= (n bytes with a Content-Length, one write), anything else: "hello <path>". Like an app told its STUDIOS_BASE_PATH,
    it serves the same routes under a `/_d/<id>` prefix (and reports the path it saw)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requests = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(receive, send)
            return
        if scope["type"] != "http":
            return
        self.requests += 1
        path = scope["path"]
        route = re.sub(r"^/_d/[0-9]+(?=/)", "", path)
        if route == "/headers":
            body = json.dumps({
                "path": path,
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            }).encode()
            await _reply(send, body, b"application/json")
        elif route == "/sse":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"data: two\n\n"})
        elif route == "/upload":
            total = 0
            while True:
                message = await receive()
                total += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            await _reply(send, str(total).encode(), b"text/plain")
        elif route == "/download":
            n = int(scope["query_string"].decode().partition("=")[2])
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream")]})
            sent = 0
            while sent < n:
                piece = CHUNK[: min(len(CHUNK), n - sent)]
                sent += len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif route == "/blob":  # n bytes with a Content-Length, in one write
            n = int(scope["query_string"].decode().partition("=")[2])
            await _reply(send, b"b" * n, b"application/octet-stream")
        else:
            body = b"<!doctype html><title>studio app</title><h1 id=app>hello " + path.encode() + b"</h1>"
            await _reply(send, body, b"text/html")

    async def websocket(self, receive, send) -> None:
        message = await receive()
        assert message["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "echo: " + message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _reply(send, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
