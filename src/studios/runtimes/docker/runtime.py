"""The Docker runtime: one deployment is one container, on the Docker Engine API.

Owns the containers it labels with its `instance` and nothing else on the engine. Each
container runs the image's own command under an init process (`init=True`), with the
deployment's env plus `PORT` (the app listens on `container_port`, 8080 by default, published
on 127.0.0.1 at a random host port: that address is what the proxy and the readiness probe
use), the studio's repository copied into `/workspace` before the start (the working directory), the
engine enforcing memory (no swap beyond it), cpu and, where the storage driver can, disk.
Peak usage comes from a per-deployment parent cgroup (`docker/cgroups.py`), logs from the engine
(`docker/logs.py`), images from `docker/images.py`, exit messages from `docker/exits.py`. Blocking SDK calls run in threads.

Handle (JSON, stored by the service):
    {"container_id", "container_name", "host", "port", "image", "memory_mb",
     "cgroup": {"parent", "root", "relative", "paths": {"memory", "cpu"}, "leaf"},
     "state_file"}   # state_file: cpu samples, peak and final Exit, in the deployment workdir
Log cursor: see `docker/logs.py` ({"stdout": {"ns", "n"}, "stderr": {"ns", "n"}}).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import re
import shutil
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import _create_container_args  # what `containers.create` sends, without its inspect
from docker.types import LogConfig
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from studios.runtimes import git
from studios.runtimes.base import Exit, Handle, LaunchError, LaunchSpec, LogCursor, LogLine, Reporter, Runtime, RuntimeEnv, RuntimeSettings, Status, Usage
from studios.runtimes.docker import cgroups
from studios.runtimes.docker import logs as docker_logs
from studios.runtimes.docker.events import ContainerEvents
from studios.runtimes.docker.exits import exit_of, to_json
from studios.runtimes.docker.failures import ENGINE_ERRORS, answering, why
from studios.runtimes.docker.images import disk_limit_refusal, ensure_image, image_reference, is_storage_opt_refusal
from studios.runtimes.docker.oom import report_oom_kills

log = logging.getLogger("studios.runtimes.docker")

WORKSPACE = "/workspace"
"""Where the studio's repository is copied in the container (and the working directory)."""

LABEL_INSTANCE = "studios.instance"
LABEL_DEPLOYMENT = "studios.deployment_id"
LABEL_STUDIO = "studios.studio_id"
_ALIVE = {"running", "paused", "restarting"}
ENGINE_GONE = "the container engine does not answer"
ENGINE_BACK = "the container engine answers again"


def docker_available(base_url: str | None = None, timeout: float = 3.0) -> str | None:
    """None if a Docker daemon answers a ping at `base_url` (None: DOCKER_HOST or the default
    socket), else the reason in a sentence (for the `auto` runtime choice)."""
    try:
        client = docker.DockerClient(base_url=base_url, timeout=math.ceil(timeout)) if base_url else docker.from_env(timeout=math.ceil(timeout))
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as error:  # every failure here means "no usable daemon"
        return f"no Docker daemon answers at {base_url or 'the default socket'}: {error}"


class DockerSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIOS_DOCKER_", extra="ignore")

    url: str | None = Field(None, description="Docker Engine API URL (unix:///var/run/docker.sock; Podman: unix:///run/podman/podman.sock). Default: the docker SDK's environment (DOCKER_HOST).")
    container_port: int = Field(8080, description="Port the app listens on inside its container (given to it as PORT).")
    bind_host: str = Field("127.0.0.1", description="Host address container ports are published on (where the proxy reaches apps).")
    default_image: str | None = Field(None, description="Image run for a studio that names none (default: refuse).")
    network: str | None = Field(None, description="Docker network containers join (default: the engine's bridge).")
    log_max_size: str | None = Field("20m", description="json-file log rotation size per container (the service keeps every line in its database).")
    cgroup_root: Path = Field(Path("/sys/fs/cgroup"), description="cgroupfs as this service sees it (peak usage is read from containers' parent cgroups).")


