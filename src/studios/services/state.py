"""The one writer of deployment state. Every change of a deployment's state or message, from
the API (deploy, stop, wake), the engine (launch steps, ready, ended, sleep) or a reconcile,
goes through `transition`, inside the caller's write transaction:

- the row is locked (SELECT ... FOR UPDATE; SQLite's write transactions are BEGIN IMMEDIATE);
  a move that ends nothing (to pending, running or sleeping) is one UPDATE of the row in the
  states the lifecycle allows it from, whose own lock it is;
- the move is checked against `studios.lifecycle` (a refused move changes nothing);
- the message is recorded as a system log line in the same transaction;
- ending a deployment revokes the API keys minted for it in the same transaction, so no error
  or crash after the commit can leave a key of an ended deployment valid;
- a `deployment` event is queued, announced when the transaction commits.

A terminated deployment is released later by the engine (its workload stopped, logs drained,
resources freed: `released_at`); one that never got a workload is released at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from studios.db.models import Deployment, utcnow
from studios.lifecycle import SOURCES, allowed
from studios.services.events import Event, emit
from studios.store import deployments as dep_store
from studios.store import users as user_store


def announce(session: Session, dep: Deployment) -> None:
    """Queue the `deployment` event that tells listeners its current state."""
    _announce(session, dep.id, dep.studio_id, dep.user_id, dep.state, dep.state_message)


def _announce(session: Session, deployment_id: int, studio_id: int, user_id: int, new: str, message: str) -> None:
    emit(session, Event("deployment", deployment_id, studio_id, {"state": new, "message": message, "userId": user_id}))


def transition(session: Session, deployment_id: int, new: str, message: str, *, log_line: str | None = None, locked: Deployment | None = None,
               **fields: Any) -> bool:  # fmt: skip
    """Move a deployment to `new` with `message` if the lifecycle allows it; whether it moved
    (not if the lifecycle refuses the move, or there is no such deployment). `fields` are set
    on the row with the change. `locked`: the deployment's row as this transaction already
    locked it (`claim`), not read again. A move that ends nothing is made without loading the
    row (`_move`)."""
    if locked is None and new != "terminated":
        return _move(session, deployment_id, new, message, log_line, fields)
    dep = locked if locked is not None and locked.id == deployment_id else dep_store.get_for_update(session, deployment_id)
    if dep is None or not allowed(dep.state, new):
        return False
    now = utcnow()
    dep.state, dep.state_message, dep.updated_at = new, message, now
    for key, value in fields.items():
        setattr(dep, key, value)
    if new == "terminated":
        dep.ended_at = now
        hashes = user_store.revoke_deployment_keys(session, deployment_id)
        if hashes:
            emit(session, Event("keys", deployment_id, dep.studio_id, {"hashes": hashes, "users": [dep.user_id]}))
        if dep.handle is None and dep.claimed_by is None:
            dep.released_at = now  # nothing was started: nothing to release
    dep_store.add_system_line(session, deployment_id, log_line or message, now)
    announce(session, dep)
    return True


def _move(session: Session, deployment_id: int, new: str, message: str, log_line: str | None, fields: dict[str, Any]) -> bool:
    """A move to a state that ends nothing (no keys to revoke, nothing to release) as one UPDATE
    of the row in the states the lifecycle allows it from: the ORM's load of the whole row and
    its flush made each of a deploy's steps (launch, ready, sleep, wake) a few ms slower."""
    now = utcnow()
    moved = dep_store.move(session, deployment_id, SOURCES[new], {"state": new, "state_message": message, "updated_at": now, **fields})
    if moved is None:
        return False
    studio_id, user_id = moved
    dep_store.add_system_line(session, deployment_id, log_line or message, now)
    _announce(session, deployment_id, studio_id, user_id, new, message)
    return True


def supersede(session: Session, deployment: Deployment) -> list[int]:
    """End the studio's other live deployments (sleeping ones too: a visitor would otherwise wake
    a second one), so that only `deployment` (the newest) stays. The caller holds the studio's
    row lock in this transaction (`services.deployments.create` takes it with the access check),
    so concurrent deploys take turns. Returns the ids ended (the engine releases them)."""
    ended = []
    for other in dep_store.of_studio_in(session, deployment.studio_id, ("pending", "running", "sleeping")):
        if other.id != deployment.id and transition(session, other.id, "terminated", f"replaced by deployment {deployment.id}"):
            ended.append(other.id)
    return ended


def claim(session: Session, deployment_id: int, holder: str) -> Deployment | None:
    """Claim a pending deployment that nobody is launching, for `holder` (the engine that will
    launch it); None if it is not pending, already claimed or already started."""
    dep = dep_store.get_for_update(session, deployment_id)
    if dep is None or dep.state != "pending" or dep.claimed_by is not None or dep.handle is not None:
        return None
    dep.claimed_by = holder
    return dep


def mark_released(session: Session, deployment_id: int) -> bool:
    """Record that a terminated deployment's workload is stopped and released."""
    dep = dep_store.get_for_update(session, deployment_id)
    if dep is None or dep.state != "terminated" or dep.released_at is not None:
        return False
    dep.released_at = utcnow()
    emit(session, Event("released", dep.id, dep.studio_id))
    return True
