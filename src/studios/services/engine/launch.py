"""Launching a pending deployment: claim it (so only one engine launches it), give it an API
key and its environment, have its runtime fetch its code and start it, and store the handle.
What follows (readiness, watching) is `follow.py`'s."""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

from sqlalchemy.orm import Session

from studios.db.models import Deployment, utcnow
from studios.runtimes.base import Handle, LaunchError, LaunchSpec, Runtime, Source
from studios.services import keys, state
from studios.services.engine.follow import knock, ready_after
from studios.services.engine.kit import Kit
from studios.services.launch_env import LaunchRefused, git_login, param_env
from studios.store import deployments as dep_store


class Launched(NamedTuple):
    """A started workload: its runtime and handle, the monotonic time its start began, the knock
    on its address still under way (None when it already answered, or it has no address yet),
    and whether the deployment is `running` already."""

    runtime: Runtime
    handle: Handle
    began: float
    knocking: asyncio.Task[float] | None
    running: bool


def _spec(kit: Kit, session: Session, dep: Deployment) -> LaunchSpec:
    """The launch spec, with a new API key for the app (minted in the caller's transaction)."""
    env, secret_env = param_env(session, kit.box, dep.params or [], dep.user_id)
    login = git_login(session, kit.box, dep.git_credential_id, dep.user_id) if dep.git_repo_url else None
    api_key = keys.mint(session, kit.hasher, dep.user_id, f"deployment {dep.id}", deployment_id=dep.id)
    env.update(
        CIVIS_API_ENDPOINT=kit.settings.public_url,
        STUDIOS_DEPLOYMENT_ID=str(dep.id),
        STUDIOS_STUDIO_ID=str(dep.studio_id),
        STUDIOS_BASE_PATH=kit.links.prefix_for(dep.id) + "/",
    )
    secret_env["CIVIS_API_KEY"] = api_key
    source = None
    if dep.git_repo_url:
        source = Source(dep.git_repo_url, dep.git_ref, login.username if login else None, login.password if login else None, allow_local=kit.settings.allow_local_git_repos)
    return LaunchSpec(
        deployment_id=dep.id,
        studio_id=dep.studio_id,
        user_id=dep.user_id,
        image=dep.docker_image_name,
        tag=dep.docker_image_tag,
        memory_mb=dep.memory,
        cpu_millicores=dep.cpu,
        disk_gb=dep.disk_space,
        env=env,
        secret_env=secret_env,
        source=source,
        partition=dep.partition_label,
        instance_type=dep.instance_type,
    )


def _prepare(kit: Kit, session: Session, deployment_id: int) -> tuple[Deployment, LaunchSpec | None, str] | None:
    """Claim the deployment and build its spec, in one transaction; None if another engine
    has it or it is no longer pending. A spec of None: refused (the message says why)."""
    dep = state.claim(session, deployment_id, kit.holder)
    if dep is None:
        return None
    if kit.runtimes.get(dep.runtime) is None:
        message = f"the {dep.runtime} runtime is not available on this service"
        state.transition(session, deployment_id, "terminated", message, locked=dep)
        return dep, None, message
    try:
        spec = _spec(kit, session, dep)
    except LaunchRefused as refusal:
        state.transition(session, deployment_id, "terminated", str(refusal), locked=dep)
        return dep, None, str(refusal)
    where = f"cloning {dep.git_repo_url}" + (f" at {dep.git_ref}" if dep.git_ref else "") if dep.git_repo_url else "starting"
    state.transition(session, deployment_id, "pending", where, locked=dep)
    return dep, spec, where


READY_AT_ONCE_WINDOW = 0.005
"""How long the launch waits for the first knock before storing the handle: an app that already
answers then goes `running` in the same transaction (one write fewer on the way to `running`;
a Docker container is often up by the time the engine says it started)."""


def _store_handle(session: Session, deployment_id: int, handle: Handle, ready_line: str | None) -> bool:
    """Store the handle and, when the app already answers (`ready_line`), move the deployment to
    `running`; whether it moved. Stored whatever the deployment's state is now: if it was
    stopped meanwhile, its release needs the handle to stop what was just started."""
    dep_store.set_fields(session, deployment_id, handle=handle, started_at=utcnow())
    if ready_line is None:
        return False
    now = utcnow()
    return state.transition(session, deployment_id, "running", "running", log_line=ready_line, ready_at=now, last_activity_at=now)


async def launch(kit: Kit, deployment_id: int) -> Launched | None:
    """Start the deployment's workload and store its handle; None when there is nothing to
    follow (claimed elsewhere, refused, failed to start: the deployment then says why)."""
    prepared = await kit.db.write(lambda s: _prepare(kit, s, deployment_id))
    if prepared is None or prepared[1] is None:
        return None
    dep, spec, _ = prepared
    assert spec is not None
    runtime = kit.runtimes.get(dep.runtime)
    assert runtime is not None
    began = time.monotonic()
    try:
        handle = await runtime.start(spec, kit.reporter(deployment_id))
    except LaunchError as error:
        message = str(error)
        await kit.db.write(lambda s: state.transition(s, deployment_id, "terminated", message))
        return None
    # Knock on the app at once: one that already answers goes `running` with its handle stored;
    # otherwise the knocking goes on while the handle is stored (and follow() awaits it).
    address = runtime.address(handle)
    knocking = asyncio.ensure_future(knock(kit, address, began)) if address is not None else None
    try:
        ready_line = None
        if knocking is not None:
            await asyncio.wait({knocking}, timeout=READY_AT_ONCE_WINDOW)
            if knocking.done():
                ready_line = ready_after(knocking.result(), began, address)
                knocking = None
        running = await kit.db.write(lambda s: _store_handle(s, deployment_id, handle, ready_line))
    except BaseException:
        if knocking is not None:
            knocking.cancel()
        raise
    kit.sink.follow(deployment_id, runtime, handle, None, dep.log_seq)
    return Launched(runtime, handle, began, knocking, running)
