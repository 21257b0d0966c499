"""Database operations on studios, their shares and git repo bookmarks.
Return objects or None; never commit; know nothing of permissions' meaning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from studios.db.models import Deployment, GitRepo, Studio, StudioShare, User, utcnow

ORDER_COLUMNS = {"updated_at": Studio.updated_at, "name": Studio.name, "created_at": Studio.created_at}


def get(session: Session, studio_id: int) -> Studio | None:
    return session.get(Studio, studio_id)


def get_for_update(session: Session, studio_id: int) -> Studio | None:
    return session.scalar(select(Studio).where(Studio.id == studio_id).with_for_update())


def create(session: Session, author_id: int, values: dict[str, Any]) -> Studio:
    studio = Studio(author_id=author_id, **values)
    session.add(studio)
    session.flush()
    session.add(StudioShare(studio_id=studio.id, user_id=author_id, level="manage"))
    return studio


def apply(studio: Studio, values: dict[str, Any]) -> None:
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


def levels_for(session: Session, user_id: int, studio_ids: Sequence[int]) -> dict[int, str]:
    if not studio_ids:
        return {}
    rows = session.execute(select(StudioShare.studio_id, StudioShare.level).where(StudioShare.user_id == user_id, StudioShare.studio_id.in_(studio_ids)))
    return {studio_id: level for studio_id, level in rows}


def list_visible(
    session: Session,
    user_id: int,
    see_all: bool,
    archived: bool | None,
    authors: list[int] | None,
    order: str,
    descending: bool,
    limit: int,
    offset: int,
) -> tuple[list[Studio], int]:
    """A page of studios the user may see, and the total count."""
    query = select(Studio)
    if not see_all:
        query = query.join(StudioShare, and_(StudioShare.studio_id == Studio.id, StudioShare.user_id == user_id))
    if archived is not None:
        query = query.where(Studio.archived.is_(archived))
    if authors:
        query = query.where(Studio.author_id.in_(authors))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = ORDER_COLUMNS[order]
    query = query.order_by(column.desc() if descending else column.asc(), Studio.id.desc() if descending else Studio.id.asc())
    return list(session.scalars(query.limit(limit).offset(offset))), total


def latest_deployments(session: Session, studio_ids: Sequence[int]) -> dict[int, Deployment]:
    """The newest deployment of each studio that has one."""
    if not studio_ids:
        return {}
    newest = select(func.max(Deployment.id)).where(Deployment.studio_id.in_(studio_ids)).group_by(Deployment.studio_id)
    return {d.studio_id: d for d in session.scalars(select(Deployment).where(Deployment.id.in_(newest)))}


def git_repo_id(session: Session, url: str) -> int:
    """The bookmark id of a repo URL, created on first use."""
    repo_id = session.scalar(select(GitRepo.id).where(GitRepo.repo_url == url))
    if repo_id is None:
        repo = GitRepo(repo_url=url)
        session.add(repo)
        session.flush()
        repo_id = repo.id
    return repo_id
