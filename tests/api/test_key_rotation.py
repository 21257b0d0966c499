"""API keys across a rotation of the secret key, in process: a key minted under the old secret
works once a new secret is put in front, is re-hashed with the new one on that use, and a
revocation still refuses it at the next request (the verified-key cache is keyed by the stored
hash). The re-hash is written with the "last seen" times, off the request (within
`SEEN_FLUSH_SECONDS`), so the test waits for it as a person reading the database would. The end-to-end rotation through `studios serve` is `tests/contract/test_key_rotation.py`."""

from __future__ import annotations

import time
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
    before.db.close()

    ctx = build_context(settings_for(tmp_path / "data", database_url, secret_key="new-secret, old-secret"), migrate=False)
    try:
        with running_api(create_app(ctx=ctx)) as api:
            assert api.as_(user).get("/users/me").json()["username"] == "rita"
            new_hash = KeyHasher(["new-secret"]).hash(user.key)

            def stored() -> str | None:
                with ctx.db.reading() as session:
                    return session.scalar(select(ApiKey.key_hash).where(ApiKey.id == user.key_id))

            deadline = time.monotonic() + 30
            while stored() != new_hash and time.monotonic() < deadline:
                time.sleep(0.1)
            assert stored() == new_hash
            assert api.as_(user, basic=True).get("/users/me").status_code == 200  # the re-hashed key, as the civis client sends it
            with ctx.db.writing() as session:
                assert key_service.revoke(session, ctx.hasher, user.key_id)
            assert api.as_(user).get("/users/me").status_code == 401
    finally:
        ctx.db.close()


def test_the_hasher_needs_its_secrets_newest_first() -> None:
    hasher = KeyHasher(["new", "old"])
    assert hasher.hash("stu_x") == KeyHasher(["new"]).hash("stu_x") != KeyHasher(["old"]).hash("stu_x")
    assert hasher.candidates("stu_x") == [KeyHasher(["new"]).hash("stu_x"), KeyHasher(["old"]).hash("stu_x")]
    with pytest.raises(ValueError):
        KeyHasher("new")  # a bare string would be read as one secret per character
