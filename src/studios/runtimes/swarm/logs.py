"""Following a deployment's logs across its tasks: stdout and stderr apart, each line once.

A deployment's service may run several tasks over its life (one after another when a node dies
or the swarm replaces one). Each task's container keeps its own log on its node; the manager
serves it at `/tasks/{id}/logs`, one request per stream, with timestamps. Per task:

- while the task runs its two streams are followed (`follow=1`);
- once the task has ended, or the manager no longer lists it (a scale to 0 can remove a task
  between two rounds, before any round saw it end), the follow is closed (the manager never ends
  it by itself) and the rest is read once without `follow`, from the position reached: that
  drain is what makes the last lines certain;
- while the task's node is down its log cannot be read: the follow is closed and the task waits;
  if the node comes back, its lines are read then; if the deployment ends first they are lost
  with the node (what a crashed machine wrote after the last read line).

The cursor keeps, per task and stream, the last timestamp read and how many lines carried
exactly that timestamp, and which tasks are fully read:

    {"tasks": {"<task id>": {"stdout": {"ns": 1764…, "n": 1}, "stderr": {"ns": 0, "n": 0}, "done": false}}}

Resuming re-reads each stream from just before its timestamp and skips the lines already
counted, so every line is yielded exactly once across restarts of the service and moves of the
task. Following ends when the deployment has ended and every reachable task is fully read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import docker
import docker.errors

from studios.runtimes.base import LogCursor, LogLine
from studios.runtimes.docker.logs import _time_of, parse_entry
from studios.runtimes.docker.streams import read_in_threads
from studios.runtimes.swarm.board import Board
from studios.runtimes.swarm.streams import open_stream
from studios.runtimes.swarm.tasks import TERMINAL, Snapshot, state

log = logging.getLogger(__name__)
Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")
DRAIN_SECONDS = 30.0
"""Longest wait for the rest of an ended task's log (a node that stops answering mid-read)."""


@dataclasses.dataclass
class _Position:
    ns: int = 0
    n: int = 0
    skip: int = 0


@dataclasses.dataclass
class _TaskLog:
    task_id: str
    positions: dict[str, _Position]
    status: Literal["idle", "reading", "waiting", "done"] = "idle"
    runner: asyncio.Task[None] | None = None
    finish: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    drain: bool = True

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {s: {"ns": self.positions[s].ns, "n": self.positions[s].n} for s in STREAMS}
        out["done"] = self.status == "done"
        return out


def _parse(cursor: LogCursor | None) -> dict[str, _TaskLog]:
    logs: dict[str, _TaskLog] = {}
    for task_id, data in ((cursor or {}).get("tasks") or {}).items():
        if not isinstance(data, dict):
            continue
        positions: dict[str, _Position] = {}
        for stream in STREAMS:
            at = data.get(stream) or {}
            positions[stream] = _Position(int(at.get("ns", 0)), int(at.get("n", 0)))
        logs[task_id] = _TaskLog(task_id, positions, status="done" if data.get("done") else "idle")
    return logs


