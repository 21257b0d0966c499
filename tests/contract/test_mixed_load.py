"""A bounded mixed load on a real `studios serve` (process runtime, on SQLite and on PostgreSQL):
15 chatty apps print numbered lines while API reads and writes, deploys that replace each other,
log reads and proxied requests go on for 10 seconds. No request may fail because logs are being
written, a replaced deployment says so, and every line each app printed is stored exactly once.
(The figures of the full version are bench/mixed_bench.py's; this test asserts no speed.)"""

from __future__ import annotations

import collections
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .server import poll, studios_server

CHATTY_APP = """
import http.server, os, signal, sys, threading, time
name = os.environ["STUDIOS_DEPLOYMENT_ID"]
n = 0
lock = threading.Lock()
def end(*_):
    with lock:  # the last line says how many came before it
        sys.stdout.write(f"chatty {name} end {n}\\n"); sys.stdout.flush()
        os._exit(0)
signal.signal(signal.SIGTERM, end)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"chatty"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
def chatter():
    global n
    while True:
        with lock:
            stream = sys.stderr if (n + 1) % 10 == 0 else sys.stdout
            stream.write(f"chatty {name} {n + 1}\\n"); stream.flush()
            n += 1
        time.sleep(0.1)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
server.daemon_threads = True
threading.Thread(target=chatter, daemon=True).start()
server.serve_forever()
"""
APPS = 15
LOAD_SECONDS = 10.0
MAX_REQUESTS_PER_THREAD = 400
LINE = re.compile(r"^chatty (\d+) (end )?(\d+)$")


class Load:
    """What the client threads saw: every failure, and how many requests were made."""

    def __init__(self, until: float) -> None:
        self.until = until
        self.failures: list[str] = []
        self.requests = collections.Counter[str]()

    def go_on(self, kind: str) -> bool:
        return time.monotonic() < self.until and self.requests[kind] < MAX_REQUESTS_PER_THREAD

    def check(self, kind: str, send: Any, expect: int = 200) -> httpx.Response | None:
        self.requests[kind] += 1
        try:
            response = send()
        except httpx.HTTPError as error:
            self.failures.append(f"{kind}: {error.__class__.__name__}: {error}")
            return None
        if response.status_code != expect:
            self.failures.append(f"{kind}: {response.status_code} {response.text[:200]}")
            return None
        return response


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=60)


