"""The web UI's server side, kept small: the page (`/`, `/ui/...`: one static HTML file whose
scripts draw every view from the JSON API), its assets (`/ui/static/...`, shipped inside the
package), and what the pages need beyond the Civis API: signing in and out
(`/ui/session`: an API key for a session cookie, see `studios.api.session_cookie`), the
partitions and their instance types (`GET /ui/partitions`), and waking a sleeping deployment
(`POST /ui/studios/{id}/deployments/{deployment_id}/wake`, what opening its displayUrl does).
None of these routes is in `GET /endpoints`. Owns no state and reads no table itself."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from studios.api import session_cookie
from studios.api.deps import CallDep, ReadCallDep, json
from studios.context import Context
from studios.errors import Conflict, Forbidden, Invalid, Unauthorized
from studios.services import deployments as dep_service
from studios.services import views
from studios.services.keys import Caller, authenticate_hash, flush_seen, initials

STATIC = Path(__file__).with_name("static")
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
Int32 = dict(gt=0, le=2**31 - 1)

router = APIRouter(include_in_schema=False)


class _Assets(StaticFiles):
    """Package files with revalidation on every load (a new release shows at once)."""

    def file_response(self, full_path: str | Path, stat_result, scope: Scope, status_code: int = 200) -> Response:  # type: ignore[override]
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update({"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
        return response


def install(app: FastAPI) -> None:
    """Serve the UI from `app` (called once by `studios.app.create_app`)."""
    app.mount("/ui/static", _Assets(directory=STATIC), name="ui-static")
    app.include_router(router)


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _me(caller: Caller, csrf: str) -> dict[str, object]:
    user = {"id": caller.id, "username": caller.username, "name": caller.name, "initials": initials(caller.name), "isAdmin": caller.is_admin}
    return {"user": user, "csrfToken": csrf}


# ----------------------------------------------------------------------------- session


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    apiKey: str = Field(min_length=1, max_length=512, description="An API key of the user signing in.")


@router.post("/ui/session")
async def sign_in(request: Request, body: SignIn) -> Response:
    """An API key in, a session cookie out (and the CSRF token the page sends on changes).
    JSON only, so a cross-site form cannot sign a visitor in to someone else's account."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Invalid("The sign-in body must be JSON: {\"apiKey\": \"...\"}.")
    ctx = _ctx(request)
    hashes = ctx.hasher.candidates(body.apiKey.strip())
    try:
        caller = await ctx.db.read(lambda session: authenticate_hash(session, ctx.hasher, hashes))
    except Unauthorized:
        raise Unauthorized("apiKey: this API key is not valid (unknown or revoked).") from None
    if ctx.hasher.rehash:  # the session holds the newest hash: store the key under it now
        await ctx.db.write(lambda session: flush_seen(session, ctx.hasher))
    web = session_cookie.new(hashes[0])
    response = json(_me(caller, web.csrf), headers={"Cache-Control": "no-store"})
    session_cookie.start(ctx, response, web)
    return response


@router.get("/ui/session")
async def who_am_i(request: Request) -> Response:
    """The signed-in user and the session's CSRF token; 401 without a valid session."""
    ctx = _ctx(request)
    web = session_cookie.read(ctx, request)
    if web is None:
        raise Unauthorized("Not signed in.")
    caller = await ctx.db.read(lambda session: authenticate_hash(session, ctx.hasher, [web.key_hash]))
    return json(_me(caller, web.csrf), headers={"Cache-Control": "no-store"})


@router.delete("/ui/session", status_code=204)
async def sign_out(request: Request) -> Response:
    ctx = _ctx(request)
    web = session_cookie.read(ctx, request)
    if web is not None and not session_cookie.csrf_ok(web, request):
        raise Forbidden(f"Signing out needs the session's {session_cookie.CSRF_HEADER} header.")
    response = Response(status_code=204)
    session_cookie.end(ctx, response)
    return response


# ----------------------------------------------------------------------------- data the pages need


@router.get("/ui/partitions")
async def partitions(call: ReadCallDep) -> Response:
    """Partitions and their instance types, for the studio form (read-only; any user)."""
    await call.fast(lambda _conn, _caller: None)  # signed in, as for every API read
    parts = call.ctx.partitions
    body = {
        "defaultPartition": parts.default,
        "partitions": [
            {
                "label": p.label,
                "defaultInstanceType": p.default_instance_type,
                "instanceTypes": [{"name": t.name, "cpu": t.cpu, "memory": t.memory, "diskSpace": t.disk} for t in p.instance_types.values()],
            }
            for p in parts.by_label.values()
        ],
    }
    return json(body)


@router.post("/ui/studios/{studio_id}/deployments/{deployment_id}/wake")
async def wake(call: CallDep, studio_id: Annotated[int, PathParam(**Int32)], deployment_id: Annotated[int, PathParam(**Int32)]) -> Response:
    """Wake a sleeping deployment: what opening its displayUrl does, for anyone who may open it."""
    def body_() -> views.WireDict:
        dep = dep_service.get(call.session, call.caller, studio_id, deployment_id)
        if dep.state != "sleeping":
            raise Conflict(f"Deployment {deployment_id} is {dep.state}, not sleeping.")
        dep_service.wake(call.session, deployment_id)
        return views.deployment(dep_service.get(call.session, call.caller, studio_id, deployment_id), call.caller.id, call.ctx.links)

    return json(await call.run(body_))


# ----------------------------------------------------------------------------- the page


_page_cache: dict[str, bytes] = {}


def _page() -> bytes:
    page = _page_cache.get("index")
    if page is None:
        page = _page_cache["index"] = (STATIC / "index.html").read_bytes()
    return page


@router.get("/")
@router.get("/ui")
@router.get("/ui/{view:path}")
async def index(view: str = "") -> Response:
    """Every page of the UI is this one document; its scripts draw the view the path names."""
    return Response(_page(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
