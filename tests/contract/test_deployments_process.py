"""Deployments end to end on the host-process runtime: the published `civis` client against
`studios serve` run as a subprocess (STUDIOS_RUNTIME=process). The apps are git repositories
the tests write (`file://` URLs) following the start convention: an executable `start` at the
root, or a Procfile `web:` line. Every wait is a bounded poll of the API (or of a file)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import StudiosServer, log_lines, make_repo, messages, open_link, poll, studios_server, wait_state

civis = pytest.importorskip("civis", reason="the contract tests need the civis client (pip install -e '.[test]')")

PY = sys.executable

HTTP_APP = """
import http.server, os, sys
print("hello on stdout", flush=True)
print("hello on stderr", file=sys.stderr, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"app says hi"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

# Serves HTTP and prints a numbered line every 50 ms, for as long as it lives.
COUNTER_APP = """
import http.server, os, threading, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"counter is alive"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
threading.Thread(target=server.serve_forever, daemon=True).start()
n = 0
while True:
    print(f"tick {n}", flush=True)
    n += 1
    time.sleep(0.05)
"""

CRASHER_START = "#!/bin/sh\necho 'about to fail'\necho 'failing now' >&2\nexit 3\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    root = tmp_path_factory.mktemp("deploy-process")
    # The apps are local repositories (file:// URLs): an administrator's opt-in, off by default.
    env = {"STUDIOS_START_TIMEOUT_SECONDS": "20", "STUDIOS_STOP_GRACE_SECONDS": "2", "STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_ALLOW_LOCAL_GIT_REPOS": "true"}
    with studios_server(root / "server", name="deploy_process", runtime="process", env=env) as srv:
        srv.keys = {"alice": srv.create_user("alice")}  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """file:// URLs of the apps."""
    root = tmp_path_factory.mktemp("repos")
    made = {
        "http": make_repo(root / "http", {"app.py": HTTP_APP, "start": f"#!/bin/sh\nexec {PY} app.py\n"}, executable=("start",)),
        "counter": make_repo(root / "counter", {"app.py": COUNTER_APP, "Procfile": f"release: false\nweb: exec {PY} app.py\n"}),
        "crasher": make_repo(root / "crasher", {"start": CRASHER_START}, executable=("start",)),
        "nothing": make_repo(root / "nothing", {"README.md": "no start here\n", "app.py": "print('never run')\n"}),
    }
    return {name: f"file://{path}" for name, path in made.items()}


@pytest.fixture
def client(server: StudiosServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CIVIS_API_ENDPOINT", server.url)
    monkeypatch.setenv("CIVIS_API_KEY", server.keys["alice"])  # type: ignore[attr-defined]
    return civis.APIClient()


def deploy(client: Any, name: str, url: str, ref: str | None = None) -> tuple[int, int]:
    studio = client.studios.post(name=name, git_repo_url=url, **({"git_ref": ref} if ref else {}))
    dep = client.studios.post_deployments(studio.id)
    assert dep.state == "pending", dep
    return studio.id, dep.deployment_id


def test_deploy_reach_logs_delete(client: Any, repos: dict[str, str]) -> None:
    sid, did = deploy(client, "http app", repos["http"], "main")
    dep = wait_state(client, sid, did, "running")
    assert dep.state_message == "running"
    assert client.studios.get(sid).most_recent_deployment.deployment_id == did

    page = open_link(dep.display_url)
    assert page.status_code == 200 and page.text == "app says hi", (page.status_code, page.text[:300])

    lines = poll(lambda: (ls := log_lines(client, sid, did)) and {"hello on stdout", "hello on stderr"} <= set(messages(ls, "user")) and ls, 10, "the app's lines")
    user = {(line.message, line.stream) for line in lines if line.source == "user"}
    assert ("hello on stdout", "stdout") in user and ("hello on stderr", "stderr") in user
    system = messages(lines, "system")
    assert any(m.startswith(f"cloning {repos['http']} at main") for m in system), system
    assert any(m.startswith("ready after ") for m in system), system

    client.studios.delete_deployments(sid, did)
    ended = wait_state(client, sid, did, "terminated", timeout=15)
    assert ended.state_message == "stopped by alice"
    assert ended.max_memory_usage is not None and ended.max_memory_usage > 0, ended.max_memory_usage
    assert "stopped by alice" in messages(log_lines(client, sid, did), "system")
    assert open_link(dep.display_url).status_code != 200


def test_restart_adopts_a_live_app_and_loses_no_line(client: Any, server: StudiosServer, repos: dict[str, str]) -> None:
    sid, did = deploy(client, "counter", repos["counter"])
    wait_state(client, sid, did, "running")

    def ticks() -> list[int]:
        return [int(m.split()[1]) for m in messages(log_lines(client, sid, did), "user", "stdout") if re.fullmatch(r"tick \d+", m)]

    before = poll(lambda: (t := ticks()) and len(t) >= 5 and t, 10, "ticks before the restart")
    server.stop()
    # While the service is down the app keeps printing (its supervisor writes stdout.log).
    stdout_log = Path(server.env["STUDIOS_DATA_DIR"]) / "runtimes" / "process" / "deployments" / str(did) / "stdout.log"
    printed = lambda: sum(1 for _ in stdout_log.open())  # noqa: E731
    down_from = printed()
    poll(lambda: printed() >= down_from + 10, 10, "lines printed while the service is down", interval=0.05)
    server.start()

    again = client.studios.get_deployments(sid, did)
    assert again.state == "running", (again.state, again.state_message)
    page = open_link(again.display_url)
    assert page.status_code == 200 and page.text == "counter is alive"
    target = down_from + 10
    after = poll(lambda: (t := ticks()) and max(t) >= target and t, 10, f"tick {target} in the logs")
    assert after == list(range(len(after))), f"gaps or duplicates around the restart: {sorted(set(range(max(after) + 1)) - set(after))[:10]} missing, {len(after) - len(set(after))} repeated"
    assert after[: len(before)] == before
    system = messages(log_lines(client, sid, did), "system")
    assert "adopted after a service restart" in system, system

    client.studios.delete_deployments(sid, did)
    assert wait_state(client, sid, did, "terminated", timeout=15).state_message == "stopped by alice"
    final = ticks()
    assert final == list(range(len(final))), "gaps or duplicates after the stop"


def test_bad_git_url(client: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/nowhere"
    sid, did = deploy(client, "bad url", url, "main")
    dep = wait_state(client, sid, did, "terminated")
    assert dep.state_message.startswith("git clone failed: fatal: "), dep.state_message
    assert "does not appear to be a git repository" in dep.state_message
    assert dep.state_message in messages(log_lines(client, sid, did), "system")


def test_bad_git_ref(client: Any, repos: dict[str, str]) -> None:
    sid, did = deploy(client, "bad ref", repos["http"], "no-such-branch")
    dep = wait_state(client, sid, did, "terminated")
    assert dep.state_message.startswith(f"ref 'no-such-branch' not found in {repos['http']}"), dep.state_message
    assert "couldn't find remote ref no-such-branch" in dep.state_message
    assert dep.state_message in messages(log_lines(client, sid, did), "system")


def test_no_start_command(client: Any, repos: dict[str, str]) -> None:
    sid, did = deploy(client, "nothing to run", repos["nothing"])
    dep = wait_state(client, sid, did, "terminated")
    assert dep.state_message.startswith("no start command found in the repository ("), dep.state_message
    assert dep.state_message in messages(log_lines(client, sid, did), "system")


def test_crasher_exit_code(client: Any, repos: dict[str, str]) -> None:
    sid, did = deploy(client, "crasher", repos["crasher"])
    dep = wait_state(client, sid, did, "terminated")
    assert dep.state_message == "exited with code 3"
    lines = log_lines(client, sid, did)
    user = {(line.message, line.stream) for line in lines if line.source == "user"}
    assert user == {("about to fail", "stdout"), ("failing now", "stderr")}
    assert "exited with code 3" in messages(lines, "system")
