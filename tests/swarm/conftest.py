"""Fixtures for tests against a real 3-node Docker Swarm on this machine (`scripts/swarm-up`).

`swarm` (session): brings the swarm up once per machine and returns its settings
(`$STUDIOS_SWARM_DIR/env`); skipped with the reason when it cannot come up, failed in CI
(`lab.py`). `shared_swarm` holds the swarm alongside other tests; `exclusive_swarm` takes it
for a test that crashes nodes, and leaves 3 Ready nodes.

`runtime`: a `SwarmRuntime` on the manager with an instance id of its own, so tests on
several workers never see each other's services; whatever it leaves is removed after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from studios.runtimes.base import LaunchSpec, RuntimeEnv
from studios.runtimes.swarm import SwarmRuntime, SwarmSettings

from . import lab
from .lab import IMAGE

_ids = itertools.count(int(time.time()) % 100_000 * 100)
T = TypeVar("T")

shared_swarm, exclusive_swarm = lab.shared_swarm, lab.exclusive_swarm  # the swarm fixtures of every swarm test module


@pytest.fixture(scope="session")
def swarm() -> dict[str, str]:
    """The swarm's settings (STUDIOS_SWARM_URL, STUDIOS_SWARM_NODE_URLS, STUDIOS_SWARM_DIR...)."""
    return lab.require()


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
