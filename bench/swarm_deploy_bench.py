"""Deploy -> running through the API on the Docker Swarm runtime, against creating the same
service on the same swarm by hand; and a node crash -> the app answering again through its
displayUrl. On the one-machine swarm (scripts/swarm-up), in one interleaved run:

    .venv/bin/python bench/swarm_deploy_bench.py                   # 10 rounds, 3 node crashes
    .venv/bin/python bench/swarm_deploy_bench.py --rounds 3 --crashes 1
    .venv/bin/python bench/swarm_deploy_bench.py --crashes 1 --heartbeat 5s    # the swarm's default

`studios serve` runs with its partitions in a partitions file: `gpu` on `runtime = "swarm"`
(instance type: 250 millicores, 64 MB), the default runtime staying `process`. Each round, in
alternating order:

  service create  the anchor: `create_service` on the manager (docker SDK: the Engine API call
                  `docker service create` makes, without the CLI's start-up) of the test image,
                  one replica, constraint `node.labels.partition==gpu`, the same limits and
                  reservations, port 8080 published in host mode -> the task list read every
                  10 ms until the task runs -> the first HTTP 200 at the node's address and
                  published port (probed every 1 ms);
  via the API     `POST /studios/{id}/deployments` of a studio in partition `gpu` with
                  `dockerImageName: studios-test/busybox` -> `state == "running"` seen by polling
                  `GET .../deployments/{did}` every 2 ms -> the first HTTP 200 through its
                  displayUrl (token exchange, then `GET /`). The deployment is deleted after.

Node crash, `--crashes` times: a deployment in partition `gpu` runs; the node the system log
says it runs on ("running on swn2") has its PID 1 SIGKILLed (scripts/swarm/node-down N crash,
a power loss); from the kill, it measures when the manager marks the node down, when the API says
`running` again on another node ("moved to swn3 after node swn2 went down"), and when its
displayUrl answers with the app's page again (probed every 20 ms). The deployment is deleted, the
node rebooted (scripts/swarm/node-up N) and Ready again before the next round. `--heartbeat` sets
the swarm's dispatcher heartbeat for the run (put back to 1s after).

Goals (issue 10): deploy -> running at most 1.3x service create -> 200; node crash -> answering
again under 10 s. Figures go to bench/results/swarm_deploy_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import docker
from docker.types import ContainerSpec, EndpointSpec, Placement, Resources, RestartPolicy, ServiceMode, TaskTemplate

from common import REPO, Studios, bench_session, http_status, median_of, ms, settings, via_api, write_results

GOAL_RATIO = 1.3
GOAL_RECOVERY_S = 10.0
IMAGE = "studios-test/busybox"
SWARM_DIR = Path(os.environ.get("STUDIOS_SWARM_DIR") or "/tmp/studios-swarm")
PARTITIONS = """
default_partition = "gpu"

[partitions.gpu]
runtime = "swarm"
default_instance_type = "bench"

[partitions.gpu.instance_types.bench]
cpu = 250
memory = 64
disk = 0
"""


def swarm_env() -> dict[str, str]:
    up = subprocess.run([str(REPO / "scripts" / "swarm-up")], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        sys.exit(f"swarm_deploy_bench: scripts/swarm-up failed: {up.stderr.strip()[-1000:]}")
    values = {}
    for line in (SWARM_DIR / "env").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


def wait_200(host: str, port: int, deadline: float, every: float = 0.001) -> float:
    while time.monotonic() < deadline:
        if http_status(port, host=host) == 200:
            return time.monotonic()
        time.sleep(every)
    raise RuntimeError(f"no HTTP 200 from {host}:{port} in time")


def anchor(api: docker.APIClient, timeout: float) -> dict[str, float]:
    """`create_service` -> the task runs -> the first 200 at the node's address and port."""
    template = TaskTemplate(
        container_spec=ContainerSpec(f"{IMAGE}:latest", env={"PORT": "8080"}, init=True, labels={"studios.bench": "1"}),
        resources=Resources(mem_limit=64 << 20, cpu_limit=250_000_000, mem_reservation=64 << 20, cpu_reservation=250_000_000),
        restart_policy=RestartPolicy(condition="on-failure", delay=1_000_000_000),
        placement=Placement(constraints=["node.labels.partition==gpu"]),
    )
    t0 = time.monotonic()
    service = api.create_service(template, name=f"bench-anchor-{uuid.uuid4().hex[:6]}", labels={"studios.bench": "1"},
                                 mode=ServiceMode("replicated", 1), endpoint_spec=EndpointSpec(ports={0: (8080, "tcp", "host")}))  # fmt: skip
    created = time.monotonic()
    try:
        while True:
            running = [t for t in api.tasks(filters={"service": service["ID"]}) if t["Status"]["State"] == "running"]
            if running:
                break
            if time.monotonic() > t0 + timeout:
                raise RuntimeError("the anchor's task did not run in time")
            time.sleep(0.01)
        seen = time.monotonic()
        node = api.inspect_node(running[0]["NodeID"])
        port = next(p["PublishedPort"] for p in running[0]["Status"]["PortStatus"]["Ports"] if p["TargetPort"] == 8080)
        ok = wait_200(node["Status"]["Addr"], port, t0 + timeout)
        return {"create_returns_ms": ms(created - t0), "task_running_ms": ms(seen - t0), "create_to_200_ms": ms(ok - t0)}
    finally:
        api.remove_service(service["ID"])


