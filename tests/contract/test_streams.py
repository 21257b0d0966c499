"""Live streams (server-sent events) through a real `studios serve` on the fake runtime: a
deployment's state reaches a follower without polling, a line the app prints after the follower
started arrives, a reconnect with Last-Event-ID resumes without repeating a line, heartbeats
flow, and access is checked at the start and while the stream is open."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contract.server import OpenedApp, StudiosServer, poll, studios_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    with studios_server(tmp_path_factory.mktemp("streams"), name="streams", runtime="fake", env={"STUDIOS_STREAM_HEARTBEAT_SECONDS": "0.5"}) as started:
        yield started


class Follower:
    """Reads an SSE stream in a thread; `next(event, within)` waits for a frame of that event."""

    def __init__(self, url: str, key: str, headers: dict[str, str] | None = None) -> None:
        self.frames: queue.Queue[tuple[str, Any, str | None]] = queue.Queue()
        self.status: int | None = None
        self._client = httpx.Client(trust_env=False, timeout=httpx.Timeout(30, read=60))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, {"Authorization": f"Bearer {key}", **(headers or {})}), daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                self._ready.set()
                event, data, event_id = "message", "", None
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.frames.put(("heartbeat", None, None))
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "":
                        if data:
                            self.frames.put((event, json.loads(data), event_id))
                        event, data, event_id = "message", "", None
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()
            self.frames.put(("closed", None, None))

    def next(self, event: str, within: float = 20.0, where: Any = None) -> tuple[Any, str | None]:
        """The next frame of `event` (whose data satisfies `where`, if given); fails after `within`."""
        import time

        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event!r} frame within {within} s")
            try:
                name, data, event_id = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if name == event and (where is None or where(data)):
                return data, event_id
            if name == "closed" and event != "closed":
                raise AssertionError(f"the stream closed while waiting for {event!r}")

    def close(self) -> None:
        self._client.close()


def api(server: StudiosServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=30)


def test_a_follower_sees_the_deployment_start_and_stop(server: StudiosServer) -> None:
    key = server.create_user("sue")
    with api(server, key) as http:
        studio = http.post("/studios", json={"name": "s", "dockerImageName": "fake", "params": [{"name": "STUDIOS_FAKE", "type": "string", "value": "slow-start=0.5"}]}).json()
        dep = http.post(f"/studios/{studio['id']}/deployments", json={}).json()
        path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
        follower = Follower(f"{server.url}{path}/events", key)
        try:
            assert follower.status == 200
            first, _ = follower.next("deployment")
            assert first["deploymentId"] == dep["deploymentId"]
            follower.next("progress")  # a start-up step, as it happens
            # an app that answers only after 0.5 s is waited for, and the deployment says so
            if not first["stateMessage"].startswith("waiting for the app on port"):
                follower.next("deployment", where=lambda d: d["stateMessage"].startswith("waiting for the app on port"))
            running, _ = follower.next("deployment", where=lambda d: d["state"] == "running")
            assert running["displayUrl"]
            follower.next("heartbeat")
            assert http.delete(path).status_code == 204
            ended, _ = follower.next("deployment", where=lambda d: d["state"] == "terminated")
            assert ended["stateMessage"] == "stopped by sue"
        finally:
            follower.close()


def test_logs_follow_and_resume_with_last_event_id(server: StudiosServer) -> None:
    key = server.create_user("lou")
    with api(server, key) as http:
        studio = http.post("/studios", json={"name": "s", "dockerImageName": "fake"}).json()
        dep = http.post(f"/studios/{studio['id']}/deployments", json={}).json()
        path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
        running = poll(lambda: (d := http.get(path).json())["state"] == "running" and d, 20, "running")
        app = OpenedApp(running["displayUrl"])
        follower = Follower(f"{server.url}{path}/logs/stream", key)
        try:
            follower.next("log", where=lambda line: line["message"].startswith("fake app listening"))
            app.print("printed-after-following")
            line, last_id = follower.next("log", where=lambda line: line["message"] == "printed-after-following")
            assert line["source"] == "user" and line["stream"] == "stdout" and last_id == str(line["id"])
        finally:
            follower.close()
        app.print("while-away-1")
        app.print("while-away-2")
        app.close()
        again = Follower(f"{server.url}{path}/logs/stream", key, {"Last-Event-ID": str(last_id)})
        try:
            got = [again.next("log")[0]["message"] for _ in range(2)]
            assert got == ["while-away-1", "while-away-2"]  # nothing before the cursor again
            caught_up, _ = again.next("caught-up")
            # stopping ends the stream, after the last line (the service's own note of the stop)
            assert http.delete(path).status_code == 204
            stopped, _ = again.next("log", where=lambda line: line["source"] == "system" and line["message"] == "stopped by lou")
            assert stopped["id"] > caught_up["id"]
            end, _ = again.next("end")
            assert end == {"deploymentId": dep["deploymentId"]}
            again.next("closed")
        finally:
            again.close()
        # the same cursor as a query parameter (a client that opens a new connection itself),
        # on a deployment that has ended: the rest of its lines, then the end at once
        after = Follower(f"{server.url}{path}/logs/stream?after={last_id}", key)
        try:
            assert after.next("log")[0]["message"] == "while-away-1"
            after.next("caught-up")
            after.next("end")
            after.next("closed")
        finally:
            after.close()


def test_a_followed_backlog_comes_before_caught_up(server: StudiosServer) -> None:
    key = server.create_user("bea")
    with api(server, key) as http:
        studio = http.post("/studios", json={"name": "s", "dockerImageName": "fake"}).json()
        dep = http.post(f"/studios/{studio['id']}/deployments", json={}).json()
        path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
        running = poll(lambda: (d := http.get(path).json())["state"] == "running" and d, 20, "running")
        app = OpenedApp(running["displayUrl"])
        for n in range(30):
            app.print(f"backlog-{n}")
        poll(lambda: any(line["message"] == "backlog-29" for line in http.get(f"{path}/logs").json()), 20, "the backlog stored")
        follower = Follower(f"{server.url}{path}/logs/stream?tail=10", key)
        try:
            got = [follower.next("log")[0]["message"] for _ in range(10)]
            assert got == [f"backlog-{n}" for n in range(20, 30)]
            caught_up, _ = follower.next("caught-up")
            app.print("after-caught-up")
            line, _ = follower.next("log")
            assert line["message"] == "after-caught-up" and line["id"] > caught_up["id"]
        finally:
            follower.close()
            app.close()
        # batch=true: the lines of one read in one event, its id the last line's
        batched = Follower(f"{server.url}{path}/logs/stream?tail=11&batch=true", key)
        try:
            body, event_id = batched.next("logs")
            assert [line["message"] for line in body["lines"]] == [f"backlog-{n}" for n in range(20, 30)] + ["after-caught-up"]
            assert event_id == str(body["lines"][-1]["id"])
            batched.next("caught-up")
        finally:
            batched.close()
        http.delete(path)


def test_no_access_no_stream_and_a_revoked_share_ends_it(server: StudiosServer) -> None:
    owner_key, viewer_key = server.create_user("ola"), server.create_user("vic")
    with api(server, owner_key) as http, api(server, viewer_key) as viewer_http:
        studio = http.post("/studios", json={"name": "s", "dockerImageName": "fake"}).json()
        dep = http.post(f"/studios/{studio['id']}/deployments", json={}).json()
        path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
        for url in (f"{path}/events", f"{path}/logs/stream"):
            denied = viewer_http.get(url)
            assert denied.status_code == 404 and denied.json()["error"] == "not_found"
        viewer_id = viewer_http.get("/users/me").json()["id"]
        assert http.put(f"/studios/{studio['id']}/shares/users", json={"userIds": [viewer_id], "permissionLevel": "read"}).status_code == 200
        follower = Follower(f"{server.url}{path}/events", viewer_key)
        try:
            follower.next("deployment")
            assert http.delete(f"/studios/{studio['id']}/shares/users/{viewer_id}").status_code == 204
            error, _ = follower.next("error")
            assert error["code"] == 404
            follower.next("closed")
        finally:
            follower.close()
        http.delete(path)


def test_the_list_stream_shows_only_what_the_caller_can_see(server: StudiosServer) -> None:
    mine, theirs = server.create_user("mia"), server.create_user("tom")
    with api(server, mine) as me, api(server, theirs) as them:
        follower = Follower(f"{server.url}/deployments/events", mine)
        try:
            other_studio = them.post("/studios", json={"name": "theirs", "dockerImageName": "fake"}).json()
            them.post(f"/studios/{other_studio['id']}/deployments", json={}).json()
            studio = me.post("/studios", json={"name": "mine", "dockerImageName": "fake"}).json()
            dep = me.post(f"/studios/{studio['id']}/deployments", json={}).json()
            seen, _ = follower.next("deployment", where=lambda d: d["state"] == "running")
            assert seen["deploymentId"] == dep["deploymentId"] and seen["studioId"] == studio["id"]
            me.delete(f"/studios/{studio['id']}/deployments/{dep['deploymentId']}")
            follower.next("deployment", where=lambda d: d["state"] == "terminated")
            while not follower.frames.empty():
                name, data, _ = follower.frames.get_nowait()
                assert name != "deployment" or data["studioId"] == studio["id"], "saw another user's deployment"
        finally:
            follower.close()


def test_streams_are_not_in_the_discovery_document(server: StudiosServer) -> None:
    spec = httpx.get(f"{server.url}/endpoints", trust_env=False).json()
    assert not any("events" in path or "stream" in path for path in spec["paths"])
