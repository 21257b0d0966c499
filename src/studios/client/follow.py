"""Live views for the CLI as a stream of events: a deployment's state changes and start-up
steps, and its log lines. They come from the server's event streams (`studios.client.stream`:
the deployment's `events`, its `logs/stream`, followed by line id); against a server without
them (another server of the Civis API) `PollingSource` makes the same events by polling the
REST API every `interval` seconds (logs from a little before the newest line's time, skipping
the lines already handed over: see `LogCursor`). Knows the API's paths, nothing of rendering."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from studios.client import stream
from studios.client.api import ApiClient

LOG_PAGE = 10_000
"""Lines asked for per log request (the API's default and the spec's usual page)."""


@dataclasses.dataclass(frozen=True)
class StateChanged:
    deployment: dict[str, Any]
    """The deployment as `GET /studios/{id}/deployments/{deployment_id}` returns it."""


@dataclasses.dataclass(frozen=True)
class LogLine:
    line: dict[str, Any]
    """`{"message", "stream", "source", "createdAt"}`, as the logs endpoint returns it."""


@dataclasses.dataclass(frozen=True)
class Progress:
    message: str
    """A start-up step (cloning, pulling, waiting for the app...), as the service reports it."""


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """Nothing new this round: lets a consumer check its own deadline."""


Event = StateChanged | LogLine | Progress | Heartbeat


class EventSource(Protocol):
    def events(self) -> Iterator[Event]:
        """State changes and new lines, in order, until the deployment has terminated and
        every line it wrote was delivered (or the consumer stops iterating)."""
        ...


class LogCursor:
    """Where a log followed by polling stands (the stream follows by line id and needs none of
    this). Lines are not stored in time order (an app's lines are
    stored in batches after they were read, while the service's own lines are stored at once),
    so a line can appear with a time before the newest one already seen. Each request therefore
    starts `overlap` seconds before the newest time seen, and the lines already handed over in
    that window are skipped: counted by (time, stream, source, message), so a line repeated at
    the same time still comes through as often as it was stored."""

    def __init__(self, overlap: float = 5.0) -> None:
        self.overlap = timedelta(seconds=overlap)
        self.newest: str | None = None
        self.seen: dict[tuple[str, str, str, str], int] = {}

    def params(self) -> dict[str, Any]:
        if self.newest is None:
            return {}
        return {"start_at": _civis_time(_parse(self.newest) - self.overlap)}

    def take(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The lines not handed over before, from a response to `params()`; moves the cursor."""
        fresh = []
        counts: dict[tuple[str, str, str, str], int] = {}
        for line in lines:
            key = (line["createdAt"], line.get("stream", ""), line.get("source", ""), line.get("message", ""))
            counts[key] = counts.get(key, 0) + 1
            if counts[key] > self.seen.get(key, 0):
                self.seen[key] = counts[key]
                fresh.append(line)
            if self.newest is None or line["createdAt"] > self.newest:
                self.newest = line["createdAt"]
        if self.newest is not None and len(self.seen) > 1000:
            oldest = _civis_time(_parse(self.newest) - 2 * self.overlap)
            self.seen = {k: v for k, v in self.seen.items() if k[0] >= oldest}
        return fresh


def _parse(civis: str) -> datetime:
    return datetime.fromisoformat(civis.replace("Z", "+00:00"))


def _civis_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class PollingSource:
    """Events of one deployment made by polling: the deployment, then its new lines, every
    `interval` seconds. `sources` picks which lines are wanted ("system", "user")."""

    def __init__(self, api: ApiClient, studio_id: int, deployment_id: int, *, sources: tuple[str, ...] = ("system", "user"), interval: float = 1.0, tail: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.base = f"/studios/{studio_id}/deployments/{deployment_id}"
        self.sources = sources
        self.interval = interval
        self.tail = tail
        self.cursor = LogCursor()
        self._sleep = sleep

    def new_lines(self) -> Iterator[dict[str, Any]]:
        if self.cursor.newest is None:
            # First round: the newest lines (the API's tail), as many as asked.
            yield from self.cursor.take(self.api.get(f"{self.base}/logs", limit=self.tail or LOG_PAGE))
            return
        start = self.cursor.params()
        for _ in range(1000):  # bounded: 10 million lines a round
            page = self.api.get(f"{self.base}/logs", limit=LOG_PAGE, **start)
            yield from self.cursor.take(page)
            if len(page) < LOG_PAGE or page[0]["createdAt"] == page[-1]["createdAt"]:
                return
            start = {"start_at": page[-1]["createdAt"]}  # a full page: the rest from where it ended

    def events(self) -> Iterator[Event]:
        last: tuple[Any, ...] | None = None
        while True:
            # The deployment first, then its lines: the service stores every line of a
            # workload before saying it terminated, so the last round misses none.
            dep = self.api.get(self.base)
            for line in self.new_lines():
                if line.get("source") in self.sources:
                    yield LogLine(line)
            seen = (dep.get("state"), dep.get("stateMessage"), dep.get("maxCpuUsage"), dep.get("maxMemoryUsage"))
            if seen != last:
                last = seen
                yield StateChanged(dep)
            else:
                yield Heartbeat()
            if dep.get("state") == "terminated":
                return
            self._sleep(self.interval)


def deployment_events(api: ApiClient, studio_id: int, deployment_id: int, *, deadline: float | None = None, interval: float = 1.0, sleep: Callable[[float], None] = time.sleep, on_polling: Callable[[], None] | None = None) -> Iterator[Event]:
    """The deployment (StateChanged: at once, then at every change) and its start-up steps
    (Progress: the latest ones so far, then each as it happens), from its event stream; polled
    (`on_polling()` is told) when the server has none. Runs until the consumer stops."""
    path = f"/studios/{studio_id}/deployments/{deployment_id}"
    try:
        for message in stream.read(api, f"{path}/events", deadline=deadline, sleep=sleep):
            if message.event == "deployment":
                yield StateChanged(message.data)
            elif message.event == "progress":
                yield Progress(str(message.data.get("message", "")))
        return
    except stream.NoStream:
        pass
    if on_polling is not None:
        on_polling()
    for event in PollingSource(api, studio_id, deployment_id, sources=("system",), interval=interval, sleep=sleep).events():
        yield Progress(str(event.line.get("message", ""))) if isinstance(event, LogLine) else event


def log_lines(api: ApiClient, studio_id: int, deployment_id: int, *, tail: int, interval: float = 1.0, sleep: Callable[[float], None] = time.sleep, on_polling: Callable[[], None] | None = None, on_reconnect: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """The last `tail` lines, then every line as it is stored, until the deployment has ended
    and every line it wrote was handed over: from its log stream (resumed after a dropped
    connection from the last line delivered), polled when the server has none."""
    path = f"/studios/{studio_id}/deployments/{deployment_id}/logs/stream"
    try:
        for message in stream.read(api, path, params={"tail": tail, "batch": "true"}, sleep=sleep, on_reconnect=on_reconnect):
            if message.event in ("log", "logs"):
                for line in message.data["lines"] if message.event == "logs" else [message.data]:
                    yield {k: v for k, v in line.items() if k != "id"}  # the same fields as GET .../logs
            elif message.event == "end":
                return
        return
    except stream.NoStream:
        pass
    if on_polling is not None:
        on_polling()
    for event in PollingSource(api, studio_id, deployment_id, interval=interval, tail=tail, sleep=sleep).events():
        if isinstance(event, LogLine):
            yield event.line
