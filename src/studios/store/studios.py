"""Database operations on studios, their shares and git repo bookmarks.
Return objects or None; never commit; know nothing of permissions' meaning."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, bindparam, func, select, type_coerce
from sqlalchemy.orm import Session

from studios.db.models import Deployment, GitRepo, Studio, StudioShare, User, utcnow
from studios.store.studio_pages import StudioPages
from studios.store.times import CivisTime

AUTHOR_COLUMNS = (User.name.label("author_name"), User.username.label("author_username"), User.last_seen_at.label("author_seen"))
"""A view row is a studio's columns, its author's (`author_*`) and the caller's `level`."""

LATEST_ID = select(func.max(Deployment.id)).where(Deployment.studio_id == Studio.id).scalar_subquery().label("latest_id")
"""The id of the studio's newest deployment (the `ix_deployments_studio_id_id` index answers it)."""

STUDIO_COLUMNS = (
    *(column for column in Studio.__table__.c if column.name not in ("created_at", "updated_at")),
    type_coerce(Studio.created_at, CivisTime).label("created_at"),
    type_coerce(Studio.updated_at, CivisTime).label("updated_at"),
)
"""A studio's columns in a view row; its times come as their wire text (`CivisTime`)."""

CALLERS_SHARE = and_(StudioShare.studio_id == Studio.id, StudioShare.user_id == bindparam("uid"))
"""The join to the caller's own share of the studio (the caller's id bound as `uid`)."""

_VIEW_ONE = (
    select(*STUDIO_COLUMNS, *AUTHOR_COLUMNS, StudioShare.level, LATEST_ID)
    .join(User, User.id == Studio.author_id)
    .outerjoin(StudioShare, CALLERS_SHARE)
    .where(Studio.id == bindparam("sid"))
)
SUMMARY_COLUMNS = (
    Deployment.id, Deployment.studio_id, Deployment.user_id, Deployment.name, Deployment.docker_image_name, Deployment.docker_image_tag,
    Deployment.instance_type, Deployment.memory, Deployment.cpu, Deployment.state, Deployment.state_message, Deployment.max_memory_usage,
    Deployment.max_cpu_usage, type_coerce(Deployment.created_at, CivisTime).label("created_at"), type_coerce(Deployment.updated_at, CivisTime).label("updated_at"),
)
"""The columns a deployment's wire summary shows (`studios.services.views.deployment_summary`),
its times as their wire text: a studio's newest deployment is read with these only, not with
its runtime handle, log cursor, params and five more times (a page of 20 studios with
deployments: 4.5 to 4.6 ms of CPU instead of 5.0 to 5.1, `bench/compare_revisions.py` with
`api_bench.py --scale`)."""
_DEPLOYMENTS_BY_ID = select(*SUMMARY_COLUMNS).where(Deployment.id.in_(bindparam("ids", expanding=True)))

ORDER_COLUMNS = {"updated_at": Studio.updated_at, "name": Studio.name, "created_at": Studio.created_at}


def get(session: Session, studio_id: int) -> Studio | None:
    return session.get(Studio, studio_id)


def get_for_update(session: Session, studio_id: int) -> Studio | None:
    return session.scalar(select(Studio).where(Studio.id == studio_id).with_for_update(key_share=True))


def view_row(conn: Connection, studio_id: int, user_id: int) -> Row | None:
    """The studio's view row for this user (level None: no share), or None if no studio.

    The view functions take a Core `Connection` (`session.connection()` inside a write, or the
    context's reader on GET): the ORM's session machinery costs more than these queries."""
    return conn.execute(_VIEW_ONE, {"sid": studio_id, "uid": user_id}).first()


def create(session: Session, author_id: int, values: dict[str, Any]) -> Studio:
    studio = Studio(author_id=author_id, **values)
    session.add(studio)
    session.flush()
    session.add(StudioShare(studio_id=studio.id, user_id=author_id, level="manage"))
    return studio


def apply(session: Session, studio: Studio, values: dict[str, Any]) -> None:
    for key, value in values.items():
        setattr(studio, key, value)
    studio.updated_at = utcnow()


def share_level(session: Session, studio_id: int, user_id: int) -> str | None:
    return session.scalar(select(StudioShare.level).where(StudioShare.studio_id == studio_id, StudioShare.user_id == user_id))


