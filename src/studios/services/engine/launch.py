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


class Prepared(NamedTuple):
    """A claimed deployment, moved to its first step, with its launch spec: what the runtime
    needs to start it."""

    runtime: Runtime
    spec: LaunchSpec
    log_seq: int


def _where(dep: Deployment) -> str:
    """The deployment's first step, as its state message says it."""
    if not dep.git_repo_url:
        return "starting"
    return f"cloning {dep.git_repo_url}" + (f" at {dep.git_ref}" if dep.git_ref else "")


def _prepare(kit: Kit, session: Session, deployment_id: int) -> Prepared | None:
    """Claim the deployment and build its spec, in one transaction; None if another engine
    has it, it is no longer pending, or it is refused (it then ends, saying why)."""
    dep = state.claim(session, deployment_id, kit.holder)
    if dep is None:
        return None
    runtime = kit.runtimes.get(dep.runtime)
    if runtime is None:
        state.transition(session, deployment_id, "terminated", f"the {dep.runtime} runtime is not available on this service", locked=dep)
        return None
    try:
        return _claimed(kit, session, dep, runtime)
    except LaunchRefused as refusal:
        state.transition(session, deployment_id, "terminated", str(refusal), locked=dep)
        return None


def prepare_new(kit: Kit, session: Session, dep: Deployment) -> Prepared | None:
    """Claim a deployment made in the caller's transaction (the deploy's own) and build its
    spec there, so that the launch starts its workload at once instead of claiming it in a
    transaction of its own. None, with nothing changed, where the launch's own path is to
    decide: its runtime is not here, or it is refused (that path ends it, saying why)."""
    runtime = kit.runtimes.get(dep.runtime)
    if runtime is None:
        return None
    try:
        return _claimed(kit, session, dep, runtime)
    except LaunchRefused:
        return None


def _claimed(kit: Kit, session: Session, dep: Deployment, runtime: Runtime) -> Prepared:
    """The deployment's spec (LaunchRefused before anything is written), its claim for this
    engine, and its move to its first step."""
    spec = _spec(kit, session, dep)
    dep.claimed_by = kit.holder
    state.transition(session, dep.id, "pending", _where(dep), locked=dep)
    return Prepared(runtime, spec, dep.log_seq)


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


async def launch(kit: Kit, deployment_id: int, prepared: Prepared | None = None) -> Launched | None:
    """Start the deployment's workload and store its handle; None when there is nothing to
    follow (claimed elsewhere, refused, failed to start: the deployment then says why).
    `prepared`: claimed and built already, in the deploy's own transaction (`prepare_new`)."""
    if prepared is None:
        prepared = await kit.db.write(lambda s: _prepare(kit, s, deployment_id))
        if prepared is None:
            return None
    spec, runtime = prepared.spec, prepared.runtime
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
    kit.sink.follow(deployment_id, runtime, handle, None, prepared.log_seq)
    return Launched(runtime, handle, began, knocking, running)
