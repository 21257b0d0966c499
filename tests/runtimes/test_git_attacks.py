"""Command execution through a studio's git ref or URL, at the checkout itself: each vector must
fail without running anything, and each layer must hold on its own. "Without the check" tests
turn `studios.git_input`'s checks off inside the checkout module, to show that `--`, the
transport allow-list and the scrubbed config stop the same attack if a check ever misses one.

Every payload tries to create a file named after the test under its tmp_path (the marker); the
test fails if the marker exists afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from studios.runtimes import git as checkout_module
from studios.runtimes.git import CheckoutError, checkout

pytestmark = pytest.mark.anyio

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=env or GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "origin"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("print('hi')\n")
    git(path, "add", "app.py")
    git(path, "commit", "-q", "-m", "app")
    return path


@pytest.fixture
def no_input_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkout without `studios.git_input`'s checks: only git's own defences remain."""
    monkeypatch.setattr(checkout_module, "_check_input", lambda url, ref, allow_local: None)


def upload_pack(marker: Path) -> list[str]:
    # The reproducer, and its short-option and separate-argument variants.
    return [
        f"--upload-pack=touch${{IFS}}{marker};git-upload-pack",
        f"-utouch {marker};git-upload-pack",
        f"--upload-pack=sh -c 'touch {marker}';git-upload-pack",
    ]


@pytest.mark.parametrize("variant", range(3))
@pytest.mark.parametrize("checked", [True, False], ids=["checked", "without-the-check"])
async def test_upload_pack_in_the_ref_runs_nothing(request: Any, tmp_path: Path, marker: Path, repo: Path, variant: int, checked: bool) -> None:
    if not checked:
        request.getfixturevalue("no_input_checks")
    ref = upload_pack(marker)[variant]
    for url in ("file:///nonexistent", f"file://{repo}"):
        dest = tmp_path / f"out-{url.count('/')}"
        with pytest.raises(CheckoutError) as error:
            await checkout(url, ref, dest, allow_local=True, timeout=30)
        assert not marker.exists(), f"{ref!r} ran a command ({error.value})"
        if checked:
            assert str(error.value).startswith("refused: ") and "must not start with '-'" in str(error.value)


def transports(marker: Path) -> list[str]:
    return [
        f"ext::sh -c touch% {marker}",
        f"ext::sh -c 'touch {marker}'",
        "fd::0",
        f"ssh://-oProxyCommand=touch%20{marker}/repo",
        f"ssh://-oProxyCommand=touch {marker}/repo",
        f"-oProxyCommand=touch {marker}",
        f"--upload-pack=touch {marker}",
        f"file::{marker}",
        f"https::ext::sh -c touch% {marker}",
    ]


@pytest.mark.parametrize("variant", range(9))
@pytest.mark.parametrize("checked", [True, False], ids=["checked", "without-the-check"])
async def test_dangerous_transports_run_nothing(request: Any, tmp_path: Path, marker: Path, variant: int, checked: bool) -> None:
    if not checked:
        request.getfixturevalue("no_input_checks")
    url = transports(marker)[variant]
    with pytest.raises(CheckoutError) as error:
        await checkout(url, None, tmp_path / "out", allow_local=True, timeout=30)
    assert not marker.exists(), f"{url!r} ran a command ({error.value})"
    if checked:
        assert str(error.value).startswith("refused: ")


@pytest.mark.parametrize("local", ["file", "path"])
@pytest.mark.parametrize("checked", [True, False], ids=["checked", "without-the-check"])
async def test_local_repositories_are_refused_unless_allowed(request: Any, tmp_path: Path, repo: Path, local: str, checked: bool) -> None:
    if not checked:
        request.getfixturevalue("no_input_checks")
    url = f"file://{repo}" if local == "file" else str(repo)
    with pytest.raises(CheckoutError) as error:
        await checkout(url, "main", tmp_path / "refused", timeout=30)
    if checked:
        assert "STUDIOS_ALLOW_LOCAL_GIT_REPOS" in str(error.value)
    else:  # git's own allow-list (protocol.file.allow=never) refuses it
        assert "transport 'file' not allowed" in str(error.value)
    assert not (tmp_path / "refused" / "app.py").exists()
    assert await checkout(url, "main", tmp_path / "allowed", allow_local=True, timeout=30)
    assert (tmp_path / "allowed" / "app.py").exists()


def evil_config(home: Path, marker: Path) -> Path:
    """A home whose git config runs a hook and an fsmonitor command that create the marker."""
    hooks = home / "hooks"
    hooks.mkdir(parents=True)
    for hook in ("post-checkout", "reference-transaction", "post-merge"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / hook).chmod(0o755)
    config = f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = touch {marker}; false\n[protocol]\n\tallow = always\n"
    (home / ".gitconfig").write_text(config)
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text(config)
    return home / ".gitconfig"


async def test_the_services_own_git_config_is_not_read(tmp_path: Path, marker: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    config = evil_config(home, marker)
    # The config is live: plain git with this home runs the hook (so the test can fail).
    probe = tmp_path / "probe"
    git(tmp_path, "clone", "-q", str(repo), str(probe), env={**GIT_ENV, "HOME": str(home)})
    assert marker.exists(), "the evil config should have fired for plain git"
    marker.unlink()

    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(config))
    sha = await checkout(f"file://{repo}", "main", tmp_path / "out", allow_local=True, timeout=30)
    assert sha == git(repo, "rev-parse", "HEAD")
    assert not marker.exists(), "a hook or fsmonitor from the service's environment ran"
    # The transport allow-list in that config (protocol.allow=always) did not widen ours either.
    with pytest.raises(CheckoutError, match="not allowed"):
        monkeypatch.setattr(checkout_module, "_check_input", lambda url, ref, allow_local: None)
        await checkout(f"ext::sh -c touch% {marker}", None, tmp_path / "out2", timeout=30)
    assert not marker.exists()


async def test_submodules_are_not_fetched(tmp_path: Path, marker: Path, repo: Path) -> None:
    """A repository whose submodule URL is an ext:: command: its checkout leaves the
    submodule empty and runs nothing."""
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(repo), "sub")
    git(repo, "config", "-f", ".gitmodules", "submodule.sub.url", f"ext::sh -c touch% {marker}")
    git(repo, "commit", "-q", "-am", "a submodule")
    await checkout(f"file://{repo}", "main", tmp_path / "out", allow_local=True, timeout=30)
    assert (tmp_path / "out" / ".gitmodules").exists() and not any((tmp_path / "out" / "sub").iterdir())
    assert not marker.exists()


async def test_every_user_value_follows_an_end_of_options_marker(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In each git argv, the URL and the ref come after `--` or `--end-of-options`."""
    calls: list[tuple[str, ...]] = []
    real = checkout_module.asyncio.create_subprocess_exec

    async def spy(*args: str, **kwargs: Any) -> Any:
        calls.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(checkout_module.asyncio, "create_subprocess_exec", spy)
    url = f"file://{repo}"
    short = git(repo, "rev-parse", "HEAD")[:8]  # a short sha takes the slow path (fetch all, rev-parse)
    await checkout(url, short, tmp_path / "out", allow_local=True, timeout=30)
    seen = 0
    for argv in calls:
        for value in (url, short, f"{short}^{{commit}}"):
            if value in argv:
                seen += 1
                before = argv[: argv.index(value)]
                assert "--" in before or "--end-of-options" in before, argv
    assert seen >= 3, calls  # remote add (url), fetch (ref), rev-parse (ref^{commit})
