"""What deployment requests mean: deploy (a snapshot of the studio, or of an earlier
deployment), list, get, stop, and read logs. Permissions as for the studio: read may look,
write may deploy and stop."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from studios.db.models import Credential, Deployment
from studios.errors import Conflict, Invalid, NotFound
from studios.services.keys import Caller
from studios.services.log_sink import system_line
from studios.services.permissions import require
from studios.store import deployments as dep_store

SNAPSHOT = ("docker_image_name", "docker_image_tag", "instance_type", "memory", "cpu", "disk_space", "params", "git_repo_url", "git_ref", "git_credential_id", "partition_label")


def create(session: Session, caller: Caller, studio_id: int, from_deployment: int | None, runtime_for) -> Deployment:
    """A new pending deployment (committed); the engine then launches it."""
    studio, _ = require(session, caller, studio_id, "write")
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
    system_line(session, dep.id, f"queued by {caller.username}" + (f" (redeploying deployment {from_deployment})" if from_deployment else ""))
    session.commit()
    return dep


def _check_credentials(session: Session, caller: Caller, values: dict) -> None:
    """Refuse a deploy that would use a credential the deploying user does not own."""
    named = [("gitCredentialId", values["git_credential_id"])]
    named += [(f"param {p['name']}", int(p["value"])) for p in values["params"] if p.get("value") and (p["type"].startswith("credential_") or p["type"] == "database")]
    for what, credential_id in named:
        if credential_id is None:
            continue
        cred = session.get(Credential, credential_id)
        if cred is None or cred.owner_id != caller.id:
            raise Invalid(f"{what}: credential {credential_id} does not exist or belongs to someone else; each user deploys with their own credentials.")


def get(session: Session, caller: Caller, studio_id: int, deployment_id: int) -> Deployment:
    require(session, caller, studio_id, "read")
    dep = dep_store.get(session, deployment_id)
    if dep is None or dep.studio_id != studio_id:
        raise NotFound(f"Deployment {deployment_id} of studio {studio_id} was not found.")
    return dep


def for_stop(session: Session, caller: Caller, studio_id: int, deployment_id: int) -> Deployment:
    require(session, caller, studio_id, "write")
    return get(session, caller, studio_id, deployment_id)


def page(session: Session, caller: Caller, studio_id: int, deployment_id: int | None, order_dir: str, limit: int, page_num: int) -> tuple[list[Deployment], int]:
    require(session, caller, studio_id, "read")
    return dep_store.page(session, studio_id, deployment_id, order_dir == "desc", limit, (page_num - 1) * limit)


def logs(session: Session, caller: Caller, studio_id: int, deployment_id: int, start_at: datetime | None, end_at: datetime | None, limit: int) -> list[tuple[str, str, str, str]]:
    get(session, caller, studio_id, deployment_id)
    return dep_store.logs(session, deployment_id, start_at, end_at, limit)
