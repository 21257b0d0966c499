"""Live views for the CLI as a stream of events: a deployment's state changes and its new log
lines. Today `PollingSource` makes them by polling the REST API every `interval` seconds
(logs from the last line's time, `start_at`, skipping the lines at that exact time already
seen); a source reading the server's event stream can replace it behind the same `events()`
iterator, and the commands will not change. Knows the API's paths, nothing of rendering."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

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
class Heartbeat:
    """Nothing new this round: lets a consumer check its own deadline."""


Event = StateChanged | LogLine | Heartbeat


class EventSource(Protocol):
    def events(self) -> Iterator[Event]:
        """State changes and new lines, in order, until the deployment has terminated and
        every line it wrote was delivered (or the consumer stops iterating)."""
        ...


class LogCursor:
    """Where a followed log stands: the time of the last line seen and how many lines at
    exactly that time were seen (the next request starts at that time and skips them; lines
    of equal time come back in the order they were stored)."""

    def __init__(self) -> None:
        self.time: str | None = None
        self.seen_at_time = 0

    def params(self) -> dict[str, Any]:
        return {"start_at": self.time} if self.time else {}

    def take(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The lines not seen before, from a response to `params()`; moves the cursor."""
        start = 0
        if self.time is not None:
            while start < len(lines) and start < self.seen_at_time and lines[start]["createdAt"] == self.time:
                start += 1
        fresh = lines[start:]
        for line in fresh:
            if line["createdAt"] == self.time:
                self.seen_at_time += 1
            else:
                self.time, self.seen_at_time = line["createdAt"], 1
        return fresh


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
        if self.cursor.time is None:
            # First round: the newest lines (the API's tail), as many as asked.
            yield from self.cursor.take(self.api.get(f"{self.base}/logs", limit=self.tail or LOG_PAGE))
            return
        while True:
            page = self.api.get(f"{self.base}/logs", limit=LOG_PAGE, **self.cursor.params())
            fresh = self.cursor.take(page)
            yield from fresh
            if len(page) < LOG_PAGE or not fresh:
                return

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
