"""Several `studios serve` processes on one PostgreSQL database, as several machines would run:
any of them serves the API and the display-URL proxy, exactly one runs the lifecycle engine
(the lease), and when that one is killed the other takes the engine over: the deployment keeps
running, is started once, and no log line is lost or stored twice. PostgreSQL only (SQLite
serves one server; the events travel by LISTEN/NOTIFY)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import TEST_DATABASE_URL, pg_database
from contract.server import StudiosServer, open_link, poll

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="several servers share events through PostgreSQL (set STUDIOS_TEST_DATABASE_URL)")

APP = """
import http.server, os, sys, threading, time
print("START", os.getpid(), flush=True)
def count():
    n = 0
    while True:
        print(n, flush=True); n += 1; time.sleep(0.02)
threading.Thread(target=count, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"counting"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[StudiosServer, StudiosServer, str]]:
    app = tmp_path / "counter.py"
    app.write_text(APP)
    with pg_database("pair") as url:
        shared = {
            "STUDIOS_DATABASE_URL": url,
            "STUDIOS_SECRET_KEY": "several-servers-test-secret",
            "STUDIOS_INSTANCE": f"pair{int(time.time() * 1000) % 10**8}",
            "STUDIOS_RUNTIME": "process",
            "STUDIOS_PROCESS_RUN_AS": "service",  # the app lives in a test directory only root can read
            "STUDIOS_IMAGE_COMMANDS": f'{{"counter": "exec {sys.executable} {app}"}}',
            "STUDIOS_RECONCILE_INTERVAL_SECONDS": "2",
        }
        first = StudiosServer(tmp_path / "a", shared)
        # The second server shares the first one's data directory (one machine, two processes).
        second = StudiosServer(tmp_path / "b", {**shared, "STUDIOS_DATA_DIR": first.env["STUDIOS_DATA_DIR"]})
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        try:
            first.start()
            second.start()
            yield first, second, url
        finally:
            for server in (first, second):
                if server.process is not None:
                    server.end_workloads()
            for server in (first, second):
                server.stop()
            first.kill_leftovers()


def holder(url: str) -> str | None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT holder FROM leases WHERE name = 'engine' AND expires_at > extract(epoch from clock_timestamp())")).scalar()
    finally:
        engine.dispose()


def pid_of(server: StudiosServer) -> int:
    assert server.process is not None
    return server.process.pid


def test_deploy_through_one_open_through_the_other_then_the_engine_moves(pair: tuple[StudiosServer, StudiosServer, str]) -> None:
    first, second, url = pair
    key = first.create_user("alice")
    api = {s: httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=30) for s in (first, second)}
    engine_on = poll(lambda: holder(url), 30, "a server to hold the engine lease")
    by_pid = {pid_of(first): first, pid_of(second): second}
    engine_server = by_pid[int(engine_on.split(":")[1])]
    other = second if engine_server is first else first

    # Deploy through the server that does NOT run the engine: the engine hears it by NOTIFY.
    studio = api[other].post("/studios", json={"name": "counter", "dockerImageName": "counter"}).json()
    dep = api[other].post(f"/studios/{studio['id']}/deployments", json={}).json()
    path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
    try:
        poll(lambda: api[engine_server].get(path).json()["state"] == "running", 30, "running, seen through the other server")
    except AssertionError:
        lines = [line["message"] for line in api[other].get(f"{path}/logs").json()]
        raise AssertionError(f"{api[other].get(path).json()['stateMessage']!r}; logs: {lines}; engine log: {engine_server.log_tail(3000)}") from None

    # The displayUrl (signed by one server) opens through the other server's proxy.
    link = api[engine_server].get(path).json()["displayUrl"]
    through_other = str(httpx.URL(link).copy_with(port=other.proxy_port))
    assert open_link(through_other).text == "counting"
    # Spent on every server: the same link through the first server's proxy opens nothing.
    replayed = open_link(str(httpx.URL(link).copy_with(port=engine_server.proxy_port)))
    assert replayed.status_code == 403 and "already used" in replayed.text, replayed.text

    def counted() -> list[int]:
        lines = api[other].get(f"{path}/logs", params={"limit": 100000}).json()
        return [int(line["message"]) for line in lines if line["source"] == "user" and line["message"].isdigit()]

    poll(lambda: len(counted()) >= 20, 30, "lines before the kill")
    began = time.monotonic()
    engine_server.kill()  # kill -9 of the engine holder
    poll(lambda: (h := holder(url)) is not None and int(h.split(":")[1]) == pid_of(other), 30, "the other server to take the engine over")
    takeover = time.monotonic() - began
    assert takeover < 15, f"takeover took {takeover:.1f} s"
    before = len(counted())
    poll(lambda: len(counted()) >= before + 50, 30, "lines stored by the new engine")
    after = api[other].get(path).json()
    assert after["state"] == "running"
    # A displayUrl opens once: a fresh one, through the surviving server's proxy.
    assert open_link(str(httpx.URL(after["displayUrl"]).copy_with(port=other.proxy_port))).text == "counting"

    assert api[other].delete(path).status_code == 204
    assert api[other].get(path).json()["state"] == "terminated"
    lines = api[other].get(f"{path}/logs", params={"limit": 100000}).json()
    numbers = [int(line["message"]) for line in lines if line["source"] == "user" and line["message"].isdigit()]
    starts = [line["message"] for line in lines if line["message"].startswith("START ")]
    assert len(starts) == 1, f"started {len(starts)} times: {starts}"
    assert numbers == list(range(len(numbers))), f"lost {sorted(set(range(max(numbers) + 1)) - set(numbers))[:10]}, doubled {len(numbers) - len(set(numbers))}"
    system = [line["message"] for line in lines if line["source"] == "system"]
    assert "adopted after a service restart" in system
    for client in api.values():
        client.close()


def test_workers_share_one_database(tmp_path: Path) -> None:
    """`studios serve --workers 2`: two processes answer on one port; one runs the engine."""
    with pg_database("workers") as url:
        server = StudiosServer(tmp_path, {"STUDIOS_DATABASE_URL": url, "STUDIOS_RUNTIME": "fake", "STUDIOS_WORKERS": "2"})
        try:
            server.start()
            key = server.create_user("alice")
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=30) as http:
                studio = http.post("/studios", json={"name": "w", "dockerImageName": "fake"}).json()
                dep = http.post(f"/studios/{studio['id']}/deployments", json={}).json()
                path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
                poll(lambda: http.get(path).json()["state"] == "running", 30, "running")
                assert http.delete(path).status_code == 204
            log = server.log.read_text()
            assert log.count("this server runs the lifecycle engine") == 1, log[-3000:]
            assert log.count("Application startup complete") == 2, log[-3000:]
        finally:
            server.end_workloads()
            server.stop()

