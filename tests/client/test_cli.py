"""The user CLI (`studios ls/ps/deploy/logs/stop`) as a user runs it: the installed `studios`
command in a subprocess, talking to a real `studios serve` (process runtime) through
CIVIS_API_ENDPOINT and CIVIS_API_KEY only. Apps are git repositories the tests write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contract.server import BIN, OpenedApp, StudiosServer, make_repo, open_link, poll, studios_server

PY = sys.executable

# Prints its greeting, then one line per request it serves.
ECHO_APP = """
import http.server, os
print("hello", os.environ.get("GREETING"), flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("served", self.path, flush=True)
        body = b"echo app"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
CRASHER = "#!/bin/sh\necho 'about to fail'\nexit 3\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    env = {"STUDIOS_START_TIMEOUT_SECONDS": "20", "STUDIOS_STOP_GRACE_SECONDS": "2", "STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_ALLOW_LOCAL_GIT_REPOS": "true"}
    with studios_server(tmp_path_factory.mktemp("cli") / "server", name="cli", runtime="process", env=env) as srv:
        srv.keys = {"alice": srv.create_user("alice"), "bob": srv.create_user("bob")}  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli-repos")
    made = {
        "echo": make_repo(root / "echo", {"app.py": ECHO_APP, "start": f"#!/bin/sh\nexec {PY} app.py\n"}, executable=("start",)),
        "crasher": make_repo(root / "crasher", {"start": CRASHER}, executable=("start",)),
    }
    return {name: f"file://{path}" for name, path in made.items()}


def cli_env(server: StudiosServer, user: str = "alice") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))}
    return {**env, "CIVIS_API_ENDPOINT": server.url, "CIVIS_API_KEY": server.keys[user], "COLUMNS": "200"}  # type: ignore[attr-defined]


def studios(server: StudiosServer, *args: str, user: str = "alice", timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "studios"), *args], env=cli_env(server, user), capture_output=True, text=True, timeout=timeout)


def api(server: StudiosServer, user: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys[user]}"}, trust_env=False, timeout=30)  # type: ignore[attr-defined]


def visit(link: str, path: str) -> httpx.Response:
    """Open a displayUrl as a browser would (token for cookie), then GET `path` of the app.
    `d-N.localhost` goes to 127.0.0.1 with the Host header set."""
    url = httpx.URL(link)
    host = f"{url.host}:{url.port}"
    with httpx.Client(trust_env=False, timeout=10) as http:
        exchange = http.get(str(url.copy_with(host="127.0.0.1")), headers={"Host": host})
        assert exchange.status_code == 303, exchange.text
        cookie = exchange.headers["set-cookie"].split(";", 1)[0]
        return http.get(str(url.copy_with(host="127.0.0.1", path=path, query=None)), headers={"Host": host, "Cookie": cookie})


