"""The board (one poller of the manager for every watcher) and the log follower on it, against a
scripted manager: no swarm needed. What is checked is what a deployment would get wrong: a
service created while a round is being read must not be reported gone, and a log that fails to
read in an unforeseen way must not keep the follow (and the deployment's release) waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from studios.runtimes.swarm.board import Board
from studios.runtimes.swarm.logs import follow


class ScriptedManager:
    """The three listings `read_manager` makes; `hold` makes the next services() call wait until
    released, answering with the services as they were when it was called."""

    def __init__(self) -> None:
        self.services_now: list[dict[str, Any]] = []
        self.tasks_now: list[dict[str, Any]] = []
        self.nodes_now: list[dict[str, Any]] = []
        self.hold = False
        self.called = threading.Event()
        self.release = threading.Event()

    def services(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        answer = list(self.services_now)
        if self.hold:
            self.hold = False
            self.called.set()
            assert self.release.wait(30), "the test never released the held round"
        return answer

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.tasks_now)

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.nodes_now)

    def _url(self, path: str, *args: str) -> str:  # where a task's log is asked for
        raise ValueError("an answer no one foresaw")


def service(sid: str) -> dict[str, Any]:
    return {"ID": sid, "Version": {"Index": 1}, "Spec": {"Labels": {}}}


@pytest.fixture
def manager() -> ScriptedManager:
    return ScriptedManager()


@pytest.fixture
async def board(manager: ScriptedManager) -> AsyncIterator[Board]:
    """A board polling the scripted manager every 50 ms; closed after the test."""
    made = Board(lambda: manager, "inst", slow=0.05, fast=0.05)
    yield made
    await made.close()


@pytest.mark.anyio
async def test_a_service_created_during_a_round_is_not_reported_gone_by_that_round(manager: ScriptedManager, board: Board) -> None:
    manager.services_now = [service("old")]
    old = board.subscribe("old")
    assert (await asyncio.wait_for(old.next(), 10)).service is not None
    # A round begins (and reads the services) before the new service exists ...
    manager.hold = True
    assert await asyncio.to_thread(manager.called.wait, 10)
    manager.services_now.append(service("new"))  # ... the deployment's service is created
    new = board.subscribe("new")  # and its watcher subscribes while that round is in flight
    manager.release.set()
    first = await asyncio.wait_for(new.next(), 10)
    assert first.service is not None and first.service["ID"] == "new", "a round read before the service existed said it was gone"


@pytest.mark.anyio
async def test_a_removed_service_is_reported_gone(manager: ScriptedManager, board: Board) -> None:
    manager.services_now = [service("s")]
    sub = board.subscribe("s")
    assert (await asyncio.wait_for(sub.next(), 10)).service is not None
    manager.services_now = []
    assert (await asyncio.wait_for(sub.next(), 10)).service is None


@pytest.mark.anyio
async def test_a_log_that_fails_unforeseen_ends_the_follow(manager: ScriptedManager, board: Board) -> None:
    manager.services_now = [service("s")]
    manager.nodes_now = [{"ID": "n1", "Status": {"State": "ready"}}]
    manager.tasks_now = [{"ID": "t1", "ServiceID": "s", "NodeID": "n1", "DesiredState": "shutdown",
                          "Status": {"State": "complete", "ContainerStatus": {"ContainerID": "c1"}}}]  # fmt: skip

    async def read_all() -> list[Any]:
        return [item async for item in follow(lambda: manager, board, "s", None, lambda snapshot: True)]

    assert await asyncio.wait_for(read_all(), 10) == []  # nothing could be read; the follow ended


@pytest.mark.anyio
async def test_a_task_scaled_away_between_rounds_ends_its_follow(manager: ScriptedManager, board: Board, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scale to 0 can remove a running task between two rounds: no round ever shows it ended.
    The manager keeps that task's followed log open for ever, so the follow must be closed
    because the task is no longer listed, or the deployment's logs never finish."""
    import docker.errors

    from studios.runtimes.swarm import logs as swarm_logs

    aborted = threading.Event()
    asked: list[int] = []

    def open_stream(api: Any, path: str, ident: str, params: dict[str, Any], *, multiplexed: bool) -> tuple[Any, Any]:
        asked.append(params["follow"])
        if not params["follow"]:
            raise docker.errors.NotFound("no such task")  # what the manager says of a removed task

        def lines() -> Any:
            yield b"2026-11-27T06:00:00.000000000Z hello"
            aborted.wait(30)  # a followed log of a live task: more may come, so it never ends

        return lines(), aborted.set

    monkeypatch.setattr(swarm_logs, "open_stream", open_stream)
    manager.services_now = [service("s")]
    manager.nodes_now = [{"ID": "n1", "Status": {"State": "ready"}}]
    manager.tasks_now = [{"ID": "t1", "ServiceID": "s", "NodeID": "n1", "DesiredState": "running",
                          "Status": {"State": "running", "ContainerStatus": {"ContainerID": "c1"}}}]  # fmt: skip
    scaled_to_zero = asyncio.Event()
    read: list[str] = []

    async def read_all() -> None:
        async for batch, _ in follow(lambda: manager, board, "s", None, lambda snapshot: not snapshot.tasks):
            read.extend(line.message for line in batch)
            scaled_to_zero.set()

    reader = asyncio.create_task(read_all())
    await asyncio.wait_for(scaled_to_zero.wait(), 10)
    manager.tasks_now = []  # the service stays (scaled to 0); its task is gone from every listing
    await asyncio.wait_for(reader, 10)
    assert read.count("hello") == 2  # stdout and stderr each said it once (the fake serves both)
    assert aborted.is_set() and 0 in asked, "the follow was not closed and the rest not asked for"
