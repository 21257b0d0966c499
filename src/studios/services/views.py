"""Stored rows to wire models: the one place that knows how a studio or deployment is shown
(author block, caller's permission level, newest deployment, host and displayUrl). The rows
were validated on the way in, so models are built with `model_construct` (no re-validation:
this is the API's hot path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from sqlalchemy import Row

from studios.db.models import Deployment, User, utcnow
from studios.errors import NotFound
from studios.schemas.deployments import StudioDeployment, StudioDeploymentSummary
from studios.schemas.studios import Studio as StudioOut
from studios.schemas.studios import StudioParam, StudioRequiredResources
from studios.schemas.users import UserSimpleUser
from studios.services.keys import ONLINE_WINDOW, Caller, initials, is_online
from studios.store import studios as studio_store


class Links(Protocol):
    """How deployments are reached: implemented by `studios.proxy`."""

    def host_for(self, deployment_id: int) -> str: ...

    def display_url(self, deployment_id: int, user_id: int) -> str: ...

    def prefix_for(self, deployment_id: int) -> str: ...


def user_simple(user: User) -> UserSimpleUser:
    return UserSimpleUser.model_construct(id=user.id, name=user.name, username=user.username, initials=initials(user.name), online=is_online(user))


def _deployment_fields(dep: Deployment, links: Links) -> dict:
    return dict(
        deployment_id=dep.id,
        user_id=dep.user_id,
        host=links.host_for(dep.id),
        name=dep.name,
        docker_image_name=dep.docker_image_name,
        docker_image_tag=dep.docker_image_tag,
        instance_type=dep.instance_type,
        memory=dep.memory,
        cpu=dep.cpu,
        state=dep.state,
        state_message=dep.state_message,
        max_memory_usage=dep.max_memory_usage,
        max_cpu_usage=dep.max_cpu_usage,
        created_at=dep.created_at,
        updated_at=dep.updated_at,
        studio_id=dep.studio_id,
    )


def deployment(dep: Deployment, viewer_id: int, links: Links) -> StudioDeployment:
    url = links.display_url(dep.id, viewer_id) if dep.state in ("running", "sleeping", "pending") else None
    return StudioDeployment.model_construct(display_url=url, **_deployment_fields(dep, links))


def deployment_summary(dep: Deployment, links: Links) -> StudioDeploymentSummary:
    return StudioDeploymentSummary.model_construct(**_deployment_fields(dep, links))


def author(row: Row) -> UserSimpleUser:
    """The `author` block of a studio view row (`studios.store.studios` view rows)."""
    seen = row.author_seen
    online = seen is not None and utcnow() - seen < ONLINE_WINDOW
    return UserSimpleUser.model_construct(id=row.author_id, name=row.author_name, username=row.author_username, initials=initials(row.author_name), online=online)


def studio(row: Row, level: str, latest: Row | None, caller: Caller, links: Links) -> StudioOut:
    return StudioOut.model_construct(
        id=row.id,
        author=author(row),
        name=row.name,
        docker_image_name=row.docker_image_name,
        docker_image_tag=row.docker_image_tag,
        instance_type=row.instance_type,
        required_resources=StudioRequiredResources.model_construct(memory=row.memory, disk_space=row.disk_space, cpu=row.cpu),
        created_at=row.created_at,
        updated_at=row.updated_at,
        most_recent_deployment=deployment(latest, caller.id, links) if latest is not None else None,
        git_credential_id=row.git_credential_id,
        params=[StudioParam.model_construct(name=p["name"], description=p.get("description"), type=p["type"], value=p.get("value")) for p in row.params or []],
        git_repo_id=row.git_repo_id,
        git_repo_url=row.git_repo_url,
        git_ref=row.git_ref,
        partition_label=row.partition_label,
        my_permission_level=level,
        archived=row.archived,
    )


def studios(session: Session, rows: Sequence[Row], caller: Caller, links: Links) -> list[StudioOut]:
    """A page of view rows in one more query (their newest deployments)."""
    latest = studio_store.latest_deployments(session, [r.id for r in rows])
    return [studio(r, "manage" if caller.is_admin else r.level, latest.get(r.id), caller, links) for r in rows]


def studio_for(session: Session, caller: Caller, studio_id: int, links: Links) -> StudioOut:
    """The studio as `caller` sees it; NotFound when it doesn't exist or they have no access."""
    row = studio_store.view_row(session, studio_id, caller.id)
    level = ("manage" if caller.is_admin else row.level) if row is not None else None
    if row is None or level is None:
        raise NotFound(f"Studio {studio_id} was not found.")
    return studio(row, level, studio_store.latest_deployments(session, [studio_id]).get(studio_id), caller, links)
