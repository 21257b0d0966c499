"""What studio requests mean: create, replace (PUT), update (PATCH), archive, list and share.
Permissions are checked here; resources are resolved against the partitions; each write
commits before the response is built."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from studios import git_input
from studios.db.models import Studio
from studios.errors import Invalid, NotFound
from studios.partitions import Partitions
from studios.schemas.studios import StudioCreateRequest, StudioUpdateRequest
from studios.services import views
from studios.services.events import Event, emit
from studios.services.keys import Caller
from studios.services.permissions import require, shareable
from studios.store import credentials as cred_store
from studios.store import studios as studio_store
from studios.store import users as user_store
from studios.store.studio_pages import StudioPages

DEFAULT_NAME = "Untitled Studio"
PLAIN_FIELDS = ("name", "docker_image_name", "docker_image_tag", "instance_type", "git_credential_id", "git_repo_url", "git_ref", "partition_label")
DEFAULTS: dict[str, Any] = {"name": DEFAULT_NAME, "docker_image_tag": "latest"}


@dataclasses.dataclass(frozen=True)
class Page:
    studios: list[Row]
    """View rows (`studios.store.studios.view_row` shape)."""
    latest: dict[int, Row]
    """Their studios' newest deployments, by studio id."""
    total: int


def _check_credential(session: Session, caller: Caller, credential_id: int | None) -> None:
    if credential_id is None:
        return
    cred = cred_store.get(session, credential_id)
    if cred is None or (cred.owner_id != caller.id and not caller.is_admin):
        raise Invalid(f"gitCredentialId {credential_id} is not a credential you can use.")


def _full_values(body: StudioCreateRequest | StudioUpdateRequest) -> dict[str, Any]:
    """PUT/POST: every attribute, the absent ones at their defaults (or null)."""
    values = {f: getattr(body, f) if getattr(body, f) is not None else DEFAULTS.get(f) for f in PLAIN_FIELDS}
    resources = body.required_resources
    values["memory"] = resources.memory if resources else None
    values["cpu"] = resources.cpu if resources else None
    values["disk_space"] = float(resources.disk_space) if resources and resources.disk_space is not None else None
    values["params"] = [p.model_dump() for p in body.params or []]
    return values


def _patch_values(body: StudioUpdateRequest, current: Studio) -> dict[str, Any]:
    """PATCH: only what was sent; an explicit null clears (or restores a default)."""
    sent = body.model_fields_set
    values: dict[str, Any] = {}
    for field in PLAIN_FIELDS:
        if field in sent:
            value = getattr(body, field)
            values[field] = value if value is not None else DEFAULTS.get(field)
    if "params" in sent:
        values["params"] = [p.model_dump() for p in body.params or []]
    if "required_resources" in sent:
        res = body.required_resources
        res_sent = res.model_fields_set if res is not None else {"memory", "cpu", "disk_space"}
        for field in ("memory", "cpu", "disk_space"):
            if field in res_sent:
                value = getattr(res, field) if res is not None else None
                values[field] = float(value) if field == "disk_space" and value is not None else value
    elif ("instance_type" in sent or "partition_label" in sent) and (
        (values.get("instance_type"), values.get("partition_label", current.partition_label)) != (current.instance_type, current.partition_label)
    ):
        # A new instance type brings its own defaults unless resources are also given.
        values.update(memory=None, cpu=None, disk_space=None)
    return values


def _resolve(session: Session, partitions: Partitions, caller: Caller, merged: dict[str, Any]) -> dict[str, Any]:
    res = partitions.resolve(merged["partition_label"], merged["instance_type"], merged["memory"], merged["cpu"], merged["disk_space"])
    merged.update(instance_type=res.instance_type, memory=res.memory, cpu=res.cpu, disk_space=res.disk_space)
    _check_credential(session, caller, merged["git_credential_id"])
    merged["git_repo_id"] = studio_store.git_repo_id(session, merged["git_repo_url"]) if merged["git_repo_url"] else None
    return merged


