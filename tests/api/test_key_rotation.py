"""API keys across a rotation of the secret key, in process: a key minted under the old secret
works once a new secret is put in front, is re-hashed with the new one on that use, and a
revocation still refuses it at the next request (the verified-key cache is keyed by the stored
hash). The end-to-end rotation through `studios serve` is `tests/contract/test_key_rotation.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import running_api, user_maker
from conftest import test_settings as settings_for
from studios.app import build_context, create_app
from studios.db.models import ApiKey
from studios.services import keys as key_service
from studios.services.keys import KeyHasher


def test_a_key_under_the_old_secret_works_moves_to_the_new_one_and_can_be_revoked(tmp_path: Path, database_url: str) -> None:
    before = build_context(settings_for(tmp_path / "data", database_url, secret_key="old-secret"), migrate=False)
    user = user_maker(before)("rita")
    before.engine.dispose()

    ctx = build_context(settings_for(tmp_path / "data", database_url, secret_key="new-secret, old-secret"), migrate=False)
    try:
        with running_api(create_app(ctx=ctx)) as api:
            assert api.as_(user).get("/users/me").json()["username"] == "rita"
            with ctx.db() as session:
                assert session.scalar(select(ApiKey.key_hash).where(ApiKey.id == user.key_id)) == KeyHasher(["new-secret"]).hash(user.key)
            assert api.as_(user, basic=True).get("/users/me").status_code == 200  # the re-hashed key, as the civis client sends it
            with ctx.db() as session:
                assert key_service.revoke(session, ctx.hasher, user.key_id)
            assert api.as_(user).get("/users/me").status_code == 401
    finally:
        ctx.engine.dispose()


def test_the_hasher_needs_its_secrets_newest_first() -> None:
    hasher = KeyHasher(["new", "old"])
    assert hasher.hash("stu_x") == KeyHasher(["new"]).hash("stu_x") != KeyHasher(["old"]).hash("stu_x")
    assert hasher.candidates("stu_x") == [KeyHasher(["new"]).hash("stu_x"), KeyHasher(["old"]).hash("stu_x")]
    with pytest.raises(ValueError):
        KeyHasher("new")  # a bare string would be read as one secret per character
