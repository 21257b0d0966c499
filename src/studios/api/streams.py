"""Live streams (server-sent events, `docs/streams.md`): a deployment's state, start-up steps
and usage; its log lines, followed and resumable with `Last-Event-ID`; and the changes of every
deployment the caller can see. Not in `/endpoints`: the civis client can't use them, the web UI
and the `studios` CLI do. Authentication and access are the API's own, checked when a stream
opens (a 401 or 404 before any event), then at every heartbeat and every change of shares or
keys (the stream ends with an `error` event)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import StreamingResponse

from studios.api.deps import ReadCallDep
from studios.errors import Invalid
from studios.services import deployments as dep_service
from studios.services import streams, views
from studios.services.events import Event

router = APIRouter()
Int32 = {"gt": 0, "le": 2**31 - 1}
STEPS = 8
"""Start-up steps sent to a follower that joins a deployment's stream."""
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(stream: Any) -> Response:
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/studios/{studio_id}/deployments/{deployment_id}/events", include_in_schema=False)
async def deployment_events(call: ReadCallDep, studio_id: Annotated[int, Path(**Int32)], deployment_id: Annotated[int, Path(**Int32)]) -> Response:
    async def view() -> dict[str, Any]:
        # As the deployment's GET reads it (kept while nothing it shows changes).
        _, row = await call.kept(("deployment", studio_id, deployment_id), lambda conn, caller: views.deployment_answer(conn, caller, studio_id, deployment_id, call.ctx.links))
        return views.deployment(row, call.caller.id, call.ctx.links)

    async def steps() -> list[tuple[int, str]]:
        return await call.ctx.db.read(lambda s: dep_service.recent_steps(s, deployment_id, STEPS))

    await view()  # a 401 or 404 now, as a JSON error, rather than inside the stream
    return _sse(streams.deployment(call.ctx.bus, deployment_id, view, steps, call.ctx.settings.stream_heartbeat_seconds, caller_id=call.caller.id))


@router.get("/studios/{studio_id}/deployments/{deployment_id}/logs/stream", include_in_schema=False)
async def log_stream(
    call: ReadCallDep,
    studio_id: Annotated[int, Path(**Int32)],
    deployment_id: Annotated[int, Path(**Int32)],
    start_at: Annotated[datetime | None, Query(description="Lines at or after this time, then every new line.")] = None,
    tail: Annotated[int, Query(description="Without start_at: the last `tail` lines first.", ge=0, le=100_000)] = 100,
    after: Annotated[int | None, Query(description="The lines after this line id (as Last-Event-ID does, for a client that cannot set headers).", ge=0, le=2**62)] = None,
    batch: Annotated[bool, Query(description="Several lines read at once go out as one `logs` event.")] = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    after_id = after
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit() or len(last_event_id.strip()) > 18:
            raise Invalid(f"Last-Event-ID: {last_event_id[:40]!r} is not a log line id.")
        after_id = int(last_event_id)
    if start_at is not None and start_at.tzinfo is None:
        start_at = start_at.replace(tzinfo=UTC)

    def state() -> dict[str, Any]:
        dep = dep_service.get(call.session, call.caller, studio_id, deployment_id)
        return {"id": dep.id, "released": dep.state == "terminated" and dep.released_at is not None}

    async def view() -> dict[str, Any]:
        return await call.run(state)

    await view()
    return _sse(streams.logs(call.ctx.db, call.ctx.bus, deployment_id, view, after_id, start_at, tail, call.ctx.settings.stream_heartbeat_seconds, batch, caller_id=call.caller.id))


@router.get("/deployments/events", include_in_schema=False)
async def deployments_events(call: ReadCallDep) -> Response:
    async def visible(event: Event) -> dict[str, Any] | None:
        return await call.run(lambda: dep_service.visible_summary(call.session, call.caller, event.deployment_id, call.ctx.links))

    async def recheck() -> None:
        await call.run(lambda: None)

    await recheck()
    return _sse(streams.deployments(call.ctx.bus, visible, recheck, call.ctx.settings.stream_heartbeat_seconds, caller_id=call.caller.id))
