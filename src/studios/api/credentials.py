"""Routes of `/credentials`, after the platform's: secrets go in, never come out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from studios.api.deps import Call, CallDep, ReadCallDep, json, pagination_headers
from studios.errors import Invalid
from studios.schemas.credentials import CREDENTIAL_TYPES, Credential, CredentialCreateRequest, CredentialPatchRequest, CredentialType, CredentialUpdateRequest
from studios.services import credentials as cred_service

router = APIRouter()

CredentialId = Annotated[int, Path(description="The ID of the credential.", gt=0, le=2**31 - 1)]


def _out(call: Call, cred: Any) -> Credential:
    return cred_service.view(call.session, cred)


@router.get("/credentials/types", summary="Get list of Credential Types", response_model=CredentialType)
async def list_credentials_types(call: ReadCallDep) -> Response:
    await call.fast(lambda _conn, _caller: None)
    return json(CredentialType(types=list(CREDENTIAL_TYPES)))


@router.get("/credentials", summary="List credentials", response_model=list[Credential])
async def list_credentials(
    call: ReadCallDep,
    type: Annotated[str | None, Query(description="The type (or types) of credentials to return, comma-separated.", max_length=1000)] = None,
    name: Annotated[str | None, Query(description="Return credentials whose name contains this.", max_length=255)] = None,
    limit: Annotated[int, Query(description="Number of results to return. Defaults to its maximum of 1000.", ge=1, le=1000)] = 1000,
    page_num: Annotated[int, Query(description="Page number of the results to return. Defaults to the first page, 1.", ge=1, le=1_000_000)] = 1,
    order: Annotated[Literal["updated_at", "created_at", "name"], Query(description="The field on which to order the result set. Defaults to updated_at. Must be one of: updated_at, created_at, name.")] = "updated_at",
    order_dir: Annotated[Literal["asc", "desc"], Query(description="Direction in which to sort, either asc (ascending) or desc (descending) defaulting to desc.")] = "desc",
) -> Response:
    types = [t.strip() for t in type.split(",")] if type else None
    unknown = [t for t in types or [] if t not in CREDENTIAL_TYPES]
    if unknown:
        raise Invalid(f"type: {', '.join(map(repr, unknown))} is not a credential type ({', '.join(CREDENTIAL_TYPES)}).")
    def body_() -> tuple[list[Credential], int]:
        rows, total = cred_service.page(call.session, call.caller, types, name, order, order_dir == "desc", limit, page_num)
        return [_out(call, c) for c in rows], total

    out, total = await call.run(body_)
    return json(out, headers=pagination_headers(page_num, limit, total))


@router.post("/credentials", summary="Create a credential", status_code=201, response_model=Credential)
async def post_credentials(call: CallDep, body: CredentialCreateRequest) -> Response:
    return json(await call.run(lambda: _out(call, cred_service.create(call.session, call.ctx.box, call.caller, body))), 201)


@router.get("/credentials/{id}", summary="Get a credential", response_model=Credential)
async def get_credentials(call: ReadCallDep, id: CredentialId) -> Response:
    return json(await call.run(lambda: _out(call, cred_service.get(call.session, call.caller, id))))


@router.put("/credentials/{id}", summary="Update an existing credential", response_model=Credential)
async def put_credentials(call: CallDep, id: CredentialId, body: CredentialUpdateRequest) -> Response:
    return json(await call.run(lambda: _out(call, cred_service.update(call.session, call.ctx.box, call.caller, id, body, replace=True))))


@router.patch("/credentials/{id}", summary="Update some attributes of a credential", response_model=Credential)
async def patch_credentials(call: CallDep, id: CredentialId, body: CredentialPatchRequest | None = None) -> Response:
    return json(await call.run(lambda: _out(call, cred_service.update(call.session, call.ctx.box, call.caller, id, body or CredentialPatchRequest(), replace=False))))


@router.delete("/credentials/{id}", summary="Delete a credential", status_code=204)
async def delete_credentials(call: CallDep, id: CredentialId) -> Response:
    await call.run(lambda: cred_service.delete(call.session, call.caller, id))
    return Response(status_code=204)
