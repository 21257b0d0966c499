"""Database operations on deployments and their log lines. Return objects or None; never
commit; know nothing of runtimes or of what a state means."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from studios.db.models import Deployment, DeploymentLog
from studios.lifecycle import ACTIVE


def get(session: Session, deployment_id: int) -> Deployment | None:
    return session.get(Deployment, deployment_id)


def get_for_update(session: Session, deployment_id: int) -> Deployment | None:
    return session.scalar(select(Deployment).where(Deployment.id == deployment_id).with_for_update())


def create(session: Session, values: dict[str, Any]) -> Deployment:
    dep = Deployment(**values)
    session.add(dep)
    session.flush()
    return dep


def page(session: Session, studio_id: int, deployment_id: int | None, descending: bool, limit: int, offset: int) -> tuple[list[Deployment], int]:
    query = select(Deployment).where(Deployment.studio_id == studio_id)
    if deployment_id is not None:
        query = query.where(Deployment.id == deployment_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = Deployment.id.desc() if descending else Deployment.id.asc()
    return list(session.scalars(query.order_by(order).limit(limit).offset(offset))), total


def active_of_studio(session: Session, studio_id: int) -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.studio_id == studio_id, Deployment.state.in_(ACTIVE)).order_by(Deployment.id)))


def in_states(session: Session, states: Sequence[str]) -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.state.in_(states)).order_by(Deployment.id)))


def set_fields(session: Session, deployment_id: int, **values: Any) -> None:
    session.execute(update(Deployment).where(Deployment.id == deployment_id).values(**values))


def add_logs(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(DeploymentLog), rows)


def logs(session: Session, deployment_id: int, start_at: datetime | None, end_at: datetime | None, limit: int) -> list[tuple[datetime, str, str, str]]:
    """Lines in time order (ties in arrival order). With `start_at`: the first `limit` lines at or
    after it; without: the newest `limit` lines (the tail). `end_at` bounds both."""
    cols = (DeploymentLog.created_at, DeploymentLog.stream, DeploymentLog.source, DeploymentLog.message)
    query = select(*cols).where(DeploymentLog.deployment_id == deployment_id)
    if start_at is not None:
        query = query.where(DeploymentLog.created_at >= start_at)
    if end_at is not None:
        query = query.where(DeploymentLog.created_at <= end_at)
    if start_at is not None:
        return list(session.execute(query.order_by(DeploymentLog.created_at, DeploymentLog.id).limit(limit)).all())
    tail = list(session.execute(query.order_by(DeploymentLog.created_at.desc(), DeploymentLog.id.desc()).limit(limit)).all())
    tail.reverse()
    return tail
