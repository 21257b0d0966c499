"""Fixtures of the API tests: an author with one fully specified studio."""

from __future__ import annotations

from typing import Any

import pytest

FULL_BODY: dict[str, Any] = {
    "name": "Sales dashboard",
    "dockerImageName": "studios-test/busybox",
    "dockerImageTag": "v1.2",
    "instanceType": "medium",
    "requiredResources": {"memory": 4096, "cpu": 1500, "diskSpace": 0.25},
    "params": [
        {"name": "GREETING", "type": "string", "value": "hi", "description": "said first"},
        {"name": "COUNT", "type": "integer", "value": "3"},
    ],
    "gitRepoUrl": "https://github.com/example/dash.git",
    "gitRef": "main",
    "partitionLabel": "default",
}


@pytest.fixture
def as_author(api: Any, author: Any) -> Any:
    return api.as_(author)


@pytest.fixture
def studio(as_author: Any) -> dict[str, Any]:
    """A studio of `author` with every attribute set (FULL_BODY)."""
    response = as_author.post("/studios", json=FULL_BODY)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, open_env: Any) -> Any:
    """One app for a whole module of cases that must not change anything (each case checks
    that itself): `shared.api`, `.author`, `.other` (TestUsers), `.as_author`, `.studio`.
    Every test of a module using it must use it alone (on PostgreSQL, a function-scoped
    database fixture would truncate the shared database)."""
    with open_env(tmp_path_factory.mktemp("shared")) as env:
        env.author = env.make_user("ann", name="Ann Author")
        env.other = env.make_user("otto", name="Otto Other")
        env.as_author = env.api.as_(env.author)
        response = env.as_author.post("/studios", json=FULL_BODY)
        assert response.status_code == 201, response.text
        env.studio = response.json()
        yield env
