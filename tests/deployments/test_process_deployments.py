"""Deployments through the API on the real host-process runtime: small apps the tests write
(an HTTP app printing to both streams, a crasher, a memory hog, one that never answers) are
deployed, polled, reached, logged and stopped as a user would."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, TestUser, wait_until

APPS = {
    "http": """
import http.server, os, sys
print("hello on stdout", flush=True)
print("hello on stderr", file=sys.stderr, flush=True)
print("GREETING=" + os.environ.get("GREETING", "") + " COUNT=" + os.environ.get("COUNT", ""), flush=True)
print("API=" + os.environ.get("CIVIS_API_ENDPOINT", "") + " KEY=" + ("yes" if os.environ.get("CIVIS_API_KEY") else "no"), flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"app says hi"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
""",
    "crash": "import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n",
    "hog": "import time\nchunks = []\nwhile True:\n    chunks.append(bytearray(8 * 1024 * 1024))\n    time.sleep(0.01)\n",
    "silent": "import time\nprint('not listening', flush=True)\ntime.sleep(600)\n",
}


@pytest.fixture
def apps_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("apps")
    for name, code in APPS.items():
        (folder / f"app_{name}.py").write_text(code)
    return folder


@pytest.fixture
def settings_overrides(apps_dir: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A start timeout far above what starting an app takes on a loaded machine; the test of the
    timeout itself asks for a short one (indirect parametrization)."""
    commands = {f"app-{name}": f"exec {sys.executable} {apps_dir}/app_{name}.py" for name in APPS}
    return {"runtime": "process", "image_commands": commands, "start_timeout_seconds": 60.0, "stop_grace_seconds": 2.0, **getattr(request, "param", {})}


def studio(api: Api, image: str, **extra: Any) -> dict[str, Any]:
    response = api.post("/studios", json={"name": f"studio {image}", "dockerImageName": image, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def deploy(api: Api, studio_id: int, body: dict | None = None) -> dict[str, Any]:
    response = api.post(f"/studios/{studio_id}/deployments", json=body or {})
    assert response.status_code == 201, response.text
    return response.json()


def settled(api: Api, studio_id: int, deployment_id: int, timeout: float = 30.0) -> dict[str, Any]:
    def state() -> dict[str, Any] | None:
        dep = api.get(f"/studios/{studio_id}/deployments/{deployment_id}").json()
        return dep if dep["state"] != "pending" else None

    return wait_until(state, timeout, f"deployment {deployment_id} to leave pending")


def logs(api: Api, studio_id: int, deployment_id: int, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"/studios/{studio_id}/deployments/{deployment_id}/logs", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def app_port(ctx: Any, deployment_id: int) -> int:
    from studios.store import deployments as dep_store

    with ctx.db.writing() as session:
        handle = dep_store.get(session, deployment_id).handle
    return ctx.runtimes.by_name["process"].address(handle)[1]


def test_deploy_runs_the_app_with_params_logs_and_stop(api: Api, author: TestUser, ctx: Any) -> None:
    me = api.as_(author)
    params = [{"name": "GREETING", "type": "string", "value": "hej"}, {"name": "COUNT", "type": "integer", "value": "7"}]
    s = studio(me, "app-http", params=params, requiredResources={"memory": 256, "cpu": 500})
    created = deploy(me, s["id"])
    assert created["state"] == "pending" and created["userId"] == author.id
    assert created["memory"] == 256 and created["cpu"] == 500 and created["dockerImageName"] == "app-http"

    dep = settled(me, s["id"], created["deploymentId"])
    assert dep["state"] == "running", logs(me, s["id"], created["deploymentId"])
    assert httpx.get(f"http://127.0.0.1:{app_port(ctx, dep['deploymentId'])}/").text == "app says hi"
    assert me.get(f"/studios/{s['id']}").json()["mostRecentDeployment"]["deploymentId"] == dep["deploymentId"]

    lines = wait_until(lambda: (got := logs(me, s["id"], dep["deploymentId"])) and any("API=" in line["message"] for line in got) and got, 15, "app output")
    user = {(line["stream"], line["message"]) for line in lines if line["source"] == "user"}
    assert ("stdout", "hello on stdout") in user and ("stderr", "hello on stderr") in user
    assert ("stdout", "GREETING=hej COUNT=7") in user
    assert any(m.startswith("API=http") and m.endswith("KEY=yes") for _, m in user)
    system = [line["message"] for line in lines if line["source"] == "system"]
    assert system[0] == f"queued by {author.username}"
    assert any(m.startswith("ready after ") for m in system)

    assert me.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}", json={}).status_code == 204
    ended = me.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").json()
    assert ended["state"] == "terminated" and ended["stateMessage"] == f"stopped by {author.username}"
    assert ended["maxMemoryUsage"] and ended["maxMemoryUsage"] > 1
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{app_port(ctx, dep['deploymentId'])}/", timeout=1)
    assert any(line["message"] == f"stopped by {author.username}" for line in logs(me, s["id"], dep["deploymentId"]))


def test_the_app_key_acts_as_the_deployer_and_is_revoked_at_the_end(api: Api, author: TestUser, ctx: Any) -> None:
    from sqlalchemy import select

    from studios.db.models import ApiKey

    me = api.as_(author)
    s = studio(me, "app-http")
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    with ctx.db.writing() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.deployment_id == dep["deploymentId"]))
        assert key.user_id == author.id and key.revoked_at is None
    me.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}")
    with ctx.db.writing() as session:
        assert session.scalar(select(ApiKey.revoked_at).where(ApiKey.deployment_id == dep["deploymentId"])) is not None


