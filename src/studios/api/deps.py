"""Request dependencies: the service context and the caller, and small helpers every router
uses to answer.

A route's work that touches the database runs in the database thread pool, never on the event
loop: `await call.run(body)` opens a session there (a write transaction for routes that change
things: BEGIN IMMEDIATE on SQLite), authenticates the caller, runs `body()` with `call.session`
and `call.caller` set, and commits before the response is built. `await call.fast(body)` is
the hot GETs' variant: `body(connection)` on the pool thread's autocommit connection, with the
caller known from the cache of verified keys when it can be (no session at all); and
`await call.kept(key, body)` keeps what `body` read, per caller, while nothing a view shows
changes, so a repeated GET needs no database thread at all (`studios.services.read_cache`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from studios.api import session_cookie
from studios.api.session_cookie import authenticate_request
from studios.context import Context
from studios.services.answers import encode
from studios.services.keys import Caller, cached_caller, flush_seen
from studios.services.read_cache import generation_in

T = TypeVar("T")


class Call:
    """One request: who calls, and its database work (in the pool)."""

    __slots__ = ("_caller", "_session", "ctx", "header", "request", "writes")

    def __init__(self, ctx: Context, request: Request, writes: bool) -> None:
        self.ctx = ctx
        self.request = request
        self.header = request.headers.get("authorization")
        self.writes = writes
        self._session: Session | None = None
        self._caller: Caller | None = None

    @property
    def session(self) -> Session:
        assert self._session is not None, "only inside call.run()"
        return self._session

    @property
    def caller(self) -> Caller:
        assert self._caller is not None, "only inside call.run() or after it"
        return self._caller

    def _in_session(self, body: Callable[[], T]) -> T:
        db = self.ctx.db
        with db.writing() if self.writes else db.reading() as session:
            self._session = session
            try:
                self._caller = authenticate_request(session, self.ctx, self.request)
                if self.writes and self.ctx.hasher.seen:
                    flush_seen(session, self.ctx.hasher)  # a write transaction is open anyway
                return body()
            finally:
                self._session = None

    async def run(self, body: Callable[[], T]) -> T:
        """`body()` in the database pool, inside this request's transaction (run again if
        PostgreSQL picked it as a deadlock's victim: it was rolled back)."""
        db = self.ctx.db
        return await db.run(lambda: db.retrying(lambda: self._in_session(body)))

    async def _key_caller(self) -> Caller | None:
        """The caller of the request's `Authorization` key: from the cache of verified keys, or
        verified in the database, once for every request with that header under way (when a
        busy key's verification expires, the requests in flight share one check). Without the
        header, a read's web session whose key is in that cache; None otherwise (the body's hop
        then authenticates the request, `authenticate_request`, and says why it may not)."""
        if self.header is None:
            web = session_cookie.read(self.ctx, self.request) if self.request.method in session_cookie.SAFE_METHODS else None
            return self.ctx.hasher.cached(web.key_hash) if web is not None else None
        known = cached_caller(self.ctx.hasher, self.header)
        if known is not None:
            return known

        def check() -> Caller:
            with self.ctx.db.reading() as session:
                return authenticate_request(session, self.ctx, self.request)

        return await self.ctx.key_checks.once(self.header, lambda: self.ctx.db.run(check))

    async def fast(self, body: Callable[[Connection, Caller], T], known: Caller | None = None) -> T:
        """`body(connection, caller)` in the readers' threads on their autocommit connection
        (reads only); `known`: the caller, already named by `_key_caller`."""
        if known is None:
            known = await self._key_caller()
        if known is not None:
            self._caller = known
            return await self.ctx.db.fast_read(lambda conn: body(conn, known))
        return await self._authenticated(body)

    async def read(self, body: Callable[[Connection, Caller], T]) -> T:
        """`body(connection, caller)` as `fast` runs it, but in the database pool: for a longer
        read (a page of log lines), which the API's hot GETs must not queue behind in the
        readers' threads (`studios.db.readers`)."""
        known = await self._key_caller()
        if known is None:
            return await self._authenticated(body)
        self._caller = known
        db = self.ctx.db
        return await db.run(lambda: body(db.connection(), known))

    async def _authenticated(self, body: Callable[[Connection, Caller], T]) -> T:
        """`body` for a caller not known on the loop: named in the database first."""

        def call() -> T:
            with self.ctx.db.reading() as session:
                self._caller = authenticate_request(session, self.ctx, self.request)
            return body(self.ctx.db.connection(), self._caller)

        return await self.ctx.db.run(call)

    async def kept(self, key: Hashable, body: Callable[[Connection, Caller], T], rows: Callable[[T], int] = lambda _: 1) -> T:
        """What `body(connection, caller)` read, as `fast` runs it, or what it read for this
        caller and `key` before, while the views generation is the same (checked here on the
        event loop). Only for reads of what a studio's view shows (`rows`: how many rows the
        value holds, for the cache's budget). The value is shared: never change it."""
        reads = self.ctx.reads
        if not reads.enabled:
            return await self.fast(body)

        def read_at(conn: Connection, caller: Caller) -> tuple[int | None, T]:
            generation = generation_in(conn)  # first: what follows is at least as new
            return generation, body(conn, caller)

        async def read() -> T:
            generation, value = await self.fast(read_at, known)  # `known`: named below, before any read
            if generation is not None:
                reads.put((key, self.caller.id, self.caller.is_admin), generation, value, rows(value))
            return value

        known = await self._key_caller()
        generation = reads.current() if known is not None else None
        if known is None or generation is None:
            return await read()
        self._caller = known
        hit = reads.get((key, known.id, known.is_admin), generation)
        if hit is not None:
            return cast("T", hit)
        return await reads.once((key, known.id, known.is_admin), generation, read)


async def _write_call(request: Request) -> Call:
    return Call(request.app.state.ctx, request, writes=True)


async def _read_call(request: Request) -> Call:
    return Call(request.app.state.ctx, request, writes=False)


CallDep = Annotated[Call, Depends(_write_call)]
"""For routes that change things: `call.run` runs in a write transaction."""
ReadCallDep = Annotated[Call, Depends(_read_call)]
"""For GET routes."""


def json(model: BaseModel | Sequence[BaseModel] | dict[str, Any] | Sequence[dict[str, Any]], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise a wire model, or a wire dict from `studios.services.views`, straight to a
    response (skips FastAPI's re-validation). A list holds models or dicts, not both."""
    if isinstance(model, BaseModel):
        body = model.model_dump_json(by_alias=True).encode()
    elif isinstance(model, dict) or not model or isinstance(model[0], dict):
        body = encode(model)
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
