"""Requests/s and p99 through a deployment's display-URL host, against the app directly and
against configurable-http-proxy (CHP) in front of the same keep-alive upstream.

    .venv/bin/python bench/proxy_bench.py [--duration 10] [--rounds 3]

Starts the upstream (bench/proxy/upstream_app.py under uvicorn with httptools + uvloop), our
proxy as its own process (`python -m studios.proxy`, host mode, a viewer cookie on every
request, so the cookie check and the backend's can_view/target run each time) and CHP 5
(`npm install configurable-http-proxy` into bench/proxy/, done here when missing). Then it runs
`wrk -t2 -c32 -d<duration>s --latency` against the three, interleaved, `--rounds` times, and
prints each median with the ratios. Figures drift ±20% between sessions on shared machines;
the ratios, measured in one run, are what to compare. Results also go to
bench/results/proxy_bench.json.
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

from common import RESULTS, free_port, parse_wrk  # noqa: E402
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


def wrk(url: str, duration: int, headers: dict[str, str]) -> dict[str, float]:
    cmd = ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    parsed = parse_wrk(out)
    if parsed["non_2xx"]:
        raise SystemExit(f"{url}: {parsed['non_2xx']} non-2xx responses\n{out}")
    errors = re.search(r"Socket errors: (.*)", out)  # kept as wrk wrote it: printed per round
    return {"rps": parsed["rps"], "p99_ms": parsed["p99_ms"],
            "socket_errors": errors.group(1) if errors else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    ensure_chp()

    up_port, proxy_port, chp_port, chp_api = (free_port() for _ in range(4))
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

        targets = {
            "direct": (f"http://127.0.0.1:{up_port}/", {}),
            "studios": (f"http://127.0.0.1:{proxy_port}/", {
                "Host": links.host_for(1), "Cookie": f"studios_session={links.make_cookie(1, 7)}"}),
            "chp": (f"http://127.0.0.1:{chp_port}/", {}),
        }
        for url, headers in targets.values():  # warm up (JIT, pools), and check 200s
            wrk(url, 2, headers)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for rnd in range(args.rounds):
            for name, (url, headers) in targets.items():
                result = wrk(url, args.duration, headers)
                runs[name].append(result)
                print(f"round {rnd + 1} {name:8s} {result['rps']:10,.0f} req/s  p99 {result['p99_ms']:7.2f} ms"
                      + (f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""),
                      flush=True)
        med = {name: {"rps": statistics.median(r["rps"] for r in rs),
                      "p99_ms": statistics.median(r["p99_ms"] for r in rs)} for name, rs in runs.items()}
        print(f"\nmedian of {args.rounds}, wrk -t2 -c32 -d{args.duration}s, keep-alive upstream:")
        for name in targets:
            print(f"  {name:8s} {med[name]['rps']:10,.0f} req/s  p99 {med[name]['p99_ms']:7.2f} ms")
        s, c, d = med["studios"], med["chp"], med["direct"]
        print(f"\n  studios / chp     req/s {s['rps'] / c['rps']:.2f}x   p99 {s['p99_ms'] / c['p99_ms']:.2f}x "
              f"({'lower is better'})")
        print(f"  studios / direct  req/s {s['rps'] / d['rps']:.2f}x")
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
