"""What user requests mean: who the caller is (`GET /users/me`)."""

from __future__ import annotations

from sqlalchemy import Connection

from studios.errors import NotFound
from studios.services import views
from studios.services.keys import Caller
from studios.store import users as user_store


def me(conn: Connection, caller: Caller) -> views.WireDict:
    user = user_store.me_row(conn, caller.id)
    if user is None:
        raise NotFound(f"User {caller.id} was not found.")
    return views.user_me(user)
