"""The reconcile after a service restart, when a runtime cannot tell whether a workload lives
(its engine does not answer: `adopt` raises `EngineUnreachable`). That deployment is left as it is, running, and
asked about again at the next round; the other deployments are adopted meanwhile. Before, the
error stopped the whole round, and a runtime that answered False for "cannot tell" ended a
deployment that ran on (`tests/swarm/test_gone_manager.py` has the swarm runtime's side).

The restart is played on the fake runtime: the engine stops following both deployments (their
workloads go on, as across a restart), then the reconcile runs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from conftest import Api, TestUser, wait_until
from studios.runtimes.base import EngineUnreachable
from studios.services.engine.reconcile import reconcile


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"runtime": "fake", "reconcile_interval_seconds": 3600}  # rounds run by the test alone


def system_lines(me: Api, path: str) -> list[str]:
    return [line["message"] for line in me.get(f"{path}/logs").json() if line["source"] == "system"]


def test_a_deployment_whose_engine_does_not_answer_is_kept_and_asked_about_again(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    paths = []
    for name in ("unsure", "sure"):
        studio = me.post("/studios", json={"name": name, "dockerImageName": "fake"}).json()
        dep = me.post(f"/studios/{studio['id']}/deployments", json={}).json()
        paths.append(f"/studios/{studio['id']}/deployments/{dep['deploymentId']}")
    for path in paths:
        wait_until(lambda path=path: me.get(path).json()["state"] == "running", 15, f"{path} running")
    unsure, sure = (int(path.rsplit("/", 1)[1]) for path in paths)
    engine = api.app.state.engine
    runtime = engine.kit.runtimes.by_name["fake"]

    async def restart() -> None:  # the engine forgets both; their workloads run on
        for deployment_id in (unsure, sure):
            task = engine.end_life(deployment_id)
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    api.portal.call(restart)
    adopt = runtime.adopt

    async def engine_gone_for_one(handle: dict[str, Any]) -> bool:
        if int(handle["deployment_id"]) == unsure:
            raise EngineUnreachable("the fake engine does not answer: connection refused")
        return bool(await adopt(handle))

    runtime.adopt = engine_gone_for_one
    try:
        api.portal.call(reconcile, engine)  # before: the error ended the round here
    finally:
        runtime.adopt = adopt
    assert sure in engine.lives
    wait_until(lambda: "adopted after a service restart" in system_lines(me, paths[1]), 10, "the adoption said in its log")  # the log writer stores it
    assert unsure not in engine.lives  # not followed, and not ended either
    dep = me.get(paths[0]).json()
    assert (dep["state"], dep["stateMessage"]) == ("running", "running")
    assert "adopted after a service restart" not in system_lines(me, paths[0])

    api.portal.call(reconcile, engine)  # the engine answers again
    assert unsure in engine.lives
    wait_until(lambda: "adopted after a service restart" in system_lines(me, paths[0]), 10, "the adoption said in its log")
    assert me.get(paths[0]).json()["state"] == "running"
    for path in paths:
        assert me.delete(path).status_code == 204
