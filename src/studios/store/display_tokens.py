"""DisplayUrl tokens already exchanged (`SpentDisplayToken`): the record that makes a link
open a studio once on every server of one database, not once per proxy process."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from studios.db.models import SpentDisplayToken

_INSERT = {  # a row comes back only if this insert stored one (rowcount is -1 with psycopg here)
    "sqlite": sqlite.insert(SpentDisplayToken).on_conflict_do_nothing().returning(SpentDisplayToken.key),
    "postgresql": postgresql.insert(SpentDisplayToken).on_conflict_do_nothing().returning(SpentDisplayToken.key),
}


def spend(session: Session, key: str, expires_at: float, now: float) -> bool:
    """Record the token `key` as exchanged until `expires_at`; False if it already was (by
    this server or another: the insert of a key another transaction holds waits for it, then
    does nothing). Records of tokens that have expired are dropped on the way."""
    session.execute(delete(SpentDisplayToken).where(SpentDisplayToken.expires_at < now))
    stored = session.execute(_INSERT[session.get_bind().dialect.name], {"key": key, "expires_at": expires_at})
    return stored.first() is not None
