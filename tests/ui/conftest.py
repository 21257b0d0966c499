"""Fixtures of the browser tests: a `studios serve` with two users, a git repository of the
greeter app, one chromium per module, and where screenshots go: docs/screenshots/ only with
STUDIOS_UPDATE_SCREENSHOTS=1 (to refresh the ones docs/ui.md shows), else a temporary
directory, so a test run leaves the work tree as it found it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import launched
from contract.server import REPO, StudiosServer, make_repo, studios_server
from ui.browsing import APP, PY, SHOTS


@pytest.fixture(scope="module", autouse=True)
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    update = os.environ.get("STUDIOS_UPDATE_SCREENSHOTS", "") not in ("", "0")
    folder = REPO / "docs" / "screenshots" if update else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    SHOTS.append(folder)
    yield folder
    SHOTS.remove(folder)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    env = {"STUDIOS_START_TIMEOUT_SECONDS": "20", "STUDIOS_STOP_GRACE_SECONDS": "2", "STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_ALLOW_LOCAL_GIT_REPOS": "true"}
    with studios_server(tmp_path_factory.mktemp("ui") / "server", name="ui_browser", runtime="process", env=env) as srv:
        srv.keys = {"alice": srv.create_user("alice", "--name", "Alice Adams"), "bob": srv.create_user("bob", "--name", "Bob Brown")}  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = make_repo(tmp_path_factory.mktemp("ui-repos") / "greeter", {"app.py": APP, "start": f"#!/bin/sh\nexec {PY} app.py\n"}, executable=("start",))
    return f"file://{path}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:
        yield b
