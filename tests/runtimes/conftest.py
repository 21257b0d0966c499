"""Fixtures for runtime tests: a host-process runtime in a tmp state dir, and repositories and
launch specs for apps written on the fly."""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from studios.runtimes.base import Handle, LaunchSpec
from studios.runtimes.process import ProcessRuntime

_ids = itertools.count(1000)

@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A checkout whose executable `start` runs the given Python source (or a Procfile)."""

    def make(source: str, *, procfile: bool = False) -> Path:
        repo = tmp_path / f"repo{next(_ids)}"
        repo.mkdir()
        (repo / "app.py").write_text(textwrap.dedent(source))
        if procfile:
            (repo / "Procfile").write_text(f"release: false\nweb: {sys.executable} app.py --port $PORT\n")
        else:
            start = repo / "start"
            start.write_text(f"#!/bin/sh\nexec {sys.executable} app.py\n")
            start.chmod(0o755)
        return repo

    return make


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., LaunchSpec]:
    def make(checkout: Path | None = None, **changes: Any) -> LaunchSpec:
        deployment_id = changes.pop("deployment_id", next(_ids))
        fields: dict[str, Any] = dict(
            deployment_id=deployment_id,
            studio_id=1,
            image=None,
            tag="latest",
            memory_mb=None,
            cpu_millicores=None,
            disk_gb=None,
            env={"STUDIO_PARAM": "42"},
            workdir=tmp_path / f"deployment-{deployment_id}",
            checkout=checkout,
        )
        fields.update(changes)
        return LaunchSpec(**fields)

    return make


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def process_runtime(state_dir: Path) -> AsyncIterator[ProcessRuntime]:
    """A runtime whose leftovers (any deployment still in its state dir) are removed after."""
    rt = ProcessRuntime(state_dir=state_dir, image_commands={"busy": "exec yes > /dev/null"})
    yield rt
    for deployment_id in await rt.orphans(set()):
        await rt.remove_orphan(deployment_id)
    for path in state_dir.glob("*.json"):
        await rt.cleanup(json.loads(path.read_text()))


@pytest.fixture
def lines_of() -> Callable[[ProcessRuntime, Handle], Awaitable[list[tuple[str, str]]]]:
    async def read(rt: ProcessRuntime, handle: Handle) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        async for batch, _ in rt.logs(handle, None):
            out.extend((line.stream, line.message) for line in batch)
        return out

    return read
