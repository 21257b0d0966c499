"""The service's Prometheus metrics: what they are, and how one scrape gathers them.

One `Metrics` per app. In a single process its metrics live in a registry of their own. Under
`studios serve --workers N` the parent sets `PROMETHEUS_MULTIPROC_DIR` to a fresh directory for
its workers, which turns on prometheus-client's multiprocess mode: each worker writes its values
to files there, and whichever worker answers a scrape adds up every worker's (so a scraper sees
the whole server, not one process). Hot paths (the proxy) count into plain integers that
`flush()` turns into counters at every scrape and every `FLUSH_SECONDS`. What it shows of the
database (deployments by state) is a count read at a scrape, at most every `COUNT_SECONDS`.
This module holds numbers only; it changes nothing in the service and reads no request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector, generate_latest, multiprocess, values
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from studios.lifecycle import STATES

COUNT_SECONDS = 5.0
FLUSH_SECONDS = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STARTUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def multiprocess_mode() -> bool:
    """True when prometheus-client was imported with PROMETHEUS_MULTIPROC_DIR set (its values
    then live in per-process files)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class ProxyTally(Protocol):
    """What the proxy counts (plain integers, bumped on its hot path)."""

    @property
    def requests(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...


class DeploymentCounts(Collector):
    """`studios_deployments{state, runtime}` from the last count of the database (every state
    is shown for every runtime seen, zeros included)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.read_at = float("-inf")

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("studios_deployments", "Deployments by state and runtime (a count of the database, the same on every server).", labels=["state", "runtime"])
        for runtime in sorted({runtime for _, runtime in self.counts}):
            for state in STATES:
                family.add_metric([state, runtime], self.counts.get((state, runtime), 0))
        yield family


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        registry = None if self.multiprocess else CollectorRegistry()
        self.registry = registry
        self.requests = Histogram(
            "studios_http_request_duration_seconds", "API and web UI requests: time until the response is sent (streams: until they start), by route template.",
            ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=registry,
        )
        self.startup = Histogram(
            "studios_deployment_startup_seconds", "Start-up of a deployment by phase: queued (queued or woken until its workload starts) and starting (until its app answers HTTP).",
            ["phase", "runtime"], buckets=STARTUP_BUCKETS, registry=registry,
        )
        self.log_lines_stored = Counter("studios_log_lines_stored", "Lines of apps' output the log writer stored.", registry=registry)
        self.log_lines_dropped = Counter("studios_log_lines_dropped", "Lines of apps' output dropped past STUDIOS_LOG_LINE_CAP.", registry=registry)
        self.proxy_requests = Counter("studios_proxy_requests", "Requests the display-URL proxy routed.", registry=registry)
        self.proxy_bytes = Counter("studios_proxy_bytes", "Bytes through the display-URL proxy: in (from viewers), out (from apps to viewers).", ["direction"], registry=registry)
        self.loop_lag = Histogram("studios_event_loop_lag_seconds", "How late the event loop woke a sleeping task (a blocked loop shows here).", buckets=LAG_BUCKETS, registry=registry)
        self.deployments = DeploymentCounts()
        self._proxies: list[tuple[ProxyTally, list[int]]] = []
        self._count: Callable[[], Any] | None = None
        if registry is not None:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            registry.register(self.deployments)

    # -- feeding -----------------------------------------------------------------------------

    def log_lines(self, stored: int, dropped: int) -> None:
        """The log writer stored `stored` lines of apps' output and dropped `dropped` (called
        after its transaction committed)."""
        if stored:
            self.log_lines_stored.inc(stored)
        if dropped:
            self.log_lines_dropped.inc(dropped)

    def watch_proxy(self, tally: ProxyTally) -> None:
        self._proxies.append((tally, [0, 0, 0]))

    def count_deployments_with(self, count: Callable[[], Any]) -> None:
        """`count()`: an awaitable of {(state, runtime): n}, read at a scrape (at most every
        COUNT_SECONDS)."""
        self._count = count

    def flush(self) -> None:
        """Move what the proxies counted since the last flush into their counters."""
        for tally, seen in self._proxies:
            now = (tally.requests, tally.bytes_in, tally.bytes_out)
            requests, bytes_in, bytes_out = (n - s for n, s in zip(now, seen, strict=True))
            if requests:
                self.proxy_requests.inc(requests)
            if bytes_in:
                self.proxy_bytes.labels("in").inc(bytes_in)
            if bytes_out:
                self.proxy_bytes.labels("out").inc(bytes_out)
            seen[:] = now

    async def flush_every(self, seconds: float = FLUSH_SECONDS) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.flush()

    # -- a scrape ----------------------------------------------------------------------------

    def _registry(self) -> CollectorRegistry:
        if self.registry is not None:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.deployments)
        return registry

    async def render(self) -> bytes:
        """The text exposition of every metric (this process's, or every worker's)."""
        self.flush()
        if self._count is not None and time.monotonic() - self.deployments.read_at >= COUNT_SECONDS:
            self.deployments.counts = dict(await self._count())
            self.deployments.read_at = time.monotonic()
        registry = self._registry()
        return await asyncio.to_thread(generate_latest, registry)