def new_studio(server: StudiosServer, name: str, repo: str, **extra: Any) -> int:
    with api(server) as http:
        response = http.post("/studios", json={"name": name, "gitRepoUrl": repo, **extra})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def test_deploy_follows_the_steps_and_ends_with_the_link(server: StudiosServer, repos: dict[str, str]) -> None:
    sid = new_studio(server, "echo", repos["echo"], params=[{"name": "GREETING", "type": "string", "value": "from the cli test"}])
    done = studios(server, "deploy", str(sid))
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip().splitlines()[-1]
    assert link.startswith("http://d-") and "/_studios/auth?token=" in link, done.stdout
    # the progress went through the start-up steps (from the deployment's event stream), on stderr
    steps = [line.strip("· ").strip() for line in done.stderr.splitlines() if line.strip().startswith("·")]
    # ("waiting for the app on port N" is said only when the app takes over 50 ms to answer:
    # tests/contract/test_streams.py has a slow app for it)
    assert steps[0].startswith("queued by alice") and any(s.startswith("cloning file://") for s in steps), done.stderr
    assert len(steps) == len(set(steps)), done.stderr  # each step once
    assert "✓ running after" in done.stderr
    page = open_link(link)
    assert page.status_code == 200 and page.text == "echo app"

    listed = json.loads(studios(server, "ps", "--json").stdout)
    assert [(d["studioId"], d["state"]) for d in listed] == [(sid, "running")]
    table = studios(server, "ps").stdout
    assert "echo" in table and "running" in table

    stopped = studios(server, "stop", str(sid), "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["state"] == "terminated"
    assert json.loads(studios(server, "ps", "--json").stdout) == []
    assert [d["state"] for d in json.loads(studios(server, "ps", "--all", "--json").stdout) if d["studioId"] == sid] == ["terminated"]


def test_a_failing_deploy_exits_non_zero_with_its_message(server: StudiosServer, repos: dict[str, str]) -> None:
    sid = new_studio(server, "crasher", repos["crasher"])
    done = studios(server, "deploy", str(sid))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "exited with code 3" in done.stderr.splitlines()[-1], done.stderr
    assert "http" not in done.stdout
    as_json = studios(server, "deploy", str(sid), "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert body["state"] == "terminated" and "exited with code 3" in body["stateMessage"]


def test_logs_follow_shows_a_line_printed_after_it_started(server: StudiosServer, repos: dict[str, str]) -> None:
    sid = new_studio(server, "followed", repos["echo"], params=[{"name": "GREETING", "type": "string", "value": "followers"}])
    done = studios(server, "deploy", str(sid))
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip().splitlines()[-1]

    proc = subprocess.Popen([str(BIN / "studios"), "logs", str(sid), "--follow"], env=cli_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=stream, into=into: into.extend(iter(s.readline, "")), daemon=True) for stream, into in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        poll(lambda: "hello followers\n" in out, 20, "the existing lines")
        assert "served /later" not in "".join(out)
        # a request after `logs --follow` started: the app prints a line for it
        assert visit(link, "/later").text == "echo app"
        poll(lambda: "served /later\n" in out, 20, "the new line in the followed log")
        assert out.count("hello followers\n") == 1  # no line twice
        # stopping the deployment ends the follow, after its last line
        assert studios(server, "stop", str(sid)).returncode == 0
        proc.wait(timeout=30)
        assert proc.returncode == 0
        for reader in readers:
            reader.join(timeout=10)
        assert any("[studios] stopped by alice" in line for line in err), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_logs_follow_resumes_after_the_connection_drops(server: StudiosServer, repos: dict[str, str]) -> None:
    sid = new_studio(server, "resumed", repos["echo"], params=[{"name": "GREETING", "type": "string", "value": "resumers"}])
    done = studios(server, "deploy", str(sid))
    assert done.returncode == 0, done.stderr
    app = OpenedApp(done.stdout.strip().splitlines()[-1])
    proc = subprocess.Popen([str(BIN / "studios"), "logs", str(sid), "--follow"], env=cli_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=stream, into=into: into.extend(iter(s.readline, "")), daemon=True) for stream, into in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        assert app.get("/before").status_code == 200
        poll(lambda: "served /before\n" in out, 20, "a line before the drop")
        server.restart()  # the service goes away and comes back: the CLI's stream drops
        assert app.get("/after").status_code == 200  # the app outlived it, adopted again
        poll(lambda: "served /after\n" in out, 60, "a line after the reconnection")
        assert [out.count(x) for x in ("hello resumers\n", "served /before\n", "served /after\n")] == [1, 1, 1], out
        assert proc.poll() is None
        assert studios(server, "stop", str(sid)).returncode == 0
        proc.wait(timeout=60)
        assert proc.returncode == 0, err
    finally:
        app.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_json_output_parses_for_scripts(server: StudiosServer, repos: dict[str, str]) -> None:
    sid = new_studio(server, "json studio", repos["echo"], params=[{"name": "GREETING", "type": "string", "value": "json"}])
    assert studios(server, "deploy", str(sid), "--json").returncode == 0
    studios_list = json.loads(studios(server, "ls", "--json").stdout)
    mine = {s["id"]: s for s in studios_list}
    assert mine[sid]["name"] == "json studio" and mine[sid]["mostRecentDeployment"]["state"] == "running"
    lines = [json.loads(line) for line in studios(server, "logs", str(sid), "--json").stdout.splitlines()]
    assert {"message", "stream", "source", "createdAt"} <= set(lines[0])
    assert any(line["message"] == "hello json" and line["source"] == "user" for line in lines)
    dep_id = mine[sid]["mostRecentDeployment"]["deploymentId"]
    stop = json.loads(studios(server, "stop", str(sid), str(dep_id), "--json").stdout)
    assert stop["deploymentId"] == dep_id and stop["state"] == "terminated"
    table = studios(server, "ls").stdout
    assert "json studio" in table


def test_errors_are_the_servers_messages(server: StudiosServer, repos: dict[str, str]) -> None:
    sid = new_studio(server, "private", repos["echo"])
    hidden = studios(server, "logs", str(sid), user="bob")
    assert hidden.returncode == 1 and f"Studio {sid} was not found." in hidden.stderr
    nothing = studios(server, "stop", str(sid))
    assert nothing.returncode == 1 and "has no deployments" in nothing.stderr
    bad_key = subprocess.run([str(BIN / "studios"), "ls"], env={**cli_env(server), "CIVIS_API_KEY": "stu_wrong"}, capture_output=True, text=True, timeout=60)
    assert bad_key.returncode == 1 and "API key is not valid" in bad_key.stderr
    no_key = subprocess.run([str(BIN / "studios"), "ls"], env={k: v for k, v in cli_env(server).items() if k != "CIVIS_API_KEY"}, capture_output=True, text=True, timeout=60)
    assert no_key.returncode == 1 and "CIVIS_API_KEY is not set" in no_key.stderr
    down = subprocess.run([str(BIN / "studios"), "ps"], env={**cli_env(server), "CIVIS_API_ENDPOINT": "http://127.0.0.1:9"}, capture_output=True, text=True, timeout=120)
    assert down.returncode == 1 and "cannot reach http://127.0.0.1:9" in down.stderr
