"""The swarm runtime: one deployment is one Docker Swarm service with one replica.

It talks to a swarm manager's Engine API (and, for usage, to each node's own engine). The
service carries this installation's id and the deployment's id in its name and labels
(`spec.py`), so adoption after a restart and the removal of services no deployment owns work,
and two installations on one swarm never touch each other's services. The partition and
instance type become placement constraints and generic resources; memory and cpu become limits
(enforced by the node's engine) and reservations (counted by the scheduler). The port is
published in `mode=host` on a port the node's engine picks; the app is reached at the node's
address. The code and the secret environment travel as swarm secrets (`payload.py`), prepared in
`launch.py`.

The swarm restarts a task on another node when its node dies (restart condition on-failure,
delay `restart_delay_seconds`); an app that exits by itself ends its deployment: within the
restart delay the runtime constrains the service to no node (its task is shut down and kept, with
its log) and records the exit on the service's labels.
What the tasks mean is judged in `tasks.py`, read for every deployment by one poller
(`board.py`); logs are followed per task (`logs.py`), usage on the nodes (`usage.py`).

Handle (JSON, stored by the service):
    {"service_id", "service_name", "instance", "deployment_id", "memory_mb",
     "task_id", "node", "host", "port", "container_id"}   # the last five once it runs
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets as random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import docker
import docker.errors
from docker.types import SecretReference, ServiceMode, UpdateConfig  # fmt: skip

from studios.runtimes.base import Exit, Handle, LaunchError, LaunchSpec, LogCursor, LogLine, Reporter, Runtime, RuntimeEnv, RuntimeSettings, Status, Usage
from studios.runtimes.docker.exits import exit_message
from studios.runtimes.docker.failures import ENGINE_ERRORS, answering, why
from studios.runtimes.docker.images import image_reference
from studios.runtimes.swarm import launch, payload
from studios.runtimes.swarm import logs as swarm_logs
from studios.runtimes.swarm import spec as naming
from studios.runtimes.swarm.board import Board
from studios.runtimes.swarm.settings import SwarmSettings
from studios.runtimes.swarm.tasks import TERMINAL, Node, Snapshot, View, desired, judge, state
from studios.runtimes.swarm.usage import Meter

_NS = 1_000_000_000
log = logging.getLogger(__name__)

REAP_SECONDS = 15.0
"""How long past the stop grace a service's removal waits for the swarm to remove its tasks
(`_remove_service`)."""
SCALE_ATTEMPTS = 3
"""How many times a service's removal tries to scale it to 0 when it changed meanwhile."""
NUDGE_AFTER_SECONDS = 3.0
"""How long after an update that ends its task (an ending, a scale to 0) a task may still be
meant to run on a node before the service is updated again (`_see_stopped`); the swarm normally
acts on such an update within milliseconds."""
NUDGE_ROUNDS = 10
"""How many times `_see_stopped` looks (and asks again) before it leaves the service be."""


