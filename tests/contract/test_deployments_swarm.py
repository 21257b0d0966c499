"""Deployments end to end on the Docker Swarm runtime: the published `civis` client against
`studios serve` run as a subprocess, on the one-machine 3-node swarm (`scripts/swarm-up`:
swn1 labelled `partition=cpu`, swn2 and swn3 `partition=gpu`). The service declares its
partitions in a partitions file (`STUDIOS_PARTITIONS_FILE`): `cpu`, `gpu` and `tpu` run on
`runtime = "swarm"`, and no node offers `tpu`. The default runtime stays `process`: only the
partitions send studios to the swarm.

What the swarm itself did is read from its manager (`docker -H <manager>`): which node runs a
deployment's task, how many tasks a service ever had, the cgroup limits on that node. Tests
that crash a node take the swarm for themselves (`lab.exclusive`). Skipped with the reason when
the swarm cannot come up here, failed in CI.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import TEST_DATABASE_URL, pg_database
from core.test_several_servers import holder
from studios.runtimes.registry import instance_id
from swarm import lab

from .server import REPO, OpenedApp, StudiosServer, log_lines, messages, open_link, poll, studios_server, wait_state

civis = pytest.importorskip("civis", reason="the contract tests need the civis client (pip install -e '.[test]')")

pytestmark = pytest.mark.swarm

IMAGE = "studios-test/busybox"
START_TIMEOUT = 10
CGROUP = Path("/sys/fs/cgroup")
TICKER = 'httpd -p $PORT; i=0; while true; do echo "tick $i $(hostname)"; i=$((i+1)); usleep 100000; done'
PARTITIONS = """
default_partition = "cpu"
{sections}
"""
SECTION = """
[partitions.{label}]
runtime = "swarm"
default_instance_type = "small"

[partitions.{label}.instance_types.small]
cpu = 500
memory = 256
disk = 1.0
"""

RELEASE_WITHIN = 180
"""Seconds a test waits for a released deployment's service to be gone (see `released`)."""

shared_swarm, exclusive_swarm = lab.shared_swarm, lab.exclusive_swarm  # the swarm fixtures of every swarm test module


def partitions_file(root: Path) -> Path:
    path = root / "partitions.toml"
    path.write_text(PARTITIONS.format(sections="".join(SECTION.format(label=label) for label in ("cpu", "gpu", "tpu"))))
    return path


def swarm_settings(swarm: dict[str, str], root: Path) -> dict[str, str]:
    """What `studios serve` needs to run the partitions on this swarm."""
    return {
        "STUDIOS_RUNTIME": "process",
        "STUDIOS_PARTITIONS_FILE": str(partitions_file(root)),
        "STUDIOS_SWARM_URL": swarm["STUDIOS_SWARM_URL"],
        "STUDIOS_SWARM_NODE_URLS": swarm["STUDIOS_SWARM_NODE_URLS"],
        "STUDIOS_SWARM_STOP_GRACE_SECONDS": "2",
        "STUDIOS_START_TIMEOUT_SECONDS": str(START_TIMEOUT),
        "STUDIOS_STOP_GRACE_SECONDS": "2",
        "STUDIOS_IDLE_SLEEP_SECONDS": "0",
    }


def manager(swarm: dict[str, str], *args: str) -> str:
    return subprocess.run(["docker", "-H", swarm["STUDIOS_SWARM_URL"], *args], capture_output=True, text=True, timeout=60, check=True).stdout


def running(http: httpx.Client, path: str) -> bool:
    """Whether the deployment at `path` is running; fails, saying why, once it has ended."""
    dep = http.get(path).json()
    if dep["state"] == "terminated":
        system = [line["message"] for line in http.get(f"{path}/logs", params={"limit": 100000}).json() if line["source"] == "system"]
        raise AssertionError(f"{path} ended: {dep['stateMessage']!r}; its system log: {system}")
    return bool(dep["state"] == "running")


