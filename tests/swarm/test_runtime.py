"""The swarm runtime against the real 3-node swarm (`scripts/swarm-up`): placement by partition,
the scheduler's reason for a task nothing can place, limits in the node's cgroups, params and
secrets, the repo carried to the task, logs exactly once across a restart, exits, stop,
adoption, orphans and usage measured on the node. Node crashes are in test_node_failure.py.

Every wait is for a condition with a deadline; none sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from gitserver import git_http_server
from studios.runtimes.base import Source
from studios.runtimes.swarm import SwarmRuntime
from studios.runtimes.swarm.spec import ENDED_CONSTRAINT

from .conftest import eventually, make_spec, manager_cli, statuses_until

pytestmark = [pytest.mark.swarm, pytest.mark.anyio]

CGROUP = Path("/sys/fs/cgroup")


async def running(rt: SwarmRuntime, handle: dict[str, Any], within: float = 30) -> dict[str, Any]:
    """The handle once the task runs (from `watch`)."""
    seen = await statuses_until(rt, handle, lambda s: s.running or s.exit is not None, within)
    assert seen[-1].running, seen
    moved = [s.handle for s in seen if s.handle]
    assert moved, seen
    return moved[-1]


async def get(handle: dict[str, Any], rt: SwarmRuntime, path: str = "/", within: float = 10) -> str:
    host, port = rt.address(handle) or ("", 0)

    async def attempt() -> str | None:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(f"http://{host}:{port}{path}")
            return response.text if response.status_code == 200 else None
        except httpx.HTTPError:
            return None

    return await eventually(attempt, within, f"HTTP 200 from {host}:{port}{path}")


def node_api(swarm: dict[str, str], hostname: str) -> docker.APIClient:
    return docker.APIClient(base_url=json.loads(swarm["STUDIOS_SWARM_NODE_URLS"])[hostname], version="auto")


async def test_a_gpu_studio_lands_on_a_gpu_node_and_answers_there(runtime, shared_swarm, tmp_path):
    lines: list[str] = []
    handle = await runtime.start(make_spec(tmp_path, partition="gpu", instance_type="small"), lines.append)
    assert lines == [f"created swarm service {handle['service_name']}"]
    assert runtime.address(handle) is None  # not placed yet
    placed = await running(runtime, handle)
    assert placed["node"] in ("swn2", "swn3")
    node = json.loads(manager_cli(shared_swarm, "node", "inspect", placed["node"]))[0]
    assert node["Spec"]["Labels"]["partition"] == "gpu"
    assert placed["host"] == node["Status"]["Addr"]
    assert await get(placed, runtime) == "hello from studios-test\n"
    service = json.loads(manager_cli(shared_swarm, "service", "inspect", handle["service_id"]))[0]
    assert service["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == ["node.labels.partition==gpu"]
    assert service["Spec"]["Labels"]["studios.deployment_id"] == str(handle["deployment_id"])
    assert service["Endpoint"]["Ports"][0]["PublishMode"] == "host"


async def test_a_partition_no_node_offers_stays_pending_with_the_schedulers_reason(runtime, tmp_path):
    handle = await runtime.start(make_spec(tmp_path, partition="tpu"), lambda line: None)
    seen = await statuses_until(runtime, handle, lambda s: "no suitable node" in s.message, 20)
    assert seen[-1].message == "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    assert not any(s.running or s.exit for s in seen)
    assert await runtime.poll(handle) is None
    assert runtime.address(handle) is None


async def test_limits_are_the_containers_cgroup_limits_on_its_node(runtime, shared_swarm, tmp_path):
    handle = await runtime.start(make_spec(tmp_path, partition="gpu", memory_mb=96, cpu_millicores=300), lambda line: None)
    placed = await running(runtime, handle)
    leaf = f"{placed['node']}/{placed['container_id']}"
    assert int((CGROUP / "memory" / leaf / "memory.limit_in_bytes").read_text()) == 96 << 20
    quota = int((CGROUP / "cpu" / leaf / "cpu.cfs_quota_us").read_text())
    period = int((CGROUP / "cpu" / leaf / "cpu.cfs_period_us").read_text())
    assert quota / period == pytest.approx(0.3)
    resources = json.loads(manager_cli(shared_swarm, "service", "inspect", handle["service_id"]))[0]["Spec"]["TaskTemplate"]["Resources"]
    assert resources["Reservations"] == {"NanoCPUs": 300_000_000, "MemoryBytes": 96 << 20}


async def test_params_and_secret_env_reach_the_app_and_the_secret_stays_out_of_the_specs(runtime, shared_swarm, tmp_path):
    secret = "key-s3cr3t'$(id)"
    app = 'printf "%s|%s" "$STUDIO_PARAM" "$CIVIS_API_KEY" > index.html; exec httpd -f -p $PORT'
    spec = make_spec(tmp_path, app, partition="gpu", env={"STUDIO_PARAM": "42"}, secret_env={"CIVIS_API_KEY": secret})
    handle = await runtime.start(spec, lambda line: None)
    placed = await running(runtime, handle)
    assert await get(placed, runtime) == f"42|{secret}"
    service = manager_cli(shared_swarm, "service", "inspect", handle["service_id"])
    assert "STUDIO_PARAM=42" in service and "key-s3cr3t" not in service
    secrets = json.loads(service)[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert [s["File"]["Name"] for s in secrets] == ["studios-env"]
    assert "key-s3cr3t" not in manager_cli(shared_swarm, "secret", "inspect", secrets[0]["SecretID"])
    container = json.dumps(node_api(shared_swarm, placed["node"]).inspect_container(placed["container_id"]))
    assert "STUDIO_PARAM=42" in container and "key-s3cr3t" not in container


async def test_the_repo_reaches_the_task_with_its_credential_kept_on_the_server(runtime, shared_swarm, tmp_path):
    origin = tmp_path / "repos" / "app"
    origin.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    (origin / "index.html").write_text("from the repo\n")
    (origin / "bin").mkdir()
    (origin / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    (origin / "bin" / "hello").chmod(0o755)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "app"]):
        subprocess.run(["git", *args], cwd=origin, env=env, check=True, capture_output=True)
    password = "git-Pa55word-x"
    report: list[str] = []
    with git_http_server(origin.parent, "alice", password) as base:
        source = Source(url=f"{base}/app", ref="main", username="alice", password=password)
        handle = await runtime.start(make_spec(tmp_path, partition="cpu", source=source), report.append)
    assert any("travels to the task as 1 swarm secret" in line for line in report), report
    assert not any(password in line for line in report)
    placed = await running(runtime, handle)
    assert await get(placed, runtime) == "from the repo\n"
    service = manager_cli(shared_swarm, "service", "inspect", handle["service_id"])
    assert password not in service and json.loads(service)[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Dir"] == "/workspace"
    files = node_api(shared_swarm, placed["node"]).exec_create(placed["container_id"], ["sh", "-c", "ls -A /workspace; /workspace/bin/hello"])
    out = node_api(shared_swarm, placed["node"]).exec_start(files["Id"]).decode()
    assert out.split() == ["bin", "index.html", "hi"]  # the code only: no .git, nothing of the runtime's


async def test_logs_apart_and_exactly_once_across_a_service_restart(make_runtime, shared_swarm, tmp_path):
    first = make_runtime(shared_swarm)
    app = 'i=0; while [ $i -lt 30 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.05; done'
    handle = await first.start(make_spec(tmp_path, app, partition="cpu"), lambda line: None)
    got: list[tuple[str, str]] = []
    cursor = None
    async for batch, position in first.logs(handle, None):
        got += [(line.stream, line.message) for line in batch]
        cursor = position
        if len(got) >= 12:
            break
    await first.close()  # the service "restarts": a new runtime object, the stored cursor
    second = make_runtime(shared_swarm, instance=first.instance)

    async def rest() -> None:
        async for batch, _ in second.logs(handle, json.loads(json.dumps(cursor))):
            got.extend((line.stream, line.message) for line in batch)

    await asyncio.wait_for(rest(), 30)
    assert sorted(m for s, m in got if s == "stdout") == sorted(f"out {i}" for i in range(30))
    assert sorted(m for s, m in got if s == "stderr") == sorted(f"err {i}" for i in range(30))
    assert [m for s, m in got if s == "stdout"] == [f"out {i}" for i in range(30)]  # in order, each once


async def test_an_app_that_exits_ends_its_deployment_and_the_swarm_does_not_restart_it(runtime, shared_swarm, tmp_path):
    handle = await runtime.start(make_spec(tmp_path, "echo bye; exit 3", partition="cpu"), lambda line: None)
    seen = await statuses_until(runtime, handle, lambda s: s.exit is not None, 30)
    assert seen[-1].exit.code == 3 and seen[-1].exit.message == "exited with code 3"
    assert seen[-1].log == "the app exited with code 3 on swn1"
    assert (await runtime.poll(handle)).message == "exited with code 3"

    async def none_on_a_node() -> list[dict[str, Any]] | None:
        tasks = await asyncio.to_thread(runtime.api().tasks, filters={"service": handle["service_id"]})
        busy = [t for t in tasks if t.get("NodeID") and t["Status"]["State"] in ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")]
        return None if busy else tasks

    tasks = await eventually(none_on_a_node, 15, "the swarm's restart to be dropped")
    # The swarm may have prepared (created, not started) a replacement container: the app ran once.
    lines = [(line.stream, line.message) async for batch, _ in runtime.logs(handle, None) for line in batch]
    assert lines == [("stdout", "bye")]
    service = await asyncio.to_thread(runtime.api().inspect_service, handle["service_id"])
    assert ENDED_CONSTRAINT in service["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    # What replaces it waits for a node that never comes.
    assert all(t["Status"]["State"] == "pending" for t in tasks if not t.get("NodeID")), tasks


async def test_stop_and_adoption_by_a_restarted_service(make_runtime, shared_swarm, tmp_path):
    first = make_runtime(shared_swarm)
    handle = await first.start(make_spec(tmp_path, partition="cpu"), lambda line: None)
    placed = await running(first, handle)
    await first.close()
    second = make_runtime(shared_swarm, instance=first.instance)
    assert await second.adopt(placed)
    assert not await make_runtime(shared_swarm).adopt(placed)  # another installation's
    assert await second.poll(placed) is None
    outcome = await second.stop(placed, 1)
    assert outcome.message == "stopped"
    assert not await second.adopt(placed)
    assert (await second.poll(placed)).message == "stopped"
    assert (await second.stop(placed, 1)).message == "stopped"  # idempotent


async def test_a_service_is_removed_only_once_the_swarm_has_removed_its_tasks(runtime, shared_swarm, tmp_path):
    """A Docker 20.10 manager crashed (a nil task in swarmkit's SetServiceTasksRemove) when a
    service was removed while the swarm's reaper deleted its just-stopped task: a release did
    that, the moment the task had stopped. Now the removal waits until no task is being
    removed (desired state Remove), nor still meant to run: the orchestrator marks the tasks
    of a service scaled to 0 only after the update returns, so a first look can find the
    ended service's unplaced replacement still meant to run (here that look is the one from
    before the scale, as a busy manager shows it) and a removal then raced its deletion."""
    handle = await runtime.start(make_spec(tmp_path, partition="cpu"), lambda line: None)
    placed = await running(runtime, handle)
    assert (await runtime.stop(placed, 1)).message == "stopped"
    tasks_at_removal: list[list[str]] = []  # the desired state of each task the service has then
    listings: list[list[str]] = []  # the desired states in each task listing the runtime read
    before_the_scale: list[Any] = []
    call = runtime._call

    async def noting(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "update_service" and "mode" in kwargs and not before_the_scale:
            before_the_scale.append(await call("tasks", filters={"service": args[0]}))
        if method == "remove_service":
            tasks_at_removal.append(manager_cli(shared_swarm, "service", "ps", "--format", "{{.DesiredState}}", args[0]).split())
        if method == "tasks" and before_the_scale and not listings:
            result = before_the_scale[0]  # the manager has not acted on the scale yet
        else:
            result = await call(method, *args, **kwargs)
        if method == "tasks":
            listings.append([task.get("DesiredState") for task in result])
        return result

    runtime._call = noting  # type: ignore[method-assign]
    await runtime.cleanup(placed)
    assert set(listings[0]) - {"shutdown"} and listings[-1] and set(listings[-1]) == {"shutdown"}, listings
    assert len(tasks_at_removal) == 1 and set(tasks_at_removal[0]) == {"Shutdown"}, tasks_at_removal
    assert manager_cli(shared_swarm, "service", "ls", "-q", "--filter", f"label=studios.instance={runtime.instance}").strip() == ""


async def test_a_service_changed_meanwhile_is_still_scaled_to_0_before_its_removal(runtime, shared_swarm, tmp_path):
    """An ended service keeps an unplaced replacement task; its removal scales it to 0 first (so
    the swarm deletes that task before the service goes, not while it goes: the 20.10 crash
    above). The service can change between the listing and the scale (the runtime sends an
    ending again while a task runs on): the scale, refused as out of sequence, is made again on
    the service read anew."""
    handle = await runtime.start(make_spec(tmp_path, partition="cpu"), lambda line: None)
    placed = await running(runtime, handle)
    assert (await runtime.stop(placed, 1)).message == "stopped"
    replicas_at_removal: list[int] = []
    call = runtime._call
    changed: list[bool] = []

    async def changing_it_first(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "update_service" and not changed:  # someone else's update lands first
            changed.append(True)
            manager_cli(shared_swarm, "service", "update", "--detach", "--label-add", "studios-test=changed", args[0])
        if method == "remove_service":
            replicas_at_removal.append(int(manager_cli(shared_swarm, "service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}", args[0]).strip()))
        return await call(method, *args, **kwargs)

    runtime._call = changing_it_first  # type: ignore[method-assign]
    await runtime.cleanup(placed)
    assert changed and replicas_at_removal == [0]
    assert manager_cli(shared_swarm, "service", "ls", "-q", "--filter", f"label=studios.instance={runtime.instance}").strip() == ""


async def test_a_stop_the_swarm_lost_is_asked_again(runtime, shared_swarm, tmp_path):
    """The manager can lose its change to a task when an update stops it (its log: "failed to
    update task to REMOVE: update out of sequence", when the node's report on that task lands
    at the same moment) and look at the service again only when it changes: the task ran on (a
    stop waited out its whole bound with the app still running; an app that exited was
    restarted). Here the stop's update records the ending but leaves the task free to run, as
    the lost change did; the runtime must send that change again, and the stop return with the
    task shut down, its ending kept."""
    handle = await runtime.start(make_spec(tmp_path, partition="cpu"), lambda line: None)
    placed = await running(runtime, handle)
    updates: list[bool] = []  # whether each update_service kept the service off every node
    call = runtime._call

    async def losing_the_first_stop(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "update_service":
            updates.append(ENDED_CONSTRAINT in (kwargs.get("task_template") or {}).get("Placement", {}).get("Constraints", []))
            if len(updates) == 1:
                kwargs.pop("task_template")
        return await call(method, *args, **kwargs)

    runtime._call = losing_the_first_stop  # type: ignore[method-assign]
    assert (await runtime.stop(placed, 1)).message == "stopped"
    assert updates[:2] == [True, True], updates  # the stop's own, then the one asking again
    tasks = await call("tasks", filters={"service": placed["service_id"]})
    assert not [t for t in tasks if t.get("NodeID") and t["DesiredState"] == "running"], tasks
    assert (await runtime.poll(placed)).message == "stopped"  # the ending recorded on the service stays


async def test_an_ended_task_is_kept_with_its_whole_log(runtime, shared_swarm, tmp_path):
    """A stop, or an app's own exit, shuts the task down and keeps it (a scale to 0 had the
    swarm delete it, and its log, within about 0.3 s): a server that starts reading the log
    from the beginning after the end reads every line, however late it comes."""
    app = "echo before-the-end; trap 'echo stopping-now; exit 0' TERM; httpd -p $PORT; while true; do sleep 1; done"
    stopped = await running(runtime, await runtime.start(make_spec(tmp_path, app, partition="cpu"), lambda line: None))
    exits = await runtime.start(make_spec(tmp_path, "echo last-words >&2; exit 3", partition="cpu"), lambda line: None)

    async def its_exit() -> Any:  # watched from the start: unwatched, the swarm restarts it
        async for status in runtime.watch(exits):
            if status.exit is not None:
                return status.exit
        return None

    watching = asyncio.ensure_future(asyncio.wait_for(its_exit(), 30))
    assert (await runtime.stop(stopped, 5)).message == "stopped"
    ended = await watching
    assert ended is not None and ended.code == 3, ended
    for handle, stream, wanted in ((stopped, "stdout", ["before-the-end", "stopping-now"]), (exits, "stderr", ["last-words"])):
        tasks = await runtime._call("tasks", filters={"service": handle["service_id"]})
        assert any(t["DesiredState"] == "shutdown" and t.get("NodeID") for t in tasks), tasks  # kept, not marked for removal
        assert not any(t["DesiredState"] == "remove" for t in tasks), tasks

        async def whole_log(handle: dict[str, Any] = handle, stream: str = stream) -> list[str]:
            return [line.message async for batch, _ in runtime.logs(handle, None) for line in batch if line.stream == stream]

        assert await asyncio.wait_for(whole_log(), 30) == wanted, handle["service_name"]
        await runtime.cleanup(handle)


async def test_orphans_are_found_by_installation_and_removed_with_their_secrets(make_runtime, shared_swarm, tmp_path):
    rt = make_runtime(shared_swarm)
    other = make_runtime(shared_swarm)
    kept = await rt.start(make_spec(tmp_path, partition="cpu"), lambda line: None)
    orphan = await rt.start(make_spec(tmp_path, partition="cpu", secret_env={"K": "v"}), lambda line: None)
    assert await rt.orphans({kept["deployment_id"]}) == [orphan["deployment_id"]]
    assert await other.orphans(set()) == []
    await rt.remove_orphan(orphan["deployment_id"])
    assert await rt.orphans({kept["deployment_id"]}) == []
    # Other workers' instances may use the same deployment id at the same time: filter by both.
    filters = ["--filter", f"label=studios.instance={rt.instance}", "--filter", f"label=studios.deployment_id={orphan['deployment_id']}"]
    assert manager_cli(shared_swarm, "service", "ls", "-q", *filters).strip() == ""
    assert manager_cli(shared_swarm, "secret", "ls", "-q", *filters).strip() == ""
    assert await rt.poll(orphan) is not None


async def test_usage_is_measured_on_the_node_that_runs_it(runtime, tmp_path):
    app = "yes > /dev/null & yes > /dev/null & exec httpd -f -p $PORT"
    handle = await runtime.start(make_spec(tmp_path, app, partition="gpu", cpu_millicores=400), lambda line: None)
    placed = await running(runtime, handle)

    async def measured() -> Any:
        usage = await runtime.usage(placed)
        return usage if usage.max_cpu_millicores and usage.max_cpu_millicores > 250 else None

    usage = await eventually(measured, 20, "cpu usage measured on the node", step=0.25)
    assert usage.max_cpu_millicores < 500  # the limit holds
    assert usage.max_memory_mb and usage.max_memory_mb > 0
    await runtime.stop(placed, 1)
    assert (await runtime.usage(placed)).max_cpu_millicores == usage.max_cpu_millicores or (await runtime.usage(placed)).max_cpu_millicores >= usage.max_cpu_millicores


async def test_generic_resources_of_a_partition_are_reserved(make_runtime, shared_swarm, tmp_path):
    rt = make_runtime(shared_swarm, generic_resources={"gpu": {"NVIDIA-GPU": 1}})
    handle = await rt.start(make_spec(tmp_path, partition="gpu"), lambda line: None)
    placed = await running(rt, handle)
    env = node_api(shared_swarm, placed["node"]).inspect_container(placed["container_id"])["Config"]["Env"]
    assert any(e.startswith(f"DOCKER_RESOURCE_NVIDIA-GPU=GPU-n{placed['node'][-1]}-") for e in env), env


async def test_a_missing_image_ends_with_the_swarms_reason(runtime, tmp_path):
    handle = await runtime.start(make_spec(tmp_path, image="studios-test/none", partition="cpu"), lambda line: None)
    seen = await statuses_until(runtime, handle, lambda s: s.exit is not None, 60)
    assert "studios-test/none" in seen[-1].exit.message, seen
