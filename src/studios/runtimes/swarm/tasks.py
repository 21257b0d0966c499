"""Judging a service's tasks: from the manager's task list (and its nodes) to what a user should
see — placing, starting, running on a node at a port, moving after a node died, or ended and how.

`judge` is a pure function of a `Snapshot`, so every case (an app that exits, a node that dies
and the late report of its old task after it comes back, a task nothing can place) is tested
without a swarm. It also says when the runtime must end the service itself (`end`): after an
app exits by itself (before the swarm's delayed restart starts it again), or when a dead node's
task found no other node within the reschedule timeout. A task the swarm could not start
(rejected, or its container failed to start: the app never ran) is not the app's exit: the swarm
starts another, and three in a row end the deployment with the last one's reason.

Task states (swarmkit): new allocated pending assigned accepted preparing ready starting
running | complete shutdown failed rejected remove orphaned. The replacement of a failed task
is created with desired state `ready` and started after the restart delay.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from studios.runtimes.base import Exit
from studios.runtimes.docker.exits import exit_of_code
from studios.runtimes.docker.logs import parse_timestamp
from studios.runtimes.swarm.spec import LABEL_EXIT

STARTING = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
ENDED_BY_APP = {"failed", "complete"}
TERMINAL = {"complete", "shutdown", "failed", "rejected", "remove", "orphaned"}
SAME_CAUSE_NS = 500_000_000
"""A replacement created within this much of its predecessor's last update was caused by it."""
GIVE_UP_REJECTIONS = 3
"""Tasks in a row the swarm could not start (rejected, or their container failed to start)
before the deployment ends with the last one's reason."""
START_FAILED = "starting container failed"
"""How the swarm's agent begins a task's error when the container could not be started: its
process never ran (e.g. the engine's mount of the task's secrets failed, or no such command)."""


@dataclasses.dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    addr: str
    state: str  # ready, down, unknown, disconnected

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Node:
        return cls(
            id=raw["ID"],
            hostname=(raw.get("Description") or {}).get("Hostname") or raw["ID"][:12],
            addr=(raw.get("Status") or {}).get("Addr") or "",
            state=(raw.get("Status") or {}).get("State") or "unknown",
        )


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One read of the manager: the service (None: it is gone), its tasks, the nodes."""

    service: dict[str, Any] | None
    tasks: list[dict[str, Any]]
    nodes: dict[str, Node]
    now: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass(frozen=True)
class View:
    message: str
    running: bool
    task: dict[str, Any] | None = None
    node: Node | None = None
    port: int | None = None
    exit: Exit | None = None
    end: bool = False
    """The runtime must end the service (`runtime._end`: no node may run it, `exit` recorded on it)."""
    log: str | None = None
    settled: bool = False
    """Nothing is expected to change soon (running, or ended): the slow poll suffices."""
    recheck: float | None = None
    """Judge again after this many seconds even if nothing changed (a timeout runs)."""

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.message, self.running, (self.task or {}).get("ID"), self.exit)


def _ns(text: str | None) -> int:
    if not text:
        return 0
    try:
        return parse_timestamp(text)
    except ValueError:
        return 0


def state(task: dict[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State") or "new")


def desired(task: dict[str, Any]) -> str:
    return str(task.get("DesiredState") or "running")


def ordered(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(tasks, key=lambda t: (_ns(t.get("CreatedAt")), t.get("ID", "")))


def not_started(task: dict[str, Any]) -> bool:
    """A task the swarm could not start: rejected, or failed before its container's process ran.
    Retried by the swarm, not an exit of the app."""
    if state(task) == "rejected":
        return True
    return state(task) == "failed" and str((task.get("Status") or {}).get("Err") or "").startswith(START_FAILED)


def published_port(task: dict[str, Any], target: int) -> int | None:
    for port in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
        if port.get("TargetPort") == target and port.get("PublishedPort"):
            return int(port["PublishedPort"])
    return None


def exit_of_task(task: dict[str, Any], memory_mb: int | None = None, oom: bool = False) -> Exit:
    """How the app in an ended task ended, in the Docker runtime's words."""
    status = task.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    code = container.get("ExitCode")
    err = str(status.get("Err") or "")
    if state(task) == "complete":
        code = code or 0
    if code is None or (code in (0, -1) and state(task) == "failed" and err and "exit" not in err):
        return Exit(code=None, signal=None, oom_killed=False, message=f"failed to start: {err or status.get('Message') or state(task)}")
    return exit_of_code(int(code), oom, memory_mb)


def stored_exit(service: dict[str, Any] | None) -> Exit | None:
    """The exit the runtime recorded on the service when it ended it."""
    labels = ((service or {}).get("Spec") or {}).get("Labels") or {}
    if LABEL_EXIT not in labels:
        return None
    try:
        data = json.loads(labels[LABEL_EXIT])
        return Exit(code=data.get("code"), signal=data.get("signal"), oom_killed=bool(data.get("oom_killed")), message=str(data["message"]))
    except (ValueError, KeyError, TypeError):
        return Exit(code=None, signal=None, oom_killed=False, message="ended")


def replicas(service: dict[str, Any]) -> int:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    return int((mode.get("Replicated") or {}).get("Replicas", 1))


