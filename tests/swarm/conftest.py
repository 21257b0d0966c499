"""Fixtures for tests against a real 3-node Docker Swarm on this machine (`scripts/swarm-up`).

`swarm` (session): brings the swarm up once per machine (every xdist worker calls the idempotent
`scripts/swarm-up` under one file lock: the first brings it up, the others find it up) and
returns its settings (`$STUDIOS_SWARM_DIR/env`). When it cannot come up, tests marked `swarm`
fail in CI (the `CI` variable is set) and are skipped elsewhere, with the reason. The swarm is
left up for the next run; `scripts/swarm-down` removes it (scripts/test does, after the suite).

Tests that crash a node take the swarm for themselves: every swarm test holds a shared lock for
its duration and a node-crashing test (`exclusive_swarm`) an exclusive one, with a turnstile so
that it is not starved by a stream of shared holders on other workers.

`runtime`: a `SwarmRuntime` on the manager with an instance id of its own, so tests on
several workers never see each other's services; whatever it leaves is removed after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from studios.runtimes.base import LaunchSpec, RuntimeEnv
from studios.runtimes.swarm import SwarmRuntime, SwarmSettings

REPO = Path(__file__).resolve().parents[2]
SWARM_DIR = Path(os.environ.get("STUDIOS_SWARM_DIR") or "/tmp/studios-swarm")
LOCKS = Path(tempfile.gettempdir())
IMAGE = "studios-test/busybox"
_ids = itertools.count(int(time.time()) % 100_000 * 100)
T = TypeVar("T")


@contextlib.contextmanager
def flock(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="session")
def swarm() -> dict[str, str]:
    """The swarm's settings (STUDIOS_SWARM_URL, STUDIOS_SWARM_NODE_URLS, STUDIOS_SWARM_DIR...)."""
    problem = None
    if os.geteuid() != 0:
        problem = "the one-machine swarm needs root (network namespaces, dockerd)"
    else:
        with flock(LOCKS / "studios-swarm-up.lock", fcntl.LOCK_EX):
            done = subprocess.run([str(REPO / "scripts" / "swarm-up")], capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "STUDIOS_SWARM_DIR": str(SWARM_DIR)})  # fmt: skip
        if done.returncode != 0:
            problem = f"scripts/swarm-up failed: {(done.stderr or done.stdout).strip()[-2000:]}"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the swarm tests must run, but {problem}")
        pytest.skip(problem)
    return read_env(SWARM_DIR / "env")


@pytest.fixture
def shared_swarm(swarm: dict[str, str]) -> Iterator[dict[str, str]]:
    with flock(LOCKS / "studios-swarm-turnstile.lock", fcntl.LOCK_EX):
        pass
    with flock(LOCKS / "studios-swarm-use.lock", fcntl.LOCK_SH):
        yield swarm


@pytest.fixture
def exclusive_swarm(swarm: dict[str, str]) -> Iterator[dict[str, str]]:
    """The swarm for this test alone (it crashes nodes); restored (3 nodes Ready) after."""
    with flock(LOCKS / "studios-swarm-turnstile.lock", fcntl.LOCK_EX), flock(LOCKS / "studios-swarm-use.lock", fcntl.LOCK_EX):
        try:
            yield swarm
        finally:
            subprocess.run([str(REPO / "scripts" / "swarm-up")], capture_output=True, timeout=300,
                           env={**os.environ, "STUDIOS_SWARM_DIR": str(SWARM_DIR)})  # fmt: skip


def settings_of(swarm: dict[str, str], **changes: Any) -> SwarmSettings:
    import json

    values: dict[str, Any] = {"url": swarm["STUDIOS_SWARM_URL"], "node_urls": json.loads(swarm["STUDIOS_SWARM_NODE_URLS"])}
    values.update(changes)
    return SwarmSettings(**values)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[Callable[..., SwarmRuntime]]:
    """make_runtime(swarm, instance=None, **settings) -> a runtime; several may share an instance
    (a "restarted service"). Everything of the instances made is removed after the test."""
    made: list[SwarmRuntime] = []

    def make(swarm: dict[str, str], instance: str | None = None, **changes: Any) -> SwarmRuntime:
        env = RuntimeEnv(data_dir=tmp_path / f"runtime-{len(made)}", instance=instance or f"t{uuid.uuid4().hex[:10]}", public_url="http://localhost:8000")
        rt = SwarmRuntime(settings_of(swarm, **changes), env)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        with contextlib.suppress(Exception):
            for deployment_id in await rt.orphans(set()):
                await rt.remove_orphan(deployment_id)
        await rt.close()


@pytest.fixture
def runtime(shared_swarm: dict[str, str], make_runtime: Callable[..., SwarmRuntime]) -> SwarmRuntime:
    return make_runtime(shared_swarm)


def make_spec(tmp_path: Path, app_cmd: str | None = None, **changes: Any) -> LaunchSpec:
    deployment_id = changes.pop("deployment_id", next(_ids))
    env = dict(changes.pop("env", {}))
    if app_cmd:
        env["APP_CMD"] = app_cmd
    values: dict[str, Any] = dict(
        deployment_id=deployment_id, studio_id=7, user_id=1, image=IMAGE, tag="latest",
        memory_mb=64, cpu_millicores=250, disk_gb=None, env=env,
    )  # fmt: skip
    values.update(changes)
    return LaunchSpec(**values)


async def eventually(check: Callable[[], Awaitable[T | None]], within: float, what: str, step: float = 0.05) -> T:
    """Await `check()` until it returns something other than None, or fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(step)


async def statuses_until(rt: SwarmRuntime, handle: dict[str, Any], done: Callable[[Any], bool], within: float) -> list[Any]:
    """Statuses from `watch(handle)` up to and including the first for which `done` is true."""
    seen: list[Any] = []

    async def collect() -> None:
        async for status in rt.watch(handle):
            seen.append(status)
            if done(status):
                return
        raise AssertionError(f"watch ended without the awaited status: {seen}")

    try:
        await asyncio.wait_for(collect(), within)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s; statuses so far: {seen}") from None
    return seen


def manager_cli(swarm: dict[str, str], *args: str) -> str:
    return subprocess.run(["docker", "-H", swarm["STUDIOS_SWARM_URL"], *args], capture_output=True, text=True, timeout=60, check=True).stdout
