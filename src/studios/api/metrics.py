"""`GET /metrics`: the Prometheus text exposition (`docs/metrics.md`). Not in `/endpoints`.

Who may read it: an administrator (an admin's API key, or an admin's web session), or a
scraper presenting `Authorization: Bearer <STUDIOS_METRICS_TOKEN>` when that is set. Anyone
else gets the API's own errors: 401 without a valid key, 403 with a non-admin's.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from studios.api.deps import ReadCallDep
from studios.errors import Forbidden
from studios.metrics.registry import CONTENT_TYPE

router = APIRouter()


def _scraper(request: Request, token: str | None) -> bool:
    header = request.headers.get("authorization") or ""
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())  # type: ignore[union-attr]


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, call: ReadCallDep) -> Response:
    secret = call.ctx.settings.metrics_token
    if not _scraper(request, secret.get_secret_value().strip() if secret is not None else None):
        caller = await call.run(lambda: call.caller)
        if not caller.is_admin:
            raise Forbidden("Only administrators may read /metrics (a scraper can use STUDIOS_METRICS_TOKEN).")
    return Response(await request.app.state.metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
