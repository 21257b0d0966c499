"""Database operations on users and API keys. Return objects or None; never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, bindparam, select, update
from sqlalchemy.orm import Session

from studios.db.models import ApiKey, User, utcnow


def get(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


_ME = select(User.id, User.name, User.email, User.username, User.is_admin, User.created_at).where(User.id == bindparam("uid"))


def me_row(conn: Connection, user_id: int) -> Row | None:
    """What `GET /users/me` shows of a user, in one Core statement (clients ask it often)."""
    return conn.execute(_ME, {"uid": user_id}).first()


def by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def by_ids(session: Session, ids: set[int]) -> dict[int, User]:
    if not ids:
        return {}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}


def create(session: Session, username: str, name: str, email: str | None, is_admin: bool) -> User:
    user = User(username=username, name=name, email=email, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user


def list_all(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def caller_by_key_hashes(session: Session, key_hashes: list[str]) -> tuple[User, ApiKey] | None:
    """The user and unrevoked key stored under any of `key_hashes` (one key's hash under each
    configured secret), or None."""
    match = ApiKey.key_hash == key_hashes[0] if len(key_hashes) == 1 else ApiKey.key_hash.in_(key_hashes)
    row = session.execute(select(User, ApiKey).join(ApiKey, ApiKey.user_id == User.id).where(match, ApiKey.revoked_at.is_(None))).first()
    return (row[0], row[1]) if row else None


def set_key_hash(session: Session, key_id: int, key_hash: str) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(key_hash=key_hash))


def add_key(session: Session, user_id: int, name: str, key_hash: str, prefix: str, deployment_id: int | None = None) -> ApiKey:
    """Added to the session, inserted at its next flush (with the transaction's other writes:
    a deployment's launch claims it, mints its key and moves it on in one UPDATE of its row)."""
    key = ApiKey(user_id=user_id, name=name, key_hash=key_hash, prefix=prefix, deployment_id=deployment_id)
    session.add(key)
    return key


def keys_of(session: Session, user_id: int | None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list(session.scalars(query))


def revoke_key(session: Session, key_id: int) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def revoke_deployment_keys(session: Session, deployment_id: int) -> list[str]:
    """Revoke the keys minted for a deployment; returns their hashes (to drop from caches)."""
    hashes = list(session.scalars(select(ApiKey.key_hash).where(ApiKey.deployment_id == deployment_id, ApiKey.revoked_at.is_(None))))
    session.execute(update(ApiKey).where(ApiKey.deployment_id == deployment_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow()))
    return hashes


def mark_seen(session: Session, user_id: int, when: datetime) -> None:
    session.execute(update(User).where(User.id == user_id).values(last_seen_at=when))