def test_chatty_apps_and_api_traffic_at_once_lose_nothing(tmp_path: Path) -> None:
    app = tmp_path / "chatty.py"
    app.write_text(CHATTY_APP)
    commands = {"chatty": f"exec {sys.executable} -I -S {app}"}
    env = {"STUDIOS_IMAGE_COMMANDS": json.dumps(commands), "STUDIOS_IDLE_SLEEP_SECONDS": "0"}
    with studios_server(tmp_path / "server", name="mixed_load", env=env) as server:
        key = server.create_user("loaded")
        http = _client(server.url, key)
        studios = [http.post("/studios", json={"name": f"chatty {i}", "dockerImageName": "chatty"}).json()["id"] for i in range(APPS + 1)]
        chatty_studios, redeployed = studios[:APPS], studios[APPS]
        chatty = [(sid, http.post(f"/studios/{sid}/deployments").json()["deploymentId"]) for sid in chatty_studios]

        def all_running() -> bool:
            return all(http.get(f"/studios/{sid}/deployments/{did}").json()["state"] == "running" for sid, did in chatty)

        poll(all_running, 120, "every chatty app running", interval=0.5)
        viewer_cookies = []
        with httpx.Client(trust_env=False, timeout=60, base_url=f"http://127.0.0.1:{server.proxy_port}") as viewer:
            for sid, did in chatty[:3]:
                url = httpx.URL(http.get(f"/studios/{sid}/deployments/{did}").json()["displayUrl"])
                host = f"{url.host}:{url.port}"
                exchanged = viewer.get(url.raw_path.decode(), headers={"Host": host})
                assert exchanged.status_code in (302, 303), exchanged.text
                viewer_cookies.append((host, exchanged.headers["set-cookie"].split(";", 1)[0]))

        load = Load(time.monotonic() + LOAD_SECONDS)
        replaced: list[tuple[int, int]] = []  # (replaced deployment, the one that replaced it)

        def api_traffic(n: int) -> None:
            with _client(server.url, key) as c:
                i = 0
                while load.go_on(f"api-{n}"):
                    i += 1
                    sid, did = chatty[i % APPS]
                    if i % 4 == 0:
                        made = load.check(f"api-{n}", lambda i=i: c.post("/studios", json={"name": f"extra {n}-{i}"}), 201)
                        if made is not None:
                            load.check(f"api-{n}", lambda made=made, i=i: c.patch(f"/studios/{made.json()['id']}", json={"name": f"edited {n}-{i}"}))
                    elif i % 4 == 1:
                        load.check(f"api-{n}", lambda: c.get("/studios"))
                    elif i % 4 == 2:
                        load.check(f"api-{n}", lambda sid=sid, did=did: c.get(f"/studios/{sid}/deployments/{did}/logs", params={"limit": 500}))
                    else:
                        load.check(f"api-{n}", lambda sid=sid, did=did: c.get(f"/studios/{sid}/deployments/{did}"))

        def deploys() -> None:
            with _client(server.url, key) as c:
                previous = None
                while load.go_on("deploy"):
                    made = load.check("deploy", lambda: c.post(f"/studios/{redeployed}/deployments"), 201)
                    if made is None:
                        continue
                    did = made.json()["deploymentId"]
                    if previous is not None:
                        replaced.append((previous, did))
                    previous = did
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        got = load.check("deploy", lambda did=did: c.get(f"/studios/{redeployed}/deployments/{did}"))
                        if got is None or got.json()["state"] in ("running", "terminated"):
                            break
                        time.sleep(0.05)

        def proxied() -> None:
            with httpx.Client(trust_env=False, timeout=60, base_url=f"http://127.0.0.1:{server.proxy_port}") as viewer:
                i = 0
                while load.go_on("proxy"):
                    i += 1
                    host, cookie = viewer_cookies[i % len(viewer_cookies)]
                    load.check("proxy", lambda host=host, cookie=cookie: viewer.get("/", headers={"Host": host, "Cookie": cookie}))
                    time.sleep(0.01)

        threads = [threading.Thread(target=api_traffic, args=(n,)) for n in range(3)]
        threads += [threading.Thread(target=deploys), threading.Thread(target=proxied)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=LOAD_SECONDS + 120)
        assert not any(thread.is_alive() for thread in threads), "a client thread hung"

        assert load.failures == [], f"{len(load.failures)} of {sum(load.requests.values())} requests failed: {load.failures[:10]}"
        assert sum(load.requests.values()) > 0
        for old, new in replaced:
            assert http.get(f"/studios/{redeployed}/deployments/{old}").json()["stateMessage"] == f"replaced by deployment {new}"

        # Each app, stopped, says how many lines it printed; every one of them is stored, once.
        for sid, did in chatty:
            assert http.delete(f"/studios/{sid}/deployments/{did}").status_code == 204
        for sid, did in chatty:

            def complete(sid: int = sid, did: int = did) -> tuple[int, int] | None:
                """(lines stored, lines printed) once the last line is stored and every number
                up to it is there exactly once; None until then (lines still arriving)."""
                lines: list[dict[str, Any]] = http.get(f"/studios/{sid}/deployments/{did}/logs", params={"limit": 100_000}).json()
                found = [(m.group(2) or "", int(m.group(3))) for line in lines if (m := LINE.match(line["message"])) and int(m.group(1)) == did]
                ends = [number for kind, number in found if kind]
                numbers = sorted(number for kind, number in found if not kind)
                if not ends or numbers != list(range(1, ends[0] + 1)):
                    return None
                return len(numbers), ends[0]

            stored, printed = poll(complete, 60, f"deployment {did}: every line it printed stored once, up to its last")
            assert stored == printed > 0
        http.close()
