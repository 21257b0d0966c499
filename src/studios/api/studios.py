"""Routes of `/studios`: create, get, replace, update, archive and list (Civis conventions)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from sqlalchemy import Connection

from studios.api.deps import Call, CallDep, ReadCallDep, json, pagination_headers
from studios.errors import Invalid
from studios.schemas.studios import ArchiveUpdateRequest30, Studio, StudioCreateRequest, StudioUpdateRequest
from studios.services import studios as studio_service
from studios.services import views
from studios.services.answers import Answer
from studios.services.keys import Caller

router = APIRouter()

StudioId = Annotated[int, Path(description="The ID of the studio.", gt=0, le=2**31 - 1)]
OrderDir = Annotated[Literal["asc", "desc"], Query(description="Direction in which to sort, either asc (ascending) or desc (descending) defaulting to desc.")]


@router.post("/studios", summary="Create a Studio", status_code=201, response_model=Studio)
async def post_studio(call: CallDep, body: Annotated[StudioCreateRequest | None, Body(title="StudioCreateRequest")] = None) -> Response:
    def body_() -> views.WireDict:
        studio = studio_service.create(call.session, call.ctx.partitions, call.caller, body or StudioCreateRequest(), allow_local_git=call.ctx.settings.allow_local_git_repos)
        return views.studio_for(call.session.connection(), call.caller, studio.id, call.ctx.links)

    return json(await call.run(body_), 201)


@router.get("/studios/{id}", summary="Get a Studio", response_model=Studio)
async def get_studio(call: ReadCallDep, id: StudioId) -> Response:
    answer = await call.kept(("studio", id), lambda conn, caller: views.studio_answer(conn, caller, id, call.ctx.links))
    return Response(answer.render(call.caller, call.ctx.links), media_type="application/json")


@router.put("/studios/{id}", summary="Replace all attributes of this Studio", response_model=Studio)
async def put_studio(call: CallDep, id: StudioId, body: Annotated[StudioUpdateRequest | None, Body(title="StudioUpdateRequest")] = None) -> Response:
    return json(await call.run(lambda: _updated(call, id, body or StudioUpdateRequest(), replace=True)))


@router.patch("/studios/{id}", summary="Update some attributes of this Studio", response_model=Studio)
async def patch_studio(call: CallDep, id: StudioId, body: Annotated[StudioUpdateRequest | None, Body(title="StudioUpdateRequest")] = None) -> Response:
    return json(await call.run(lambda: _updated(call, id, body or StudioUpdateRequest(), replace=False)))


@router.put("/studios/{id}/archive", summary="Update the archive status of this object", response_model=Studio)
async def put_studio_archive(call: CallDep, id: Annotated[int, Path(description="The ID of the object.", gt=0, le=2**31 - 1)], body: ArchiveUpdateRequest30) -> Response:
    def body_() -> views.WireDict:
        studio, _ = studio_service.archive(call.session, call.caller, id, body.status)
        return views.studio_for(call.session.connection(), call.caller, studio.id, call.ctx.links)

    return json(await call.run(body_))


def _updated(call: Call, studio_id: int, body: StudioUpdateRequest, *, replace: bool) -> views.WireDict:
    studio, _ = studio_service.update(call.session, call.ctx.partitions, call.caller, studio_id, body, replace=replace, allow_local_git=call.ctx.settings.allow_local_git_repos)
    return views.studio_for(call.session.connection(), call.caller, studio.id, call.ctx.links)


@router.get("/studios", summary="List Studios", response_model=list[Studio])
async def list_studios(
    call: ReadCallDep,
    archived: Annotated[str, Query(description="The archival status of the items to return. One of: true, false, all. A blank value is read as 'false', which is also the default.", max_length=16)] = "false",
    author: Annotated[str | None, Query(description="If specified, return items from any of these authors. It accepts a comma-separated list of user IDs.", max_length=2000)] = None,
    limit: Annotated[int, Query(description="Number of results to return. Defaults to 20. Maximum allowed is 50.", ge=1, le=50)] = 20,
    page_num: Annotated[int, Query(description="Page number of the results to return. Defaults to the first page, 1.", ge=1, le=1_000_000)] = 1,
    order: Annotated[Literal["updated_at", "name", "created_at"], Query(description="The field on which to order the result set. Defaults to updated_at. Must be one of: updated_at, name, created_at.")] = "updated_at",
    order_dir: OrderDir = "desc",
    name: Annotated[str | None, Query(description="Only studios whose name contains this (case-insensitive). A Studios extension, left out of GET /endpoints.", max_length=255, include_in_schema=False)] = None,
) -> Response:
    flag = archived.strip().lower() or "false"
    if flag not in ("true", "false", "all"):
        raise Invalid(f"archived: {archived!r} is not one of true, false, all.")
    authors = None
    if author and author.strip():
        if not re.fullmatch(r"\s*\d{1,10}\s*(,\s*\d{1,10}\s*)*", author):
            raise Invalid(f"author: {author!r} is not a comma-separated list of user IDs.")
        authors = [int(a) for a in author.split(",")]
        if max(authors) > 2**31 - 1:
            raise Invalid(f"author: {max(authors)} is not a user ID (too large).")
    if name is not None and "\x00" in name:
        raise Invalid("name: must not contain a NUL character")
    search = name.strip() if name else None

    def body_(conn: Connection, caller: Caller) -> tuple[Answer, int, int]:
        page = studio_service.page(conn, call.ctx.studio_pages, caller, flag, authors, order, order_dir, limit, page_num, search)
        return views.studios_answer(page.studios, page.latest, caller, call.ctx.links), page.total, len(page.studios)

    key = ("studios", flag, tuple(authors or ()), order, order_dir, limit, page_num, search)
    answer, total, _ = await call.kept(key, body_, rows=lambda kept: kept[2] or 1)
    return Response(answer.render(call.caller, call.ctx.links), media_type="application/json", headers=pagination_headers(page_num, limit, total))