def _node_of(snapshot: Snapshot, task: dict[str, Any] | None) -> Node | None:
    if task is None or not task.get("NodeID"):
        return None
    return snapshot.nodes.get(task["NodeID"]) or Node(task["NodeID"], task["NodeID"][:12], "", "unknown")


def _lost_node(snapshot: Snapshot, tasks: list[dict[str, Any]], current: dict[str, Any]) -> Node | None:
    """The node of the task before `current` when that node is not ready and the task did not
    end by itself: the node whose loss made the swarm create `current`."""
    index = tasks.index(current)
    if index == 0:
        return None
    before = tasks[index - 1]
    node = _node_of(snapshot, before)
    if node is not None and node.state != "ready" and state(before) not in ENDED_BY_APP | {"rejected"}:
        return node
    return None


def judge(snapshot: Snapshot, *, container_port: int, memory_mb: int | None = None, reschedule_timeout: float = 30.0) -> View:
    """What the service's tasks mean for its deployment now."""
    service = snapshot.service
    if service is None:
        return View("the swarm service is gone", False, exit=Exit(None, None, False, "the swarm service was removed"), settled=True)
    recorded = stored_exit(service)
    tasks = ordered(snapshot.tasks)
    newest = tasks[-1] if tasks else None
    if recorded is not None:
        return View(recorded.message, False, task=newest, exit=recorded, settled=True)
    if replicas(service) == 0:
        return View("stopped", False, task=newest, exit=Exit(None, None, False, "stopped"), settled=True)
    if newest is None:
        return View("waiting for the swarm to place it", False)

    # An app that ended by itself: the newest failed/complete task that caused its successor.
    ended = [t for t in tasks if state(t) in ENDED_BY_APP and not not_started(t)]
    if ended:
        last = ended[-1]
        index = tasks.index(last)
        successor = tasks[index + 1] if index + 1 < len(tasks) else None
        caused = successor is None or _ns(successor.get("CreatedAt")) + SAME_CAUSE_NS >= _ns(last.get("UpdatedAt"))
        if caused and (successor is None or state(successor) in STARTING | {"rejected", "shutdown", "remove"}):
            node = _node_of(snapshot, last)
            outcome = exit_of_task(last, memory_mb)
            where = f" on {node.hostname}" if node else ""
            return View(outcome.message, False, task=last, node=node, exit=outcome, end=True,
                        log=f"the app {outcome.message}{where}", settled=True)
        # Otherwise the swarm already restarted it (nobody was watching): it runs again.

    current = newest
    node = _node_of(snapshot, current)
    lost = _lost_node(snapshot, tasks, current)
    current_state = state(current)
    err = str((current.get("Status") or {}).get("Err") or "")

    if current_state == "running" and desired(current) == "running":
        port = published_port(current, container_port)
        where = node.hostname if node else "an unknown node"
        if node is not None and node.state == "down":
            message = f"node {where} is down; waiting for the swarm to move it"
            return View(message, False, task=current, node=node, log=message)
        return View(f"running on {where}", True, task=current, node=node, port=port, settled=True,
                    log=f"moved to {where} after node {lost.hostname} went down" if lost else f"running on {where}")

    rejected = 0
    for task in reversed(tasks):
        if not_started(task):
            rejected += 1
        elif state(task) not in STARTING:
            break
    if rejected >= GIVE_UP_REJECTIONS:
        last_rejected = next(t for t in reversed(tasks) if not_started(t))
        bad = _node_of(snapshot, last_rejected)
        reason = str((last_rejected.get("Status") or {}).get("Err") or "rejected")
        outcome = Exit(None, None, False, f"the swarm could not start it{' on ' + bad.hostname if bad else ''}: {reason}")
        return View(outcome.message, False, task=last_rejected, exit=outcome, end=True, log=outcome.message, settled=True)

    if current_state == "pending":
        reason = err or "waiting for the swarm to place it"
        if lost is not None:
            waited = snapshot.now - _ns(current.get("CreatedAt")) / 1e9
            if waited >= reschedule_timeout:
                outcome = Exit(None, None, False, f"node {lost.hostname} went down and no other node could take over: {reason}")
                return View(outcome.message, False, task=current, exit=outcome, end=True, log=outcome.message, settled=True)
            message = f"node {lost.hostname} is down; waiting for another node: {reason}"
            return View(message, False, task=current, log=message, recheck=reschedule_timeout - waited)
        return View(reason, False, task=current, log=reason if err else None)

    if current_state in STARTING:
        where = f" on {node.hostname}" if node else ""
        if lost is not None:
            message = f"node {lost.hostname} is down; starting again{where}"
            return View(message, False, task=current, node=node, log=message)
        return View(f"starting{where}", False, task=current, node=node)

    if not_started(current):
        message = f"the swarm could not start it{' on ' + node.hostname if node else ''}: {err or 'rejected'}; retrying"
        return View(message, False, task=current, node=node, log=message)
    # Ended but not by the app (shut down by an update, orphaned): the swarm replaces it.
    return View(f"{current_state}{' on ' + node.hostname if node else ''}; waiting for the swarm to replace it", False, task=current, node=node)
