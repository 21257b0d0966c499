"""The one writer of deployment state (`studios.services.state`) on the real database: every
(from, to) pair of the lifecycle table is tried, allowed moves change the row, log a system
line and announce an event at commit, refused ones change nothing; ending a deployment revokes
its keys in the same transaction; the studio keeps exactly one active deployment."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from conftest import TestUser
from studios.context import Context
from studios.db import database
from studios.db.models import ApiKey, DeploymentLog, Studio
from studios.lifecycle import STATES, TRANSITIONS, allowed
from studios.services import keys, state
from studios.services.events import Event, emit
from studios.store import deployments as dep_store


@pytest.fixture
def studio_id(ctx: Context, author: TestUser) -> int:
    with ctx.db.writing() as session:
        studio = Studio(author_id=author.id, name="s", docker_image_tag="latest", params=[])
        session.add(studio)
        session.flush()
        return studio.id


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Event]]:
    """Events a committing transaction announces (NOTIFY on PostgreSQL, the bus on SQLite)."""
    seen: list[Event] = []
    real = database.take

    def recording(session: Any) -> list[Event]:
        events = real(session)
        seen.extend(events)
        return events

    monkeypatch.setattr(database, "take", recording)
    yield seen


def new_deployment(ctx: Context, studio_id: int, user_id: int, current: str, handle: dict | None = None) -> int:
    with ctx.db.writing() as session:
        dep = dep_store.create(session, {"studio_id": studio_id, "user_id": user_id, "name": "d", "docker_image_tag": "latest", "params": [], "state": current, "state_message": "set up", "handle": handle})
        return dep.id


@pytest.mark.parametrize(("current", "new"), list(itertools.product(STATES, STATES)))
def test_every_pair_of_the_lifecycle_table(ctx: Context, studio_id: int, author: TestUser, announced: list[Event], current: str, new: str) -> None:
    dep_id = new_deployment(ctx, studio_id, author.id, current, handle={"fake": True})
    announced.clear()
    with ctx.db.writing() as session:
        changed = state.transition(session, dep_id, new, f"to {new}")
    with ctx.db.reading() as session:
        row = dep_store.get(session, dep_id)
        assert row is not None
        lines = session.scalars(select(DeploymentLog.message).where(DeploymentLog.deployment_id == dep_id)).all()
    if allowed(current, new):
        assert changed
        assert (row.state, row.state_message) == (new, f"to {new}")
        assert lines == [f"to {new}"]
        assert [(e.topic, e.deployment_id, e.data["state"]) for e in announced if e.topic == "deployment"] == [("deployment", dep_id, new)]
        assert (row.ended_at is not None) == (new == "terminated")
    else:
        assert not changed
        assert (row.state, row.state_message) == (current, "set up")
        assert lines == [] and announced == []


def test_the_table_ends_in_terminated_and_nothing_leaves_it() -> None:
    assert TRANSITIONS["terminated"] == frozenset()
    assert all("terminated" in targets for s, targets in TRANSITIONS.items() if s != "terminated")


def test_ending_revokes_the_deployments_keys_in_the_same_transaction(ctx: Context, studio_id: int, author: TestUser, monkeypatch: pytest.MonkeyPatch) -> None:
    dep_id = new_deployment(ctx, studio_id, author.id, "running", handle={"fake": True})
    with ctx.db.writing() as session:
        keys.mint(session, ctx.hasher, author.id, "app", deployment_id=dep_id)
    with ctx.db.writing() as session:
        state.transition(session, dep_id, "terminated", "stopped by ann")
        session.rollback()  # a failure after the change: neither the end nor the revocation happened
    with ctx.db.reading() as session:
        assert dep_store.get(session, dep_id).state == "running"  # type: ignore[union-attr]
        assert session.scalar(select(ApiKey.revoked_at).where(ApiKey.deployment_id == dep_id)) is None
    announced: list[Any] = []  # as queued on the session (announced after the commit on SQLite, by NOTIFY on PostgreSQL)
    monkeypatch.setattr(state, "emit", lambda session, event: (announced.append(event), emit(session, event)))
    with ctx.db.writing() as session:
        state.transition(session, dep_id, "terminated", "stopped by ann")
    # Named with its keys' owner: only that user's streams check their access again.
    assert [(e.data["users"], len(e.data["hashes"])) for e in announced if e.topic == "keys"] == [([author.id], 1)]
    with ctx.db.reading() as session:
        row = dep_store.get(session, dep_id)
        assert row is not None and row.state == "terminated" and row.released_at is None  # its workload is still to stop
        assert session.scalar(select(ApiKey.revoked_at).where(ApiKey.deployment_id == dep_id)) is not None


def test_a_deployment_that_never_started_is_released_at_once(ctx: Context, studio_id: int, author: TestUser) -> None:
    dep_id = new_deployment(ctx, studio_id, author.id, "pending")
    with ctx.db.writing() as session:
        state.transition(session, dep_id, "terminated", "stopped by ann")
    with ctx.db.reading() as session:
        assert dep_store.get(session, dep_id).released_at is not None  # type: ignore[union-attr]


def test_supersede_leaves_only_the_newest_active(ctx: Context, studio_id: int, author: TestUser) -> None:
    older = [new_deployment(ctx, studio_id, author.id, s) for s in ("pending", "running", "sleeping")]
    newest = new_deployment(ctx, studio_id, author.id, "pending")
    with ctx.db.writing() as session:
        dep = dep_store.get(session, newest)
        assert dep is not None
        ended = state.supersede(session, dep)
    assert ended == older  # a sleeping one too: a visitor would otherwise wake a second app
    with ctx.db.reading() as session:
        assert [dep_store.get(session, d).state_message for d in older] == [f"replaced by deployment {newest}"] * 3  # type: ignore[union-attr]
        assert dep_store.get(session, newest).state == "pending"  # type: ignore[union-attr]


def test_only_one_engine_claims_a_launch(ctx: Context, studio_id: int, author: TestUser) -> None:
    dep_id = new_deployment(ctx, studio_id, author.id, "pending")
    with ctx.db.writing() as session:
        assert state.claim(session, dep_id, "engine-a") is not None
    with ctx.db.writing() as session:
        assert state.claim(session, dep_id, "engine-b") is None
    with ctx.db.reading() as session:
        assert dep_store.get(session, dep_id).claimed_by == "engine-a"  # type: ignore[union-attr]


def test_a_deployment_read_earlier_in_the_transaction_shows_the_move(ctx: Context, studio_id: int, author: TestUser) -> None:
    """A move that ends nothing is one UPDATE of the row (no ORM load): a caller that read the
    deployment before in the same transaction (the UI's wake reads it, wakes it, and answers it)
    sees the new state, and a change it made to its copy meanwhile is kept."""
    dep_id = new_deployment(ctx, studio_id, author.id, "sleeping")
    with ctx.db.writing() as session:
        dep = dep_store.get(session, dep_id)
        assert dep is not None and dep.state == "sleeping"
        dep.name = "renamed meanwhile"
        assert state.transition(session, dep_id, "pending", "waking up")
        assert (dep.state, dep.state_message) == ("pending", "waking up")
        assert not state.transition(session, dep_id, "sleeping", "refused: pending cannot go to sleep")
    with ctx.db.reading() as session:
        row = dep_store.get(session, dep_id)
        assert row is not None and (row.state, row.state_message, row.name) == ("pending", "waking up", "renamed meanwhile")
