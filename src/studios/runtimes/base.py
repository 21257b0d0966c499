"""The runtime contract: what every way of running a deployment must do.

A runtime turns a `LaunchSpec` into a running workload and can later find it again, follow it,
stop it, read its logs and its peak usage. It owns nothing in the database and knows nothing of
HTTP requests: the lifecycle engine (`studios.services.engine`) calls it and stores the `Handle`
(plain JSON) on the deployment row, so a restarted service, or another server taking over the
engine, can hand it back to `adopt` and `watch`.

Runtimes are plug-ins: a class registered under the entry-point group `studios.runtimes`
(`studios.runtimes.registry`), with its own settings model read from `STUDIOS_<NAME>_*`
variables. Every runtime passes the one contract suite in `tests/runtimes/contract/`.

Errors: a runtime raises `LaunchError` (with a sentence a user can act on) when a workload
cannot be started; every other method must not raise for a workload that has simply gone.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

from pydantic_settings import BaseSettings, SettingsConfigDict

Handle = dict[str, Any]
"""JSON-serialisable data that lets a runtime find its workload again (pid and start time,
container id, service and task ids, the node it runs on). Stored on the deployment row; never
holds secrets."""

LogCursor = dict[str, Any]
"""JSON-serialisable position in a workload's log streams (byte offsets, timestamps)."""


class Reporter(Protocol):
    def __call__(self, message: str, /) -> None:
        """Record one start-up step for the user: a system log line and a progress event."""


class LaunchError(Exception):
    """The workload could not be started; `str(error)` is shown to the user as stateMessage."""


class EngineUnreachable(Exception):
    """The runtime's engine (a Docker daemon, a swarm manager) does not answer, so what was
    asked (a stop, a removal) was not done and may be asked again; `str(error)` says so in a
    line for the user ("the swarm manager does not answer: connection refused")."""


@dataclasses.dataclass(frozen=True)
class Source:
    """The studio's git repository, fetched by the runtime where the workload runs."""

    url: str
    ref: str | None = None
    """Branch, tag or commit sha; None: the remote's default branch."""
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    """A secret: never in argv, a log line, a handle or a spec stored in plain text."""
    allow_local: bool = False
    """Whether `url` may be a repository on this machine (file://, a path): the service's
    STUDIOS_ALLOW_LOCAL_GIT_REPOS. The checkout refuses one otherwise (studios.git_input)."""


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """Everything a runtime needs to start one deployment; a snapshot, never the live studio."""

    deployment_id: int
    studio_id: int
    user_id: int
    """The deploying user: runtimes that isolate users from each other key on it."""
    image: str | None
    tag: str
    memory_mb: int | None
    cpu_millicores: int | None
    disk_gb: float | None
    env: Mapping[str, str]
    """Plain values: params, CIVIS_API_ENDPOINT, STUDIOS_*. The runtime adds PORT itself."""
    secret_env: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """Secret values (CIVIS_API_KEY, credential params): reach the app's environment, but never
    argv, logs, handles, or a workload spec stored in plain text where the runtime can avoid it."""
    source: Source | None = None
    """The code to fetch into the app's working directory before it starts, or None."""
    partition: str | None = None
    instance_type: str | None = None


@dataclasses.dataclass(frozen=True)
class Exit:
    """How a workload ended. `message` is the user-facing sentence ("exited with code 3")."""

    code: int | None
    signal: int | None
    oom_killed: bool
    message: str


@dataclasses.dataclass(frozen=True)
class Status:
    """What `Runtime.watch` says about a workload each time something a user should see changes.

    - `running=False`: it exists but cannot serve (yet or any more): not placed, preparing, its node
      is down. The deployment stays (or goes back to) pending with `message` as stateMessage.
    - `running=True`: it runs; the engine probes `Runtime.address` over HTTP and reports the
      deployment running once the app answers.
    - `handle`: set when the handle changed (the workload moved, a new container): stored.
    - `exit`: set on the last status, once the workload has ended for good.
    - `log`: a system log line to record with this status (None: `message` is recorded when it
      changes the stateMessage).
    """

    message: str
    running: bool
    handle: Handle | None = None
    exit: Exit | None = None
    log: str | None = None


@dataclasses.dataclass(frozen=True)
class Usage:
    """Peak usage so far (or over the whole life, once ended). None when it can't be measured."""

    max_memory_mb: float | None
    max_cpu_millicores: float | None


class LogLine(NamedTuple):
    """One line an app wrote. A named tuple, not a frozen dataclass: runtimes make one per line
    of a flood, and this is a quarter of the cost (0.4 against 1.4 us each)."""

    stream: Literal["stdout", "stderr"]
    message: str
    time: datetime