def test_a_crash_says_its_exit_code(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "app-crash")
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    assert dep["state"] == "terminated" and dep["stateMessage"] == "exited with code 3"
    messages = [line["message"] for line in logs(me, s["id"], dep["deploymentId"])]
    assert "about to fail" in messages and "exited with code 3" in messages


def test_a_memory_hog_is_killed_at_its_limit(api: Api, author: TestUser, ctx: Any) -> None:
    if ctx.runtimes.by_name["process"].limits_mode == "rlimit":
        pytest.skip("cgroups are not writable here; the rlimit fallback cannot report an OOM kill")
    me = api.as_(author)
    s = studio(me, "app-hog", requiredResources={"memory": 64})
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    dep = wait_until(lambda: (d := me.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").json())["state"] == "terminated" and d, 15, "the hog to be killed")
    assert dep["stateMessage"] == "killed: out of memory (limit 64 MB)"
    assert 40 <= dep["maxMemoryUsage"] <= 70


@pytest.mark.parametrize("settings_overrides", [{"start_timeout_seconds": 3.0}], indirect=True, ids=["timeout-3s"])
def test_an_app_that_never_answers_times_out(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "app-silent")
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    assert dep["state"] == "terminated"
    assert dep["stateMessage"].startswith("the app did not answer HTTP on port ") and "within 3 s" in dep["stateMessage"]


def test_nothing_to_run_says_why(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "not-mapped")
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    assert dep["state"] == "terminated" and "not-mapped" in dep["stateMessage"]


def test_snapshot_redeploy_and_one_active_per_studio(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "app-http", params=[{"name": "GREETING", "type": "string", "value": "one"}])
    first = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    assert first["state"] == "running"
    me.patch(f"/studios/{s['id']}", json={"dockerImageName": "app-crash"})
    # The running deployment keeps what it was deployed with.
    assert me.get(f"/studios/{s['id']}/deployments/{first['deploymentId']}").json()["dockerImageName"] == "app-http"

    second = settled(me, s["id"], deploy(me, s["id"], {"deploymentId": first["deploymentId"]})["deploymentId"])
    assert second["state"] == "running" and second["dockerImageName"] == "app-http"
    old = me.get(f"/studios/{s['id']}/deployments/{first['deploymentId']}").json()
    assert old["state"] == "terminated" and old["stateMessage"] == f"replaced by deployment {second['deploymentId']}"

    listed = me.get(f"/studios/{s['id']}/deployments", params={"order_dir": "asc"})
    assert [d["deploymentId"] for d in listed.json()] == [first["deploymentId"], second["deploymentId"]]
    assert listed.headers["x-pagination-total-entries"] == "2"
    me.delete(f"/studios/{s['id']}/deployments/{second['deploymentId']}")


def test_concurrent_deploys_leave_exactly_one_active(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "app-http")
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(deploy(me, s["id"]))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = sorted(r["deploymentId"] for r in results)
    final = [settled(me, s["id"], i) for i in ids]
    wait_until(lambda: sum(me.get(f"/studios/{s['id']}/deployments/{i}").json()["state"] == "running" for i in ids) == 1 and all(me.get(f"/studios/{s['id']}/deployments/{i}").json()["state"] in ("running", "terminated") for i in ids), 15, "exactly one running")
    states = {i: me.get(f"/studios/{s['id']}/deployments/{i}").json() for i in ids}
    assert states[ids[-1]]["state"] == "running"
    for i in ids[:-1]:
        assert states[i]["stateMessage"].startswith("replaced by deployment")
    assert len(final) == 3
    me.delete(f"/studios/{s['id']}/deployments/{ids[-1]}")


def test_archived_studios_cannot_be_deployed(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "app-http")
    me.put(f"/studios/{s['id']}/archive", json={"status": True})
    response = me.post(f"/studios/{s['id']}/deployments", json={})
    assert response.status_code == 409 and "archived" in response.json()["errorDescription"]
    assert me.get(f"/studios/{s['id']}/deployments").json() == []


def test_read_may_look_and_write_may_deploy(api: Api, author: TestUser, other: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "app-crash")
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    them = api.as_(other)
    assert them.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").status_code == 404
    me.put(f"/studios/{s['id']}/shares/users", json={"userIds": [other.id], "permissionLevel": "read"})
    assert them.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").status_code == 200
    assert them.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}/logs").status_code == 200
    assert them.post(f"/studios/{s['id']}/deployments", json={}).status_code == 403
    assert them.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").status_code == 403
    me.put(f"/studios/{s['id']}/shares/users", json={"userIds": [other.id], "permissionLevel": "write"})
    mine = deploy(them, s["id"])
    assert mine["userId"] == other.id


def test_log_paging_with_start_and_end(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = studio(me, "app-crash")
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    every = logs(me, s["id"], dep["deploymentId"])
    assert len(every) >= 4
    times = [line["createdAt"] for line in every]
    assert times == sorted(times)
    assert logs(me, s["id"], dep["deploymentId"], limit=2) == every[-2:]
    later = logs(me, s["id"], dep["deploymentId"], start_at=times[2])
    assert later[0]["createdAt"] >= times[2] and later[-1] == every[-1]
    assert logs(me, s["id"], dep["deploymentId"], start_at=times[0], limit=1) == every[:1]
    bad = me.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}/logs", params={"start_at": "yesterday"})
    assert bad.status_code == 400 and "start_at" in bad.json()["errorDescription"]


def test_the_reconcile_never_removes_a_live_deployment_as_an_orphan(api: Api, author: TestUser, ctx: Any) -> None:
    """The periodic reconcile reads the live deployments, then lists the runtime's workloads; a
    deployment started in between is in the listing but not in what it read. It must ask the
    database again rather than remove that deployment's app."""
    me = api.as_(author)
    s = studio(me, "app-http")
    dep = settled(me, s["id"], deploy(me, s["id"])["deploymentId"])
    assert dep["state"] == "running"
    from studios.services.engine.reconcile import reconcile

    runtime = ctx.runtimes.by_name["process"]
    listing = runtime.orphans

    async def started_meanwhile(known: set[int]) -> list[int]:  # the listing saw an app the first read did not
        return sorted({*await listing(known), dep["deploymentId"]})

    runtime.orphans = started_meanwhile
    try:
        api.portal.call(reconcile, api.app.state.engine)
    finally:
        runtime.orphans = listing
    assert me.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").json()["state"] == "running"
    assert httpx.get(f"http://127.0.0.1:{app_port(ctx, dep['deploymentId'])}/").text == "app says hi"
    me.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}")


