"""Database operations on credentials. Return objects or None; never commit; the secret stays
sealed here (`studios.services.secrets` opens it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from studios.db.models import Credential

ORDER = {"updated_at": Credential.updated_at, "created_at": Credential.created_at, "name": Credential.name}


def get(session: Session, credential_id: int) -> Credential | None:
    return session.get(Credential, credential_id)


def add(session: Session, values: dict[str, Any]) -> Credential:
    cred = Credential(**values)
    session.add(cred)
    session.flush()
    return cred


def delete(session: Session, cred: Credential) -> None:
    session.delete(cred)


def first_of_types(session: Session, owner_id: int, types: tuple[str, ...]) -> Credential | None:
    """The owner's oldest credential of one of these types."""
    return session.scalar(select(Credential).where(Credential.owner_id == owner_id, Credential.type.in_(types)).order_by(Credential.id).limit(1))


def page(session: Session, owner_id: int, types: list[str] | None, name: str | None, order: str, descending: bool, limit: int, offset: int) -> tuple[list[Credential], int]:
    query = select(Credential).where(Credential.owner_id == owner_id)
    if types:
        query = query.where(Credential.type.in_(types))
    if name:
        query = query.where(Credential.name.contains(name, autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = ORDER[order]
    query = query.order_by(column.desc() if descending else column.asc(), Credential.id)
    return list(session.scalars(query.limit(limit).offset(offset))), total


def every(session: Session) -> list[Credential]:
    """Every stored credential (for re-encryption under a new secret key)."""
    return list(session.scalars(select(Credential).order_by(Credential.id)))
