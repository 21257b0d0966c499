"""Rows stored before the git input rules existed are not trusted: deploying a studio whose
stored `gitRef` is the issue's reproducer (or whose URL is a local repository on a server that
no longer allows them) ends `terminated` with the reason, and runs nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from conftest import Api, TestUser, wait_until
from studios.db.models import Studio


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"runtime": "process", "allow_local_git_repos": True, "start_timeout_seconds": 3.0}


def store_directly(ctx: Any, studio_id: int, **values: Any) -> None:
    """Write a studio's columns as an older server could have, past the API's checks."""
    with ctx.db.writing() as session:
        session.execute(update(Studio).where(Studio.id == studio_id).values(**values))


def deploy_and_wait(me: Api, studio_id: int) -> dict[str, Any]:
    created = me.post(f"/studios/{studio_id}/deployments", json={})
    assert created.status_code == 201, created.text
    path = f"/studios/{studio_id}/deployments/{created.json()['deploymentId']}"
    return wait_until(lambda: (d := me.get(path).json())["state"] == "terminated" and d, 20, "the deployment to end")


def test_a_stored_upload_pack_ref_is_refused_at_checkout(api: Api, ctx: Any, author: TestUser, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    me = api.as_(author)
    studio = me.post("/studios", json={"name": "old row", "dockerImageName": "busybox", "gitRepoUrl": "file:///nonexistent", "gitRef": "main"}).json()
    store_directly(ctx, studio["id"], git_ref=f"--upload-pack=touch${{IFS}}{marker};git-upload-pack")
    ended = deploy_and_wait(me, studio["id"])
    assert ended["stateMessage"].startswith("refused: ") and "must not start with '-'" in ended["stateMessage"], ended
    assert not marker.exists()


def test_a_stored_local_url_is_refused_at_checkout_when_local_repositories_are_off(api: Api, ctx: Any, author: TestUser, tmp_path: Path) -> None:
    """The same server, as if an administrator had turned local repositories off since: the
    engine's copy of the setting is off, the stored row still names a file:// URL."""
    me = api.as_(author)
    studio = me.post("/studios", json={"name": "was allowed", "dockerImageName": "busybox", "gitRepoUrl": "https://example.invalid/r.git"}).json()
    store_directly(ctx, studio["id"], git_repo_url=f"file://{tmp_path}/repo")
    kit = api.app.state.engine.kit
    kit.settings = dataclasses.replace(kit.settings, allow_local_git_repos=False)
    ended = deploy_and_wait(me, studio["id"])
    assert ended["stateMessage"].startswith("refused: ") and "STUDIOS_ALLOW_LOCAL_GIT_REPOS" in ended["stateMessage"], ended
