"""Requests/s and p99 through a deployment's display-URL host, against the app directly, against
nginx and against configurable-http-proxy (CHP) in front of the same keep-alive upstream.

    .venv/bin/python bench/proxy_bench.py [--duration 10] [--rounds 3] [--nginx-workers 1]

Starts the upstream (bench/proxy/upstream_app.py under uvicorn with httptools + uvloop), our
proxy as its own process (`python -m studios.proxy`, host mode, a viewer cookie on every
request, so the cookie check and the backend's can_view/target run each time), nginx (Debian's
package, `apt-get install nginx`; a reverse proxy with a keep-alive upstream pool of 32, no
access log, `--nginx-workers` worker processes: 1 by default, the one process our proxy has)
and CHP 5 (`npm install configurable-http-proxy` into bench/proxy/, done here when missing).
Then it runs `wrk -t2 -c32 -d<duration>s --latency` against each, interleaved, `--rounds`
times, and prints each median with the ratios and each proxy's CPU per request (all its
processes), with the part of it spent in the proxy's own code (user time: the kernel's part,
the sockets, is about the same for every proxy, so that is where they differ). Figures drift
±20% between sessions on shared machines; the ratios, measured in one run, are what to
compare. Results also go to bench/results/proxy_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench" / "proxy"
PY = sys.executable
sys.path.insert(0, str(ROOT / "src"))

from common import RESULTS, Processes, descendants, free_port, run_wrk  # noqa: E402
from studios.proxy.config import ProxyConfig  # noqa: E402
from studios.proxy.tokens import DisplayLinks  # noqa: E402

CHP = HERE / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"


def wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name} did not listen on {port}")


def ensure_chp() -> None:
    if CHP.exists():
        return
    if not shutil.which("npm"):
        raise SystemExit("npm is needed to install configurable-http-proxy")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HERE),
                    "configurable-http-proxy@5"], check=True)


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }}
    }}
}}
"""