def services_of(swarm: dict[str, str], instance: str, deployment_id: int | None = None) -> list[dict[str, Any]]:
    """The swarm services of this installation (and deployment), as the manager lists them."""
    filters = ["--filter", f"label=studios.instance={instance}"]
    if deployment_id is not None:
        filters += ["--filter", f"label=studios.deployment_id={deployment_id}"]
    found = []
    for service_id in manager(swarm, "service", "ls", "-q", *filters).split():
        try:
            found += json.loads(manager(swarm, "service", "inspect", service_id))
        except subprocess.CalledProcessError as error:
            if "no such service" not in (error.stderr or "").lower():
                raise  # a failing manager is not a removed service
            continue  # removed between the listing and now (a release completing)
    return found


def tasks_of(swarm: dict[str, str], service_id: str) -> list[dict[str, Any]]:
    """Every task the service ever had (the manager keeps a service's task history)."""
    ids = manager(swarm, "service", "ps", "-q", "--no-trunc", service_id).split()
    return json.loads(manager(swarm, "inspect", *ids)) if ids else []


def node_of(swarm: dict[str, str], task: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = json.loads(manager(swarm, "node", "inspect", task["NodeID"]))[0]
    return node


def remove_leftovers(swarm: dict[str, str], instance: str) -> None:
    """Teardown, last resort: this installation's services and secrets on the swarm."""
    for kind in ("service", "secret"):
        ids = manager(swarm, kind, "ls", "-q", "--filter", f"label=studios.instance={instance}").split()
        if ids:
            subprocess.run(["docker", "-H", swarm["STUDIOS_SWARM_URL"], kind, "rm", *ids], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def swarm() -> dict[str, str]:
    return lab.require()


@pytest.fixture(scope="module")
def server(swarm: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    root = tmp_path_factory.mktemp("deploy-swarm")
    with studios_server(root / "server", name="deploy_swarm", env=swarm_settings(swarm, root)) as srv:
        srv.keys = {"alice": srv.create_user("alice")}  # type: ignore[attr-defined]
        yield srv
    remove_leftovers(swarm, srv.env["STUDIOS_INSTANCE"])  # after studios_server ended them: what is left


@pytest.fixture
def client(server: StudiosServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CIVIS_API_ENDPOINT", server.url)
    monkeypatch.setenv("CIVIS_API_KEY", server.keys["alice"])  # type: ignore[attr-defined]
    return civis.APIClient()




def studio(client: Any, name: str, partition: str, app_cmd: str, params: dict[str, str] | None = None, **extra: Any) -> int:
    given = [{"name": "APP_CMD", "type": "string", "value": app_cmd}] + [{"name": k, "type": "string", "value": v} for k, v in (params or {}).items()]
    return int(client.studios.post(name=name, docker_image_name=IMAGE, docker_image_tag="latest", partition_label=partition, params=given, **extra).id)


def deploy(client: Any, studio_id: int) -> int:
    dep = client.studios.post_deployments(studio_id)
    assert dep.state == "pending", dep
    return int(dep.deployment_id)


def running_on(client: Any, sid: int, did: int) -> list[str]:
    """The nodes the system log says the deployment ran on, in order ("running on swn2",
    "moved to swn3 after node swn2 went down")."""
    nodes = []
    for message in messages(log_lines(client, sid, did), "system"):
        if message.startswith(("running on swn", "moved to swn")):
            nodes.append(message.split()[2])
    return nodes


def released(client: Any, swarm: dict[str, str], server: StudiosServer, sid: int, did: int) -> None:
    """After a DELETE: the engine releases the workload (its service is removed from the swarm)
    without a failed attempt (which the deployment's log would show)."""
    try:
        # A release stops the task (the swarm's grace, bounded by the runtime at grace + 15 s),
        # drains the rest of its log (up to 30 s for a node that stops answering mid-read) and
        # then removes the service: minutes on a loaded machine, so the bound is generous.
        poll(lambda: not services_of(swarm, server.env["STUDIOS_INSTANCE"], did), RELEASE_WITHIN, "the service to be removed from the swarm")
    except AssertionError as error:
        raise AssertionError(f"{error}\nthe server's log:\n{server.log_tail(6000)}") from None
    finally:
        trouble = [f"{line.stream}: {line.message}" for line in log_lines(client, sid, did) if line.source == "system" and line.stream == "stderr"]
        assert not trouble, trouble


def the_task(swarm: dict[str, str], instance: str, did: int) -> dict[str, Any]:
    """The deployment's one running task, from the manager."""
    [service] = services_of(swarm, instance, did)
    running = [t for t in tasks_of(swarm, service["ID"]) if t["Status"]["State"] == "running"]
    assert len(running) == 1, running
    return running[0]


def test_a_gpu_studio_runs_on_a_gpu_node_with_its_params_and_limits(client: Any, server: StudiosServer, shared_swarm: dict[str, str]) -> None:
    app = 'printf "%s|%s" "$GREETING" "${#CIVIS_API_KEY}" > index.html; echo "serving $GREETING"; exec httpd -f -p $PORT'
    sid = studio(client, "on a gpu", "gpu", app, {"GREETING": "hello, swarm"}, required_resources={"memory": 96, "cpu": 300})
    did = deploy(client, sid)
    dep = wait_state(client, sid, did, "running")

    page = open_link(dep.display_url)
    greeting, key_length = page.text.split("|")
    assert page.status_code == 200 and greeting == "hello, swarm"
    assert int(key_length) > 20  # the app's API key reached it (as a swarm secret, not in the spec)

    task = the_task(shared_swarm, server.env["STUDIOS_INSTANCE"], did)
    node = node_of(shared_swarm, task)
    assert node["Spec"]["Labels"]["partition"] == "gpu"
    assert running_on(client, sid, did) == [node["Description"]["Hostname"]]  # and the user is told where
    lines = log_lines(client, sid, did)
    assert "serving hello, swarm" in messages(lines, "user", "stdout")
    assert "disk limit of 1 GB is not enforced: swarm services cannot limit a container's disk" in messages(lines, "system")

    # The limits are the container's cgroup limits on that node (each node's dockerd has its
    # own cgroup parent, /swnN).
    leaf = f"{node['Description']['Hostname']}/{task['Status']['ContainerStatus']['ContainerID']}"
    assert int((CGROUP / "memory" / leaf / "memory.limit_in_bytes").read_text()) == 96 << 20
    quota = int((CGROUP / "cpu" / leaf / "cpu.cfs_quota_us").read_text())
    period = int((CGROUP / "cpu" / leaf / "cpu.cfs_period_us").read_text())
    assert quota / period == pytest.approx(0.3)

    client.studios.delete_deployments(sid, did)
    ended = wait_state(client, sid, did, "terminated", timeout=30)
    assert ended.state_message == "stopped by alice"
    assert ended.max_memory_usage is not None and ended.max_memory_usage > 0  # measured on the node
    released(client, shared_swarm, server, sid, did)


def test_a_partition_no_node_offers_stays_pending_with_the_schedulers_reason(client: Any, server: StudiosServer, shared_swarm: dict[str, str]) -> None:
    sid = studio(client, "nowhere to go", "tpu", "exec httpd -f -p $PORT")
    did = deploy(client, sid)
    reason = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    poll(lambda: client.studios.get_deployments(sid, did).state_message == reason, 30, "the scheduler's reason as stateMessage")
    # It stays pending past the start timeout: that counts only once a node runs it.
    observed_until = time.monotonic() + START_TIMEOUT + 3
    while time.monotonic() < observed_until:
        dep = client.studios.get_deployments(sid, did)
        assert (dep.state, dep.state_message) == ("pending", reason)
        time.sleep(0.5)
    assert reason in messages(log_lines(client, sid, did), "system")
    [service] = services_of(shared_swarm, server.env["STUDIOS_INSTANCE"], did)
    assert service["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == ["node.labels.partition==tpu"]
    client.studios.delete_deployments(sid, did)
    assert wait_state(client, sid, did, "terminated", timeout=30).state_message == "stopped by alice"
    released(client, shared_swarm, server, sid, did)


def test_a_crashed_nodes_deployment_comes_back_on_the_other_gpu_node(client: Any, server: StudiosServer, exclusive_swarm: dict[str, str]) -> None:
    sid = studio(client, "survives a crash", "gpu", TICKER)
    did = deploy(client, sid)
    dep = wait_state(client, sid, did, "running")
    viewer = OpenedApp(dep.display_url)  # a viewer keeps the page open across the crash (links open once)
    assert viewer.get("/").text.strip() == "hello from studios-test"

    def ticks() -> list[str]:
        return [m for m in messages(log_lines(client, sid, did), "user", "stdout") if m.startswith("tick ")]

    poll(lambda: len(ticks()) >= 5, 15, "a few lines before the crash")
    [crashed] = running_on(client, sid, did)
    began = time.monotonic()
    subprocess.run([str(REPO / "scripts" / "swarm" / "node-down"), crashed[-1], "crash"], check=True, capture_output=True, timeout=60)

    def answers_again() -> bool:
        moved = len(running_on(client, sid, did)) == 2
        return moved and viewer.get("/").text.strip() == "hello from studios-test"

    try:
        poll(answers_again, 60, "the app to answer through its displayUrl on another node", interval=0.05)
    except AssertionError as error:  # say where it stood: the tasks' nodes, the state, the system lines, the proxy's answer
        seen = client.studios.get_deployments(sid, did)
        answer = viewer.get("/")
        raise AssertionError(f"{error}; ran on {running_on(client, sid, did)}; state {seen.state} ({seen.state_message}); "
                             f"displayUrl answered {answer.status_code} {answer.text[:200]!r}; system lines {messages(log_lines(client, sid, did), 'system')[-12:]}") from None
    print(f"node {crashed} crashed -> the displayUrl answers again after {time.monotonic() - began:.1f} s")
    moved_to = running_on(client, sid, did)[1]
    assert moved_to in ("swn2", "swn3") and moved_to != crashed
    assert wait_state(client, sid, did, "running").state == "running"
    system = messages(log_lines(client, sid, did), "system")
    assert any(m.startswith(f"node {crashed} is down") for m in system), system
    assert f"moved to {moved_to} after node {crashed} went down" in system
    first_container = ticks()[0].split()[2]
    poll(lambda: any(not t.endswith(first_container) for t in ticks()), 15, "lines from the new task")

    client.studios.delete_deployments(sid, did)
    wait_state(client, sid, did, "terminated", timeout=30)
    released(client, exclusive_swarm, server, sid, did)  # while the crashed node is still down
    lines = [(line.stream, line.message) for line in log_lines(client, sid, did) if line.source == "user"]
    assert len(lines) == len(set(lines)), "a log line was stored twice"
    by_container: dict[str, list[int]] = {}
    for message in ticks():
        _, number, container = message.split()
        by_container.setdefault(container, []).append(int(number))
    assert len(by_container) == 2, by_container.keys()
    for container, numbers in by_container.items():  # each copy's lines in order, none missing
        assert numbers == list(range(len(numbers))), f"{container}: {sorted(set(range(max(numbers) + 1)) - set(numbers))[:10]} missing"


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="several servers share one database through PostgreSQL (set STUDIOS_TEST_DATABASE_URL)")
def test_two_servers_on_one_database_drive_one_swarm_and_start_each_deployment_once(shared_swarm: dict[str, str], tmp_path: Path) -> None:
    with pg_database("swarm_pair") as url:
        # No STUDIOS_INSTANCE: the default, a hash of the database URL, is the same on both.
        settings = {**swarm_settings(shared_swarm, tmp_path), "STUDIOS_DATABASE_URL": url, "STUDIOS_SECRET_KEY": "swarm-pair-secret", "STUDIOS_RECONCILE_INTERVAL_SECONDS": "2"}
        servers = [StudiosServer(tmp_path / name, settings) for name in ("a", "b")]
        instance = instance_id(url)
        try:
            for server in servers:
                Path(server.root).mkdir()
                server.start()
            key = servers[0].create_user("alice")
            api = [httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=30) for s in servers]
            paths = []
            for i in range(4):  # deployed through one server and the other in turn
                made = api[i % 2].post("/studios", json={"name": f"counter {i}", "dockerImageName": IMAGE, "partitionLabel": "cpu" if i % 2 else "gpu",
                                                         "params": [{"name": "APP_CMD", "type": "string", "value": TICKER}]}).json()  # fmt: skip
                dep = api[i % 2].post(f"/studios/{made['id']}/deployments", json={}).json()
                paths.append(f"/studios/{made['id']}/deployments/{dep['deploymentId']}")
            for path in paths:
                poll(lambda path=path: all(running(a, path) for a in api), 60, f"{path} running, seen through both servers")

            def started_once() -> None:
                deployments = [int(path.rsplit("/", 1)[1]) for path in paths]
                services = services_of(shared_swarm, instance)
                assert sorted(int(s["Spec"]["Labels"]["studios.deployment_id"]) for s in services) == sorted(deployments)  # one service each
                for service in services:
                    tasks = tasks_of(shared_swarm, service["ID"])
                    assert len(tasks) == 1, f"{service['Spec']['Name']} was started {len(tasks)} times"

            started_once()
            # The engine's holder is killed (kill -9); the other server takes it over and adopts them.
            engine_pid = int(poll(lambda: holder(url), 30, "a server to hold the engine lease").split(":")[1])
            [engine] = [s for s in servers if s.process is not None and s.process.pid == engine_pid]
            [other] = [i for i, s in enumerate(servers) if s is not engine]
            engine.kill()
            poll(lambda: (h := holder(url)) is not None and int(h.split(":")[1]) == servers[other].process.pid, 30, "the other server to take the engine over")  # type: ignore[union-attr]

            def ticks(path: str) -> list[int]:
                lines = api[other].get(f"{path}/logs", params={"limit": 100000}).json()
                return [int(line["message"].split()[1]) for line in lines if line["source"] == "user" and line["message"].startswith("tick ")]

            counts = {path: len(ticks(path)) for path in paths}
            for path in paths:
                poll(lambda path=path: len(ticks(path)) >= counts[path] + 20, 30, f"{path}: lines stored by the new engine")
                assert api[other].get(path).json()["state"] == "running"
                link = api[other].get(path).json()["displayUrl"]
                assert open_link(str(httpx.URL(link).copy_with(port=servers[other].proxy_port))).text.strip() == "hello from studios-test"
            started_once()
            for path in paths:
                assert api[other].delete(path).status_code == 204
                assert api[other].get(path).json()["state"] == "terminated"
                numbers = ticks(path)
                assert numbers == list(range(len(numbers))), f"{path}: lost or doubled lines around the takeover"
                assert "adopted after a service restart" in [line["message"] for line in api[other].get(f"{path}/logs", params={"limit": 100000}).json() if line["source"] == "system"]
            poll(lambda: not services_of(shared_swarm, instance), RELEASE_WITHIN, "every service removed from the swarm")
            for client in api:
                client.close()
        finally:
            live = [server for server in servers if server.process is not None]
            if live:
                live[0].end_workloads()  # one database: one server ends them all
            for server in servers:
                server.stop()
            remove_leftovers(shared_swarm, instance)
