"""The CLI's HTTP client on its own, against scripted servers (httpx.MockTransport): it waits
as long as `Retry-After` says on 429 and 503 and then succeeds, gives up after its bound,
repeats a POST only when told to, turns Civis error bodies into their message, walks every
page; and the log cursor hands each line over once when several share one time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from studios.client.api import ApiClient, ApiError, retry_after
from studios.client.follow import LogCursor


def scripted(*answers: httpx.Response) -> tuple[ApiClient, list[httpx.Request], list[float]]:
    requests: list[httpx.Request] = []
    waits: list[float] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return queue.pop(0)

    client = ApiClient("http://studios.test/", "stu_key", transport=httpx.MockTransport(handler), sleep=waits.append, max_retries=3)
    return client, requests, waits


def civis_error(code: int, description: str, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": "x", "errorDescription": description, "code": code}, headers=headers)


def test_waits_as_retry_after_says_then_succeeds() -> None:
    client, requests, waits = scripted(civis_error(429, "slow down", **{"Retry-After": "2"}), civis_error(503, "busy", **{"Retry-After": "1"}), httpx.Response(200, json=[{"id": 1}]))
    assert client.get("/studios") == [{"id": 1}]
    assert waits == [2.0, 1.0] and len(requests) == 3
    assert requests[0].headers["authorization"] == "Bearer stu_key"


def test_gives_up_after_its_bound_with_the_servers_message() -> None:
    client, requests, waits = scripted(*[civis_error(429, "Too many requests.", **{"Retry-After": "3600"})] * 4)
    with pytest.raises(ApiError) as caught:
        client.get("/studios")
    assert caught.value.status == 429 and str(caught.value) == "Too many requests."
    assert len(requests) == 4 and waits == [30.0, 30.0, 30.0]  # each wait capped at max_wait


def test_a_post_is_repeated_on_503_only_when_the_server_says_when() -> None:
    client, requests, _ = scripted(civis_error(503, "down for maintenance"))
    with pytest.raises(ApiError, match="down for maintenance"):
        client.post("/studios/1/deployments")
    assert len(requests) == 1
    client, requests, waits = scripted(civis_error(503, "back soon", **{"Retry-After": "1"}), httpx.Response(201, json={"deploymentId": 7}))
    assert client.post("/studios/1/deployments") == {"deploymentId": 7}
    assert len(requests) == 2 and waits == [1.0]


def test_errors_read_as_the_server_wrote_them() -> None:
    client, _, _ = scripted(civis_error(400, "gitRepoUrl: 'x' is not a git URL"), httpx.Response(502, text="<html>Bad gateway</html>"), civis_error(401, "The API key is not valid."))
    with pytest.raises(ApiError, match=r"^gitRepoUrl: 'x' is not a git URL$"):
        client.get("/studios/1")
    with pytest.raises(ApiError, match=r"^HTTP 502 Bad Gateway: <html>Bad gateway</html>$"):
        client.get("/studios/1")
    with pytest.raises(ApiError, match=r"check CIVIS_API_KEY"):
        client.get("/studios/1")


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after("7") == 7.0
    assert retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now.timestamp()) == 90.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_pages_walks_every_page_by_the_headers() -> None:
    pages = {1: [{"id": 1}, {"id": 2}], 2: [{"id": 3}]}
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        return httpx.Response(200, json=pages[int(params["page_num"])], headers={"X-Pagination-Total-Pages": "2"})

    client = ApiClient("http://studios.test", "k", transport=httpx.MockTransport(handler))
    assert [s["id"] for s in client.pages("/studios", per_page=2, archived="all")] == [1, 2, 3]
    assert seen == [{"archived": "all", "limit": "2", "page_num": "1"}, {"archived": "all", "limit": "2", "page_num": "2"}]


def test_the_log_cursor_hands_over_every_line_once_even_when_stored_late() -> None:
    def line(t: str, message: str, source: str = "user") -> dict[str, str]:
        return {"createdAt": f"2026-01-01T00:00:{t}Z", "message": message, "stream": "stdout", "source": source}

    cursor = LogCursor(overlap=5.0)
    assert cursor.params() == {}
    first = [line("10.000", "a"), line("12.000", "ready", "system")]
    assert [x["message"] for x in cursor.take(first)] == ["a", "ready"]
    assert cursor.params() == {"start_at": "2026-01-01T00:00:07.000Z"}  # 5 s before the newest
    # a batch of the app's lines stored after the later system line, with earlier times
    later = [line("10.000", "a"), line("11.000", "b"), line("11.000", "b"), line("12.000", "ready", "system"), line("12.500", "c")]
    assert [x["message"] for x in cursor.take(later)] == ["b", "b", "c"]  # b twice: stored twice
    assert [x["message"] for x in cursor.take(later)] == []
    assert json.dumps(cursor.params()) == '{"start_at": "2026-01-01T00:00:07.500Z"}'