def _has_container(task: dict[str, Any]) -> bool:
    return bool(((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID"))


class _Follower:
    def __init__(self, api: Callable[[], docker.APIClient], board: Board, service_id: str, cursor: LogCursor | None,
                 ended: Callable[[Snapshot], bool]) -> None:  # fmt: skip
        self.api = api
        self.ended = ended
        self.board = board
        self.service_id = service_id
        self.logs = _parse(cursor)
        self.queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.forgotten: set[str] = set()

    def cursor(self) -> LogCursor:
        """Tasks with something read or fully read (a task the manager has forgotten and
        that is fully read is dropped: it can never come back)."""
        return {"tasks": {tid: tl.public() for tid, tl in self.logs.items()
                          if not (tl.status == "done" and tid in self.forgotten)
                          and (tl.status == "done" or any(p.ns for p in tl.positions.values()))}}  # fmt: skip

    # -- readers (one asyncio task per task being read) ---------------------------------------

    async def _pump(self, tl: _TaskLog, follow: bool) -> None:
        api = self.api()
        since = {s: tl.positions[s].ns for s in STREAMS}
        self.queue.put_nowait(("rewind", tl.task_id))

        def opener(stream: Stream) -> Callable[[], tuple[Any, Callable[[], None]]]:
            def open_() -> tuple[Any, Callable[[], None]]:
                params: dict[str, Any] = {"stdout": int(stream == "stdout"), "stderr": int(stream == "stderr"),
                                          "timestamps": 1, "follow": int(follow)}  # fmt: skip
                if since[stream]:
                    params["since"] = f"{max(since[stream] / 1e9 - 1e-6, 1e-6):.9f}"
                items, abort = open_stream(api, "/tasks/{0}/logs", tl.task_id, params, multiplexed=True)
                return ((stream, raw) for raw in items), abort

            return open_

        async for batch in read_in_threads([opener("stdout"), opener("stderr")], name=f"swarm-logs-{tl.task_id[:12]}"):
            for stream, raw in batch:
                self.queue.put_nowait(("line", tl.task_id, stream, raw))

    async def _run(self, tl: _TaskLog, follow_first: bool) -> None:
        try:
            if follow_first:
                reader = asyncio.create_task(self._pump(tl, follow=True))
                stop = asyncio.create_task(tl.finish.wait())
                await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
                for job in (reader, stop):
                    job.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await job
            if tl.drain:
                async with asyncio.timeout(DRAIN_SECONDS):
                    await self._pump(tl, follow=False)
                self.queue.put_nowait(("done", tl.task_id))
            else:
                self.queue.put_nowait(("waiting", tl.task_id))
        except docker.errors.NotFound:
            self.queue.put_nowait(("done", tl.task_id))  # the task or its service is gone
        except (TimeoutError, docker.errors.DockerException, OSError) as error:
            # What was read stays; the rest of this task's log is given up (said in the service log).
            log.warning("swarm task %s: the rest of its log could not be read (%s)", tl.task_id[:12], type(error).__name__ if isinstance(error, TimeoutError) else error)
            self.queue.put_nowait(("done", tl.task_id))
        except Exception:
            # Anything else would leave the task "reading" for ever, and the follow never ending.
            log.exception("swarm task %s: reading its log failed; the rest of it is given up", tl.task_id[:12])
            self.queue.put_nowait(("done", tl.task_id))

    def _start(self, tl: _TaskLog, follow_first: bool) -> None:
        tl.status = "reading"
        tl.finish = asyncio.Event()
        tl.drain = True
        tl.runner = asyncio.create_task(self._run(tl, follow_first), name=f"studios-swarm-log-{tl.task_id[:12]}")

    # -- the snapshot: which tasks to read, which to finish ------------------------------------

    def _plan(self, snapshot: Snapshot) -> None:
        for task in snapshot.tasks:
            tid = task["ID"]
            tl = self.logs.get(tid)
            if tl is None:
                fresh: dict[str, _Position] = {s: _Position() for s in STREAMS}
                tl = self.logs[tid] = _TaskLog(tid, fresh)
            if tl.status == "done":
                continue
            node = snapshot.nodes.get(task.get("NodeID") or "")
            node_up = node is not None and node.state == "ready"
            ended = state(task) in TERMINAL
            if not _has_container(task):
                if ended:
                    tl.status = "done"  # never ran: nothing to read
                continue
            if tl.status in ("idle", "waiting") and node_up:
                self._start(tl, follow_first=not ended)
            elif tl.status == "reading" and not node_up:
                tl.drain = False
                tl.finish.set()
            elif tl.status == "reading" and ended:
                tl.finish.set()
        listed = {t["ID"] for t in snapshot.tasks}
        self.forgotten = {tid for tid in self.logs if tid not in listed}
        for tid in self.forgotten:  # tasks the manager no longer lists (pruned history, removed service)
            gone = self.logs[tid]
            if gone.status in ("idle", "waiting"):
                gone.status = "done"
            elif gone.status == "reading":
                # Scaled away between two rounds (never seen ended): the manager would keep its
                # follow open for ever. Stop following and read what is left, if it still can.
                gone.finish.set()

    def _finished(self, snapshot: Snapshot | None) -> bool:
        if snapshot is None or not self.ended(snapshot):
            return False
        node_of = {t["ID"]: snapshot.nodes.get(t.get("NodeID") or "") for t in snapshot.tasks}

        def reachable(task_id: str) -> bool:
            node = node_of.get(task_id)
            return node is not None and node.state == "ready"

        for tid, tl in self.logs.items():
            if tl.status == "reading":
                return False
            if tl.status in ("idle", "waiting") and reachable(tid):
                return False  # its node answers: read it first
        # A task still shown running on a node that is down (crashed, cut off) is not waited
        # for: the manager keeps its last state until the node reports again, which may be never.
        return all(state(t) in TERMINAL or not _has_container(t) or not reachable(t["ID"]) for t in snapshot.tasks)

    async def run(self) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
        sub = self.board.subscribe(self.service_id)
        sub.fast = False

        async def forward() -> None:
            while True:
                self.queue.put_nowait(("snapshot", await sub.next()))

        forwarder = asyncio.create_task(forward())
        latest: Snapshot | None = None
        try:
            while True:
                items = [await self.queue.get()]
                while not self.queue.empty():
                    items.append(self.queue.get_nowait())
                lines: list[LogLine] = []
                for item in items:
                    kind = item[0]
                    if kind == "snapshot":
                        latest = item[1]
                        if latest.service is None:
                            for tl in self.logs.values():
                                if tl.status == "reading":
                                    tl.finish.set()
                        self._plan(latest)
                    elif kind == "rewind":
                        for position in self.logs[item[1]].positions.values():
                            position.skip = position.n
                    elif kind == "line":
                        line = self._line(item[1], item[2], item[3])
                        if line is not None:
                            lines.append(line)
                    elif kind == "done":
                        self.logs[item[1]].status = "done"
                    elif kind == "waiting":
                        self.logs[item[1]].status = "waiting"
                        if latest is not None:
                            self._plan(latest)
                if lines:
                    lines.sort(key=lambda line: line.time)
                    yield lines, self.cursor()
                if self._finished(latest):
                    return
        finally:
            forwarder.cancel()
            sub.close()
            for tl in self.logs.values():
                if tl.runner is not None and not tl.runner.done():
                    tl.runner.cancel()

    def _line(self, task_id: str, stream: Stream, raw: bytes) -> LogLine | None:
        try:
            ns, message = parse_entry(raw)
        except ValueError:
            return None
        at = self.logs[task_id].positions[stream]
        if ns < at.ns:
            return None
        if ns == at.ns:
            if at.skip > 0:
                at.skip -= 1
                return None
            at.n += 1
        else:
            at.ns, at.n, at.skip = ns, 1, 0
        return LogLine(stream=stream, message=message, time=_time_of(ns))


async def follow(
    api: Callable[[], docker.APIClient], board: Board, service_id: str, cursor: LogCursor | None, ended: Callable[[Snapshot], bool]
) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
    """Yield (new lines, cursor after them) until `ended(snapshot)` says the deployment will run
    no task any more and every task whose node answers is fully read."""
    async for item in _Follower(api, board, service_id, cursor, ended).run():
        yield item
