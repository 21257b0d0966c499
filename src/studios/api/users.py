"""`GET /users/me`: who the API key belongs to."""

from __future__ import annotations

from fastapi import APIRouter, Response

from studios.api.deps import ReadCallDep, json
from studios.schemas.users import UserMe
from studios.services import users as user_service

router = APIRouter()


@router.get("/users/me", summary="Show info about the logged-in user", response_model=UserMe)
async def get_users_me(call: ReadCallDep) -> Response:
    # Not kept: its email is not in the views generation. On the readers' own connections.
    return json(await call.fast(user_service.me))