def _check_git_url(changes: dict[str, Any], allow_local_git: bool) -> None:
    """A newly sent repository URL must be one this server may fetch (`studios.git_input`)."""
    url = changes.get("git_repo_url")
    if url:
        try:
            git_input.check_url(url, allow_local=allow_local_git)
        except ValueError as exc:
            raise Invalid(f"gitRepoUrl: {exc}") from None


def create(session: Session, partitions: Partitions, caller: Caller, body: StudioCreateRequest, *, allow_local_git: bool = False) -> Studio:
    changes = _full_values(body)
    _check_git_url(changes, allow_local_git)
    values = _resolve(session, partitions, caller, changes)
    studio = studio_store.create(session, caller.id, values)
    session.commit()
    return studio


def update(session: Session, partitions: Partitions, caller: Caller, studio_id: int, body: StudioUpdateRequest, *, replace: bool, allow_local_git: bool = False) -> tuple[Studio, str]:
    studio, level = require(session, caller, studio_id, "write", for_update=True)
    changes = _full_values(body) if replace else _patch_values(body, studio)
    _check_git_url(changes, allow_local_git)
    current = {f: getattr(studio, f) for f in (*PLAIN_FIELDS, "memory", "cpu", "disk_space", "params")}
    merged = _resolve(session, partitions, caller, {**current, **changes})
    studio_store.apply(session, studio, merged)
    session.commit()
    return studio, level


def archive(session: Session, caller: Caller, studio_id: int, status: bool) -> tuple[Studio, str]:
    studio, level = require(session, caller, studio_id, "write", for_update=True)
    studio_store.apply(session, studio, {"archived": status})
    session.commit()
    return studio, level


def page(conn: Connection, pages: StudioPages, caller: Caller, archived: str, authors: list[int] | None, order: str, order_dir: str, limit: int, page_num: int, name: str | None = None) -> Page:
    flag = {"true": True, "false": False, "all": None}[archived]
    rows, total = studio_store.list_visible(conn, pages, caller.id, caller.is_admin, flag, authors, order, order_dir == "desc", limit, (page_num - 1) * limit, name or None)
    return Page(rows, studio_store.latest_deployments(conn, rows), total)


def share(session: Session, caller: Caller, studio_id: int, user_ids: list[int], level: str) -> Studio:
    studio, _ = require(session, caller, studio_id, "manage", for_update=True)
    found = user_store.by_ids(session, set(user_ids))
    refused = sorted(uid for uid in set(user_ids) if not shareable(caller, found.get(uid)))
    if refused:  # unknown ids and ids the caller cannot see: one answer, so it tells neither apart
        these = f"{refused[0]} is not a user" if len(refused) == 1 else f"{', '.join(map(str, refused))} are not users"
        raise Invalid(f"userIds: {these} you can share this studio with.")
    if studio.author_id in user_ids and level != "manage":
        raise Invalid(f"userIds: user {studio.author_id} is the author of studio {studio_id} and always keeps manage permission.")
    for user_id in user_ids:
        studio_store.set_share(session, studio_id, user_id, level)
    emit(session, Event("shares", studio_id=studio_id))
    session.commit()
    return studio


def unshare(session: Session, caller: Caller, studio_id: int, user_id: int) -> None:
    studio, _ = require(session, caller, studio_id, "manage", for_update=True)
    if user_id == studio.author_id:
        raise Invalid(f"user {user_id} is the author of studio {studio_id} and always keeps manage permission.")
    if not studio_store.remove_share(session, studio_id, user_id):
        raise NotFound(f"User {user_id} has no share on studio {studio_id}.")
    emit(session, Event("shares", studio_id=studio_id))
    session.commit()


def share_index(session: Session, studio_id: int) -> views.WireDict:
    """The studio's shares as the API shows them (the caller's access already checked)."""
    return views.share_index([(share.level, user.id, user.name) for share, user in studio_store.shares_of(session, studio_id)])
