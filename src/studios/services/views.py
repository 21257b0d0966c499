"""ORM rows to wire models: the one place that knows how a studio or deployment is shown
(author block, caller's permission level, newest deployment, host and displayUrl)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from studios.db.models import Deployment, Studio, User
from studios.schemas.deployments import StudioDeployment, StudioDeploymentSummary
from studios.schemas.studios import Studio as StudioOut
from studios.schemas.studios import StudioParam, StudioRequiredResources
from studios.schemas.users import UserSimpleUser
from studios.services.keys import Caller, initials, is_online
from studios.store import studios as studio_store
from studios.store import users as user_store


class Links(Protocol):
    """How deployments are reached: implemented by `studios.proxy`."""

    def host_for(self, deployment_id: int) -> str: ...

    def display_url(self, deployment_id: int, user_id: int) -> str: ...

    def prefix_for(self, deployment_id: int) -> str: ...


def user_simple(user: User) -> UserSimpleUser:
    return UserSimpleUser(id=user.id, name=user.name, username=user.username, initials=initials(user.name), online=is_online(user))


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
    return StudioDeployment(display_url=url, **_deployment_fields(dep, links))


def deployment_summary(dep: Deployment, links: Links) -> StudioDeploymentSummary:
    return StudioDeploymentSummary(**_deployment_fields(dep, links))


def studio(
    studio: Studio, author: User, level: str, latest: Deployment | None, caller: Caller, links: Links
) -> StudioOut:
    return StudioOut(
        id=studio.id,
        author=user_simple(author),
        name=studio.name,
        docker_image_name=studio.docker_image_name,
        docker_image_tag=studio.docker_image_tag,
        instance_type=studio.instance_type,
        required_resources=StudioRequiredResources(memory=studio.memory, disk_space=studio.disk_space, cpu=studio.cpu),
        created_at=studio.created_at,
        updated_at=studio.updated_at,
        most_recent_deployment=deployment(latest, caller.id, links) if latest is not None else None,
        git_credential_id=studio.git_credential_id,
        params=[StudioParam(name=p["name"], description=p.get("description"), type=p["type"], value=p.get("value")) for p in studio.params or []],
        git_repo_id=studio.git_repo_id,
        git_repo_url=studio.git_repo_url,
        git_ref=studio.git_ref,
        partition_label=studio.partition_label,
        my_permission_level=level,
        archived=studio.archived,
    )


def studios(session: Session, rows: Sequence[Studio], caller: Caller, links: Links) -> list[StudioOut]:
    """Many studios in a constant number of queries."""
    ids = [s.id for s in rows]
    authors = user_store.by_ids(session, {s.author_id for s in rows})
    levels = {i: "manage" for i in ids} if caller.is_admin else studio_store.levels_for(session, caller.id, ids)
    latest = studio_store.latest_deployments(session, ids)
    return [studio(s, authors[s.author_id], levels[s.id], latest.get(s.id), caller, links) for s in rows]


def one_studio(session: Session, row: Studio, level: str, caller: Caller, links: Links) -> StudioOut:
    author = user_store.get(session, row.author_id)
    assert author is not None
    return studio(row, author, level, studio_store.latest_deployments(session, [row.id]).get(row.id), caller, links)