def engine_running(api: Api) -> Any:
    """The app's lifecycle engine, once this server holds its lease and runs it."""
    engine = api.app.state.engine
    wait_until(engine.running.is_set, 30, "the engine to run")
    return engine


def new_deployment_in(ctx: Any, author: TestUser, studio_id: int, prepare: Any) -> Any:
    """A deploy as the API makes it, in the caller's write session."""
    from studios.services import deployments as dep_service
    from studios.services.keys import Caller

    def make(session: Any) -> Any:
        caller = Caller(author.id, author.username, author.name, author.is_admin)
        return dep_service.create(session, caller, studio_id, None, ctx.runtimes.for_partition, prepare)

    return make


def deployed_unheard(api: Api, ctx: Any, author: TestUser) -> tuple[Any, dict[str, Any], int]:
    """A deploy of a new studio, prepared by the engine in its transaction, whose announcement
    is dropped (the engine hears nothing of it): the engine, the studio, the deployment's id."""
    from studios.services.events import take

    engine = engine_running(api)
    s = studio(api.as_(author), "app-http")
    make = new_deployment_in(ctx, author, s["id"], engine.prepare)
    with ctx.db.writing() as session:
        dep_id = make(session).id
        take(session)
    return engine, s, dep_id


def test_a_deploy_on_the_engines_server_is_claimed_and_built_in_its_own_transaction(api: Api, author: TestUser, ctx: Any) -> None:
    """On the server that runs the engine, the deploy's own transaction claims the deployment
    and mints its app's key: its answer already says it is starting, and the launch starts the
    app without claiming it again (one key, one "starting" line)."""
    from sqlalchemy import func, select

    from studios.db.models import ApiKey

    engine_running(api)
    me = api.as_(author)
    s = studio(me, "app-http")
    created = deploy(me, s["id"])
    assert (created["state"], created["stateMessage"]) == ("pending", "starting")
    dep = settled(me, s["id"], created["deploymentId"])
    assert dep["state"] == "running", logs(me, s["id"], created["deploymentId"])
    system = [line["message"] for line in logs(me, s["id"], dep["deploymentId"]) if line["source"] == "system"]
    assert system[:2] == [f"queued by {author.username}", "starting"] and system.count("starting") == 1, system
    with ctx.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.deployment_id == dep["deploymentId"])) == 1
    assert not api.app.state.engine.prepared
    me.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}")


