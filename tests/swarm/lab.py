"""The one-machine swarm (`scripts/swarm-up`) as tests use it: brought up once per machine, its
settings, and the locks that keep node-crashing tests apart from the others.

Every xdist worker calls the idempotent `scripts/swarm-up` under one file lock: the first brings
the swarm up, the others find it up. When it cannot come up (not root, a missing tool), tests
that need it fail in CI (the `CI` variable is set) and are skipped elsewhere, with the reason.
The swarm is left up for the next run; `scripts/swarm-down` removes it (`scripts/test` does,
after the suite, when it brought it up).

Tests that crash a node take the swarm for themselves: every swarm test holds a shared lock for
its duration and a node-crashing test an exclusive one, with a turnstile so that it is not
starved by a stream of shared holders on other workers. Used by `tests/swarm/` (fixtures in its
conftest), the runtime contract suite and the end-to-end tests through `studios serve`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SWARM_DIR = Path(os.environ.get("STUDIOS_SWARM_DIR") or "/tmp/studios-swarm")
LOCKS = Path(tempfile.gettempdir())
IMAGE = "studios-test/busybox"

_brought_up: tuple[dict[str, str] | None, str | None] | None = None


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


def swarm_up() -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / "swarm-up")], capture_output=True, text=True, timeout=300, env={**os.environ, "STUDIOS_SWARM_DIR": str(SWARM_DIR)})


def bring_up() -> tuple[dict[str, str] | None, str | None]:
    """(the swarm's settings, None) once it is up, or (None, why it cannot come up); the
    first call of each test process runs `scripts/swarm-up`, later ones reuse its answer."""
    global _brought_up
    if _brought_up is None:
        if os.geteuid() != 0:
            _brought_up = None, "the one-machine swarm needs root (network namespaces, dockerd)"
        else:
            with flock(LOCKS / "studios-swarm-up.lock", fcntl.LOCK_EX):
                done = swarm_up()
            failed = f"scripts/swarm-up failed: {(done.stderr or done.stdout).strip()[-2000:]}"
            _brought_up = (read_env(SWARM_DIR / "env"), None) if done.returncode == 0 else (None, failed)
    return _brought_up


def require() -> dict[str, str]:
    """The swarm's settings (STUDIOS_SWARM_URL, STUDIOS_SWARM_NODE_URLS, ...); skips the test
    when it cannot come up, or fails it in CI."""
    env, problem = bring_up()
    if env is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the swarm tests must run, but {problem}")
        pytest.skip(str(problem))
    return env


def node_urls(env: dict[str, str]) -> dict[str, str]:
    urls: dict[str, str] = json.loads(env["STUDIOS_SWARM_NODE_URLS"])
    return urls


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Use the swarm alongside other tests (no node is crashed meanwhile)."""
    with flock(LOCKS / "studios-swarm-turnstile.lock", fcntl.LOCK_EX):
        pass
    with flock(LOCKS / "studios-swarm-use.lock", fcntl.LOCK_SH):
        yield


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """The swarm for this test alone (it crashes nodes); restored (3 nodes Ready) after."""
    with flock(LOCKS / "studios-swarm-turnstile.lock", fcntl.LOCK_EX), flock(LOCKS / "studios-swarm-use.lock", fcntl.LOCK_EX):
        try:
            yield
        finally:
            swarm_up()


# Fixtures for every swarm test module (imported by name where used); each needs a `swarm`
# fixture giving the swarm's settings (`require()`).


@pytest.fixture
def shared_swarm(swarm: dict[str, str]) -> Iterator[dict[str, str]]:
    """The swarm, used alongside other tests (no node is crashed meanwhile)."""
    with shared():
        yield swarm


@pytest.fixture
def exclusive_swarm(swarm: dict[str, str]) -> Iterator[dict[str, str]]:
    """The swarm for this test alone (it crashes nodes); restored (3 nodes Ready) after."""
    with exclusive():
        yield swarm
