"""What user requests mean: who the caller is (`GET /users/me`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from studios.errors import NotFound
from studios.services import views
from studios.services.keys import Caller
from studios.store import users as user_store


def me(session: Session, caller: Caller) -> views.WireDict:
    user = user_store.get(session, caller.id)
    if user is None:
        raise NotFound(f"User {caller.id} was not found.")
    return views.user_me(user)
