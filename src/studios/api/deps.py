"""Request dependencies: the service context, the database session and the authenticated
caller, plus small helpers every router uses to answer."""

from __future__ import annotations

import dataclasses
import json as stdlib_json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, cast

from fastapi import Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from studios.api.session_cookie import authenticate_request
from studios.context import Context
from studios.services.keys import Caller


@dataclasses.dataclass
class Call:
    ctx: Context
    session: Session
    caller: Caller


async def _call(request: Request) -> AsyncIterator[Call]:
    """Runs on the event loop (no thread hop). Database calls are short and synchronous, and
    no transaction is held across an `await`: the authentication's read transaction ends
    before the handler starts, and writes take SQLite's write lock up front (BEGIN
    IMMEDIATE), since a read-then-write transaction could otherwise fail at once when another
    writer committed in between. Handlers commit before they await anything."""
    ctx: Context = request.app.state.ctx
    sessions = ctx.db if request.method in ("GET", "HEAD") else ctx.locking_db
    with sessions() as session:
        caller = authenticate_request(session, ctx, request)
        session.commit()
        yield Call(ctx, session, caller)


SESSIONS_KEY = "studios.sessions"


async def _read_call(request: Request) -> Call:
    """GET and HEAD: a plain (cheap) dependency. Its session only reads, and is closed by
    `CloseSessions` once the response is out; a read transaction held that long blocks no
    writer (SQLite WAL, PostgreSQL MVCC)."""
    ctx: Context = request.app.state.ctx
    session = ctx.db()
    request.scope.setdefault(SESSIONS_KEY, []).append(session)
    caller = authenticate_request(session, ctx, request)
    return Call(ctx, session, caller)


class CloseSessions:
    """ASGI middleware: closes the sessions `_read_call` opened for a request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            for session in scope.get(SESSIONS_KEY, ()):
                session.close()


CallDep = Annotated[Call, Depends(_call, scope="function")]
"""For routes that write (commit before they await anything)."""
ReadCallDep = Annotated[Call, Depends(_read_call)]
"""For GET routes."""


def json(model: BaseModel | Sequence[BaseModel] | dict[str, Any] | Sequence[dict[str, Any]], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise a wire model, or a wire dict from `studios.services.views`, straight to a
    response (skips FastAPI's re-validation). A list holds models or dicts, not both."""
    if isinstance(model, BaseModel):
        body = model.model_dump_json(by_alias=True).encode()
    elif isinstance(model, dict) or not model or isinstance(model[0], dict):
        body = stdlib_json.dumps(model, ensure_ascii=False, separators=(",", ":")).encode()
    else:  # its first item is a model, so all are
        body = b"[" + b",".join(m.model_dump_json(by_alias=True).encode() for m in cast("Sequence[BaseModel]", model)) + b"]"
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def pagination_headers(page_num: int, limit: int, total: int) -> dict[str, str]:
    pages = (total + limit - 1) // limit
    return {
        "X-Pagination-Per-Page": str(limit),
        "X-Pagination-Current-Page": str(page_num),
        "X-Pagination-Total-Pages": str(pages),
        "X-Pagination-Total-Entries": str(total),
    }
