"""Stored rows to wire models: the one place that knows how a studio or deployment is shown
(author block, caller's permission level, newest deployment, host and displayUrl). The rows
were validated on the way in, and this is the API's hot path, so bodies are built as wire
dicts, not re-validated pydantic models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row

from studios.db.models import Credential, Deployment, User
from studios.errors import NotFound
from studios.schemas.common import civis_time
from studios.schemas.credentials import Credential as CredentialView
from studios.services.answers import Answer, Holes
from studios.services.keys import Caller, initials, is_online
from studios.store import deployments as dep_store
from studios.store import studios as studio_store


class Links(Protocol):
    """How deployments are reached: implemented by `studios.proxy`."""

    def host_for(self, deployment_id: int) -> str: ...

    def display_url(self, deployment_id: int, user_id: int) -> str: ...

    def prefix_for(self, deployment_id: int) -> str: ...


WireDict = dict[str, Any]
"""A response body in wire form (camelCase keys, Civis time strings), shaped exactly as the
schema named in the route's `response_model`; `tests/api/test_wire_shapes.py` validates them
against those models."""


def _time(value: datetime | str | None) -> str | None:
    """A time in wire form; view rows bring theirs as wire text already (`CivisTime`)."""
    if value is None or isinstance(value, str):
        return value
    return civis_time(value)


def user_simple(user: User) -> WireDict:
    return {"id": user.id, "name": user.name, "username": user.username, "initials": initials(user.name), "online": is_online(user.last_seen_at)}


def deployment_summary(dep: Deployment | Row, links: Links) -> WireDict:
    return {
        "deploymentId": dep.id,
        "userId": dep.user_id,
        "host": links.host_for(dep.id),
        "name": dep.name,
        "dockerImageName": dep.docker_image_name,
        "dockerImageTag": dep.docker_image_tag,
        "instanceType": dep.instance_type,
        "memory": dep.memory,
        "cpu": dep.cpu,
        "state": dep.state,
        "stateMessage": dep.state_message,
        "maxMemoryUsage": dep.max_memory_usage,
        "maxCpuUsage": dep.max_cpu_usage,
        "createdAt": _time(dep.created_at),
        "updatedAt": _time(dep.updated_at),
        "studioId": dep.studio_id,
    }


def deployment(dep: Deployment | Row, viewer_id: int, links: Links, holes: Holes | None = None) -> WireDict:
    """With `holes`, its `displayUrl` is a hole to sign per request (`studios.services.answers`)."""
    out = deployment_summary(dep, links)
    if dep.state not in ("running", "sleeping", "pending"):
        out["displayUrl"] = None
    else:
        out["displayUrl"] = holes.display_url(dep.id) if holes is not None else links.display_url(dep.id, viewer_id)
    return out


def deployment_answer(conn: Connection, caller: Caller, studio_id: int, deployment_id: int, links: Links) -> tuple[Answer, Row]:
    """The deployment as `caller` sees it, encoded once (`studios.services.answers`), and its
    view row (`studios.store.deployments.view_row`: also what the body does not show, such as
    when it goes to sleep); NotFound as `studios.services.deployments.get`."""
    row = _deployment_row(conn, caller, studio_id, deployment_id)
    return Answer(lambda holes: deployment(row, caller.id, links, holes)), row


def log_page(conn: Connection, caller: Caller, studio_id: int, deployment_id: int, start_at: datetime | None, end_at: datetime | None, limit: int) -> bytes:
    """The body of `GET .../logs` (`studios.store.deployments.logs_body`) for a caller who may
    read the studio; NotFound as the deployment's GET."""
    _deployment_row(conn, caller, studio_id, deployment_id)
    return dep_store.logs_body(conn, deployment_id, start_at, end_at, limit)


def _deployment_row(conn: Connection, caller: Caller, studio_id: int, deployment_id: int) -> Row:
    row = _readable(dep_store.view_row(conn, studio_id, deployment_id, caller.id), caller, studio_id)
    if row.id is None:
        raise NotFound(f"Deployment {deployment_id} of studio {studio_id} was not found.")
    return row


def deployments_answer(conn: Connection, caller: Caller, studio_id: int, deployment_id: int | None, descending: bool, limit: int, offset: int,
                       links: Links) -> tuple[Answer, int]:  # fmt: skip
    """A page of the studio's deployment summaries as `caller` sees it, encoded once, and how
    many there are in all; NotFound when the studio doesn't exist or they have no access."""
    _readable(dep_store.access_row(conn, studio_id, caller.id), caller, studio_id)
    rows, total = dep_store.summaries(conn, studio_id, deployment_id, descending, limit, offset)
    return Answer(lambda _holes: [deployment_summary(r, links) for r in rows]), total


