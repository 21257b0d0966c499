"""Deploy -> running through the API (host-process runtime) against spawning the same app by hand,
in one interleaved run.

    .venv/bin/python bench/deploy_bench.py               # 10 rounds (about 30 s)
    .venv/bin/python bench/deploy_bench.py --rounds 3    # a quick look
    .venv/bin/python bench/deploy_bench.py --app busybox # busybox httpd instead of the Python app

Each round measures, in alternating order:

  by hand     `subprocess.Popen(["/bin/sh", "-c", "exec <app>"])` with PORT set -> the first
              HTTP 200 on that port (probed every 1 ms with a raw HTTP/1.0 GET);
  via the API `POST /studios/{id}/deployments` on a running `studios serve` (STUDIOS_RUNTIME=process,
              the same command mapped with STUDIOS_IMAGE_COMMANDS) -> `state == "running"` seen on
              the deployment's event stream (`--watch poll`: by polling `GET .../deployments/{did}`
              every 2 ms over one keep-alive httpx connection) -> the first HTTP 200 of the app
              through its displayUrl (the in-process proxy: token exchange, then `GET /` with the
              viewer cookie), as a browser opens it.

The stream is the default because polling every 2 ms is not free on two cores: it keeps the
server and this script busy while the app starts, and slows what it measures (bench/README.md).

It prints the medians and the difference against the goal of
`bench/performance-goals.md`: deploy -> running at most 30 ms more than spawn -> 200.
Each deployment is deleted after it is measured; figures go to bench/results/deploy_bench-<time>.json.

The helpers (processes, ports, `studios serve`, cleanup, results) are in bench/common.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from common import REAL_PYTHON, SERVE_200_SOURCE, Processes, Studios, bench_session, free_port, kill_group, median_of, ms, settings, via_api, wait_status_200, write_results

GOAL_EXTRA_MS = 30.0
REFERENCE_SPAWN_MS = 2.2

# A tiny HTTP server: a raw socket answering 200 to every request, stdlib only, started with
# `-I -S` so the interpreter's start-up is as short as it gets.
TINY_APP = r"""
import os, socket, threading
reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"
""" + SERVE_200_SOURCE + r"""
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


# ---------------------------------------------------------------------------------------------


def app_command(kind: str, tmp: Path) -> str:
    if kind == "python":
        app = tmp / "tiny_app.py"
        app.write_text(TINY_APP)
        return f"exec {REAL_PYTHON} -I -S {app}"
    www = tmp / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("ok\n")
    busybox = shutil.which("busybox") or "/bin/busybox"
    return f"exec {busybox} httpd -f -p 127.0.0.1:$PORT -h {www}"


def by_hand(procs: Processes, command: str, timeout: float) -> dict[str, float]:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "LANG": os.environ.get("LANG", "C.UTF-8"), "PORT": str(port)}
    t0 = time.monotonic()
    proc = procs.start("app by hand", ["/bin/sh", "-c", command], log=None, env=env)
    try:
        t200 = wait_status_200(port, t0 + timeout, lambda: proc.poll() is None)
    finally:
        kill_group(proc)
        procs.forget(proc)
    return {"spawn_to_200_ms": ms(t200 - t0)}


