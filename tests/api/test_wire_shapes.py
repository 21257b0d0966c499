"""Responses are built as wire dicts on the hot path (`studios.services.views`), so hold each
against the pydantic model its route declares (and `GET /endpoints` publishes): same keys,
values that validate."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from studios.schemas.deployments import LogDeploymentLogResponseSummary, StudioDeployment, StudioDeploymentSummary
from studios.schemas.studios import Studio


def same_shape(model: type[BaseModel], body: dict[str, Any]) -> None:
    aliases = {field.alias or name for name, field in model.model_fields.items()}
    assert set(body) == aliases, f"{model.__name__}: extra {set(body) - aliases}, missing {aliases - set(body)}"
    model.model_validate(body)


def test_studio_and_deployment_bodies_match_their_models(api: Any, author: Any) -> None:
    me = api.as_(author)
    params = [{"name": "A", "type": "integer", "value": "3", "description": "a number"}]
    created = me.post("/studios", json={"name": "shape", "dockerImageName": "nothing-mapped", "params": params}).json()
    same_shape(Studio, created)
    assert created["mostRecentDeployment"] is None
    dep = me.post(f"/studios/{created['id']}/deployments", json={}).json()
    same_shape(StudioDeployment, dep)
    got = me.get(f"/studios/{created['id']}").json()
    same_shape(Studio, got)
    same_shape(StudioDeployment, got["mostRecentDeployment"])
    for item in me.get("/studios").json():
        same_shape(Studio, item)
    for item in me.get(f"/studios/{created['id']}/deployments").json():
        same_shape(StudioDeploymentSummary, item)
    assert got["createdAt"].endswith("Z") and got["author"]["username"] == author.username
    lines = me.get(f"/studios/{created['id']}/deployments/{dep['deploymentId']}/logs").json()
    assert lines and lines[0]["message"] == f"queued by {author.username}"
    for line in lines:
        same_shape(LogDeploymentLogResponseSummary, line)
