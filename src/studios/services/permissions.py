"""Who may do what to a studio: read < write < manage, admins manage everything, and no
access at all looks exactly like a missing studio (404), so existence is never revealed.
Also who may be shared with: any user, except that a regular caller cannot see the
administrators (who manage every studio already), and an unknown id is answered exactly as an
administrator's (`shareable`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from studios.db.models import Studio, User
from studios.errors import Forbidden, NotFound
from studios.services.keys import Caller
from studios.store import studios as studio_store

RANK = {"read": 1, "write": 2, "manage": 3}
VERBS = {"read": "read", "write": "change or deploy", "manage": "share or unshare"}


def level_of(session: Session, caller: Caller, studio_id: int) -> str | None:
    if caller.is_admin:
        return "manage"
    return studio_store.share_level(session, studio_id, caller.id)


def require(session: Session, caller: Caller, studio_id: int, needed: str, *, for_update: bool = False) -> tuple[Studio, str]:
    """The studio and the caller's level, or NotFound (no access) / Forbidden (too low)."""
    studio = studio_store.get_for_update(session, studio_id) if for_update else studio_store.get(session, studio_id)
    level = level_of(session, caller, studio_id) if studio is not None else None
    if studio is None or level is None:
        raise NotFound(f"Studio {studio_id} was not found.")
    if RANK[level] < RANK[needed]:
        raise Forbidden(f"You have {level} permission on studio {studio_id}; to {VERBS[needed]} it you need {needed}.")
    return studio, level


def shareable(caller: Caller, user: User | None) -> bool:
    """Whether `caller` may name `user` (None: no such id) in a share. A regular caller cannot
    see administrators: sharing with one would change nothing (they manage every studio) and
    would tell who they are. Unknown ids and administrators' ids get the same answer."""
    return user is not None and (caller.is_admin or not user.is_admin)
