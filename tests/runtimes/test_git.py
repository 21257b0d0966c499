"""Checking out git repositories: local repos made in tmp dirs, and a real `git http-backend`
behind a tiny HTTP server that requires Basic auth (so the askpass path is exercised)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitserver import git_http_server
from studios.runtimes import git as checkout_module
from studios.runtimes.git import CheckoutError, checkout, split_credentials

pytestmark = pytest.mark.anyio

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip
USER, PASSWORD = "alice", "s3cret-Pa55word"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> dict[str, Any]:
    """A repo with commits on main, a `feature` branch and a `v1.0` tag; returns their shas."""
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = {}
    for name in ("first", "second"):
        (repo / "which").write_text(name)
        git(repo, "add", "which")
        git(repo, "commit", "-q", "-m", name)
        shas[name] = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "-a", "v1.0", "-m", "release", shas["first"])
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "which").write_text("feature")
    git(repo, "commit", "-q", "-am", "feature")
    shas["feature"] = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return {"path": repo, **shas}


async def test_default_branch_over_file_url(origin, tmp_path):
    lines: list[str] = []
    sha = await checkout(f"file://{origin['path']}", None, tmp_path / "out", report=lines.append, allow_local=True)
    assert sha == origin["second"]
    assert (tmp_path / "out" / "which").read_text() == "second"
    assert git(tmp_path / "out", "rev-parse", "--is-shallow-repository") == "true"
    assert lines[0].startswith("fetching HEAD from file://") and lines[-1].endswith(sha[:12])


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("feature", "feature"), ("v1.0", "first"), ("main", "second"), ("FIRST_SHA", "first"), ("SHORT_SHA", "first")],
)
async def test_branch_tag_and_sha_from_a_local_path(origin, tmp_path, ref, expected):
    ref = {"FIRST_SHA": origin["first"], "SHORT_SHA": origin["first"][:8]}.get(ref, ref)
    sha = await checkout(str(origin["path"]), ref, tmp_path / "out", allow_local=True)
    assert (tmp_path / "out" / "which").read_text() == expected
    assert sha == origin[expected]


async def test_bad_url_carries_gits_reason(tmp_path):
    with pytest.raises(CheckoutError) as error:
        await checkout(f"file://{tmp_path}/nowhere", "main", tmp_path / "out", allow_local=True)
    assert str(error.value).startswith("git clone failed: fatal: ")
    assert "does not appear to be a git repository" in str(error.value)


async def test_bad_ref_names_the_ref_and_the_url(origin, tmp_path):
    url = f"file://{origin['path']}"
    with pytest.raises(CheckoutError) as error:
        await checkout(url, "nope", tmp_path / "out", allow_local=True)
    assert str(error.value) == f"ref 'nope' not found in {url} (fatal: couldn't find remote ref nope)"
    with pytest.raises(CheckoutError, match=f"ref 'deadbeef' not found in {url}"):
        await checkout(url, "deadbeef", tmp_path / "out2", allow_local=True)


async def test_unsupported_url_and_non_empty_dest(origin, tmp_path):
    with pytest.raises(CheckoutError, match="is not a git URL"):
        await checkout("ext::sh -c touch% /tmp/pwned", None, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").touch()
    with pytest.raises(CheckoutError, match="not empty"):
        await checkout(str(origin["path"]), None, tmp_path / "full", allow_local=True)


def test_credentials_are_split_from_the_url():
    assert split_credentials("https://bob:p%40ss@example.com/r.git") == ("https://example.com/r.git", "bob", "p@ss")
    assert split_credentials("file:///srv/r") == ("file:///srv/r", None, None)


@pytest.fixture
def git_server(origin) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    with git_http_server(origin["path"].parent, USER, PASSWORD, seen_auth=seen) as base:
        yield f"{base}/origin", seen


@pytest.fixture
def argv_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Every argv checkout hands to the OS."""
    calls: list[tuple[str, ...]] = []
    real: Callable[..., Any] = asyncio.create_subprocess_exec

    async def spy(*args: str, **kwargs: Any) -> Any:
        calls.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(checkout_module.asyncio, "create_subprocess_exec", spy)
    return calls