def start_nginx(tmp: Path, port: int, upstream: int, workers: int) -> subprocess.Popen | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        print("nginx is not installed (apt-get install nginx): its anchor is left out", file=sys.stderr)
        return None
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, tmp=tmp, upstream=upstream, port=port))
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def wrk(url: str, duration: int, headers: dict[str, str], measured: list[int], tmp: Path) -> dict[str, float]:
    parsed = run_wrk(Processes(), url, headers=headers, measured=measured, duration=duration, log=tmp / "wrk.out")
    if parsed["non_2xx"]:
        raise SystemExit(f"{url}: {parsed['non_2xx']} non-2xx responses\n{(tmp / 'wrk.out').read_text()}")
    errors = re.search(r"Socket errors: (.*)", (tmp / "wrk.out").read_text())  # kept as wrk wrote it: printed per round
    return {"rps": parsed["rps"], "p99_ms": parsed["p99_ms"], "cpu_ms_per_req": parsed["server_cpu_ms_per_req"],
            "user_us_per_req": parsed["server_user_us_per_req"],
            "socket_errors": errors.group(1) if errors else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nginx-workers", type=int, default=1)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    ensure_chp()

    up_port, proxy_port, chp_port, chp_api, nginx_port = (free_port() for _ in range(5))
    public = f"http://localhost:{proxy_port}"
    links = DisplayLinks(ProxyConfig(secret_keys=["bench-key"], public_url=public))
    procs: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    try:
        procs.append(up := subprocess.Popen(
            [PY, "-m", "uvicorn", "upstream_app:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
             "--port", str(up_port), "--http", "httptools", "--loop", "uvloop", "--no-access-log",
             "--log-level", "warning"]))
        wait_port(up_port, up, "upstream")
        (tmp / "backend.json").write_text(json.dumps({"deployments": [{
            "deploymentId": 1, "studioId": 1, "state": "running",
            "address": ["127.0.0.1", up_port], "viewers": [7]}]}))
        env = os.environ | {"STUDIOS_SECRET_KEY": "bench-key",
                            "STUDIOS_PROXY_PUBLIC_URL": public,
                            "PYTHONPATH": str(ROOT / "src")}
        procs.append(ours := subprocess.Popen(
            [PY, "-m", "studios.proxy", "--port", str(proxy_port), "--memory", str(tmp / "backend.json")],
            env=env, stdout=subprocess.DEVNULL))
        wait_port(proxy_port, ours, "studios proxy")
        procs.append(chp := subprocess.Popen(
            ["node", str(CHP), "--ip", "127.0.0.1", "--port", str(chp_port), "--api-ip", "127.0.0.1",
             "--api-port", str(chp_api), "--default-target", f"http://127.0.0.1:{up_port}",
             "--log-level", "warn"],
            env=os.environ | {"CONFIGPROXY_AUTH_TOKEN": "bench"}, stdout=subprocess.DEVNULL))
        wait_port(chp_port, chp, "configurable-http-proxy")

        nginx = start_nginx(tmp, nginx_port, up_port, args.nginx_workers)
        if nginx is not None:
            procs.append(nginx)
            wait_port(nginx_port, nginx, "nginx")

        targets = {
            "direct": (f"http://127.0.0.1:{up_port}/", {}, up.pid),
            "studios": (f"http://127.0.0.1:{proxy_port}/", {
                "Host": links.host_for(1), "Cookie": f"studios_session={links.make_cookie(1, 7)}"}, ours.pid),
            "chp": (f"http://127.0.0.1:{chp_port}/", {}, chp.pid),
        }
        if nginx is not None:
            targets["nginx"] = (f"http://127.0.0.1:{nginx_port}/", {}, nginx.pid)
        for url, headers, pid in targets.values():  # warm up (JIT, pools), and check 200s
            wrk(url, 2, headers, sorted(descendants([pid])), tmp)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for rnd in range(args.rounds):
            for name, (url, headers, pid) in targets.items():
                result = wrk(url, args.duration, headers, sorted(descendants([pid])), tmp)
                runs[name].append(result)
                print(f"round {rnd + 1} {name:8s} {result['rps']:10,.0f} req/s  p99 {result['p99_ms']:7.2f} ms  CPU {result['cpu_ms_per_req']:.3f} ms/req"
                      f" (user {result['user_us_per_req']:.1f} us)"
                      + (f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""),
                      flush=True)
        med = {name: {"rps": statistics.median(r["rps"] for r in rs), "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                      "cpu_ms_per_req": statistics.median(r["cpu_ms_per_req"] for r in rs),
                      "user_us_per_req": statistics.median(r["user_us_per_req"] for r in rs)} for name, rs in runs.items()}
        print(f"\nmedian of {args.rounds}, wrk -t2 -c32 -d{args.duration}s, keep-alive upstream (CPU: the proxy's own processes):")
        for name in targets:
            print(f"  {name:8s} {med[name]['rps']:10,.0f} req/s  p99 {med[name]['p99_ms']:7.2f} ms  CPU {med[name]['cpu_ms_per_req']:.3f} ms/req"
                  f" (user {med[name]['user_us_per_req']:.1f} us)")
        s, c, d = med["studios"], med["chp"], med["direct"]
        print(f"\n  studios / chp     req/s {s['rps'] / c['rps']:.2f}x   p99 {s['p99_ms'] / c['p99_ms']:.2f}x "
              f"({'lower is better'})")
        print(f"  studios / direct  req/s {s['rps'] / d['rps']:.2f}x")
        if "nginx" in med:
            n = med["nginx"]
            print(f"  studios / nginx   req/s {s['rps'] / n['rps']:.2f}x   CPU per request {n['cpu_ms_per_req'] / s['cpu_ms_per_req']:.2f}x "
                  f"(nginx with {args.nginx_workers} worker(s); goal: >= nginx's req/s: {'met' if s['rps'] >= n['rps'] else 'NOT met'})")
        goal = s["rps"] >= c["rps"] and s["p99_ms"] <= c["p99_ms"]
        print(f"  goal (>= CHP req/s and <= CHP p99): {'met' if goal else 'NOT met'}")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "proxy_bench.json").write_text(json.dumps({"runs": runs, "median": med}, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
