"""Deploy -> running through the API (Docker runtime) against `docker run` of the same image, in
one interleaved run.

    .venv/bin/python bench/docker_deploy_bench.py               # 10 rounds (about a minute)
    .venv/bin/python bench/docker_deploy_bench.py --rounds 3    # a quick look

Needs a Docker daemon (scripts/start-dockerd.sh) and the test image (scripts/build-test-images.sh
builds `studios-test/busybox:latest`, whose default command is `httpd -f -p $PORT`). Without a
daemon that answers it says so and exits 0 without figures.

Each round measures, in alternating order:

  docker run   `docker run -d -p 127.0.0.1::8080 -e PORT=8080 studios-test/busybox` -> the CLI
               returns -> the published port read from the engine (inspect) -> the first HTTP 200
               on it (probed every 1 ms; never before `docker run` returned: probing a published
               port before the container started stalls ~1 s in the kernel);
  via the API  `POST /studios/{id}/deployments` on `studios serve` with STUDIOS_RUNTIME=docker, of a
               studio with `dockerImageName: studios-test/busybox` -> `state == "running"` seen on
               the deployment's event stream (`--watch poll`: by polling `GET .../deployments/{did}`
               every 2 ms over a keep-alive httpx connection) -> the first HTTP 200 through its
               displayUrl (token exchange, then `GET /`).

The stream is the default because polling every 2 ms is not free on two cores: it keeps the
server and this script busy while the engine starts the container, which the anchor is not
charged for, and slows what it measures (bench/README.md).

It prints the medians and the ratio against the goal of `bench/performance-goals.md`:
deploy -> running at most 1.1x `docker run` -> 200. Containers from `docker run` are removed after
each measurement and deployments deleted; on the way out (also Ctrl-C) every container this
bench started, and any the service left, is removed. Figures go to
bench/results/docker_deploy_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import Studios, bench_session, median_of, ms, settings, via_api, wait_status_200, write_results

GOAL_RATIO = 1.1
REFERENCE_DOCKER_RUN_MS = 267.0
IMAGE = "studios-test/busybox"
DOCKER = shutil.which("docker") or "docker"


def docker_problem() -> str | None:
    try:
        info = subprocess.run([DOCKER, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"the docker CLI did not run: {error}"
    if info.returncode != 0:
        return f"no Docker daemon answers ({(info.stderr or info.stdout).strip().splitlines()[-1] if (info.stderr or info.stdout).strip() else 'docker info failed'})"
    image = subprocess.run([DOCKER, "image", "inspect", IMAGE], capture_output=True, text=True, timeout=20)
    if image.returncode != 0:
        return f"the image {IMAGE} is missing: build it with scripts/build-test-images.sh"
    return None


class Containers:
    """The containers `docker run` made here, labelled with this run's token."""

    def __init__(self) -> None:
        self.label = f"studios-bench.docker-deploy={secrets.token_hex(6)}"
        self.ids: list[str] = []
        import docker  # the SDK is a dependency of the service; used here only to read the published port

        self.api = docker.APIClient(timeout=30)

    def run(self, timeout: float) -> dict[str, float]:
        argv = [DOCKER, "run", "-d", "--label", self.label, "-p", "127.0.0.1::8080", "-e", "PORT=8080", IMAGE]
        t0 = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        t_run = time.monotonic()
        if done.returncode != 0:
            raise RuntimeError(f"docker run failed: {done.stderr.strip()}")
        cid = done.stdout.strip()
        self.ids.append(cid)
        try:
            ports = self.api.inspect_container(cid)["NetworkSettings"]["Ports"]["8080/tcp"]
            port = int(ports[0]["HostPort"])
            t_port = time.monotonic()
            t200 = wait_status_200(port, t0 + timeout)
        finally:
            self.remove(cid)
        return {"docker_run_returns_ms": ms(t_run - t0), "port_known_ms": ms(t_port - t0), "run_to_200_ms": ms(t200 - t0)}

    def remove(self, cid: str) -> None:
        subprocess.run([DOCKER, "rm", "-f", cid], capture_output=True, timeout=60)
        with contextlib.suppress(ValueError):
            self.ids.remove(cid)

    def remove_all(self, extra_label: str | None = None) -> None:
        labels = [self.label] + ([extra_label] if extra_label else [])
        for label in labels:
            found = subprocess.run([DOCKER, "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True, timeout=60).stdout.split()
            for cid in found:
                subprocess.run([DOCKER, "rm", "-f", cid], capture_output=True, timeout=60)
                print(f"  removed leftover container {cid[:12]} ({label})", file=sys.stderr)
        self.api.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds; medians reported (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--watch", choices=("poll", "stream"), default="stream",
                        help="how `running` is seen: the deployment's event stream, which loads the server nothing meanwhile (default), or GET every 2 ms")
    parser.add_argument("--timeout", type=float, default=60, help="seconds allowed per measurement (default 60)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (server log, data dir)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/docker_deploy_bench-<time>.json)")
    args = parser.parse_args()

    problem = docker_problem()
    if problem:
        print(f"docker_deploy_bench: skipped: {problem}. Start one with scripts/start-dockerd.sh.", file=sys.stderr)
        return 0

    service_label = None
    with bench_session("docker_deploy_bench", args.keep_temp) as session:
        procs, tmp = session.procs, session.tmp
        containers = Containers()
        # After the service stopped: every container of this run, and any the service left.
        session.after_stop.append(lambda: containers.remove_all(service_label))
        srv = Studios(procs, tmp, {"STUDIOS_RUNTIME": "docker"})
        srv.cleanup_with(session, kill_leftovers=False)
        # The label the service's docker runtime puts on its containers (runtimes/select.py).
        service_label = f"studios.instance={hashlib.sha256(str(srv.data.resolve()).encode()).hexdigest()[:12]}"
        studio_id = srv.create_studio(dockerImageName=IMAGE)
        for _ in range(args.warmup):
            containers.run(args.timeout)
            via_api(srv, studio_id, args.timeout, args.watch)
        runs: list[dict] = []
        api_runs: list[dict] = []
        for r in range(args.rounds):
            order = ("docker", "api") if r % 2 == 0 else ("api", "docker")
            for which in order:
                if which == "docker":
                    runs.append(containers.run(args.timeout))
                else:
                    api_runs.append(via_api(srv, studio_id, args.timeout, args.watch))
            procs.check_alive()
            d, a = runs[-1], api_runs[-1]
            print(f"  round {r + 1:2}/{args.rounds}  docker run -> 200 {d['run_to_200_ms']:7.1f} ms (CLI returned {d['docker_run_returns_ms']:.1f})"
                  f"   via API: running {a['deploy_to_running_ms']:7.1f} ms, 200 via displayUrl {a['deploy_to_200_via_display_url_ms']:7.1f} ms"
                  f" (POST {a['post_ms']:.1f} ms, engine 'ready after' {a['engine_ready_after_ms']} ms)", file=sys.stderr)

        medians = {k: median_of(runs, k) for k in ("docker_run_returns_ms", "port_known_ms", "run_to_200_ms")}
        medians |= {k: median_of(api_runs, k) for k in ("post_ms", "deploy_to_running_ms", "deploy_to_200_via_display_url_ms", "engine_ready_after_ms")}
        base = medians["run_to_200_ms"]
        ratio = round(medians["deploy_to_running_ms"] / base, 3)
        ratio_200 = round(medians["deploy_to_200_via_display_url_ms"] / base, 3)
        ok = ratio <= GOAL_RATIO
        print(f"\nmedians of {args.rounds} ({IMAGE})")
        print(f"  {'docker run -d -p -> first 200':44} {base:8.1f} ms   (reference anchor {REFERENCE_DOCKER_RUN_MS:g} ms; the CLI returned at {medians['docker_run_returns_ms']:.1f} ms)")
        print(f"  {'deploy via API -> running (' + args.watch + ')':44} {medians['deploy_to_running_ms']:8.1f} ms   {ratio:.2f}x docker run")
        print(f"  {'deploy via API -> first 200 via displayUrl':44} {medians['deploy_to_200_via_display_url_ms']:8.1f} ms   {ratio_200:.2f}x docker run")
        print(f"  {'  of which POST /deployments':44} {medians['post_ms']:8.1f} ms")
        if medians["engine_ready_after_ms"] is not None:
            print(f"  {'  engine log: ready after':44} {medians['engine_ready_after_ms']:8.1f} ms   (runtime start -> app answered, server-side)")
        print(f"goal: deploy -> running <= {GOAL_RATIO:g}x docker run -> 200: {'MET' if ok else 'NOT MET'} ({ratio:.2f}x)")
        write_results("docker_deploy_bench", session.started, {
            "settings": settings(args),
            "image": IMAGE,
            "runs": {"docker_run": runs, "via_api": api_runs},
            "median": medians,
            "ratio": {"running": ratio, "first_200_via_display_url": ratio_200},
            "goal": {"max_ratio": GOAL_RATIO, "met": ok},
        }, args.output)
        return 0 if ok else 1
    return 130  # interrupted (bench_session reported it and cleaned up)


if __name__ == "__main__":
    sys.exit(main())