def _readable(row: Row | None, caller: Caller, studio_id: int) -> Row:
    """The row of a studio the caller may read (an admin, or any share of it: the row's
    `level`); NotFound otherwise: no access looks exactly like no studio, as
    `studios.services.permissions` has it for the ORM's callers."""
    if row is None or (row.level is None and not caller.is_admin):
        raise NotFound(f"Studio {studio_id} was not found.")
    return row


def author(row: Row, holes: Holes | None = None) -> WireDict:
    """The `author` block of a studio view row (`studios.store.studios` view rows)."""
    online = holes.online(row.author_seen) if holes is not None else is_online(row.author_seen)
    return {"id": row.author_id, "name": row.author_name, "username": row.author_username, "initials": initials(row.author_name), "online": online}


def studio(row: Row, level: str, latest: Row | None, caller: Caller, links: Links, holes: Holes | None = None) -> WireDict:
    """With `holes`, its per-request parts are holes (`studios.services.answers`)."""
    return {
        "id": row.id,
        "author": author(row, holes),
        "name": row.name,
        "dockerImageName": row.docker_image_name,
        "dockerImageTag": row.docker_image_tag,
        "instanceType": row.instance_type,
        "requiredResources": {"memory": row.memory, "diskSpace": row.disk_space, "cpu": row.cpu},
        "createdAt": _time(row.created_at),
        "updatedAt": _time(row.updated_at),
        "mostRecentDeployment": deployment(latest, caller.id, links, holes) if latest is not None else None,
        "gitCredentialId": row.git_credential_id,
        "params": [{"name": p["name"], "description": p.get("description"), "type": p["type"], "value": p.get("value")} for p in row.params or []],
        "gitRepoId": row.git_repo_id,
        "gitRepoUrl": row.git_repo_url,
        "gitRef": row.git_ref,
        "partitionLabel": row.partition_label,
        "myPermissionLevel": level,
        "archived": row.archived,
    }


def studios(rows: Sequence[Row], latest: dict[int, Row], caller: Caller, links: Links, holes: Holes | None = None) -> list[WireDict]:
    """A page of view rows, with their newest deployments (`studios.store.studios.latest_deployments`)."""
    return [studio(r, "manage" if caller.is_admin else r.level, latest.get(r.id), caller, links, holes) for r in rows]


def studios_answer(rows: Sequence[Row], latest: dict[int, Row], caller: Caller, links: Links) -> Answer:
    """A page of `studios`, encoded once (`studios.services.answers`)."""
    return Answer(lambda holes: studios(rows, latest, caller, links, holes))


def credential(cred: Credential, owner: User) -> CredentialView:
    return CredentialView(id=cred.id, name=cred.name, type=cred.type, username=cred.username, description=cred.description, owner=owner.username, user=user_simple(owner), remote_host_id=cred.remote_host_id, remote_host_name=None, state=None, created_at=cred.created_at, updated_at=cred.updated_at, default=cred.is_default, oauth=False, provider=None, provider_metadata=None)


def share_index(shares: Sequence[tuple[str, int, str]]) -> WireDict:
    """A studio's shares, (level, user id, user name) each, as a `ShareIndex`."""
    sets: dict[str, list[WireDict]] = {"read": [], "write": [], "manage": []}
    for level, user_id, name in shares:
        sets[level].append({"id": user_id, "name": name})
    return {
        "readers": {"users": sets["read"], "groups": []},
        "writers": {"users": sets["write"], "groups": []},
        "owners": {"users": sets["manage"], "groups": []},
        "totalUserShares": sum(len(v) for v in sets.values()),
        "totalGroupShares": 0,
    }


def user_me(user: User | Row) -> WireDict:
    return {
        "id": user.id, "name": user.name, "email": user.email, "username": user.username, "initials": initials(user.name),
        "roles": ["admin"] if user.is_admin else [], "createdAt": _time(user.created_at), "personaRole": "admin" if user.is_admin else "user",
    }


StudioParts = tuple[Row, str, Row | None]
"""What a studio's view is built from: its view row, the caller's level, its newest deployment."""


def studio_parts(conn: Connection, caller: Caller, studio_id: int) -> StudioParts:
    """What `caller` sees of the studio; NotFound when it doesn't exist or they have no access."""
    row = _readable(studio_store.view_row(conn, studio_id, caller.id), caller, studio_id)
    return row, "manage" if caller.is_admin else row.level, studio_store.latest_deployments(conn, [row]).get(studio_id)


def studio_answer(conn: Connection, caller: Caller, studio_id: int, links: Links) -> Answer:
    """The studio as `caller` sees it, encoded once (`studios.services.answers`); NotFound as
    `studio_parts`."""
    row, level, latest = studio_parts(conn, caller, studio_id)
    return Answer(lambda holes: studio(row, level, latest, caller, links, holes))


def studio_for(conn: Connection, caller: Caller, studio_id: int, links: Links) -> WireDict:
    """The studio as `caller` sees it; NotFound when it doesn't exist or they have no access."""
    row, level, latest = studio_parts(conn, caller, studio_id)
    return studio(row, level, latest, caller, links)
