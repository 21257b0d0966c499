"""Read-only `GET /files/{id}`, `/notebooks/{id}` and `/jobs/{id}`.

The civis CLI attaches its own extra commands to the `files`, `notebooks` and `jobs` groups
and crashes at start-up when the server's spec lacks them. Studios stores none of these
objects, so each route authenticates and answers a Civis 404 that says so
(docs/compatibility.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from studios.api.deps import ReadCallDep
from studios.errors import NotFound

router = APIRouter()

ObjectId = Annotated[int, Path(description="The ID of the object.", gt=0, le=2**31 - 1)]


def _absent(kind: str, object_id: int) -> NotFound:
    return NotFound(f"{kind} {object_id} was not found: this Studios server stores studios only, no {kind.lower()}s.")


@router.get("/files/{id}", summary="Get a file (Studios stores none)", status_code=200)
async def get_file(call: ReadCallDep, id: ObjectId) -> None:
    await call.fast(lambda _conn, _caller: None)
    raise _absent("File", id)


@router.get("/notebooks/{id}", summary="Get a notebook (Studios stores none)", status_code=200)
async def get_notebook(call: ReadCallDep, id: ObjectId) -> None:
    await call.fast(lambda _conn, _caller: None)
    raise _absent("Notebook", id)


@router.get("/jobs/{id}", summary="Get a job (Studios stores none)", status_code=200)
async def get_job(call: ReadCallDep, id: ObjectId) -> None:
    await call.fast(lambda _conn, _caller: None)
    raise _absent("Job", id)
