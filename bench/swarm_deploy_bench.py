"""The swarm runtime on the one-machine swarm (scripts/swarm-up), in one interleaved run:

    .venv/bin/python bench/swarm_deploy_bench.py                  # 10 deploy rounds, 3 node crashes
    .venv/bin/python bench/swarm_deploy_bench.py --rounds 3 --crashes 1
    .venv/bin/python bench/swarm_deploy_bench.py --crashes 1 --heartbeat 5s   # the swarm's default

Deploy, each round in alternating order (both on partition gpu, the busybox test image serving
`httpd -f -p $PORT`, 64 MB, 0.25 cpu):

  service create  the anchor: `create_service` on the manager (docker SDK, one replica, the same
                  placement, limits and host-mode port) -> the task list polled every 10 ms until
                  the task runs -> the first HTTP 200 at the node's address and published port
                  (probed every 2 ms);
  runtime         `SwarmRuntime.start` (the service, with a secret env as Studios always passes
                  CIVIS_API_KEY) -> `watch` says running -> the first HTTP 200 at `address()`.
                  (Through `studios serve` and the civis client once the new core lands.)

Node crash, `--crashes` times: a deployment of the runtime runs on a gpu node; that node's PID 1
is SIGKILLed (scripts/swarm/node-down N crash); measured from the kill: the manager marks the node
down, `watch` gives the new handle, the app answers HTTP again on the other gpu node. The node is
rebooted (scripts/swarm/node-up N) and Ready again before the next round. `--heartbeat` sets the
swarm's dispatcher heartbeat for the run (restored to 1s after).

Goals (issue 10): deploy -> running at most 1.3x service create -> 200; node crash -> answering
again under 10 s. Figures go to bench/results/swarm_deploy_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.types import ContainerSpec, EndpointSpec, Placement, Resources, RestartPolicy, ServiceMode, TaskTemplate

from common import REPO, write_results
from studios.runtimes.base import LaunchSpec, RuntimeEnv
from studios.runtimes.swarm import SwarmRuntime, SwarmSettings

GOAL_RATIO = 1.3
GOAL_RECOVERY_S = 10.0
IMAGE = "studios-test/busybox:latest"
SWARM_DIR = Path(os.environ.get("STUDIOS_SWARM_DIR") or "/tmp/studios-swarm")


def swarm_env() -> dict[str, str]:
    up = subprocess.run([str(REPO / "scripts" / "swarm-up")], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        sys.exit(f"scripts/swarm-up failed: {up.stderr.strip()[-1000:]}")
    values = {}
    for line in (SWARM_DIR / "env").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


async def first_200(host: str, port: int, deadline: float, every: float = 0.002) -> float:
    async with httpx.AsyncClient(timeout=0.5) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"http://{host}:{port}/")).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            await asyncio.sleep(every)
    raise TimeoutError(f"no HTTP 200 from {host}:{port}")


async def anchor(api: docker.APIClient, name: str) -> dict[str, float]:
    t0 = time.monotonic()
    template = TaskTemplate(
        container_spec=ContainerSpec(IMAGE, env={"PORT": "8080"}, init=True, labels={"studios.bench": "1"}),
        resources=Resources(mem_limit=64 << 20, cpu_limit=250_000_000, mem_reservation=64 << 20, cpu_reservation=250_000_000),
        restart_policy=RestartPolicy(condition="on-failure", delay=1_000_000_000),
        placement=Placement(constraints=["node.labels.partition==gpu"]),
    )
    service = await asyncio.to_thread(api.create_service, template, name=name, labels={"studios.bench": "1"},
                                      mode=ServiceMode("replicated", 1), endpoint_spec=EndpointSpec(ports={0: (8080, "tcp", "host")}))
    created = time.monotonic()
    try:
        while True:
            tasks = await asyncio.to_thread(api.tasks, filters={"service": service["ID"]})
            running = [t for t in tasks if t["Status"]["State"] == "running"]
            if running:
                break
            await asyncio.sleep(0.01)
        task = running[0]
        seen = time.monotonic()
        node = await asyncio.to_thread(api.inspect_node, task["NodeID"])
        port = next(p["PublishedPort"] for p in task["Status"]["PortStatus"]["Ports"] if p["TargetPort"] == 8080)
        ok = await first_200(node["Status"]["Addr"], port, time.monotonic() + 30)
        return {"create_ms": (created - t0) * 1000, "running_ms": (seen - t0) * 1000, "http_200_ms": (ok - t0) * 1000}
    finally:
        await asyncio.to_thread(api.remove_service, service["ID"])


def spec(deployment_id: int, tmp: Path, **changes: Any) -> LaunchSpec:
    values: dict[str, Any] = {
        "deployment_id": deployment_id, "studio_id": 1, "user_id": 1, "image": "studios-test/busybox", "tag": "latest",
        "memory_mb": 64, "cpu_millicores": 250, "disk_gb": None, "env": {"STUDIO_PARAM": "1"},
        "partition": "gpu", "secret_env": {"CIVIS_API_KEY": "bench-key"},
    }
    values.update(changes)
    return LaunchSpec(**values)


async def ours(rt: SwarmRuntime, deployment_id: int, tmp: Path) -> dict[str, float]:
    t0 = time.monotonic()
    handle = await rt.start(spec(deployment_id, tmp), lambda line: None)
    created = time.monotonic()
    try:
        async for status in rt.watch(handle):
            if status.running:
                handle = status.handle or handle
                break
            if status.exit:
                raise RuntimeError(status.message)
        seen = time.monotonic()
        host, port = rt.address(handle)  # type: ignore[misc]
        ok = await first_200(host, port, time.monotonic() + 30)
        return {"create_ms": (created - t0) * 1000, "running_ms": (seen - t0) * 1000, "http_200_ms": (ok - t0) * 1000}
    finally:
        await rt.remove_orphan(deployment_id)


async def crash_round(rt: SwarmRuntime, api: docker.APIClient, deployment_id: int, tmp: Path) -> dict[str, Any]:
    app = "exec httpd -f -p $PORT"
    handle = await rt.start(spec(deployment_id, tmp, env={"APP_CMD": app}), lambda line: None)
    watch = rt.watch(handle)
    try:
        async for status in watch:
            if status.running:
                handle = status.handle or handle
                break
        node = handle["node"]
        t0 = time.monotonic()
        subprocess.run([str(REPO / "scripts" / "swarm" / "node-down"), node[-1], "crash"], check=True, capture_output=True)
        killed = time.monotonic()

        async def node_down() -> float:
            while True:
                nodes = await asyncio.to_thread(api.nodes, filters={"name": node})
                if nodes and nodes[0]["Status"]["State"] == "down":
                    return time.monotonic()
                await asyncio.sleep(0.05)

        down_task = asyncio.create_task(node_down())
        moved = None
        async for status in watch:
            if status.handle is not None and status.handle["node"] != node:
                moved = status.handle
                break
        assert moved is not None
        handle_at = time.monotonic()
        ok = await first_200(moved["host"], moved["port"], time.monotonic() + 60)
        down = await asyncio.wait_for(down_task, 30)
        return {"node": node, "to": moved["node"], "kill_ms": (killed - t0) * 1000, "node_down_ms": (down - t0) * 1000,
                "new_handle_ms": (handle_at - t0) * 1000, "answering_ms": (ok - t0) * 1000}
    finally:
        await watch.aclose()
        await rt.remove_orphan(deployment_id)
        if "node" in locals():
            subprocess.run([str(REPO / "scripts" / "swarm" / "node-up"), node[-1]], check=True, capture_output=True, timeout=120)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(n["Status"]["State"] == "ready" for n in await asyncio.to_thread(api.nodes)):
                    break
                await asyncio.sleep(0.1)


def med(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 1)


async def main(args: argparse.Namespace) -> None:
    env = swarm_env()
    api = docker.APIClient(base_url=env["STUDIOS_SWARM_URL"], version="auto")
    settings = SwarmSettings(url=env["STUDIOS_SWARM_URL"], node_urls=json.loads(env["STUDIOS_SWARM_NODE_URLS"]))
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"swarm-bench-{uuid.uuid4().hex[:8]}"
    rt = SwarmRuntime(settings, RuntimeEnv(tmp, f"bench{uuid.uuid4().hex[:6]}", "http://localhost:8000"))
    started = dt.datetime.now()
    if args.heartbeat:
        subprocess.run(["docker", "-H", env["STUDIOS_SWARM_URL"], "swarm", "update", "--dispatcher-heartbeat", args.heartbeat], check=True, capture_output=True)
    anchors: list[dict[str, float]] = []
    runs: list[dict[str, float]] = []
    crashes: list[dict[str, Any]] = []
    try:
        await ours(rt, 1, tmp)  # warm-up (first use of the clients, the image on the node)
        for i in range(args.rounds):
            order = [("anchor", anchors), ("ours", runs)] if i % 2 == 0 else [("ours", runs), ("anchor", anchors)]
            for kind, sink in order:
                figures = await (anchor(api, f"bench-anchor-{uuid.uuid4().hex[:6]}") if kind == "anchor" else ours(rt, 100 + i, tmp))
                sink.append(figures)
                print(f"round {i + 1} {kind:7s} running {figures['running_ms']:7.1f} ms   200 {figures['http_200_ms']:7.1f} ms")
        for i in range(args.crashes):
            figures = await crash_round(rt, api, 1000 + i, tmp)
            crashes.append(figures)
            print(f"crash {i + 1}: {figures['node']} -> {figures['to']}: node down {figures['node_down_ms'] / 1000:.2f} s, "
                  f"new handle {figures['new_handle_ms'] / 1000:.2f} s, answering {figures['answering_ms'] / 1000:.2f} s")
    finally:
        await rt.close()
        if args.heartbeat:
            subprocess.run(["docker", "-H", env["STUDIOS_SWARM_URL"], "swarm", "update", "--dispatcher-heartbeat", "1s"], check=False, capture_output=True)
    summary: dict[str, Any] = {}
    if runs and anchors:
        summary = {
            "anchor_200_ms": med(anchors, "http_200_ms"), "anchor_running_ms": med(anchors, "running_ms"),
            "ours_200_ms": med(runs, "http_200_ms"), "ours_running_ms": med(runs, "running_ms"),
        }
        summary["ratio_running_vs_anchor_200"] = round(summary["ours_running_ms"] / summary["anchor_200_ms"], 2)
        summary["ratio_200_vs_anchor_200"] = round(summary["ours_200_ms"] / summary["anchor_200_ms"], 2)
        print(f"\nservice create -> 200: {summary['anchor_200_ms']} ms (median of {len(anchors)}); runtime start -> running: "
              f"{summary['ours_running_ms']} ms, -> 200: {summary['ours_200_ms']} ms; ratio {summary['ratio_running_vs_anchor_200']}x "
              f"(goal <= {GOAL_RATIO}x: {'met' if summary['ratio_running_vs_anchor_200'] <= GOAL_RATIO else 'NOT met'})")
    if crashes:
        summary["crash_answering_s"] = round(statistics.median(c["answering_ms"] for c in crashes) / 1000, 2)
        summary["crash_node_down_s"] = round(statistics.median(c["node_down_ms"] for c in crashes) / 1000, 2)
        print(f"node crash -> answering again: {summary['crash_answering_s']} s median of {len(crashes)} "
              f"(node down after {summary['crash_node_down_s']} s; goal < {GOAL_RECOVERY_S} s: "
              f"{'met' if summary['crash_answering_s'] < GOAL_RECOVERY_S else 'NOT met'})")
    write_results("swarm_deploy_bench", started, {"settings": vars(args), "anchor": anchors, "ours": runs, "crashes": crashes, "summary": summary}, args.output)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--crashes", type=int, default=3)
    parser.add_argument("--heartbeat", default=None, help="dispatcher heartbeat for this run (e.g. 5s, the swarm's default)")
    parser.add_argument("--output", type=Path, default=None)
    asyncio.run(main(parser.parse_args()))
