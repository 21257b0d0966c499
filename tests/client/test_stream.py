"""The CLI's event-stream reader on its own, against scripted servers (httpx.MockTransport):
after a dropped connection it reconnects with Last-Event-ID and hands over each line once;
an `error` event is the server's message; a server without streams (404) is polled instead,
as a Civis server would be."""

from __future__ import annotations

import json

import httpx
import pytest

from studios.client.api import ApiClient, ApiError
from studios.client.follow import log_lines

PATH = "/studios/1/deployments/2"


def sse(*frames: tuple[str, dict, int | None]) -> bytes:
    out = b""
    for event, data, event_id in frames:
        out += f"event: {event}\n".encode() + (f"id: {event_id}\n".encode() if event_id is not None else b"") + f"data: {json.dumps(data)}\n\n".encode()
    return out


def line(n: int, message: str) -> tuple[str, dict, int]:
    return ("log", {"id": n, "createdAt": "2026-01-01T00:00:00.000Z", "message": message, "stream": "stdout", "source": "user"}, n)


def scripted(handler: object) -> ApiClient:
    return ApiClient("http://studios.test/", "stu_key", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_a_dropped_stream_resumes_after_the_last_line_delivered() -> None:
    asked: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if len(asked) == 1:  # two lines, then the connection drops (no `end`)
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(line(7, "one"), line(9, "two")))
        batch = ("logs", {"lines": [line(12, "three")[1], line(13, "four")[1]]}, 13)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(batch, ("end", {"deploymentId": 2}, None)))

    api = scripted(handler)
    got = [x["message"] for x in log_lines(api, 1, 2, tail=50, sleep=lambda s: None)]
    assert got == ["one", "two", "three", "four"]
    assert [r.url.path for r in asked] == [f"{PATH}/logs/stream"] * 2
    assert asked[0].url.params["tail"] == "50" and asked[0].url.params["batch"] == "true" and "last-event-id" not in asked[0].headers
    assert asked[1].headers["last-event-id"] == "9"


def test_an_error_event_is_the_servers_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = sse(line(1, "one"), ("error", {"error": "not_found", "errorDescription": "Studio 1 was not found.", "code": 404}, None))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    api = scripted(handler)
    lines = log_lines(api, 1, 2, tail=10)
    assert next(lines)["message"] == "one"
    with pytest.raises(ApiError, match=r"Studio 1 was not found\."):
        next(lines)


def test_a_server_without_streams_is_polled() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/logs/stream"):
            return httpx.Response(404, json={"error": "not_found", "errorDescription": "no such route", "code": 404})
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, json=[{"createdAt": "2026-01-01T00:00:00.000Z", "message": "polled", "stream": "stdout", "source": "user"}])
        return httpx.Response(200, json={"deploymentId": 2, "state": "terminated", "stateMessage": "done"})

    api = scripted(handler)
    told: list[bool] = []
    got = [x["message"] for x in log_lines(api, 1, 2, tail=10, on_polling=lambda: told.append(True), sleep=lambda s: None)]
    assert got == ["polled"] and told == [True]
    assert asked[0] == f"{PATH}/logs/stream" and PATH in asked and f"{PATH}/logs" in asked


def test_gives_up_after_its_bound_when_the_server_stays_away() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(line(1, "one")))
        raise httpx.ConnectError("refused")

    api = scripted(handler)
    from studios.client import stream

    with pytest.raises(ApiError, match="could not reconnect"):
        list(stream.read(api, f"{PATH}/logs/stream", reconnects=3, sleep=lambda s: None))
    assert calls == 1 + 3  # the first connection, then three attempts
