"""Routes of studio shares (`/studios/{id}/shares...`), after the platform's share endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from studios.api.deps import CallDep, ReadCallDep, json
from studios.schemas.shares import ShareIndex, ShareUsersUpdateRequest
from studios.services import studios as studio_service
from studios.services import views
from studios.services.permissions import require

router = APIRouter()

ObjectId = Annotated[int, Path(description="The ID of the resource that is shared.", gt=0, le=2**31 - 1)]


@router.get("/studios/{id}/shares", summary="List users and groups permissioned on this object", response_model=list[ShareIndex])
async def list_studio_shares(call: ReadCallDep, id: ObjectId) -> Response:
    def body_() -> views.WireDict:
        require(call.session, call.caller, id, "read")
        return studio_service.share_index(call.session, id)

    return json([await call.run(body_)])


@router.put("/studios/{id}/shares/users", summary="Set the permissions users have on this object", response_model=ShareIndex)
async def put_studio_shares_users(call: CallDep, id: ObjectId, body: ShareUsersUpdateRequest) -> Response:
    def body_() -> views.WireDict:
        studio_service.share(call.session, call.caller, id, body.user_ids, body.permission_level)
        return studio_service.share_index(call.session, id)

    return json(await call.run(body_))


@router.delete("/studios/{id}/shares/users/{user_id}", summary="Revoke the permissions a user has on this object", status_code=204)
async def delete_studio_shares_users(call: CallDep, id: ObjectId, user_id: Annotated[int, Path(description="The ID of the user.", gt=0, le=2**31 - 1)]) -> Response:
    await call.run(lambda: studio_service.unshare(call.session, call.caller, id, user_id))
    return Response(status_code=204)
