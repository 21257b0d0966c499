"""What deployment requests mean: deploy (a snapshot of the studio, or of an earlier
deployment), list, get, stop, wake, and read logs. Permissions as for the studio: read may
look, write may deploy and stop. These only write the database (through the one state writer,
`studios.services.state`); the lifecycle engine, on whichever server holds it, hears the
events and does the work. Each function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from studios.db.models import Deployment
from studios.errors import Conflict, Invalid, NotFound
from studios.services import state, views
from studios.services.keys import Caller
from studios.services.permissions import require
from studios.services.views import Links
from studios.store import credentials as cred_store
from studios.store import deployments as dep_store

SNAPSHOT = ("docker_image_name", "docker_image_tag", "instance_type", "memory", "cpu", "disk_space", "params", "git_repo_url", "git_ref", "git_credential_id", "partition_label")


def create(session: Session, caller: Caller, studio_id: int, from_deployment: int | None, runtime_for: Callable[[str | None], str],
           prepare: Callable[[Session, Deployment], None]) -> Deployment:  # fmt: skip
    """A new pending deployment; the studio's other active deployments end (replaced), in the
    same transaction, so concurrent deploys leave exactly the newest. The engine launches it;
    `prepare` (the engine's, where this server runs it) may claim it here first."""
    studio, _ = require(session, caller, studio_id, "write", for_update=True)
    if studio.archived:
        raise Conflict(f"Studio {studio_id} is archived; unarchive it (PUT /studios/{studio_id}/archive) before deploying.")
    source: object = studio
    if from_deployment is not None:
        earlier = dep_store.get(session, from_deployment)
        if earlier is None or earlier.studio_id != studio_id:
            raise Invalid(f"deploymentId: deployment {from_deployment} is not a deployment of studio {studio_id}.")
        source = earlier
    values = {field: getattr(source, field) for field in SNAPSHOT}
    values["params"] = [dict(p) for p in values["params"] or []]
    _check_credentials(session, caller, values)
    runtime = runtime_for(values["partition_label"])
    dep = dep_store.create(session, {**values, "studio_id": studio_id, "user_id": caller.id, "name": studio.name, "runtime": runtime, "state": "pending", "state_message": "queued"})
    dep_store.add_system_line(session, dep.id, f"queued by {caller.username}" + (f" (redeploying deployment {from_deployment})" if from_deployment else ""))
    state.supersede(session, dep)
    state.announce(session, dep)
    prepare(session, dep)
    return dep


def _check_credentials(session: Session, caller: Caller, values: dict) -> None:
    """Refuse a deploy that would use a credential the deploying user does not own."""
    named = [("gitCredentialId", values["git_credential_id"])]
    named += [(f"param {p['name']}", int(p["value"])) for p in values["params"] if p.get("value") and (p["type"].startswith("credential_") or p["type"] == "database")]
    for what, credential_id in named:
        if credential_id is None:
            continue
        cred = cred_store.get(session, credential_id)
        if cred is None or cred.owner_id != caller.id:
            raise Invalid(f"{what}: credential {credential_id} does not exist or belongs to someone else; each user deploys with their own credentials.")


def get(session: Session, caller: Caller, studio_id: int, deployment_id: int) -> Deployment:
    require(session, caller, studio_id, "read")
    dep = dep_store.get(session, deployment_id)
    if dep is None or dep.studio_id != studio_id:
        raise NotFound(f"Deployment {deployment_id} of studio {studio_id} was not found.")
    return dep


def stop(session: Session, caller: Caller, studio_id: int, deployment_id: int) -> Deployment:
    """End the deployment (its keys revoked at once); the engine stops its workload. Stopping
    an ended deployment whose workload is not yet released asks the engine again."""
    require(session, caller, studio_id, "write")
    dep = get(session, caller, studio_id, deployment_id)
    if not state.transition(session, deployment_id, "terminated", f"stopped by {caller.username}") and dep.released_at is None:
        state.announce(session, dep)
    return dep


def wake(session: Session, deployment_id: int) -> bool:
    """A visitor opened a sleeping deployment's display URL: ask for it to start again."""
    return state.transition(session, deployment_id, "pending", "waking up", log_line="waking up: the display URL was opened")


def recent_steps(session: Session, deployment_id: int, count: int) -> list[tuple[int, str]]:
    """The deployment's latest start-up steps and lifecycle notes (its system lines) as (line
    id, message), oldest first."""
    return dep_store.recent_system_lines(session, deployment_id, count)


def tail_start(session: Session, deployment_id: int, lines: int) -> int:
    """The log line id after which the deployment's last `lines` lines come."""
    return dep_store.tail_start(session, deployment_id, lines)


def visible_summary(session: Session, caller: Caller, deployment_id: int, links: Links) -> dict[str, Any] | None:
    """The deployment's summary if the caller may read its studio, else None."""
    dep = dep_store.get(session, deployment_id)
    if dep is None:
        return None
    try:
        require(session, caller, dep.studio_id, "read")
    except NotFound:
        return None
    return views.deployment_summary(dep, links)
