"""The lifecycle engine: takes a pending deployment to running and watches it until it ends;
stops, sleeps, wakes and reconciles. Every state change goes through `transition`, the one
locked write that checks `studios.lifecycle`. Runtimes are reached only through the
`studios.runtimes.base.Runtime` contract; the API never sees which one runs a deployment."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from studios.context import Context
from studios.db.models import Deployment, utcnow
from studios.lifecycle import ACTIVE, allowed
from studios.runtimes.base import Exit, Handle, LaunchError, LaunchSpec, Runtime
from studios.services import keys
from studios.services.launch_env import LaunchRefused, git_login, param_env
from studios.services.log_sink import LogSink
from studios.store import deployments as dep_store
from studios.store import studios as studio_store
from studios.store import users as user_store

log = logging.getLogger("studios.engine")
USAGE_EVERY = 1.0
POLL_EVERY = 0.2


class Engine:
    def __init__(self, ctx: Context, runtimes: dict[str, Runtime], default_runtime: str) -> None:
        self.ctx = ctx
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.box = ctx.box
        self.logs = LogSink(ctx.locking_db, ctx.settings.log_line_cap)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._background: list[asyncio.Task[None]] = []
        self.on_change: list[Callable[[int], None]] = []
        """Called with a deployment id after each of its state changes (cache invalidation)."""
        self.activity: Callable[[int], float | None] = lambda _id: None
        """Time of a deployment's last proxied traffic (set by the proxy backend)."""
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(2.0, connect=1.0), trust_env=False)

    # -- the one state write ---------------------------------------------------------------

    def transition(self, deployment_id: int, new: str, message: str, log_line: str | None = None, **fields: Any) -> bool:
        """Move a deployment to `new` with `message` if the lifecycle allows it; False if not.
        Locks the row (BEGIN IMMEDIATE on SQLite, FOR UPDATE on PostgreSQL)."""
        with self.ctx.locking_db() as session:
            dep = dep_store.get_for_update(session, deployment_id)
            if dep is None or not allowed(dep.state, new):
                return False
            now = utcnow()
            dep.state, dep.state_message, dep.updated_at = new, message, now
            for key, value in fields.items():
                setattr(dep, key, value)
            if new == "terminated":
                dep.ended_at = now
            self.logs.system(session, deployment_id, log_line or message, now)
            session.commit()
        for hook in self.on_change:
            hook(deployment_id)
        return True

    def _state(self, deployment_id: int) -> str | None:
        with self.ctx.db() as session:
            dep = dep_store.get(session, deployment_id)
            return dep.state if dep else None

    # -- lifecycle -------------------------------------------------------------------------

    def runtime_for(self, partition_label: str | None) -> str:
        """The runtime a new deployment of this partition runs on."""
        wanted = self.ctx.partitions.partition(partition_label).runtime
        return self.default_runtime if wanted == "default" else wanted

    def launch(self, deployment_id: int) -> None:
        self._spawn(deployment_id, self._run(deployment_id))

    def _spawn(self, deployment_id: int, coro: Any) -> None:
        task = asyncio.create_task(coro, name=f"deployment-{deployment_id}")
        self._tasks[deployment_id] = task
        task.add_done_callback(lambda t: self._tasks.pop(deployment_id, None) if self._tasks.get(deployment_id) is t else None)

    def _supersede(self, deployment_id: int) -> list[Deployment]:
        """Under the studio's lock: end older active deployments of the studio (returned, to
        stop their workloads), or end this one if a newer deployment exists. One survives."""
        with self.ctx.locking_db() as session:
            dep = dep_store.get(session, deployment_id)
            if dep is None:
                return []
            studio_store.get_for_update(session, dep.studio_id)
            others = [d for d in dep_store.active_of_studio(session, dep.studio_id) if d.id != deployment_id]
            newer = max((d.id for d in others if d.id > deployment_id), default=None)
            if newer is None:
                now = utcnow()
                for other in others:
                    other.state, other.state_message, other.updated_at, other.ended_at = "terminated", f"replaced by deployment {deployment_id}", now, now
                    self.logs.system(session, other.id, f"replaced by deployment {deployment_id}", now)
                session.commit()
                return others
        self.transition(deployment_id, "terminated", f"replaced by deployment {newer}")
        return []

    async def _run(self, deployment_id: int) -> None:
        try:
            for old in self._supersede(deployment_id):
                # A replaced deployment still starting notices at its next transition and
                # stops what it started; one already running is stopped here.
                if old.state == "running":
                    self._cancel(old.id)
                await self._finish(old.id, stop=True)
            if self._state(deployment_id) != "pending":
                return
            await self._start(deployment_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("deployment %s failed", deployment_id)
            self.transition(deployment_id, "terminated", f"internal error: {exc.__class__.__name__}: {exc}")
            await self._finish(deployment_id, stop=True)

    def _spec(self, dep: Deployment, workdir: Path, checkout: Path | None, api_key: str) -> LaunchSpec:
        settings = self.ctx.settings
        with self.ctx.db() as session:
            env = param_env(session, self.box, dep.params or [], dep.user_id)
        env.update(
            CIVIS_API_ENDPOINT=settings.effective_public_url,
            CIVIS_API_KEY=api_key,
            STUDIOS_DEPLOYMENT_ID=str(dep.id),
            STUDIOS_STUDIO_ID=str(dep.studio_id),
            STUDIOS_BASE_PATH=self.ctx.links.prefix_for(dep.id) + "/",
        )
        return LaunchSpec(dep.id, dep.studio_id, dep.docker_image_name, dep.docker_image_tag, dep.memory, dep.cpu, dep.disk_space, env, workdir, checkout)

    async def _start(self, deployment_id: int) -> None:
        settings = self.ctx.settings
        with self.ctx.db() as session:
            dep = dep_store.get(session, deployment_id)
            assert dep is not None
            api_key = keys.mint(session, self.ctx.hasher, dep.user_id, f"deployment {dep.id}", deployment_id=dep.id)
            session.commit()
        runtime = self.runtimes.get(dep.runtime or "")
        if runtime is None:
            self.transition(deployment_id, "terminated", f"the {dep.runtime} runtime is not available on this service")
            return await self._finish(deployment_id)
        workdir = settings.data_dir / "deployments" / str(deployment_id)
        workdir.mkdir(parents=True, exist_ok=True)
        checkout_dir = None
        try:
            if dep.git_repo_url:
                checkout_dir = await self._checkout(dep, workdir)
                if checkout_dir is None:
                    return await self._finish(deployment_id)
            spec = self._spec(dep, workdir, checkout_dir, api_key)
        except LaunchRefused as exc:
            self.transition(deployment_id, "terminated", str(exc))
            return await self._finish(deployment_id)
        if not self.transition(deployment_id, "pending", "starting"):
            return await self._finish(deployment_id)
        began = time.monotonic()
        try:
            handle = await runtime.start(spec, lambda line: self.logs.system_now(deployment_id, line))
        except LaunchError as exc:
            self.transition(deployment_id, "terminated", str(exc))
            return await self._finish(deployment_id)
        with self.ctx.db() as session:
            dep_store.set_fields(session, deployment_id, handle=handle, started_at=utcnow())
            session.commit()
        self.logs.follow(deployment_id, runtime, handle, None)
        await self._await_ready(deployment_id, runtime, handle, began)

    async def _checkout(self, dep: Deployment, workdir: Path) -> Path | None:
        from studios.services.checkout import CheckoutError, checkout

        where = f"cloning {dep.git_repo_url}" + (f" at {dep.git_ref}" if dep.git_ref else "")
        if not self.transition(dep.id, "pending", where):
            return None
        with self.ctx.db() as session:
            login = git_login(session, self.box, dep.git_credential_id, dep.user_id)
        dest = workdir / "repo"
        if dest.exists():
            shutil.rmtree(dest)
        try:
            sha = await checkout(dep.git_repo_url or "", dep.git_ref, dest, username=login.username if login else None, password=login.password if login else None, report=lambda line: self.logs.system_now(dep.id, line))
        except CheckoutError as exc:
            self.transition(dep.id, "terminated", str(exc))
            return None
        self.logs.system_now(dep.id, f"checked out {sha[:12]}")
        return dest

    async def _await_ready(self, deployment_id: int, runtime: Runtime, handle: Handle, began: float) -> None:
        host, port = runtime.address(handle)
        if not self.transition(deployment_id, "pending", f"waiting for the app on port {port}"):
            return await self._finish(deployment_id, stop=True)
        deadline = began + self.ctx.settings.start_timeout_seconds
        # Probe often (an app answering a few ms after start is seen a few ms later), but ask
        # the runtime whether it has exited only every 100 ms: on Docker that is an API call.
        delay, next_poll = 0.002, 0.0
        while True:
            if time.monotonic() >= next_poll:
                ended = await runtime.poll(handle)
                if ended is not None:
                    return await self._ended(deployment_id, runtime, handle, ended)
                next_poll = time.monotonic() + 0.1
            try:
                await self._http.get(f"http://{host}:{port}/")
                break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                limit = self.ctx.settings.start_timeout_seconds
                self.transition(deployment_id, "terminated", f"the app did not answer HTTP on port {port} within {limit:g} s (STUDIOS_START_TIMEOUT_SECONDS)")
                return await self._finish(deployment_id, stop=True)
            await asyncio.sleep(delay)
            if time.monotonic() - began > 2.0:
                delay = min(delay * 2, 0.1)
        ms = (time.monotonic() - began) * 1000
        if self.transition(deployment_id, "running", "running", log_line=f"ready after {ms:.0f} ms: the app answers on port {port}", ready_at=utcnow(), last_activity_at=utcnow()):
            await self._watch(deployment_id, runtime, handle)
        else:
            await self._finish(deployment_id, stop=True)

    async def _watch(self, deployment_id: int, runtime: Runtime, handle: Handle) -> None:
        """Until the workload ends: record peak usage; then record how it ended."""
        next_usage = 0.0
        while True:
            ended = await runtime.poll(handle)
            if ended is not None:
                return await self._ended(deployment_id, runtime, handle, ended)
            if time.monotonic() >= next_usage:
                await self._record_usage(deployment_id, runtime, handle)
                next_usage = time.monotonic() + USAGE_EVERY
            await asyncio.sleep(POLL_EVERY)

    async def _ended(self, deployment_id: int, runtime: Runtime, handle: Handle, ended: Exit) -> None:
        # Every line the app wrote is stored before the API says it has ended.
        await self.logs.drain(deployment_id)
        self.transition(deployment_id, "terminated", ended.message)
        await self._finish(deployment_id)

    async def _record_usage(self, deployment_id: int, runtime: Runtime, handle: Handle) -> None:
        usage = await runtime.usage(handle)
        values = {k: round(v, 1) for k, v in (("max_memory_usage", usage.max_memory_mb), ("max_cpu_usage", usage.max_cpu_millicores)) if v is not None}
        if values:
            with self.ctx.db() as session:
                dep_store.set_fields(session, deployment_id, **values)
                session.commit()

    async def _finish(self, deployment_id: int, stop: bool = False) -> None:
        """After a deployment is terminated: stop its workload if asked, keep its last usage
        and logs, release what it held, and revoke its API key."""
        with self.ctx.db() as session:
            dep = dep_store.get(session, deployment_id)
            handle, runtime = (dep.handle, self.runtimes.get(dep.runtime or "")) if dep else (None, None)
            self.ctx.hasher.forget(user_store.revoke_deployment_keys(session, deployment_id))
            session.commit()
        if handle and runtime:
            if stop:
                await runtime.stop(handle, self.ctx.settings.stop_grace_seconds)
            await self._record_usage(deployment_id, runtime, handle)
            await self.logs.drain(deployment_id)
            await runtime.cleanup(handle)

    # -- requests from the API and the proxy ------------------------------------------------

    def _cancel(self, deployment_id: int) -> None:
        task = self._tasks.get(deployment_id)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def stop(self, deployment_id: int, by: str) -> None:
        """DELETE: TERM, a grace period, then KILL; the record stays, terminated. A deployment
        still starting is not interrupted mid-step: its next transition fails and it stops
        what it started."""
        before = self._state(deployment_id)
        if not self.transition(deployment_id, "terminated", f"stopped by {by}"):
            return
        if before == "running":
            self._cancel(deployment_id)
        await self._finish(deployment_id, stop=True)

    async def sleep(self, deployment_id: int, reason: str) -> None:
        with self.ctx.db() as session:
            dep = dep_store.get(session, deployment_id)
        if dep is None or dep.state != "running":
            return
        self._cancel(deployment_id)
        runtime = self.runtimes.get(dep.runtime or "")
        if dep.handle and runtime:
            await runtime.stop(dep.handle, self.ctx.settings.stop_grace_seconds)
            await self._record_usage(deployment_id, runtime, dep.handle)
            await self.logs.drain(deployment_id)
            await runtime.cleanup(dep.handle)
        self.transition(deployment_id, "sleeping", "sleeping", log_line=f"sleeping: {reason}", handle=None, log_cursor=None)

    async def wake(self, deployment_id: int) -> None:
        if self.transition(deployment_id, "pending", "waking up", log_line="waking up: the display URL was opened"):
            self._spawn(deployment_id, self._start(deployment_id))

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Match pending/running deployments with reality: adopt live workloads (and keep
        pumping their logs from the stored cursor), end vanished ones with a message, and
        remove workloads no deployment owns."""
        with self.ctx.db() as session:
            live = [(d.id, d.state, d.runtime, d.handle, d.log_cursor) for d in dep_store.in_states(session, ACTIVE)]
        for dep_id, state, runtime_name, handle, cursor in live:
            if dep_id in self._tasks:
                continue
            runtime = self.runtimes.get(runtime_name or "")
            if runtime is None or not handle:
                self.transition(dep_id, "terminated", "interrupted: the service restarted before the app was started")
                continue
            if await runtime.adopt(handle):
                self.logs.system_now(dep_id, "adopted after a service restart")
                self.logs.follow(dep_id, runtime, handle, cursor)
                if state == "running":
                    self._spawn(dep_id, self._watch(dep_id, runtime, handle))
                else:
                    self._spawn(dep_id, self._await_ready(dep_id, runtime, handle, time.monotonic()))
                continue
            ended = await runtime.poll(handle)
            self.logs.follow(dep_id, runtime, handle, cursor)
            message = f"{ended.message} (while the service was down)" if ended else "vanished while the service was down"
            self.transition(dep_id, "terminated", message)
            await self._finish(dep_id)
        known = {dep_id for dep_id, *_ in live}
        for runtime in self.runtimes.values():
            found = await runtime.orphans(known)
            if found:  # a deployment started since `live` was read is no orphan: ask again, after the listing
                with self.ctx.db() as session:
                    known |= {d.id for d in dep_store.in_states(session, ACTIVE)}
            for orphan in (o for o in found if o not in known):
                log.warning("removing orphan workload of deployment %s (%s runtime)", orphan, runtime.name)
                await runtime.remove_orphan(orphan)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.settings.reconcile_interval_seconds)
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed")

    def sleeps_at(self, dep: Deployment) -> datetime | None:
        """When a running deployment goes to sleep if it stays idle; None if it never will."""
        idle = self.ctx.settings.idle_sleep_seconds
        if dep.state != "running" or idle <= 0:
            return None
        last = max(self.activity(dep.id) or 0.0, dep.ready_at.timestamp() if dep.ready_at else time.time())
        return datetime.fromtimestamp(last + idle, UTC)

    async def _sleep_idle_forever(self) -> None:
        """Put running deployments to sleep after STUDIOS_IDLE_SLEEP_SECONDS without traffic."""
        idle = self.ctx.settings.idle_sleep_seconds
        while True:
            await asyncio.sleep(min(max(idle / 10, 0.2), 30.0))
            now = time.time()
            with self.ctx.db() as session:
                running = [(d.id, d.ready_at.timestamp() if d.ready_at else now) for d in dep_store.in_states(session, ("running",))]
            for dep_id, ready_at in running:
                last = max(self.activity(dep_id) or 0.0, ready_at)
                if now - last >= idle:
                    try:
                        await self.sleep(dep_id, f"no traffic for {idle:g} s (STUDIOS_IDLE_SLEEP_SECONDS)")
                    except Exception:
                        log.exception("putting deployment %s to sleep failed", dep_id)

    async def begin(self) -> None:
        await self.reconcile()
        self._background.append(asyncio.create_task(self._reconcile_forever(), name="reconcile"))
        if self.ctx.settings.idle_sleep_seconds > 0:
            self._background.append(asyncio.create_task(self._sleep_idle_forever(), name="idle-sleep"))

    async def close(self) -> None:
        """Service shutdown: workloads keep running; the next start adopts them."""
        for task in [*self._background, *self._tasks.values()]:
            task.cancel()
        await asyncio.gather(*self._background, *self._tasks.values(), return_exceptions=True)
        await self.logs.close()
        await self._http.aclose()
        for runtime in self.runtimes.values():
            await runtime.close()

