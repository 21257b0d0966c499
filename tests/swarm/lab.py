"""The one-machine swarm (`scripts/swarm-up`) as tests use it: brought up once per machine, its
settings, and the locks that keep node-crashing tests apart from the others.

Every xdist worker calls the idempotent `scripts/swarm-up` under one file lock: the first brings
the swarm up, the others find it up. When it cannot come up (not root, a missing tool), tests
that need it fail in CI (the `CI` variable is set) and are skipped elsewhere, with the reason.
The swarm is left up for the next run; `scripts/swarm-down` removes it (`scripts/test` does,
after the suite, when it brought it up).

Tests that crash a node take the swarm for themselves: every swarm test holds a shared lock for
its duration and a node-crashing test an exclusive one, with a turnstile so that it is not
starved by a stream of shared holders on other workers. `scripts/swarm-up` may restart nodes, so
it too runs only under the exclusive lock. Used by `tests/swarm/` (fixtures in its conftest), the
runtime contract suite and the end-to-end tests through `studios serve`.

A node whose engine stopped answering outside the node-crashing tests (its dockerd died) fails
the test it died in, not every test after it: before any test uses the swarm (a node-crashing
one too), a node found dead is brought back under the exclusive lock, and what was found (the
node's last dockerd lines) is appended to `$STUDIOS_SWARM_DIR/incidents.log` and raised as a
warning, which `scripts/test` prints after the runs, so the death is seen and can be explained.
A node found dead at the end of a test is recorded there too, with that test's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import tempfile
import time
import warnings
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
            with _alone():
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
def _alone() -> Iterator[None]:
    """No other test uses the swarm meanwhile (through the turnstile, then the exclusive lock)."""
    with flock(LOCKS / "studios-swarm-turnstile.lock", fcntl.LOCK_EX), flock(LOCKS / "studios-swarm-use.lock", fcntl.LOCK_EX):
        yield


def dead_nodes(env: dict[str, str]) -> dict[str, str]:
    """{node: why} for every node whose engine does not accept a connection on its socket."""
    dead = {}
    for node, url in node_urls(env).items():
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(5)
            try:
                connection.connect(url.removeprefix("unix://"))
            except OSError as error:
                dead[node] = f"{error.__class__.__name__}: {error}"
    return dead


def _last_words(dead: dict[str, str]) -> list[str]:
    """The dead nodes' last dockerd lines; for a daemon that panicked, the panic's first lines
    as well (its goroutine dump fills the end of the log)."""
    lines = []
    for node in dead:
        log = SWARM_DIR / f"n{node[-1]}" / "dockerd.log"
        text = log.read_text(errors="replace").splitlines() if log.exists() else ["(no dockerd.log)"]
        panics = [i for i, line in enumerate(text) if line.startswith(("panic:", "fatal error:")) or "level=fatal" in line]
        if panics:
            lines += [f"--- {log}, from line {panics[-1] + 1} (of {len(text)})", *text[max(0, panics[-1] - 5):panics[-1] + 30]]
        lines += [f"--- the last lines of {log}", *text[-40:]]
    return lines


def _record(lines: list[str]) -> None:
    with open(SWARM_DIR / "incidents.log", "a") as record:
        record.write("\n".join(lines) + "\n\n")


def _heal(dead: dict[str, str]) -> None:
    """Record what is known of the dead nodes, then bring them back (`scripts/swarm-up`)."""
    lines = [f"{time.strftime('%Y-%m-%dT%H:%M:%S')} before a test on pid {os.getpid()}: engines not answering: {dead}", *_last_words(dead)]
    done = swarm_up()
    lines.append(f"--- scripts/swarm-up exited {done.returncode}: {(done.stdout + done.stderr).strip()[-2000:]}")
    _record(lines)
    warnings.warn(f"the swarm had to be healed before this test ({dead}); see {SWARM_DIR / 'incidents.log'}", stacklevel=1)


def _check_after(env: dict[str, str] | None) -> None:
    """Say so at once when a node died during the test that just ran (its name is in the
    record), with the node's last dockerd lines; the next test brings it back."""
    if env is not None and (dead := dead_nodes(env)):
        test = os.environ.get("PYTEST_CURRENT_TEST", "a test").split(" (")[0]
        _record([f"{time.strftime('%Y-%m-%dT%H:%M:%S')} found dead at the end of {test} on pid {os.getpid()}: {dead}", *_last_words(dead)])


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Use the swarm alongside other tests (no node is crashed meanwhile); a node found dead
    first is brought back (`_heal`)."""
    env, _ = bring_up()
    for attempt in range(2):  # at most one healing: a node dying again is left to fail the test
        with flock(LOCKS / "studios-swarm-turnstile.lock", fcntl.LOCK_EX):
            pass
        with flock(LOCKS / "studios-swarm-use.lock", fcntl.LOCK_SH):
            if env is None or attempt == 1 or not dead_nodes(env):
                try:
                    yield
                finally:
                    _check_after(env)
                return
        assert env is not None
        with _alone():
            if dead := dead_nodes(env):  # not already healed by another worker
                _heal(dead)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """The swarm for this test alone (it crashes nodes); a node found dead first is brought
    back (`_heal`), and all 3 nodes are Ready again after."""
    env, _ = bring_up()
    with _alone():
        if env is not None and (dead := dead_nodes(env)):
            _heal(dead)
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