def shares_of(session: Session, studio_id: int) -> list[tuple[StudioShare, User]]:
    rows = session.execute(
        select(StudioShare, User).join(User, User.id == StudioShare.user_id).where(StudioShare.studio_id == studio_id).order_by(User.id)
    )
    return [(share, user) for share, user in rows]


def set_share(session: Session, studio_id: int, user_id: int, level: str) -> None:
    share = session.get(StudioShare, (studio_id, user_id))
    if share is None:
        session.add(StudioShare(studio_id=studio_id, user_id=user_id, level=level))
    else:
        share.level = level


def remove_share(session: Session, studio_id: int, user_id: int) -> bool:
    share = session.get(StudioShare, (studio_id, user_id))
    if share is None:
        return False
    session.delete(share)
    return True


@functools.lru_cache(maxsize=64)
def _ordered_ids(see_all: bool, archived: bool | None, by_author: bool, by_name: bool, order: str, descending: bool) -> Select:
    """One prebuilt statement per shape of list request (values are bound at execution): the
    ids of every studio that matches, in the list's order. Nothing beyond the filters is
    evaluated per matching row (the view columns and the newest deployment are read for a
    page's ids only)."""
    ids = select(Studio.id)
    if not see_all:  # the caller's share row decides what they see (admins see everything)
        ids = ids.join(StudioShare, CALLERS_SHARE)
    if archived is not None:
        ids = ids.where(Studio.archived.is_(archived))
    if by_author:
        ids = ids.where(Studio.author_id.in_(bindparam("authors", expanding=True)))
    if by_name:
        ids = ids.where(Studio.name.ilike(bindparam("name"), escape="\\"))
    column = ORDER_COLUMNS[order]
    return ids.order_by(column.desc() if descending else column.asc(), Studio.id.desc() if descending else Studio.id.asc())


_VIEW_MANY = (
    select(*STUDIO_COLUMNS, *AUTHOR_COLUMNS, StudioShare.level, LATEST_ID)
    .join(User, User.id == Studio.author_id)
    .outerjoin(StudioShare, CALLERS_SHARE)
    .where(Studio.id.in_(bindparam("ids", expanding=True)))
)


def list_visible(
    conn: Connection,
    pages: StudioPages,
    user_id: int,
    see_all: bool,
    archived: bool | None,
    authors: list[int] | None,
    order: str,
    descending: bool,
    limit: int,
    offset: int,
    name: str | None = None,
) -> tuple[list[Row], int]:
    """A page of view rows of the studios the user may see (whose name contains `name`,
    case-insensitively, when given), and the total count. The matching ids come from `pages`
    while no studio changes (see `studios.store.studio_pages`)."""
    query = _ordered_ids(see_all, archived, bool(authors), bool(name), order, descending)
    params: dict[str, Any] = {"uid": user_id, **({"authors": authors} if authors else {})}
    if name:
        params["name"] = "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    key = (None if see_all else user_id, archived, tuple(authors or ()), name, order, descending)
    matching = pages.ids(conn, key, lambda: (row[0] for row in conn.execute(query, params)))
    ids = matching[offset : offset + limit].tolist()
    total = len(matching)
    if not ids:
        return [], total
    by_id = {row.id: row for row in conn.execute(_VIEW_MANY, {"uid": user_id, "ids": ids})}
    return [by_id[i] for i in ids if i in by_id], total


def latest_deployments(conn: Connection, rows: Sequence[Row]) -> dict[int, Row]:
    """The newest deployment of each view row's studio that has one (by its `latest_id`)."""
    ids = [r.latest_id for r in rows if r.latest_id is not None]
    if not ids:
        return {}
    return {d.studio_id: d for d in conn.execute(_DEPLOYMENTS_BY_ID, {"ids": ids})}


def git_repo_id(session: Session, url: str) -> int:
    """The bookmark id of a repo URL, created on first use."""
    repo_id = session.scalar(select(GitRepo.id).where(GitRepo.repo_url == url))
    if repo_id is None:
        repo = GitRepo(repo_url=url)
        session.add(repo)
        session.flush()
        repo_id = repo.id
    return repo_id
