"""Routes of `/studios/{studio_id}/deployments...` and the deployment logs, as the spec has them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Response

from studios.api.deps import CallDep, ReadCallDep, json, pagination_headers
from studios.schemas.common import civis_time
from studios.schemas.deployments import LogDeploymentLogResponseSummary, StudioDeployment, StudioDeploymentCreateRequest, StudioDeploymentSummary
from studios.services import deployments as dep_service
from studios.services import views

router = APIRouter()

Int32 = dict(gt=0, le=2**31 - 1)
StudioId = Annotated[int, Path(description="The ID of the owning Studio", **Int32)]
DeploymentId = Annotated[int, Path(description="The ID for this deployment", **Int32)]


@router.get("/studios/{studio_id}/deployments", summary="List deployments for a Studio", response_model=list[StudioDeploymentSummary])
async def list_deployments(
    call: ReadCallDep,
    studio_id: StudioId,
    deployment_id: Annotated[int | None, Query(description="The ID for this deployment", **Int32)] = None,
    limit: Annotated[int, Query(description="Number of results to return. Defaults to 20. Maximum allowed is 50.", ge=1, le=50)] = 20,
    page_num: Annotated[int, Query(description="Page number of the results to return. Defaults to the first page, 1.", ge=1, le=1_000_000)] = 1,
    order: Annotated[Literal["created_at"], Query(description="The field on which to order the result set. Defaults to created_at. Must be one of: created_at.")] = "created_at",
    order_dir: Annotated[Literal["asc", "desc"], Query(description="Direction in which to sort, either asc (ascending) or desc (descending) defaulting to desc.")] = "desc",
) -> Response:
    key = ("deployments", studio_id, deployment_id, order_dir, limit, page_num)
    answer, total = await call.kept(
        key, lambda conn, caller: views.deployments_answer(conn, caller, studio_id, deployment_id, order_dir == "desc", limit, (page_num - 1) * limit, call.ctx.links), rows=lambda kept: max(1, min(limit, kept[1] - (page_num - 1) * limit))
    )
    return Response(answer.render(call.caller, call.ctx.links), media_type="application/json", headers=pagination_headers(page_num, limit, total))


@router.post("/studios/{studio_id}/deployments", summary="Deploy a Studio", status_code=201, response_model=StudioDeployment)
async def post_deployments(call: CallDep, studio_id: StudioId, body: Annotated[StudioDeploymentCreateRequest | None, Body(title="StudioDeploymentCreateRequest")] = None) -> Response:
    runtimes = call.ctx.runtimes
    assert runtimes is not None

    def body_() -> views.WireDict:
        dep = dep_service.create(call.session, call.caller, studio_id, body.deployment_id if body else None, runtimes.for_partition, call.ctx.prepare_launch)
        return views.deployment(dep, call.caller.id, call.ctx.links)

    return json(await call.run(body_), 201)


@router.get("/studios/{studio_id}/deployments/{deployment_id}", summary="Get details about a Studio deployment", response_model=StudioDeployment)
async def get_deployments(call: ReadCallDep, studio_id: StudioId, deployment_id: DeploymentId) -> Response:
    # Kept while nothing it shows changes, as a studio's GET is: clients poll it while they wait.
    answer, row = await call.kept(("deployment", studio_id, deployment_id), lambda conn, caller: views.deployment_answer(conn, caller, studio_id, deployment_id, call.ctx.links))
    headers = {}
    sleeps_at = call.ctx.sleeps_at(row)
    if sleeps_at is not None:
        # When a running deployment goes to sleep if nobody uses it (not in the spec's schema).
        headers["X-Studios-Sleeps-At"] = civis_time(datetime.fromtimestamp(sleeps_at, UTC))
    return Response(answer.render(call.caller, call.ctx.links), media_type="application/json", headers=headers)


@router.delete("/studios/{studio_id}/deployments/{deployment_id}", summary="Delete a Studio deployment", status_code=204)
async def delete_deployments(call: CallDep, studio_id: StudioId, deployment_id: DeploymentId) -> Response:
    # Ended (and its keys revoked) when this commits; the engine, on whichever server runs
    # it, then stops the workload: wait (bounded) for that, as a stop used to be synchronous.
    async with call.ctx.bus.subscription("released", deployment_id=deployment_id) as released:
        dep = await call.run(lambda: dep_service.stop(call.session, call.caller, studio_id, deployment_id))
        if dep.released_at is None:
            await released.get(timeout=call.ctx.settings.stop_grace_seconds + 10.0)
    return Response(status_code=204)


@router.get("/studios/{id}/deployments/{deployment_id}/logs", summary="Get the logs for a Studio deployment", response_model=list[LogDeploymentLogResponseSummary])
async def list_deployments_logs(
    call: ReadCallDep,
    id: Annotated[int, Path(description="The ID of the owning Studio.", **Int32)],
    deployment_id: Annotated[int, Path(description="The ID for this deployment.", **Int32)],
    start_at: Annotated[datetime | None, Query(description="Log entries with a lower timestamp will be omitted.")] = None,
    end_at: Annotated[datetime | None, Query(description="Log entries with a higher timestamp will be omitted.")] = None,
    limit: Annotated[int, Query(description="The maximum number of log messages to return. Default of 10000.", ge=1, le=100_000)] = 10_000,
) -> Response:
    # Times without a zone are read as UTC, as the platform writes them.
    start_at, end_at = (t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t for t in (start_at, end_at))
    body = await call.read(lambda conn, caller: views.log_page(conn, caller, id, deployment_id, start_at, end_at, limit))
    return Response(body, media_type="application/json")