class SwarmRuntime(Runtime):
    """Runs deployments as swarm services (see the module docstring)."""

    name = "swarm"
    settings_model = SwarmSettings
    settings: SwarmSettings

    @classmethod
    def available(cls, settings: RuntimeSettings) -> str | None:
        """None when a swarm manager answers at the configured URL, else why not."""
        assert isinstance(settings, SwarmSettings)
        where = settings.url or "DOCKER_HOST or the default socket"
        try:
            client = docker.APIClient(base_url=settings.url, version="auto", timeout=5) if settings.url else docker.from_env(timeout=5).api
            try:
                info = client.info()
            finally:
                client.close()
        except Exception as error:
            return f"no Docker engine answers at {where}: {why(error)}"
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            return f"the Docker engine at {where} is not part of a swarm (docker swarm init / join)"
        if not swarm.get("ControlAvailable"):
            return f"the Docker engine at {where} is a swarm worker; point STUDIOS_SWARM_URL at a manager"
        return None

    def __init__(self, settings: SwarmSettings, env: RuntimeEnv) -> None:
        super().__init__(settings, env)
        self.instance = env.instance
        self._api: docker.APIClient | None = None
        self.board = Board(self.api, self.instance, slow=self.settings.poll_seconds, fast=self.settings.fast_poll_seconds)
        self.meter = Meter(self.env.data_dir / "usage", self.settings.node_urls)
        self._stopping: dict[str, asyncio.Task[None]] = {}  # service id -> its `_ask_again`
        self._stop_updates: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}  # service id -> the update to send again

    def api(self) -> docker.APIClient:
        """The manager's API client, made on first use."""
        if self._api is None:
            url = self.settings.url
            self._api = docker.APIClient(base_url=url, version="auto", max_pool_size=64) if url else docker.from_env(max_pool_size=64).api
        return self._api

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        api = self.api()
        return await asyncio.to_thread(getattr(api, method), *args, **kwargs)

    # -- start ------------------------------------------------------------------------------

    async def start(self, spec: LaunchSpec, report: Reporter) -> Handle:
        image = spec.image
        if not image:
            raise LaunchError("this studio names no docker image, which the swarm runtime needs")
        reference = image_reference(image, spec.tag)
        name = naming.service_name(self.instance, spec.deployment_id)
        labels = naming.labels(self.instance, spec.deployment_id, spec.studio_id)
        secret_env = dict(spec.secret_env)
        try:
            await self._remove_deployment(spec.deployment_id, report, only_name=name)
            pieces = await launch.pack_source(spec, self.settings, self.env.data_dir, report)
            command = None
            if pieces or secret_env:  # the init step runs first, then the image's own command
                engines = [self.api()] + [api for host in self.settings.node_urls if (api := self.meter.node_api(host)) is not None]
                entrypoint, cmd = await launch.image_command(engines, reference, report)
                command = payload.command(entrypoint, cmd, len(pieces))
            refs = await self._create_secrets(name, random.token_hex(3), labels, secret_env, pieces)
            options = launch.service_options(self.settings, spec, reference, name, labels, command, refs, bool(pieces), report)
            try:
                created = await self._call("create_service", **options)
            except docker.errors.APIError as error:
                await self._remove_secrets(spec.deployment_id)
                raise LaunchError(f"the swarm refused the service: {why(error)}") from None
        except ENGINE_ERRORS as error:
            raise LaunchError(f"the swarm manager is unavailable: {why(error)}") from None
        report(f"created swarm service {name}")
        return {
            "service_id": created["ID"], "service_name": name, "instance": self.instance,
            "deployment_id": spec.deployment_id, "memory_mb": spec.memory_mb,
            "task_id": None, "node": None, "host": None, "port": None, "container_id": None,
        }  # fmt: skip

    async def _create_secrets(self, name: str, nonce: str, labels: dict[str, str], secret_env: dict[str, str], pieces: list[bytes]) -> list[SecretReference]:
        contents: list[tuple[str, bytes]] = []
        if secret_env:
            contents.append((payload.ENV_TARGET, payload.env_file(secret_env)))
        contents += [(payload.SOURCE_TARGET.format(index=i), piece) for i, piece in enumerate(pieces)]
        refs = []
        try:
            for target, data in contents:
                secret_name = f"{name}-{nonce}-{target}"
                created = await self._call("create_secret", secret_name, data, labels=labels)
                refs.append(SecretReference(created["ID"], secret_name, filename=target, mode=0o444))
        except docker.errors.APIError as error:
            await self._remove_secrets(int(labels[naming.LABEL_DEPLOYMENT]))
            raise LaunchError(f"the swarm refused a secret: {why(error)}") from None
        return refs

    # -- following what the swarm does --------------------------------------------------------

    def _judge(self, handle: Handle, snapshot: Snapshot) -> View:
        return judge(snapshot, container_port=self.settings.container_port, memory_mb=handle.get("memory_mb"),
                     reschedule_timeout=self.settings.reschedule_timeout_seconds)  # fmt: skip

    async def _snapshot(self, handle: Handle) -> Snapshot:
        """One deployment's service, tasks and the nodes, read now (3 requests)."""

        def read() -> Snapshot:
            api = self.api()
            try:
                service = api.inspect_service(handle["service_id"])
            except docker.errors.NotFound:
                return Snapshot(None, [], {})
            tasks = api.tasks(filters={"service": handle["service_id"]})
            return Snapshot(service, tasks, {n["ID"]: Node.of(n) for n in api.nodes()})

        return await asyncio.to_thread(read)

    def _placed(self, handle: Handle, view: View) -> Handle:
        """The handle with where the running task is now."""
        task = view.task or {}
        container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        node = view.node
        host = (self.settings.node_addresses.get(node.hostname) or node.addr) if node else None
        return {**handle, "task_id": task.get("ID"), "node": node.hostname if node else None,
                "host": host, "port": view.port, "container_id": container}  # fmt: skip

    async def _settle(self, handle: Handle, view: View) -> Exit | None:
        """Act on a view: follow usage where it runs; end the service when the view says so."""
        deployment_id = int(handle["deployment_id"])
        if view.running and view.task is not None and view.node is not None:
            container = ((view.task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
            if container:
                self.meter.watch(deployment_id, view.node.hostname, container)
        if view.exit is None:
            return None
        outcome = view.exit
        if view.end:
            outcome = await self._oom_checked(handle, view, outcome)
            await self._end(handle, outcome)
        self.meter.unwatch(deployment_id)
        return outcome

    async def _oom_checked(self, handle: Handle, view: View, outcome: Exit) -> Exit:
        """An exit by SIGKILL is an out-of-memory kill when the node's engine says so."""
        task, node = view.task or {}, view.node
        container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        api = self.meter.node_api(node.hostname) if node is not None else None
        if outcome.signal != 9 or api is None or not container:
            return outcome
        try:
            attrs = await asyncio.to_thread(api.inspect_container, container)
        except ENGINE_ERRORS:
            return outcome
        if not (attrs.get("State") or {}).get("OOMKilled"):
            return outcome
        return Exit(code=None, signal=9, oom_killed=True, message=exit_message(137, 9, True, handle.get("memory_mb")))

    async def _end(self, handle: Handle, outcome: Exit) -> None:
        """Have the swarm stop the service's task for good (`_retire`) and record how it ended
        (and its peak usage) on its labels, so the swarm does not restart it and every server
        sees the same ending."""
        exit_json = json.dumps({"code": outcome.code, "signal": outcome.signal, "oom_killed": outcome.oom_killed, "message": outcome.message})
        usage_json = json.dumps(self.meter.peaks(int(handle["deployment_id"])))
        for _ in range(5):  # another writer may bump the version between read and update
            try:
                service = await self._call("inspect_service", handle["service_id"])
            except docker.errors.NotFound:
                return
            spec_labels = dict((service.get("Spec") or {}).get("Labels") or {})
            if naming.LABEL_EXIT in spec_labels:
                return
            spec_labels.update({naming.LABEL_EXIT: exit_json, naming.LABEL_USAGE: usage_json})
            try:
                await self._retire(service, spec_labels)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as error:
                if "out of sequence" not in why(error) and "update out of" not in why(error):
                    raise

    async def _retire(self, service: dict[str, Any], labels: dict[str, str] | None = None) -> None:
        """Update the service (as read, at its version) so that no node may run it
        (`ENDED_CONSTRAINT`), its labels replaced by `labels` if given, and see that the swarm
        acts on it. The swarm shuts the task down (stop-first, with the spec's grace) and keeps
        it in its task history, with its log, until the service is removed: a scale to 0 instead
        marks the task for removal, and the swarm deletes it and its log within about 0.3 s of
        its shutdown, before a reader may have read its last lines or a restarted server its
        whole log. The replacement task it creates waits, unplaced, for a node that never comes."""
        template = (service.get("Spec") or {}).get("TaskTemplate") or {}
        placement = dict(template.get("Placement") or {})
        constraints = list(placement.get("Constraints") or [])
        if naming.ENDED_CONSTRAINT not in constraints:
            constraints.append(naming.ENDED_CONSTRAINT)
        placement["Constraints"] = constraints
        changes: dict[str, Any] = {"labels": labels} if labels is not None else {}
        await self._call("update_service", service["ID"], service["Version"]["Index"], task_template={"Placement": placement},
                         update_config=UpdateConfig(parallelism=1, order="stop-first"), fetch_current_spec=True, **changes)  # fmt: skip
        self._see_stopped(service["ID"], self._retire)

    async def _scale_to_0(self, service: dict[str, Any]) -> None:
        """Update the service (as read, at its version) to 0 replicas, its spec otherwise kept,
        and see that the swarm acts on it (before its removal: its tasks are deleted)."""
        await self._call("update_service", service["ID"], service["Version"]["Index"], mode=ServiceMode("replicated", 0), fetch_current_spec=True)
        self._see_stopped(service["ID"], self._scale_to_0)

    def _see_stopped(self, service_id: str, update: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Have `_ask_again` watch the service, sending `update` again if needed (the latest
        update asked for counts; an update sent again asks again, which changes nothing)."""
        self._stop_updates[service_id] = update
        if service_id not in self._stopping:
            task = asyncio.create_task(self._ask_again(service_id), name=f"studios-swarm-stopped-{service_id[:12]}")
            self._stopping[service_id] = task

            def done(_: object) -> None:
                self._stopping.pop(service_id, None)
                self._stop_updates.pop(service_id, None)

            task.add_done_callback(done)

    async def _ask_again(self, service_id: str) -> None:
        """The manager can lose its change to a task on an update that stops it (its log:
        "failed to update task to REMOVE: update out of sequence", when the node's own report on
        that task lands at the same moment) and look at the service again only when something
        changes it: the task runs on, or the swarm restarts an app that exited. While a task is
        still meant to run on a node `NUDGE_AFTER_SECONDS` after the update, update the service
        again (a new version) with the change that stopped it: the swarm then reconciles it."""
        for _ in range(NUDGE_ROUNDS):
            await asyncio.sleep(NUDGE_AFTER_SECONDS)
            try:
                service = await self._call("inspect_service", service_id)
                tasks = await self._call("tasks", filters={"service": service_id})
                if not any(t.get("NodeID") and desired(t) == "running" and state(t) not in TERMINAL for t in tasks):
                    return
                await self._stop_updates[service_id](service)
                log.info("swarm service %s: a task still meant to run after it was stopped; asked the swarm again", service.get("Spec", {}).get("Name", service_id[:12]))
            except docker.errors.NotFound:
                return  # removed: its tasks with it
            except ENGINE_ERRORS:
                pass  # the manager does not answer, or the service changed meanwhile: look again

    async def watch(self, handle: Handle) -> AsyncIterator[Status]:
        """Statuses of the deployment as the swarm places, starts, moves and ends its task."""
        sub = self.board.subscribe(handle["service_id"])
        last: tuple[Any, ...] | None = None
        current = handle
        recheck: float | None = None
        try:
            while True:
                view = self._judge(current, await sub.next(recheck))
                recheck = view.recheck
                sub.fast = not view.settled
                outcome = await self._settle(current, view)
                moved = None
                if view.running:
                    placed = self._placed(current, view)
                    if (placed["task_id"], placed["host"], placed["port"]) != (current.get("task_id"), current.get("host"), current.get("port")):
                        current = moved = placed
                if outcome is not None:
                    yield Status(message=outcome.message, running=False, exit=outcome, log=view.log)
                    return
                if view.key != last or moved is not None:
                    last = view.key
                    yield Status(message=view.message, running=view.running, handle=moved, log=view.log)
        finally:
            sub.close()

    # -- the contract -----------------------------------------------------------------------

    def address(self, handle: Handle) -> tuple[str, int] | None:
        if handle.get("host") and handle.get("port"):
            return str(handle["host"]), int(handle["port"])
        return None

    async def poll(self, handle: Handle) -> Exit | None:
        try:
            snapshot = await self._snapshot(handle)
        except ENGINE_ERRORS:
            return None  # the manager is unreachable: nothing is known to have ended
        return await self._settle(handle, self._judge(handle, snapshot))

    @answering("the swarm manager")
    async def stop(self, handle: Handle, grace_seconds: float) -> Exit:
        outcome = await self.poll(handle)
        if outcome is not None:
            return outcome
        stopped = Exit(code=None, signal=None, oom_killed=False, message="stopped")
        await self._end(handle, stopped)
        # The swarm stops the task with the spec's grace; wait (bounded) until no task runs
        # any more on a node that could still report it.
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + max(grace_seconds, self.settings.stop_grace_seconds) + 15
        while True:
            try:
                snapshot = await self._snapshot(handle)
            except ENGINE_ERRORS:
                break
            live = [t for t in snapshot.tasks if state(t) not in TERMINAL and (node := snapshot.nodes.get(t.get("NodeID") or "")) is not None and node.state == "ready"]
            if not live:
                break
            if loop.time() > deadline:
                log.warning("swarm service %s: a task still runs %.0f s after it was stopped", handle.get("service_name"), deadline - started)
                break
            await asyncio.sleep(0.1)
        self.meter.unwatch(int(handle["deployment_id"]))
        return stopped

    async def usage(self, handle: Handle) -> Usage:
        """The peaks measured here; for a deployment this server does not follow (it ended, or
        another server followed it), also those recorded on the ended service's labels."""
        deployment_id = int(handle["deployment_id"])
        if self.meter.following(deployment_id):
            return self.meter.read(deployment_id)  # sampled every 2 s by the engine: no request
        try:
            service = await self._call("inspect_service", handle["service_id"])
            stored = ((service.get("Spec") or {}).get("Labels") or {}).get(naming.LABEL_USAGE)
            if stored:
                self.meter.seed(deployment_id, json.loads(stored))
        except ENGINE_ERRORS:
            pass  # the manager is unreachable: the peaks measured here
        except ValueError:
            pass  # a label that is not JSON: the same
        return self.meter.read(deployment_id)

    async def logs(self, handle: Handle, cursor: LogCursor | None) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
        def ended(snapshot: Snapshot) -> bool:
            return self._judge(handle, snapshot).exit is not None

        async for item in swarm_logs.follow(self.api, self.board, handle["service_id"], cursor, ended):
            yield item

    @answering("the swarm manager")
    async def adopt(self, handle: Handle) -> bool:
        # A manager that cannot be reached raises (EngineUnreachable): whether the service lives
        # is not known, and the reconcile asks again (False would end a deployment that may well
        # run on).
        try:
            service = await self._call("inspect_service", handle.get("service_id") or handle.get("service_name", ""))
        except docker.errors.NotFound:
            return False
        labels = (service.get("Spec") or {}).get("Labels") or {}
        if service.get("ID") != handle.get("service_id") or labels.get(naming.LABEL_INSTANCE) != self.instance:
            return False
        if labels.get(naming.LABEL_DEPLOYMENT) != str(handle.get("deployment_id")):
            return False
        return await self.poll(handle) is None

    @answering("the swarm manager")
    async def cleanup(self, handle: Handle) -> None:
        deployment_id = int(handle["deployment_id"])
        await self._remove_deployment(deployment_id, lambda _line: None)
        self.meter.forget(deployment_id)

    async def _ours(self, kind: str, deployment_id: int | None = None) -> list[dict[str, Any]]:
        labels = [f"{naming.LABEL_INSTANCE}={self.instance}"]
        if deployment_id is not None:
            labels.append(f"{naming.LABEL_DEPLOYMENT}={deployment_id}")
        result: list[dict[str, Any]] = await self._call(kind, filters={"label": labels})
        return result

    async def _remove_secrets(self, deployment_id: int) -> None:
        for secret in await self._ours("secrets", deployment_id):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                await self._call("remove_secret", secret["ID"])

    async def _remove_deployment(self, deployment_id: int, report: Reporter, only_name: str | None = None) -> None:
        """Remove this deployment's services and secrets (ours by label). With `only_name`, a
        service of that name that is not ours is a `LaunchError`, not removed."""
        if only_name is not None:
            try:
                other = await self._call("inspect_service", only_name)
            except docker.errors.NotFound:
                other = None
            if other is not None:
                other_labels = (other.get("Spec") or {}).get("Labels") or {}
                if other_labels.get(naming.LABEL_INSTANCE) != self.instance or other_labels.get(naming.LABEL_DEPLOYMENT) != str(deployment_id):
                    raise LaunchError(f"a swarm service named {only_name} exists and is not this deployment's")
        for service in await self._ours("services", deployment_id):
            report(f"removing swarm service {service['Spec']['Name']} left by an earlier start")
            await self._remove_service(service)
        await self._remove_secrets(deployment_id)

    async def _remove_service(self, service: dict[str, Any]) -> None:
        """Remove a service once the swarm has removed the tasks it is removing (scaled to 0
        first if it is not): a Docker 20.10 manager crashes when a service is removed while the
        swarm's task reaper deletes one of its tasks (swarmkit's SetServiceTasksRemove reads
        each task again and uses it without checking it still exists; moby/swarmkit#3216, a nil
        check upstream since). A scaled-down task is marked for removal and deleted within
        about 0.3 s of its shutdown: the moment a release comes to remove the service. Older
        tasks (desired state shutdown) stay until the service goes, and are not waited for;
        nor are tasks on a node that is not ready (nothing reaps them meanwhile). Every other
        task is waited for, also one still meant to run: the orchestrator marks the tasks of a
        service scaled to 0 after the update returns. The wait is bounded (the stop grace +
        REAP_SECONDS)."""
        service_id = service["ID"]
        for _ in range(SCALE_ATTEMPTS):
            if not ((service.get("Spec") or {}).get("Mode") or {}).get("Replicated", {}).get("Replicas"):
                break
            try:
                await self._scale_to_0(service)
                break
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                # Changed since it was read (an ending sent again by `_ask_again`): a removal
                # without the scale would leave the unplaced replacement of an ended service for
                # the reaper to delete while the service goes. Read it again and scale that.
                try:
                    service = await self._call("inspect_service", service_id)
                except docker.errors.NotFound:
                    return
        bound = self.settings.stop_grace_seconds + REAP_SECONDS
        deadline = asyncio.get_running_loop().time() + bound
        while asyncio.get_running_loop().time() < deadline:
            tasks = await self._call("tasks", filters={"service": service_id})
            nodes = {node.id: node for node in map(Node.of, await self._call("nodes"))} if tasks else {}
            # Kept until the service goes: tasks already shut down (desired state shutdown), and
            # tasks on a node that is not ready (nothing reaps those meanwhile). Any other task
            # is being removed, or is about to be once the orchestrator acts on the scale to 0
            # (it does so after the update returns: a first look can still find the unplaced
            # replacement meant to run, and a removal then raced its deletion).
            settling = [task for task in tasks if desired(task) != "shutdown"]
            if not any(not task.get("NodeID") or (task["NodeID"] in nodes and nodes[task["NodeID"]].state == "ready") for task in settling):
                break
            await asyncio.sleep(0.1)
        else:
            log.warning("swarm service %s: the tasks being removed were not gone within %.0f s; removing it all the same", service_id[:12], bound)
        with contextlib.suppress(docker.errors.NotFound):
            await self._call("remove_service", service_id)

    async def orphans(self, known: set[int]) -> list[int]:
        found: set[int] = set()
        for kind in ("services", "secrets"):
            for item in await self._ours(kind):
                value = ((item.get("Spec") or {}).get("Labels") or {}).get(naming.LABEL_DEPLOYMENT, "")
                if value.isdigit() and int(value) not in known:
                    found.add(int(value))
        return sorted(found)

    @answering("the swarm manager")
    async def remove_orphan(self, deployment_id: int) -> None:
        await self._remove_deployment(deployment_id, lambda _line: None)
        self.meter.forget(deployment_id)

    async def close(self) -> None:
        for task in list(self._stopping.values()):
            task.cancel()
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)
        await self.board.close()
        self.meter.close()
        if self._api is not None:
            await asyncio.to_thread(self._api.close)
            self._api = None