def node_of(srv: Studios, studio_id: int, did: int, skip: int = 0) -> str | None:
    """The node the system log names ("running on swn2", "moved to swn3 after ..."), the
    `skip`-th placement after the first."""
    nodes = [m.split()[2] for m in srv.system_lines(studio_id, did) if m.startswith(("running on swn", "moved to swn"))]
    return nodes[skip] if len(nodes) > skip else None


def all_ready(api: docker.APIClient) -> bool:
    return all(n["Status"]["State"] == "ready" for n in api.nodes())


def crash_round(srv: Studios, api: docker.APIClient, studio_id: int, timeout: float) -> dict[str, Any]:
    did = srv.deploy(studio_id)
    node = None
    try:
        _, dep = srv.wait_state(studio_id, did, "running", time.monotonic() + timeout)
        node = node_of(srv, studio_id, did)
        assert node is not None, srv.system_lines(studio_id, did)
        t0 = time.monotonic()
        subprocess.run([str(REPO / "scripts" / "swarm" / "node-down"), node[-1], "crash"], check=True, capture_output=True)
        killed = time.monotonic()
        figures: dict[str, Any] = {"node": node, "kill_ms": ms(killed - t0)}
        while time.monotonic() < t0 + 60:
            now = time.monotonic()
            if "node_down_ms" not in figures and api.nodes(filters={"name": node})[0]["Status"]["State"] == "down":
                figures["node_down_ms"] = ms(now - t0)
            if "moved_running_ms" not in figures and (to := node_of(srv, studio_id, did, skip=1)) is not None and srv.get(studio_id, did)["state"] == "running":
                figures["moved_running_ms"], figures["to"] = ms(now - t0), to
            if "moved_running_ms" in figures and srv.open_display_url(dep["displayUrl"]) == 200:
                figures["answering_ms"] = ms(time.monotonic() - t0)
                figures.setdefault("node_down_ms", None)
                return figures
            time.sleep(0.02)
        raise RuntimeError(f"not answering again 60 s after the crash of {node}: {srv.system_lines(studio_id, did)}")
    finally:
        srv.delete(studio_id, did)
        if node is not None:
            subprocess.run([str(REPO / "scripts" / "swarm" / "node-up"), node[-1]], check=True, capture_output=True, timeout=120)
            deadline = time.monotonic() + 60
            while not all_ready(api) and time.monotonic() < deadline:
                time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved deploy rounds; medians reported (default 10)")
    parser.add_argument("--crashes", type=int, default=3, help="node crashes (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--heartbeat", default=None, help="the swarm's dispatcher heartbeat for this run (e.g. 5s, the swarm's default)")
    parser.add_argument("--watch", choices=("poll", "stream"), default="poll",
                        help="how `running` is seen: GET every 2 ms (default), or the deployment's event stream, which loads the server nothing meanwhile")
    parser.add_argument("--timeout", type=float, default=60, help="seconds allowed per measurement (default 60)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (server log, data dir)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    env = swarm_env()
    api = docker.APIClient(base_url=env["STUDIOS_SWARM_URL"], version="auto")
    instance = f"bench{uuid.uuid4().hex[:6]}"

    def remove_leftovers() -> None:
        for service in api.services(filters={"label": ["studios.bench=1"]}) + api.services(filters={"label": [f"studios.instance={instance}"]}):
            api.remove_service(service["ID"])
            print(f"  removed leftover service {service['Spec']['Name']}", file=sys.stderr)
        for secret in api.secrets(filters={"label": [f"studios.instance={instance}"]}):
            api.remove_secret(secret["ID"])

    anchors: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    crashes: list[dict[str, Any]] = []
    with bench_session("swarm_deploy_bench", args.keep_temp) as session:
        session.after_stop.append(remove_leftovers)
        if args.heartbeat:
            subprocess.run(["docker", "-H", env["STUDIOS_SWARM_URL"], "swarm", "update", "--dispatcher-heartbeat", args.heartbeat], check=True, capture_output=True)
            session.after_stop.append(lambda: subprocess.run(["docker", "-H", env["STUDIOS_SWARM_URL"], "swarm", "update", "--dispatcher-heartbeat", "1s"], capture_output=True))
        partitions = session.tmp / "partitions.toml"
        partitions.write_text(PARTITIONS)
        srv = Studios(session.procs, session.tmp, {
            "STUDIOS_RUNTIME": "process", "STUDIOS_PARTITIONS_FILE": str(partitions), "STUDIOS_INSTANCE": instance,
            "STUDIOS_SWARM_URL": env["STUDIOS_SWARM_URL"], "STUDIOS_SWARM_NODE_URLS": env["STUDIOS_SWARM_NODE_URLS"],
        })  # fmt: skip
        srv.cleanup_with(session, kill_leftovers=False)
        studio_id = srv.create_studio(dockerImageName=IMAGE, partitionLabel="gpu")
        for _ in range(args.warmup):
            anchor(api, args.timeout)
            via_api(srv, studio_id, args.timeout, args.watch)
        for r in range(args.rounds):
            for which in ("anchor", "api") if r % 2 == 0 else ("api", "anchor"):
                if which == "anchor":
                    anchors.append(anchor(api, args.timeout))
                else:
                    runs.append(via_api(srv, studio_id, args.timeout, args.watch))
            session.procs.check_alive()
            a, o = anchors[-1], runs[-1]
            print(f"  round {r + 1:2}/{args.rounds}  service create -> 200 {a['create_to_200_ms']:7.1f} ms   via API: running {o['deploy_to_running_ms']:7.1f} ms,"
                  f" 200 via displayUrl {o['deploy_to_200_via_display_url_ms']:7.1f} ms (engine 'ready after' {o['engine_ready_after_ms']} ms)", file=sys.stderr)  # fmt: skip
        for i in range(args.crashes):
            figures = crash_round(srv, api, studio_id, args.timeout)
            crashes.append(figures)
            print(f"  crash {i + 1}/{args.crashes}: {figures['node']} -> {figures['to']}: node down {figures['node_down_ms']} ms, running again {figures['moved_running_ms']} ms,"
                  f" displayUrl answers {figures['answering_ms']} ms", file=sys.stderr)  # fmt: skip

    if not (anchors and runs) and not crashes:
        return 130
    medians: dict[str, Any] = {}
    ok = True
    if anchors and runs:
        medians = {k: median_of(anchors, k) for k in ("create_returns_ms", "task_running_ms", "create_to_200_ms")}
        medians |= {k: median_of(runs, k) for k in ("post_ms", "deploy_to_running_ms", "deploy_to_200_via_display_url_ms", "engine_ready_after_ms")}
        base = medians["create_to_200_ms"]
        ratio = round(medians["deploy_to_running_ms"] / base, 3)
        ratio_200 = round(medians["deploy_to_200_via_display_url_ms"] / base, 3)
        medians["ratio_running"], medians["ratio_200_via_display_url"] = ratio, ratio_200
        ok = ratio <= GOAL_RATIO
        print(f"\nmedians of {len(runs)} ({IMAGE}, partition gpu)")
        print(f"  {'service create -> first 200':44} {base:8.1f} ms   (the task ran at {medians['task_running_ms']:.1f} ms)")
        print(f"  {'deploy via API -> running (polled)':44} {medians['deploy_to_running_ms']:8.1f} ms   {ratio:.2f}x service create")
        print(f"  {'deploy via API -> first 200 via displayUrl':44} {medians['deploy_to_200_via_display_url_ms']:8.1f} ms   {ratio_200:.2f}x service create")
        print(f"goal: deploy -> running <= {GOAL_RATIO:g}x service create -> 200: {'MET' if ok else 'NOT MET'} ({ratio:.2f}x)")
    if crashes:
        answering = [c["answering_ms"] / 1000 for c in crashes]
        medians["crash_answering_s"] = round(statistics.median(answering), 2)
        medians["crash_answering_max_s"] = round(max(answering), 2)
        medians["crash_node_down_s"] = round(statistics.median(c["node_down_ms"] or 0 for c in crashes) / 1000, 2)
        medians["crash_running_again_s"] = round(statistics.median(c["moved_running_ms"] for c in crashes) / 1000, 2)
        met = max(answering) < GOAL_RECOVERY_S
        ok = ok and met
        print(f"node crash -> displayUrl answers again: median {medians['crash_answering_s']} s, worst {medians['crash_answering_max_s']} s of {len(crashes)}"
              f" (node marked down {medians['crash_node_down_s']} s, API running again {medians['crash_running_again_s']} s);"
              f" goal < {GOAL_RECOVERY_S:g} s: {'MET' if met else 'NOT MET'}")  # fmt: skip
    write_results("swarm_deploy_bench", session.started, {
        "settings": settings(args), "image": IMAGE, "heartbeat": args.heartbeat or "1s",
        "runs": {"service_create": anchors, "via_api": runs, "crashes": crashes}, "median": medians,
        "goal": {"max_ratio": GOAL_RATIO, "max_recovery_s": GOAL_RECOVERY_S, "met": ok},
    }, args.output)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
