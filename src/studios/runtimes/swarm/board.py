"""One poller of the swarm manager for every watched deployment of this installation.

Each round reads the manager's task list (filtered by this installation's label, so one
request covers every service), its services and its nodes, and hands each subscriber a
`Snapshot` of its service when something in it changed. Rounds come every `fast` seconds while
any subscriber says something is in motion (placing, starting, moving), else every `slow`
seconds. A failed round (manager unreachable) is retried; it never reads as "the service is
gone". A subscriber is offered only rounds that began after it subscribed: a round read before
its service was created would say the service is gone. The poller runs only while someone
subscribes. Blocking SDK calls run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import docker

from studios.runtimes.swarm.spec import LABEL_INSTANCE
from studios.runtimes.swarm.tasks import Node, Snapshot

log = logging.getLogger(__name__)


def read_manager(api: docker.APIClient, instance: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, Node]]:
    """(services by id, tasks by service id, nodes by id) of this installation, in 3 requests."""
    label = f"{LABEL_INSTANCE}={instance}"
    services = {s["ID"]: s for s in api.services(filters={"label": label})}
    tasks: dict[str, list[dict[str, Any]]] = {}
    for task in api.tasks(filters={"label": label}):
        tasks.setdefault(task.get("ServiceID", ""), []).append(task)
    nodes = {n["ID"]: Node.of(n) for n in api.nodes()}
    return services, tasks, nodes


def _fingerprint(snapshot: Snapshot) -> tuple[Any, ...]:
    service = snapshot.service or {}
    tasks = tuple(sorted(
        (t.get("ID"), (t.get("Status") or {}).get("State"), t.get("DesiredState"), t.get("NodeID"), (t.get("Version") or {}).get("Index"))
        for t in snapshot.tasks
    ))  # fmt: skip
    used = {t.get("NodeID") for t in snapshot.tasks}
    nodes = tuple(sorted((n.id, n.state) for n in snapshot.nodes.values() if n.id in used))
    return ((service.get("Version") or {}).get("Index"), snapshot.service is None, tasks, nodes)


class Subscription:
    """The latest snapshot of one service; `fast` asks the board for quick rounds."""

    def __init__(self, board: Board, service_id: str, first_round: int) -> None:
        self.board = board
        self.service_id = service_id
        self.first_round = first_round  # rounds numbered below it began before this subscription
        self.fast = True
        self._latest: Snapshot | None = None
        self._seen: tuple[Any, ...] | None = None
        self._ready = asyncio.Event()

    def offer(self, snapshot: Snapshot) -> None:
        mark = _fingerprint(snapshot)
        if mark != self._seen:
            self._seen = mark
            self._latest = snapshot
            self._ready.set()

    async def next(self, timeout: float | None = None) -> Snapshot:
        """The next snapshot that differs from the last one returned; after `timeout` seconds
        without one, the last one again, taken as of now (for judgements that change with time)."""
        if self._latest is None or timeout is None:
            await self._ready.wait()
        else:
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    await self._ready.wait()
            except TimeoutError:
                return dataclasses.replace(self._latest, now=time.time())
        self._ready.clear()
        assert self._latest is not None
        return self._latest

    def close(self) -> None:
        self.board._unsubscribe(self)


class Board:
    def __init__(self, api: Callable[[], docker.APIClient], instance: str, *, slow: float, fast: float) -> None:
        self._api = api
        self.instance = instance
        self.slow = slow
        self.fast = fast
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._rounds = 0  # rounds begun so far

    def subscribe(self, service_id: str) -> Subscription:
        sub = Subscription(self, service_id, self._rounds)
        self._subs[next(self._ids)] = sub
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="studios-swarm-board")
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        for key, value in list(self._subs.items()):
            if value is sub:
                del self._subs[key]

    async def _run(self) -> None:
        failures = 0
        while self._subs:
            self._wake.clear()
            this_round = self._rounds
            self._rounds += 1
            try:
                services, tasks, nodes = await asyncio.to_thread(read_manager, self._api(), self.instance)
                failures = 0
            except Exception as error:  # the manager is unreachable: try again, say it once
                failures += 1
                if failures == 1:
                    log.warning("swarm manager unreachable: %s", error)
                await asyncio.sleep(min(self.slow * failures, 5.0))
                continue
            for sub in [sub for sub in self._subs.values() if sub.first_round <= this_round]:
                try:
                    sub.offer(Snapshot(services.get(sub.service_id), tasks.get(sub.service_id, []), nodes))
                except Exception:  # one odd listing must not stop the rounds every watcher waits on
                    log.exception("swarm board: offering service %s a snapshot failed", sub.service_id)
            interval = self.fast if any(sub.fast for sub in self._subs.values()) else self.slow
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()

    async def close(self) -> None:
        self._subs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