def test_a_deploy_that_rolls_back_leaves_no_prepared_launch(api: Api, author: TestUser, ctx: Any) -> None:
    engine = engine_running(api)
    s = studio(api.as_(author), "app-http")
    make = new_deployment_in(ctx, author, s["id"], engine.prepare)
    made: list[int] = []
    with pytest.raises(RuntimeError, match="after the deploy"), ctx.db.writing() as session:
        made.append(make(session).id)
        assert made[0] in engine.prepared  # kept for the engine before the commit announces it
        raise RuntimeError("after the deploy")
    assert made and made[0] not in engine.prepared
    assert api.as_(author).get(f"/studios/{s['id']}/deployments").json() == []


def test_the_reconcile_launches_a_prepared_deployment_whose_announcement_it_has_not_heard(api: Api, author: TestUser, ctx: Any) -> None:
    """A deployment claimed in its deploy's transaction has no workload until its launch: a
    reconcile that reads it before the engine hears of it must launch it, not end it as a start
    whose server stopped."""
    from studios.services.engine.reconcile import reconcile

    engine, s, dep_id = deployed_unheard(api, ctx, author)
    me = api.as_(author)
    assert dep_id in engine.prepared and dep_id not in engine.lives
    api.portal.call(reconcile, engine)
    dep = settled(me, s["id"], dep_id)
    assert dep["state"] == "running", logs(me, s["id"], dep_id)
    assert httpx.get(f"http://127.0.0.1:{app_port(ctx, dep_id)}/").text == "app says hi"
    me.delete(f"/studios/{s['id']}/deployments/{dep_id}")


def test_a_deploy_stopped_before_its_launch_ran_is_not_started(api: Api, author: TestUser, ctx: Any) -> None:
    """The engine hears a prepared deployment's announcement and its end in one turn (a stop
    right after the deploy): nothing is started for it, and it is released without a workload."""
    from studios.services import state
    from studios.services.events import Event, take
    from studios.store import deployments as dep_store

    engine, s, dep_id = deployed_unheard(api, ctx, author)
    me = api.as_(author)
    with ctx.db.writing() as session:
        assert state.transition(session, dep_id, "terminated", f"stopped by {author.username}")
        take(session)

    async def heard_together() -> None:
        engine.on_event(Event("deployment", dep_id, s["id"], {"state": "pending"}))
        engine.on_event(Event("deployment", dep_id, s["id"], {"state": "terminated"}))

    api.portal.call(heard_together)

    def released() -> Any:
        with ctx.db.reading() as session:
            dep = dep_store.get(session, dep_id)
            return dep if dep is not None and dep.released_at is not None else None

    dep = wait_until(released, 30, "the stopped deployment to be released")
    assert dep.handle is None and dep.state_message == f"stopped by {author.username}"
    assert not [line for line in logs(me, s["id"], dep_id) if line["source"] == "user"]
    assert dep_id not in engine.prepared
