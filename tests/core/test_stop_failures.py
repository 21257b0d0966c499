"""Stopping a deployment when a step fails (issue: a failed DELETE left the app's key valid for
good). A stop ends the deployment and revokes its key in one transaction; stopping the
workload, keeping its logs and freeing it come after, and whatever fails there is finished by
the next attempt (the reconcile, a retried DELETE). Each step gets a failure injected here, on
the fake runtime (its `fail-stop=N` behaviour) and by patching one store function."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Api, TestUser, bearer_auth, wait_until
from studios.context import Context
from studios.runtimes.base import EngineUnreachable
from studios.runtimes.fake import FakeRuntime
from studios.store import deployments as dep_store
from studios.store import users as user_store


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"runtime": "fake", "reconcile_interval_seconds": 0.5, "stop_grace_seconds": 0.5}


def deploy(me: Api, **params: str) -> tuple[int, int, dict[str, str]]:
    studio = me.post("/studios", json={"name": "s", "dockerImageName": "fake", "params": [{"name": k, "type": "string", "value": v} for k, v in params.items()]}).json()
    dep = me.post(f"/studios/{studio['id']}/deployments", json={}).json()
    path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
    wait_until(lambda: me.get(path).json()["state"] == "running", 15, "running")
    workload = FakeRuntime.workloads
    env = next(w.env for (_, d), w in workload.items() if d == dep["deploymentId"])
    return studio["id"], dep["deploymentId"], env


def alive(deployment_id: int) -> bool:
    return any(d == deployment_id and w.exit is None for (_, d), w in FakeRuntime.workloads.items())


def released(ctx: Context, deployment_id: int) -> bool:
    with ctx.db.reading() as session:
        dep = dep_store.get(session, deployment_id)
        return dep is not None and dep.released_at is not None


def test_a_failing_workload_stop_still_revokes_the_key_and_is_finished_later(api: Api, author: TestUser, ctx: Context) -> None:
    me = api.as_(author)
    studio_id, dep_id, env = deploy(me, STUDIOS_FAKE="fail-stop=2")
    app_key = env["CIVIS_API_KEY"]
    assert api.get("/users/me", headers=bearer_auth(app_key)).status_code == 200

    assert me.delete(f"/studios/{studio_id}/deployments/{dep_id}").status_code == 204
    # Ended and its key refused at once, though stopping the workload failed (twice).
    assert me.get(f"/studios/{studio_id}/deployments/{dep_id}").json()["state"] == "terminated"
    assert api.get("/users/me", headers=bearer_auth(app_key)).status_code == 401
    # The reconcile finishes the job: the workload stops, and the deployment is released.
    wait_until(lambda: not alive(dep_id) and released(ctx, dep_id), 20, "the workload stopped by a later attempt")
    lines = [line["message"] for line in me.get(f"/studios/{studio_id}/deployments/{dep_id}/logs").json()]
    assert any(m.startswith("stopping the workload failed (RuntimeError: fake: stop failed (1 of 2))") for m in lines), lines
    # A retried DELETE of the ended deployment is harmless.
    assert me.delete(f"/studios/{studio_id}/deployments/{dep_id}").status_code == 204


def test_a_database_failure_while_ending_changes_nothing(api: Api, author: TestUser, monkeypatch: pytest.MonkeyPatch) -> None:
    me = api.as_(author)
    studio_id, dep_id, env = deploy(me)
    app_key = env["CIVIS_API_KEY"]
    real = user_store.revoke_deployment_keys
    calls = {"n": 0}

    def failing_once(session: Any, deployment_id: int) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE api_keys", {}, Exception("injected: the database went away"))
        return real(session, deployment_id)

    monkeypatch.setattr(user_store, "revoke_deployment_keys", failing_once)
    failed = me.delete(f"/studios/{studio_id}/deployments/{dep_id}")
    assert failed.status_code == 503 and failed.json()["error"] == "service_unavailable"
    # All or nothing: still running, the app's key still works, the workload untouched.
    assert me.get(f"/studios/{studio_id}/deployments/{dep_id}").json()["state"] == "running"
    assert api.get("/users/me", headers=bearer_auth(app_key)).status_code == 200
    assert alive(dep_id)
    # The retry (the civis client retries DELETE on 503) does it all.
    assert me.delete(f"/studios/{studio_id}/deployments/{dep_id}").status_code == 204
    assert api.get("/users/me", headers=bearer_auth(app_key)).status_code == 401
    wait_until(lambda: not alive(dep_id), 10, "the workload stopped")


def test_a_failing_cleanup_is_retried(api: Api, author: TestUser, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    me = api.as_(author)
    studio_id, dep_id, _ = deploy(me)
    real = FakeRuntime.cleanup
    calls = {"n": 0}

    async def failing_once(self: FakeRuntime, handle: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("injected: cannot remove the workload's files")
        await real(self, handle)

    monkeypatch.setattr(FakeRuntime, "cleanup", failing_once)
    assert me.delete(f"/studios/{studio_id}/deployments/{dep_id}").status_code == 204
    wait_until(lambda: released(ctx, dep_id), 20, "released by a later attempt")
    assert calls["n"] >= 2
    assert not any(d == dep_id for (_, d) in FakeRuntime.workloads)


def test_an_engine_that_does_not_answer_is_said_plainly_and_the_stop_retried(api: Api, author: TestUser, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime whose engine does not answer says so (`EngineUnreachable`): the deployment's
    log gets that line as it is, not the exception's class and the SDK's nested text."""
    me = api.as_(author)
    studio_id, dep_id, _ = deploy(me)
    real = FakeRuntime.stop
    calls = {"n": 0}

    async def unanswered_once(self: FakeRuntime, handle: dict[str, Any], grace_seconds: float) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise EngineUnreachable("the fake engine does not answer: connection refused")
        return await real(self, handle, grace_seconds)

    monkeypatch.setattr(FakeRuntime, "stop", unanswered_once)
    assert me.delete(f"/studios/{studio_id}/deployments/{dep_id}").status_code == 204
    wait_until(lambda: not alive(dep_id) and released(ctx, dep_id), 20, "stopped and released by a later attempt")
    lines = [line["message"] for line in me.get(f"/studios/{studio_id}/deployments/{dep_id}/logs").json() if line["source"] == "system"]
    assert "stopping the workload failed (the fake engine does not answer: connection refused); trying again shortly" in lines, lines


def test_the_app_key_works_only_while_the_deployment_lives(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    studio_id, dep_id, env = deploy(me)
    assert api.get("/users/me", headers=bearer_auth(env["CIVIS_API_KEY"])).json()["username"] == "ann"
    me.delete(f"/studios/{studio_id}/deployments/{dep_id}")
    assert api.get("/users/me", headers=bearer_auth(env["CIVIS_API_KEY"])).status_code == 401
