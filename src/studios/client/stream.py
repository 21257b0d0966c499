"""Server-sent events from the API for the CLI (`docs/streams.md`): one stream, parsed by
httpx-sse, reconnected after a dropped connection with `Last-Event-ID` (a log stream then goes
on right after the last line it delivered: nothing repeated, nothing missed). An `error` event
(the caller lost access) becomes an `ApiError`. `NoStream` when the server has no such stream
(another server of the Civis API): the caller then polls. Knows no path and no event's meaning.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from httpx_sse import EventSource

from studios.client.api import ApiClient, ApiError, retry_after

READ_TIMEOUT = 60.0
"""A stream silent this long (the service sends a heartbeat every 15 s) is taken as dropped."""
RECONNECTS = 30
"""Consecutive failed reconnections before giving up."""
MAX_BACKOFF = 10.0


class NoStream(Exception):
    """The server answered the stream's path with 404 or 405, or not with an event stream."""


@dataclasses.dataclass(frozen=True)
class Message:
    event: str
    data: Any
    """The event's JSON data, parsed (None when it has none)."""
    id: str


def read(
    api: ApiClient,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    deadline: float | None = None,
    reconnects: int = RECONNECTS,
    sleep: Callable[[float], None] = time.sleep,
    on_reconnect: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """Every event of the stream at `path`, across reconnections, until the server ends it for
    good or the consumer stops. `deadline` (time.monotonic()): TimeoutError once it has passed
    with nothing new. `on_reconnect(n)` is told of the n-th attempt in a row."""
    last_id = ""
    wait = 1.0
    failures = 0
    opened = False
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        read_timeout = READ_TIMEOUT if deadline is None else max(0.5, min(READ_TIMEOUT, deadline - time.monotonic()))
        try:
            with api.stream(path, params=params, headers=headers, read_timeout=read_timeout) as response:
                kind = response.headers.get("content-type", "").partition(";")[0].strip()
                if not opened and (response.status_code in (404, 405) or (response.is_success and kind != "text/event-stream")):
                    raise NoStream(f"{path}: HTTP {response.status_code} {kind}")
                if response.status_code in (429, 503):
                    wait = retry_after(response.headers.get("retry-after")) or wait
                    raise httpx.RemoteProtocolError("the server asked to come back later")
                if not response.is_success:
                    raise api.error_of(response)
                opened = True
                for sse in EventSource(response).iter_sse():
                    failures = 0
                    if sse.id:
                        last_id = sse.id
                    if sse.retry:
                        wait = sse.retry / 1000
                    data = json.loads(sse.data) if sse.data else None
                    if sse.event == "error":
                        body = data if isinstance(data, dict) else {}
                        raise ApiError(str(body.get("errorDescription") or "the stream ended with an error"), body.get("code"), body.get("error"))
                    yield Message(sse.event, data, sse.id)
        except (httpx.TransportError, ApiError) as error:
            if isinstance(error, ApiError) and (error.status is not None or not opened):
                raise  # the server's answer (lost access...), or never reached at all
        # dropped or closed by the server: come back, from the last event seen
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(path)
        failures += 1
        if failures > reconnects:
            raise ApiError(f"lost the event stream of {path} and could not reconnect ({reconnects} attempts)")
        if on_reconnect is not None:
            on_reconnect(failures)
        sleep(min(wait * 2 ** (failures - 1), MAX_BACKOFF))