@dataclasses.dataclass(frozen=True)
class RuntimeEnv:
    """What the service gives every runtime it builds."""

    data_dir: Path
    """A directory private to this runtime on this service (state files, local clones)."""
    instance: str
    """A short id of this Studios installation: put it in workload names and labels, so two
    installations sharing an engine never adopt or remove each other's workloads."""
    public_url: str
    """The API's URL as apps reach it."""


class RuntimeSettings(BaseSettings):
    """Base of every runtime's settings model; subclasses set `env_prefix="STUDIOS_<NAME>_"`."""

    model_config = SettingsConfigDict(extra="ignore")


class Runtime(abc.ABC):
    """Base class of runtimes. Subclasses document their handle and cursor contents."""

    name: ClassVar[str] = "base"
    settings_model: ClassVar[type[RuntimeSettings]] = RuntimeSettings
    watch_interval: ClassVar[float] = 1.0
    """Seconds between checks of the default, poll-based `watch` (override `watch` instead)."""

    def __init__(self, settings: RuntimeSettings, env: RuntimeEnv) -> None:
        self.settings = settings
        self.env = env

    @classmethod
    def available(cls, settings: RuntimeSettings) -> str | None:
        """None when this runtime can run workloads here; else a sentence saying why not
        ("no Docker engine answers at unix:///var/run/docker.sock: ...")."""
        return None

    @abc.abstractmethod
    async def start(self, spec: LaunchSpec, report: Reporter) -> Handle:
        """Fetch the source where the workload runs, create and start the workload; return once
        it exists (not once it answers HTTP). Call `report` for each step worth telling (cloning,
        pulls, placement), never with secrets. Raises `LaunchError` when it cannot be started.
        The handle must already be enough for `stop` and `cleanup`."""

    @abc.abstractmethod
    def address(self, handle: Handle) -> tuple[str, int] | None:
        """Host and port where the app answers HTTP now (None: nowhere yet). Pure: computed
        from the handle alone, so every server's proxy can call it."""

    async def watch(self, handle: Handle) -> AsyncIterator[Status]:
        """Follow the workload until it ends: yield a `Status` whenever what a user should see
        changes, the last one with `exit` set. Runtimes override this with their engine's
        events (a pidfd, the Docker events stream, a cluster's task list); this default polls
        `poll` every `watch_interval` seconds."""
        yield Status("running", running=True)
        while (ended := await self.poll(handle)) is None:  # noqa: ASYNC110 (the fallback for runtimes with no event to await)
            await asyncio.sleep(self.watch_interval)
        yield Status(ended.message, running=False, exit=ended)

    @abc.abstractmethod
    async def poll(self, handle: Handle) -> Exit | None:
        """One look: None while the workload is alive; its `Exit` once it has ended (idempotent)."""

    @abc.abstractmethod
    async def stop(self, handle: Handle, grace_seconds: float) -> Exit:
        """SIGTERM, wait up to `grace_seconds`, then SIGKILL. Returns how it ended.
        Stopping an already ended workload returns its `Exit`."""

    @abc.abstractmethod
    async def usage(self, handle: Handle) -> Usage:
        """Peak memory (MB) and cpu (millicores) so far, measured where the workload runs;
        still readable after the exit until `cleanup`."""

    @abc.abstractmethod
    def logs(self, handle: Handle, cursor: LogCursor | None) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
        """Yield batches of new log lines with the cursor just after them, from `cursor` (None:
        the beginning), following the workload until it has ended and every line is read, then
        return. Resuming from a stored cursor yields each line exactly once (across a service
        restart, and across the workload moving)."""

    @abc.abstractmethod
    async def adopt(self, handle: Handle) -> bool:
        """After a service restart: True if the workload in `handle` is still alive (and is the
        same one, not a reused pid or name), False if it is gone. Raises when it cannot tell
        (its engine does not answer): the reconcile asks again later."""

    @abc.abstractmethod
    async def cleanup(self, handle: Handle) -> None:
        """Release what the workload held (container, cgroup, secrets). Keeps nothing alive."""

    async def orphans(self, known: set[int]) -> list[int]:
        """Deployment ids of this installation's workloads found running that are not in
        `known` (live deployments); the service removes them. Default: none can be found."""
        return []

    async def remove_orphan(self, deployment_id: int) -> None:  # noqa: B027 (an optional hook: by default nothing to remove)
        """Stop and remove a workload found by `orphans`."""

    async def close(self) -> None:  # noqa: B027 (an optional hook: by default nothing to release)
        """Release clients and background tasks at service shutdown (workloads keep running)."""
