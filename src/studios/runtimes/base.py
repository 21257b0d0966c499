"""The runtime contract: what every way of running a deployment must do.

A runtime turns a `LaunchSpec` into a running workload and can later find it again, stop it,
read its logs and its peak usage. It owns nothing in the database and knows nothing of HTTP
requests: the lifecycle service (`studios.services.engine`) calls it and stores the `Handle`
(plain JSON) on the deployment row, so a restarted service can hand it back to `adopt`.

Errors: a runtime raises `LaunchError` (with a sentence a user can act on) when a workload
cannot be started; every other method must not raise for a workload that has simply gone.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Handle = dict[str, Any]
"""JSON-serialisable data that lets a runtime find its workload again (pid and start time,
container id, the names it created). Stored on the deployment row; never holds secrets."""

Reporter = Callable[[str], None]
"""Records one system log line on the deployment being started."""

LogCursor = dict[str, Any]
"""JSON-serialisable position in a workload's log streams (byte offsets, timestamps)."""


class LaunchError(Exception):
    """The workload could not be started; `str(error)` is shown to the user as stateMessage."""


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """Everything a runtime needs to start one deployment; a snapshot, never the live studio."""

    deployment_id: int
    studio_id: int
    image: str | None
    tag: str
    memory_mb: int | None
    cpu_millicores: int | None
    disk_gb: float | None
    env: dict[str, str]
    """Params and CIVIS_* variables; the runtime adds PORT itself."""
    workdir: Path
    """A per-deployment directory owned by the service (logs, state files may go here)."""
    checkout: Path | None = None
    """The git checkout of the studio's repo, already made by the service, or None."""


@dataclasses.dataclass(frozen=True)
class Exit:
    """How a workload ended. `message` is the user-facing sentence ("exited with code 3")."""

    code: int | None
    signal: int | None
    oom_killed: bool
    message: str


@dataclasses.dataclass(frozen=True)
class Usage:
    """Peak usage so far (or over the whole life, once ended). None when it can't be measured."""

    max_memory_mb: float | None
    max_cpu_millicores: float | None


@dataclasses.dataclass(frozen=True)
class LogLine:
    stream: Literal["stdout", "stderr"]
    message: str
    time: datetime


class Runtime(abc.ABC):
    """Base class of runtimes. Subclasses document their handle and cursor contents."""

    name: str = "base"

    @abc.abstractmethod
    async def start(self, spec: LaunchSpec, report: Reporter) -> Handle:
        """Create and start the workload; return once it exists (not once it answers HTTP).

        `report("pulling busybox:latest: 40%")` records a system log line for the user; call
        it for each step worth telling (pulls, fallbacks), never with secrets.

        Raises `LaunchError` when it cannot be started (no start command, image missing...).
        The handle must already be enough for `stop` and `cleanup`.
        """

    @abc.abstractmethod
    def address(self, handle: Handle) -> tuple[str, int]:
        """Host and port where the app answers HTTP (the proxy and readiness probe use it)."""

    @abc.abstractmethod
    async def poll(self, handle: Handle) -> Exit | None:
        """None while the workload is alive; its `Exit` once it has ended (idempotent)."""

    @abc.abstractmethod
    async def stop(self, handle: Handle, grace_seconds: float) -> Exit:
        """SIGTERM, wait up to `grace_seconds`, then SIGKILL. Returns how it ended.
        Stopping an already ended workload returns its `Exit`."""

    @abc.abstractmethod
    async def usage(self, handle: Handle) -> Usage:
        """Peak memory (MB) and cpu (millicores) so far; still readable after the exit until
        `cleanup`."""

    @abc.abstractmethod
    def logs(self, handle: Handle, cursor: LogCursor | None) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
        """Yield batches of new log lines with the cursor just after them, from `cursor` (None:
        the beginning), following the workload until it has ended and every line is read, then
        return. Lines must survive a restart of the service: resuming from a stored cursor
        yields each line exactly once."""

    @abc.abstractmethod
    async def adopt(self, handle: Handle) -> bool:
        """After a service restart: True if the workload in `handle` is still alive (and is the
        same one, not a reused pid or name), False if it is gone."""

    @abc.abstractmethod
    async def cleanup(self, handle: Handle) -> None:
        """Release what the workload held (container, cgroup). Keeps nothing alive."""

    async def orphans(self, known: set[int]) -> list[int]:
        """Deployment ids of workloads this runtime finds running that are not in `known`
        (live deployments); the service removes them. Default: none can be found."""
        return []

    async def remove_orphan(self, deployment_id: int) -> None:  # noqa: B027 (an optional hook: by default nothing to remove)
        """Stop and remove a workload found by `orphans`."""

    async def close(self) -> None:  # noqa: B027 (an optional hook: by default nothing to release)
        """Release clients and background tasks at service shutdown (workloads keep running)."""
