"""Prometheus metrics of the service (`GET /metrics`, `docs/metrics.md`): their definitions and
exposition (`registry`), the request timer (`http`), start-up phases from events (`startup`) and
event-loop lag (`loop_lag`). `start` wires them to a running service; the numbers come from the
parts that do the work (the log writer, the proxy), which know nothing of Prometheus.
"""

from __future__ import annotations

import asyncio
from typing import Any

from studios.db.database import Database
from studios.metrics import loop_lag
from studios.metrics.registry import Metrics, ProxyTally
from studios.metrics.startup import StartupTimer
from studios.services.events import Bus
from studios.store import deployments as dep_store

__all__ = ["Metrics", "start"]


def start(metrics: Metrics, *, db: Database, bus: Bus, holds_engine: Any, proxy: ProxyTally) -> list[asyncio.Task[Any]]:
    """Feed `metrics` from a starting service; returns the background tasks to cancel at exit."""
    metrics.watch_proxy(proxy)
    metrics.count_deployments_with(lambda: db.read(dep_store.count_by_state_and_runtime))
    StartupTimer(metrics.startup, holds_engine, lambda deployment_id: db.read(lambda s: dep_store.runtime_of(s, deployment_id))).listen(bus)
    return [
        asyncio.create_task(loop_lag.measure(metrics.loop_lag), name="metrics-loop-lag"),
        asyncio.create_task(metrics.flush_every(), name="metrics-flush"),
    ]