async def test_https_credentials_go_through_askpass_only(origin, tmp_path, git_server, argv_log):
    url, seen = git_server
    lines: list[str] = []
    sha = await checkout(url, "feature", tmp_path / "out", username=USER, password=PASSWORD, report=lines.append)
    assert sha == origin["feature"]
    assert any(a.startswith("Basic ") for a in seen)  # the server was asked, and got them
    assert not any(PASSWORD in arg for argv in argv_log for arg in argv)
    assert PASSWORD not in (tmp_path / "out" / ".git" / "config").read_text()
    assert not any(PASSWORD in line for line in lines)


async def test_credentials_in_the_url_are_moved_out_of_it(origin, tmp_path, git_server, argv_log):
    url, _ = git_server
    secret_url = url.replace("http://", f"http://{USER}:{PASSWORD}@")
    assert await checkout(secret_url, None, tmp_path / "out") == origin["second"]
    assert not any(PASSWORD in arg for argv in argv_log for arg in argv)
    assert PASSWORD not in (tmp_path / "out" / ".git" / "config").read_text()


async def test_missing_or_wrong_credentials_fail_fast_without_leaking(tmp_path, git_server):
    url, _ = git_server
    with pytest.raises(CheckoutError, match="terminal prompts disabled"):
        await checkout(url, None, tmp_path / "a", timeout=20)
    with pytest.raises(CheckoutError) as error:
        await checkout(url, None, tmp_path / "b", username=USER, password="wrong-password", timeout=20)
    assert "Authentication failed" in str(error.value) and "wrong-password" not in str(error.value)


async def test_a_hung_remote_times_out(tmp_path):
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/repo"
        with pytest.raises(CheckoutError, match=r"timed out after 0\.5 s"):
            await checkout(url, None, tmp_path / "out", timeout=0.5)


async def test_a_cancelled_checkout_ends_git_at_once(tmp_path):
    """A deployment stopped while its repository is being cloned: the launch is cancelled, and
    git (with its helpers) must not run on against the remote."""
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/cancelled-repo"

        def gits() -> list[str]:
            found = subprocess.run(["pgrep", "-f", url], capture_output=True, text=True).stdout.split()
            return found

        clone = asyncio.ensure_future(checkout(url, None, tmp_path / "out", timeout=60))
        for _ in range(200):  # git is running against the silent remote (bounded: 10 s)
            if gits():
                break
            await asyncio.sleep(0.05)
        assert gits(), "git never started"
        clone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await clone
        assert gits() == [], "git ran on after its checkout was cancelled"


async def test_a_checkout_cancelled_while_git_starts_ends_its_helpers_too(tmp_path, monkeypatch):
    """The launch can be cancelled while asyncio is still connecting a git it has just started
    (the process and the helpers it starts exist already): asyncio's own cleanup kills that one
    process, and its helpers ran on against the remote for good (a fresh run left two
    `git remote-http` hung on a silent remote). Here the spawn ends only after the cancel came,
    and the "git" is a shell that starts a helper: both must end with the checkout."""
    real_spawn = asyncio.create_subprocess_exec
    helper_file = tmp_path / "helper.pid"
    spawned: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    cancelled = asyncio.Event()

    async def slow_to_connect(*_args: Any, **kwargs: Any) -> Any:
        process = await real_spawn("/bin/sh", "-c", f"sleep 300 & echo $! > {helper_file}; wait", **kwargs)
        spawned.set_result(process)
        await cancelled.wait()  # still "starting" when the cancel arrives
        return process

    monkeypatch.setattr(checkout_module.asyncio, "create_subprocess_exec", slow_to_connect)
    clone = asyncio.ensure_future(checkout("http://127.0.0.1:9/never-asked", None, tmp_path / "out", timeout=60))
    process = await asyncio.wait_for(spawned, 10)
    for _ in range(200):  # the helper has started (bounded: 10 s)
        if helper_file.exists() and helper_file.read_text().strip():
            break
        await asyncio.sleep(0.05)
    helper = int(helper_file.read_text())
    try:
        clone.cancel()
        await asyncio.sleep(0)
        cancelled.set()
        with pytest.raises(asyncio.CancelledError):
            await clone

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip().startswith("Z")

        for _ in range(100):  # bounded: 5 s
            if gone(helper):
                break
            await asyncio.sleep(0.05)
        assert gone(helper), "git's helper ran on after its checkout was cancelled"
    finally:
        for pid in (process.pid, helper):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
