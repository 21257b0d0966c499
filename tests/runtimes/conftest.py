"""Fixtures for runtime tests: a host-process runtime in a tmp state dir, and repositories and
launch specs for apps written on the fly."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from studios.runtimes.base import Handle, LaunchSpec, RuntimeEnv, Source
from studios.runtimes.process import ProcessRuntime
from studios.runtimes.process.runtime import ProcessSettings

_ids = itertools.count(1000)

def git_repo(repo: Path) -> Source:
    """Commit everything in `repo` (a new git repository) and return it as a launch `Source`."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(repo), "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "--allow-empty", "-m", "app"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return Source(str(repo), allow_local=True)  # a local repository: the administrator's opt-in (STUDIOS_ALLOW_LOCAL_GIT_REPOS)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Source]:
    """A git repository whose executable `start` runs the given Python source (or a Procfile)."""

    def make(source: str, *, procfile: bool = False) -> Source:
        repo = tmp_path / f"repo{next(_ids)}"
        repo.mkdir()
        (repo / "app.py").write_text(textwrap.dedent(source))
        if procfile:
            (repo / "Procfile").write_text(f"release: false\nweb: {sys.executable} app.py --port $PORT\n")
        else:
            start = repo / "start"
            start.write_text(f"#!/bin/sh\nexec {sys.executable} app.py\n")
            start.chmod(0o755)
        return git_repo(repo)

    return make


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., LaunchSpec]:
    def make(source: Source | None = None, **changes: Any) -> LaunchSpec:
        deployment_id = changes.pop("deployment_id", next(_ids))
        fields: dict[str, Any] = dict(
            deployment_id=deployment_id,
            studio_id=1,
            user_id=1,
            image=None,
            tag="latest",
            memory_mb=None,
            cpu_millicores=None,
            disk_gb=None,
            env={"STUDIO_PARAM": "42"},
            source=source,
        )
        fields.update(changes)
        return LaunchSpec(**fields)

    return make


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The process runtime's own directory (its `RuntimeEnv.data_dir`)."""
    return tmp_path / "process-runtime"


def process_runtime_at(data_dir: Path, **settings: Any) -> ProcessRuntime:
    return ProcessRuntime(ProcessSettings(**{"run_as": "service", **settings}), RuntimeEnv(data_dir, "test", "http://localhost:8000"))


@pytest.fixture
async def process_runtime(state_dir: Path) -> AsyncIterator[ProcessRuntime]:
    """A runtime whose leftovers (any deployment still in its state dir) are removed after."""
    rt = process_runtime_at(state_dir, image_commands={"busy": "exec yes > /dev/null"})
    yield rt
    for deployment_id in await rt.orphans(set()):
        await rt.remove_orphan(deployment_id)
    for path in rt.state_dir.glob("*.json"):
        await rt.cleanup(json.loads(path.read_text()))
    await rt.close()


@pytest.fixture
def lines_of() -> Callable[[ProcessRuntime, Handle], Awaitable[list[tuple[str, str]]]]:
    async def read(rt: ProcessRuntime, handle: Handle) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        async for batch, _ in rt.logs(handle, None):
            out.extend((line.stream, line.message) for line in batch)
        return out

    return read