class DockerRuntime(Runtime):
    """Runs deployments as containers on a Docker (or Podman) engine.

    Its settings (`DockerSettings`) say which engine and how containers are published; its
    directory (`env.data_dir`) holds per-deployment usage state files and, briefly, the git
    checkout copied into a container at start. `env.instance` labels every container, so two
    installations on one engine never touch each other's.
    """

    name = "docker"
    settings_model = DockerSettings
    settings: DockerSettings

    def __init__(self, settings: DockerSettings, env: RuntimeEnv, *, sample_interval: float = 0.5) -> None:
        super().__init__(settings, env)
        self.base_url = settings.url
        self.instance = env.instance
        self.container_port = settings.container_port
        self.bind_host = settings.bind_host
        self.cgroup_root = Path(settings.cgroup_root)
        self.default_image = settings.default_image
        self.network = settings.network
        self.log_max_size = settings.log_max_size
        self.sample_interval = sample_interval
        self._client: docker.DockerClient | None = None
        self._info: dict[str, Any] | None = None
        # Caches and timers only: everything needed after a restart is in the handle/state file.
        self._samplers: dict[str, cgroups.CpuSampler] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events = ContainerEvents(self.client, f"{LABEL_INSTANCE}={self.instance}")
        self._oom_watches: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def available(cls, settings: RuntimeSettings) -> str | None:
        assert isinstance(settings, DockerSettings)
        return docker_available(settings.url)

    # -- engine -----------------------------------------------------------------------------

    def client(self) -> docker.DockerClient:
        """The SDK client, made on first use (making it talks to the engine: call in a thread)."""
        if self._client is None:
            # Two followed log streams per deployment each hold a connection: a larger pool.
            if self.base_url:
                self._client = docker.DockerClient(base_url=self.base_url, max_pool_size=64)
            else:
                self._client = docker.from_env(max_pool_size=64)
        return self._client

    async def _engine_info(self) -> dict[str, Any]:
        if self._info is None:
            info: dict[str, Any] = await asyncio.to_thread(lambda: dict(self.client().info()))
            self._info = info
            return info
        return self._info

    async def _layout(self) -> cgroups.CgroupLayout:
        info = await self._engine_info()
        version = 2 if str(info.get("CgroupVersion", "1")) == "2" else 1
        driver = str(info.get("CgroupDriver") or "cgroupfs")
        return cgroups.CgroupLayout(driver=driver, version=version, root=self.cgroup_root, instance=self.instance)

    def container_name(self, deployment_id: int) -> str:
        instance = re.sub(r"[^a-zA-Z0-9_.-]", "-", self.instance)
        return f"studios-{instance}-d{deployment_id}"

    # -- start ------------------------------------------------------------------------------

    async def start(self, spec: LaunchSpec, report: Reporter) -> Handle:
        image = spec.image or self.default_image
        if not image:
            raise LaunchError("this studio names no docker image, which the docker runtime needs")
        reference = image_reference(image, spec.tag)
        try:
            layout = await self._layout()
        except ENGINE_ERRORS as error:
            raise LaunchError(f"the container engine is unavailable: {why(error)}") from None
        try:
            return await self._start(spec, report, reference, layout)
        except requests.exceptions.RequestException as error:
            # The engine went away mid-start (its answers' errors are handled where they come).
            # A container it made meanwhile carries our labels: the orphan sweep removes it.
            cgroups.remove(self.cgroup_root, layout.relative_path(spec.deployment_id))
            raise LaunchError(f"the container engine is unavailable: {why(error)}") from None

    async def _start(self, spec: LaunchSpec, report: Reporter, reference: str, layout: cgroups.CgroupLayout) -> Handle:
        name = self.container_name(spec.deployment_id)
        workdir = self.env.data_dir / "deployments" / str(spec.deployment_id)
        workdir.mkdir(parents=True, exist_ok=True)
        state_file = workdir / "docker-state.json"
        state_file.unlink(missing_ok=True)
        code = await self._fetch(spec, workdir, report)
        paths = layout.paths(spec.deployment_id)
        cgroups.create(paths)

        options = self._create_options(spec, reference, name, layout)
        disk_refusal = disk_limit_refusal(await self._engine_info()) if spec.disk_gb else None
        if spec.disk_gb and disk_refusal is None:
            options["storage_opt"] = {"size": f"{max(1, math.ceil(spec.disk_gb * 1024))}M"}
        elif spec.disk_gb:
            report(f"disk limit of {spec.disk_gb:g} GB is not enforced: {disk_refusal}")
        try:
            container = await self._create_pulling(options, reference, spec.deployment_id, report)
        except LaunchError:
            cgroups.remove(self.cgroup_root, layout.relative_path(spec.deployment_id))
            raise
        if code is not None:
            await asyncio.to_thread(self._copy_in, container, code, report)

        sampler = cgroups.CpuSampler(paths, state_file)
        sampler.sample()  # the baseline: whole-life average starts here
        started_at = time.time()
        try:
            await asyncio.to_thread(container.start)
            await asyncio.to_thread(container.reload)
        except docker.errors.APIError as error:
            with contextlib.suppress(docker.errors.APIError):
                await asyncio.to_thread(container.remove, force=True)
            cgroups.remove(self.cgroup_root, layout.relative_path(spec.deployment_id))
            raise LaunchError(f"the container could not be started: {error.explanation or error}") from None

        bindings = (container.attrs["NetworkSettings"].get("Ports") or {}).get(f"{self.container_port}/tcp")
        port = int(bindings[0]["HostPort"]) if bindings else 0
        handle: Handle = {
            "container_id": container.id,
            "container_name": name,
            "host": self.bind_host,
            "port": port,
            "image": reference,
            "memory_mb": spec.memory_mb,
            "cgroup": {
                "parent": layout.parent_for(spec.deployment_id),
                "root": str(self.cgroup_root),
                "relative": layout.relative_path(spec.deployment_id),
                "paths": paths,
                "leaf": cgroups.leaf_of(paths, container.id),
            },
            "state_file": str(state_file),
        }
        self._samplers[container.id] = sampler
        self._watch(handle)
        # A child of the app killed for memory while the container lives on: a system line.
        self._oom_watches[container.id] = report_oom_kills(self.client().api, handle, report, since=int(started_at) - 1)
        return handle

    def _create_options(
        self, spec: LaunchSpec, reference: str, name: str, layout: cgroups.CgroupLayout
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "image": reference,
            "name": name,
            "detach": True,
            "init": True,
            "labels": {
                LABEL_INSTANCE: self.instance,
                LABEL_DEPLOYMENT: str(spec.deployment_id),
                LABEL_STUDIO: str(spec.studio_id),
            },
            "environment": {**spec.env, **spec.secret_env, "PORT": str(self.container_port)},
            "ports": {f"{self.container_port}/tcp": (self.bind_host, None)},
            "cgroup_parent": layout.parent_for(spec.deployment_id),
        }
        if spec.memory_mb:
            options["mem_limit"] = f"{spec.memory_mb}m"
            options["memswap_limit"] = f"{spec.memory_mb}m"  # equal: no swapping past the limit
        if spec.cpu_millicores:
            options["nano_cpus"] = spec.cpu_millicores * 1_000_000
        if spec.source is not None:
            options["working_dir"] = WORKSPACE
        if self.network:
            options["network"] = self.network
        if self.log_max_size:
            options["log_config"] = LogConfig(
                type="json-file", config={"max-size": self.log_max_size, "max-file": "3"}
            )
        return options

    async def _create_pulling(self, options: dict[str, Any], reference: str, deployment_id: int, report: Reporter) -> Any:
        """Create the container; when the engine says it lacks the image, pull it (its progress
        reported) and create again."""
        try:
            return await asyncio.to_thread(self._create, options, deployment_id, report)
        except docker.errors.ImageNotFound:
            await ensure_image(await asyncio.to_thread(self.client), reference, report)
        try:
            return await asyncio.to_thread(self._create, options, deployment_id, report)
        except docker.errors.ImageNotFound as error:  # removed again since the pull
            raise LaunchError(f"image {reference} could not be used: {error.explanation or error}") from None

    def _create(self, options: dict[str, Any], deployment_id: int, report: Reporter, *, replaced: bool = False) -> Any:
        """Create the container: one request when the image is here and the name is free (the
        image is not looked up first, nor the name; the SDK's `containers.create` would inspect
        what it created too). Raises the SDK's `ImageNotFound` when the image must be pulled."""
        client = self.client()
        try:
            created = client.api.create_container(**_create_container_args({**options, "version": client.api._version}))
        except docker.errors.ImageNotFound:  # an APIError too: the caller pulls
            raise
        except docker.errors.APIError as error:
            if "storage_opt" in options and is_storage_opt_refusal(error):
                report(f"disk limit is not enforced: {error.explanation or error}")
                options = {k: v for k, v in options.items() if k != "storage_opt"}
                return self._create(options, deployment_id, report, replaced=replaced)
            if error.status_code == 409 and not replaced:  # the name is taken: by a left-over of ours?
                self._remove_leftover(options["name"], deployment_id, report)
                return self._create(options, deployment_id, report, replaced=True)
            raise LaunchError(f"the container could not be created: {error.explanation or error}") from None
        return client.containers.prepare_model({"Id": created["Id"]})  # its attributes come with the reload after start

    async def _fetch(self, spec: LaunchSpec, workdir: Path, report: Reporter) -> Path | None:
        """Check the studio's repository out on this machine (the container gets a copy, so
        the engine may be remote); None when the studio has none."""
        if spec.source is None:
            return None
        dest = workdir / "checkout"
        if dest.exists():
            await asyncio.to_thread(shutil.rmtree, dest, True)
        try:
            await git.fetch(spec.source, dest, report)
        except git.CheckoutError as error:
            raise LaunchError(str(error)) from None
        return dest

    def _copy_in(self, container: Any, checkout: Path, report: Reporter) -> None:
        """Copy the checkout into the created container at /workspace, then drop it here."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(checkout, arcname=WORKSPACE.strip("/"))
        try:
            container.put_archive("/", buffer.getvalue())
        except docker.errors.APIError as error:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise LaunchError(f"the checkout could not be copied into the container: {error.explanation or error}") from None
        finally:
            shutil.rmtree(checkout, ignore_errors=True)
        report(f"copied the checkout into the container at {WORKSPACE} ({len(buffer.getvalue()) >> 10} KiB)")

    def _remove_leftover(self, name: str, deployment_id: int, report: Reporter) -> None:
        """A container of this deployment left by an interrupted earlier start is replaced (one
        that is not this deployment's is refused: `LaunchError`)."""
        try:
            old = self.client().containers.get(name)
        except docker.errors.NotFound:
            return
        labels = old.labels or {}
        if labels.get(LABEL_INSTANCE) != self.instance or labels.get(LABEL_DEPLOYMENT) != str(deployment_id):
            raise LaunchError(f"a container named {name} exists and is not this deployment's")
        report(f"removing container {name} left by an earlier start")
        with contextlib.suppress(docker.errors.NotFound):
            old.remove(force=True)

    # -- usage sampling ---------------------------------------------------------------------

    def _sampler(self, handle: Handle) -> cgroups.CpuSampler:
        cid = handle["container_id"]
        if cid not in self._samplers:
            state = handle.get("state_file")
            self._samplers[cid] = cgroups.CpuSampler(handle["cgroup"]["paths"], Path(state) if state else None)
        return self._samplers[cid]

    def _watch(self, handle: Handle) -> None:
        """Sample the cpu counter every `sample_interval` while the container's cgroup exists."""
        cid = handle["container_id"]
        if cid in self._tasks and not self._tasks[cid].done():
            return
        sampler = self._sampler(handle)
        leaf = Path(handle["cgroup"]["leaf"])

        async def run() -> None:
            while True:
                alive = leaf.is_dir()  # noqa: ASYNC240 (one stat of cgroupfs, never blocks)
                if sampler.sample() is None or not alive:
                    return
                await asyncio.sleep(self.sample_interval)

        self._tasks[cid] = asyncio.get_running_loop().create_task(run(), name=f"studios-sample-{cid[:12]}")

    def _unwatch(self, container_id: str) -> None:
        for tasks in (self._tasks, self._oom_watches):
            task = tasks.pop(container_id, None)
            if task is not None:
                task.cancel()

    # -- the contract -----------------------------------------------------------------------

    def address(self, handle: Handle) -> tuple[str, int]:
        return handle["host"], int(handle["port"])

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        def inspect() -> dict[str, Any] | None:
            try:
                attrs: dict[str, Any] = self.client().api.inspect_container(container_id)
                return attrs
            except docker.errors.NotFound:
                return None

        return await asyncio.to_thread(inspect)

    async def poll(self, handle: Handle) -> Exit | None:
        attrs = await self._inspect(handle["container_id"])
        sampler = self._sampler(handle)
        if attrs is None:
            stored = sampler.state.get("exit")
            if isinstance(stored, dict):
                return Exit(**stored)
            return Exit(code=None, signal=None, oom_killed=False, message="the container is gone")
        state = attrs.get("State") or {}
        if state.get("Status") in _ALIVE:
            return None
        outcome = exit_of(state, handle.get("memory_mb"), handle["cgroup"]["paths"])
        self._unwatch(handle["container_id"])
        sampler.sample()  # the last one: the parent cgroup still holds the totals
        sampler.remember("exit", to_json(outcome))
        return outcome

    @answering("the container engine")
    async def stop(self, handle: Handle, grace_seconds: float) -> Exit:
        def stop() -> None:
            try:
                self.client().api.stop(handle["container_id"], timeout=max(0, math.ceil(grace_seconds)))
            except docker.errors.NotFound:
                pass

        await asyncio.to_thread(stop)
        outcome = await self.poll(handle)
        if outcome is None:  # the engine said stopped but it is alive (a restart policy?): kill
            with contextlib.suppress(docker.errors.APIError):
                await asyncio.to_thread(self.client().api.kill, handle["container_id"])
            await asyncio.to_thread(self.client().api.wait, handle["container_id"])
            outcome = await self.poll(handle)
        return outcome or Exit(code=None, signal=None, oom_killed=False, message="stopped")

    async def watch(self, handle: Handle) -> AsyncIterator[Status]:
        """Waits on the engine's events stream (one per runtime) for the container's end. An
        engine that does not answer (it restarts) ends nothing: it is asked again until it
        answers, and then says whether the container lived through it. The deployment's log
        says when the engine stopped answering and when it answered again."""
        yield Status("running", running=True)
        unanswered = 0
        while True:
            armed = self._events.arm(handle["container_id"])
            try:
                ended = await self.poll(handle)
            except ENGINE_ERRORS as error:
                unanswered += 1
                if unanswered == 1:
                    log.warning("container %s: the engine does not answer (%s); asking again until it does", handle["container_id"][:12], error)
                    yield Status("running", running=True, log=f"{ENGINE_GONE}: {why(error)}; whether the app still runs is not known until it answers again")
                await asyncio.sleep(min(0.5 * unanswered, 5.0))
                continue
            if unanswered:
                unanswered = 0
                lived = "the container lived on" if ended is None else "the container ended meanwhile"
                yield Status("running", running=True, log=f"{ENGINE_BACK}: {lived}")
            if ended is not None:
                yield Status(ended.message, running=False, exit=ended)
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30.0):
                    await armed.wait()

    async def usage(self, handle: Handle) -> Usage:
        sampler = self._sampler(handle)
        cpu = sampler.sample()
        memory = cgroups.peak_memory_bytes(handle["cgroup"]["paths"])
        return Usage(
            max_memory_mb=None if memory is None else round(memory / 2**20, 1),
            max_cpu_millicores=None if cpu is None else round(cpu, 1),
        )

    async def logs(self, handle: Handle, cursor: LogCursor | None) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
        client = await asyncio.to_thread(self.client)
        async for item in docker_logs.follow(client.api, handle["container_id"], cursor):
            yield item

    @answering("the container engine")
    async def adopt(self, handle: Handle) -> bool:
        attrs = await self._inspect(handle.get("container_id") or handle.get("container_name", ""))
        if attrs is None or attrs.get("Id") != handle.get("container_id"):
            return False
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_INSTANCE) != self.instance:
            return False
        if not (attrs.get("State") or {}).get("Running"):
            return False
        self._watch(handle)
        return True

    @answering("the container engine")
    async def cleanup(self, handle: Handle) -> None:
        cid = handle["container_id"]
        self._unwatch(cid)
        self._samplers.pop(cid, None)

        def remove() -> None:
            try:
                self.client().api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                if error.status_code != 409:  # 409: its removal is already in progress (an orphan sweep)
                    raise

        await asyncio.to_thread(remove)
        cgroup = handle.get("cgroup") or {}
        if cgroup.get("relative"):
            await self._remove_cgroup(Path(cgroup.get("root") or self.cgroup_root), cgroup["relative"])
        if handle.get("state_file"):
            await asyncio.to_thread(shutil.rmtree, Path(handle["state_file"]).parent, True)

    async def _remove_cgroup(self, root: Path, relative: str, within: float = 3.0) -> None:
        """Remove the parent cgroup, waiting (bounded) for the engine's last processes (the
        container's init, Podman's conmon) to leave it after the container's removal."""
        deadline = asyncio.get_running_loop().time() + within
        while not cgroups.remove(root, relative) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 (polls the kernel's cgroup: no event to await)
            await asyncio.sleep(0.05)

    async def _ours(self, deployment_id: int | None = None) -> list[dict[str, Any]]:
        labels = [f"{LABEL_INSTANCE}={self.instance}"]
        if deployment_id is not None:
            labels.append(f"{LABEL_DEPLOYMENT}={deployment_id}")
        return await asyncio.to_thread(
            lambda: self.client().api.containers(all=True, filters={"label": labels})
        )

    async def orphans(self, known: set[int]) -> list[int]:
        found: set[int] = set()
        for summary in await self._ours():
            value = (summary.get("Labels") or {}).get(LABEL_DEPLOYMENT, "")
            if value.isdigit() and int(value) not in known:
                found.add(int(value))
        return sorted(found)

    @answering("the container engine")
    async def remove_orphan(self, deployment_id: int) -> None:
        for summary in await self._ours(deployment_id):
            self._unwatch(summary["Id"])
            self._samplers.pop(summary["Id"], None)
            try:
                await asyncio.to_thread(self.client().api.remove_container, summary["Id"], force=True, v=True)
            except docker.errors.APIError as error:
                if not isinstance(error, docker.errors.NotFound) and error.status_code != 409:  # gone, or already being removed
                    raise
        layout = await self._layout()
        await self._remove_cgroup(self.cgroup_root, layout.relative_path(deployment_id))

    async def close(self) -> None:
        await self._events.close()
        for cid in {*self._tasks, *self._oom_watches}:
            self._unwatch(cid)
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None