@contextlib.contextmanager
def favoring_dynmods(wanted: bool, tmp: Path) -> Iterator[None]:
    """With `wanted`: a named cgroup v1 hierarchy mounted with favordynmods for the block (the
    kernel then moves tasks between cgroups without waiting for RCU, on every hierarchy)."""
    if not wanted:
        yield
        return
    point = tmp / "cgroup-favordynmods"
    point.mkdir()
    subprocess.run(["mount", "-t", "cgroup", "-o", f"none,name=studios-bench-{os.getpid()},favordynmods", "cgroup", str(point)], check=True)
    print(f"favordynmods: a cgroup hierarchy mounted at {point} for this run", file=sys.stderr)
    try:
        yield
    finally:
        subprocess.run(["umount", str(point)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds; medians reported (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--app", choices=("python", "busybox"), default="python", help="the tiny app: a raw-socket Python server (default) or busybox httpd")
    parser.add_argument("--watch", choices=("poll", "stream"), default="stream",
                        help="how `running` is seen: the deployment's event stream, which loads the server nothing meanwhile (default), or GET every 2 ms")
    parser.add_argument("--favordynmods", action="store_true",
                        help="measure with a cgroup hierarchy mounted with favordynmods for the run (root; docs/runtimes/process.md): no RCU wait when an app joins its cgroup")
    parser.add_argument("--timeout", type=float, default=30, help="seconds allowed per measurement (default 30)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (server log, data dir)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/deploy_bench-<time>.json)")
    args = parser.parse_args()

    with bench_session("deploy_bench", args.keep_temp) as session, favoring_dynmods(args.favordynmods, session.tmp):
        procs, tmp = session.procs, session.tmp
        command = app_command(args.app, tmp)
        image = "bench/tiny-app"
        print(f"app: {command}", file=sys.stderr)
        srv = Studios(procs, tmp, {"STUDIOS_RUNTIME": "process", "STUDIOS_IMAGE_COMMANDS": json.dumps({image: command})})
        srv.cleanup_with(session)
        studio_id = srv.create_studio(dockerImageName=image)
        for _ in range(args.warmup):
            by_hand(procs, command, args.timeout)
            via_api(srv, studio_id, args.timeout, args.watch)
        hand_runs: list[dict] = []
        api_runs: list[dict] = []
        for r in range(args.rounds):
            order = ("hand", "api") if r % 2 == 0 else ("api", "hand")
            for which in order:
                if which == "hand":
                    hand_runs.append(by_hand(procs, command, args.timeout))
                else:
                    api_runs.append(via_api(srv, studio_id, args.timeout, args.watch))
            procs.check_alive()
            a, h = api_runs[-1], hand_runs[-1]
            print(f"  round {r + 1:2}/{args.rounds}  by hand {h['spawn_to_200_ms']:7.1f} ms   via API: running {a['deploy_to_running_ms']:7.1f} ms,"
                  f" 200 via displayUrl {a['deploy_to_200_via_display_url_ms']:7.1f} ms  (POST {a['post_ms']:.1f} ms, engine 'ready after' {a['engine_ready_after_ms']} ms)",
                  file=sys.stderr)

        hand = median_of(hand_runs, "spawn_to_200_ms")
        medians = {"spawn_to_200_ms": hand, **{k: median_of(api_runs, k) for k in ("post_ms", "deploy_to_running_ms", "deploy_to_200_via_display_url_ms", "engine_ready_after_ms")}}
        extra_running = round(medians["deploy_to_running_ms"] - hand, 2)
        extra_200 = round(medians["deploy_to_200_via_display_url_ms"] - hand, 2)
        ok = extra_running <= GOAL_EXTRA_MS
        print(f"\nmedians of {args.rounds} ({args.app} app)")
        print(f"  {'spawn by hand -> first 200':44} {hand:8.1f} ms   (reference anchor {REFERENCE_SPAWN_MS} ms)")
        print(f"  {'deploy via API -> running (' + args.watch + ')':44} {medians['deploy_to_running_ms']:8.1f} ms   +{extra_running:.1f} ms over by hand")
        print(f"  {'deploy via API -> first 200 via displayUrl':44} {medians['deploy_to_200_via_display_url_ms']:8.1f} ms   +{extra_200:.1f} ms over by hand")
        print(f"  {'  of which POST /deployments':44} {medians['post_ms']:8.1f} ms")
        print(f"  {'  engine log: ready after':44} {medians['engine_ready_after_ms']:8.1f} ms   (runtime start -> app answered, server-side)")
        print(f"goal: deploy -> running <= spawn -> 200 + {GOAL_EXTRA_MS:g} ms: {'MET' if ok else 'NOT MET'} (+{extra_running:.1f} ms)")
        write_results("deploy_bench", session.started, {
            "settings": settings(args),
            "app_command": command,
            "runs": {"by_hand": hand_runs, "via_api": api_runs},
            "median": medians,
            "extra_ms": {"running": extra_running, "first_200_via_display_url": extra_200},
            "goal": {"max_extra_ms": GOAL_EXTRA_MS, "met": ok},
        }, args.output)
        return 0 if ok else 1
    return 130  # interrupted (bench_session reported it and cleaned up)


if __name__ == "__main__":
    sys.exit(main())
