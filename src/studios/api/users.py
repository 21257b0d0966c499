"""`GET /users/me`: who the API key belongs to."""

from __future__ import annotations

from fastapi import APIRouter, Response

from studios.api.deps import ReadCallDep, json
from studios.schemas.users import UserMe
from studios.services.keys import initials
from studios.store import users as user_store

router = APIRouter()


@router.get("/users/me", summary="Show info about the logged-in user", response_model=UserMe)
async def get_users_me(call: ReadCallDep) -> Response:
    user = await call.run(lambda: user_store.get(call.session, call.caller.id))
    assert user is not None
    roles = ["admin"] if user.is_admin else []
    return json(UserMe(id=user.id, name=user.name, email=user.email, username=user.username, initials=initials(user.name), roles=roles, created_at=user.created_at, persona_role="admin" if user.is_admin else "user"))
