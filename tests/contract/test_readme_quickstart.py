"""The README's quick start, run as written: the shell block between its `quick-start` markers
(and the git variant the README describes) is taken from README.md itself, so the two cannot
drift, and run with bash against a real `studios serve`, after pasting the `export` line that
`studios bootstrap` prints (as `scripts/serve` runs it). It must print the deployment running and
the example app's page through its `displayUrl`. Once on host processes, once on Docker (with the
image `scripts/serve` builds), each time also from a git repository of the example.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import BIN, REPO, StudiosServer, studios_server

# The quick start runs the service on SQLite, its default: the PostgreSQL run has nothing to add.
pytestmark = pytest.mark.database_neutral

README = REPO / "README.md"
GIT_STUDIO_LINE = re.compile(r'`(studio = client\.studios\.post\(name="hello from git".*?)`\.?$', re.M)


def block(marker: str) -> str:
    """The shell code of the fenced block that follows `<!-- marker... -->` in the README."""
    match = re.search(rf"<!-- {marker}\b[^>]*-->\n```sh\n(.*?)```\n<!-- /{marker} -->", README.read_text(), re.S)
    assert match, f"README.md lost its {marker} block"
    return match.group(1)


def git_variant(quick_start: str) -> str:
    """The quick start with its `studio = …` line changed as the README says."""
    line = GIT_STUDIO_LINE.search(README.read_text())
    assert line, "README.md lost the git variant's studio line"
    lines = quick_start.splitlines()
    studio = [i for i, text in enumerate(lines) if text.startswith("studio = client.studios.post(")]
    assert len(studio) == 1, "the quick start must create its studio on one line"
    lines[studio[0]] = line.group(1)
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["process", "docker"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StudiosServer]:
    runtime = request.param
    if shutil.which("curl") is None:
        pytest.skip("the quick start opens the displayUrl with curl (apt-get install curl; scripts/test installs it)")
    # As the README runs it: apps as their authors' own users when root (the default), and the
    # git variant's local repository allowed, as the README tells its reader to.
    env = {"STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_ALLOW_LOCAL_GIT_REPOS": "true",
           "STUDIOS_PROCESS_RUN_AS": "author" if os.geteuid() == 0 else "service"}
    if runtime == "docker":
        request.applymarker(pytest.mark.docker)
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
        if info.returncode != 0:
            pytest.skip(f"`docker info` failed, no Docker engine (run scripts/start-dockerd.sh): {info.stderr.strip()[-300:]}")
        built = subprocess.run(["sh", str(REPO / "examples" / "hello" / "build-image.sh")], capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, f"examples/hello/build-image.sh failed (scripts/serve runs it):\n{built.stdout}\n{built.stderr}"
        if os.environ.get("DOCKER_HOST"):
            env["STUDIOS_DOCKER_URL"] = os.environ["DOCKER_HOST"]
    with studios_server(tmp_path / "server", name=f"quickstart_{runtime}", runtime=runtime, env=env) as srv:
        yield srv


@pytest.fixture
def shell_dir(tmp_path: Path) -> Path:
    """A directory that looks like the repository to the README's commands: `.venv` (the
    interpreter running the tests, with civis) and `examples/`."""
    here = tmp_path / "checkout"
    here.mkdir()
    (here / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (here / "examples").symlink_to(REPO / "examples")
    return here


def bash(script: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))} | {"HOME": str(home)}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_quick_start_runs_and_opens_the_app(server: StudiosServer, shell_dir: Path, tmp_path: Path) -> None:
    # What scripts/serve runs before `studios serve`: the first-run key and its export line.
    first_run = subprocess.run([str(BIN / "studios"), "bootstrap"], env=server.env, capture_output=True, text=True, timeout=60)
    assert first_run.returncode == 0, first_run.stderr
    export = [line for line in first_run.stderr.splitlines() if line.startswith("export CIVIS_API_ENDPOINT=")]
    assert len(export) == 1, first_run.stderr
    home = tmp_path / "home"
    home.mkdir()

    quick_start = block("quick-start")
    ran = bash(export[0] + "\n" + quick_start, shell_dir, home)
    assert ran.returncode == 0, f"the quick start failed:\n{ran.stdout}\n{ran.stderr}\n{server.log_tail()}"
    assert re.search(r"^studio \d+, deployment \d+: running \(running\)$", ran.stderr, re.M), ran.stderr
    url, *page = ran.stdout.splitlines()
    assert "/_studios/auth?token=" in url
    assert "<h1 id=\"hello\">Hello from Studios</h1>" in "\n".join(page), ran.stdout[-2000:]

    # The git variant: the README's repository, edited and committed as it suggests.
    made = bash(block("quick-start-git"), shell_dir, home)
    assert made.returncode == 0, made.stderr
    repo = home / "hello-studio"
    page_file = repo / "index.html"
    page_file.write_text(page_file.read_text().replace("Hello from Studios", "Hello from my own repository"))
    committed = bash("git -C ~/hello-studio -c user.name=me -c user.email=me@localhost commit -qam 'my page'", shell_dir, home)
    assert committed.returncode == 0, committed.stderr
    ran = bash(export[0] + "\n" + git_variant(quick_start), shell_dir, home)
    assert ran.returncode == 0, f"the git variant failed:\n{ran.stdout}\n{ran.stderr}\n{server.log_tail()}"
    assert re.search(r": running \(running\)$", ran.stderr, re.M), ran.stderr
    assert "Hello from my own repository" in ran.stdout, ran.stdout[-2000:]
