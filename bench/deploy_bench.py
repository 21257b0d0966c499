"""Deploy -> running through the API (host-process runtime) against spawning the same app by hand,
in one interleaved run.

    .venv/bin/python bench/deploy_bench.py               # 10 rounds (about 30 s)
    .venv/bin/python bench/deploy_bench.py --rounds 3    # a quick look
    .venv/bin/python bench/deploy_bench.py --app busybox # busybox httpd instead of the Python app

Each round measures, in alternating order:

  by hand     `subprocess.Popen(["/bin/sh", "-c", "exec <app>"])` with PORT set -> the first
              HTTP 200 on that port (probed every 1 ms with a raw HTTP/1.0 GET);
  via the API `POST /studios/{id}/deployments` on a running `studios serve` (STUDIOS_RUNTIME=process,
              the same command mapped with STUDIOS_IMAGE_COMMANDS) -> `state == "running"` seen by
              polling `GET /studios/{id}/deployments/{did}` every 2 ms over one keep-alive httpx
              connection -> the first HTTP 200 of the app through its displayUrl (the in-process
              proxy: token exchange, then `GET /` with the viewer cookie), as a browser opens it.

It prints the medians and the difference against the goal of
`shared/reference/performance-goals.md`: deploy -> running at most 50 ms more than spawn -> 200.
Each deployment is deleted after it is measured; figures go to bench/results/deploy_bench-<time>.json.

The helpers here (processes, ports, `studios serve`, cleanup) are shared by logs_bench.py and
docker_deploy_bench.py.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
OUR_VENV_BIN = Path(sys.executable).parent
# The interpreter itself, not a pyenv shim (a shell script that costs ~50 ms per start).
REAL_PYTHON = os.path.realpath(sys.executable)
GOAL_EXTRA_MS = 50.0
REFERENCE_SPAWN_MS = 2.2

# A tiny HTTP server: a raw socket answering 200 to every request, stdlib only, started with
# `-I -S` so the interpreter's start-up is as short as it gets.
TINY_APP = r"""
import os, socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(128)
reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"
def serve(c):
    buf = b""
    try:
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            buf += chunk
            while b"\r\n\r\n" in buf:
                _, _, buf = buf.partition(b"\r\n\r\n")
                c.sendall(reply)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


# ---------------------------------------------------------------------------------------------
# Processes: every child is recorded and stopped on the way out (as bench/api_bench.py does).


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if this script dies without cleaning up (SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def kill_group(proc: subprocess.Popen, grace: float = 2.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(5)


class Processes:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], *, log: Path | None, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True, preexec_fn=_die_with_parent)
        if log:
            out.close()
        self.children.append((name, proc))
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        self.children = [(n, p) for n, p in self.children if p is not proc]

    def check_alive(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} (pid {proc.pid}) exited with {proc.returncode} during the run")

    def stop_all(self) -> None:
        for _, proc in self.children:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for _, proc in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for name, proc in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(5)
                print(f"  killed {name} (pid {proc.pid}) after it ignored SIGTERM", file=sys.stderr)
        self.children.clear()


def raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)


def ignore_signals() -> None:
    """During cleanup: a second Ctrl-C must not skip it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_status(port: int, timeout: float = 1.0, host: str = "127.0.0.1") -> int | None:
    """One raw `GET / HTTP/1.0`: the status code, or None when nothing answers (yet)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                head += chunk
            return int(head.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


def wait_status_200(port: int, deadline: float, alive: Callable[[], bool] = lambda: True, every: float = 0.001) -> float:
    """Probe until a 200; returns the monotonic time it arrived."""
    while True:
        if http_status(port) == 200:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answered 200 on port {port} in time")
        if not alive():
            raise RuntimeError(f"the app on port {port} exited before answering")
        time.sleep(every)


def git_revision() -> str | None:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() + ("+dirty-src" if dirty else "")) if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "loadavg": os.getloadavg()}


def write_results(name: str, started: dt.datetime, payload: dict[str, Any], output: Path | None) -> Path:
    out = output or RESULTS / f"{name}-{started.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": name, "started": started.isoformat(timespec="seconds"), "git": git_revision(), "machine": machine(), **payload}, indent=2, default=str) + "\n")
    print(f"\nfigures written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return out


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# ---------------------------------------------------------------------------------------------
# `studios serve` as a subprocess, with its deployments cleaned up whatever happens.


class Studios:
    """One `studios serve` in a temporary data dir, one user, an httpx keep-alive client."""

    def __init__(self, procs: Processes, tmp: Path, extra_env: dict[str, str]) -> None:
        self.procs = procs
        self.data = tmp / "studios-data"
        self.port, self.proxy_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))}
        self.env |= {"STUDIOS_DATA_DIR": str(self.data), "STUDIOS_PROXY_PORT": str(self.proxy_port), "STUDIOS_HOST": "127.0.0.1",
                     "STUDIOS_PUBLIC_URL": f"http://127.0.0.1:{self.port}", **extra_env}
        made = subprocess.run([str(OUR_VENV_BIN / "studios"), "users", "create", "bench"], env=self.env, capture_output=True, text=True, timeout=120)
        if made.returncode != 0:
            raise RuntimeError(f"`studios users create` failed:\n{made.stderr}")
        self.key = made.stdout.strip().splitlines()[-1]
        self.log = tmp / "studios.log"
        self.proc = procs.start("studios serve", [str(OUR_VENV_BIN / "studios"), "serve", "--port", str(self.port)], log=self.log, env=self.env)
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30, trust_env=False)
        # The viewer: made once (making an httpx client costs milliseconds), no keep-alive, so
        # each request opens a new connection to the proxy as a browser's first visit does.
        self.viewer = httpx.Client(base_url=f"http://127.0.0.1:{self.proxy_port}", timeout=10, trust_env=False, follow_redirects=False,
                                   limits=httpx.Limits(max_keepalive_connections=0))
        self.deployments: list[tuple[int, int]] = []
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"studios serve exited with {self.proc.returncode}:\n{tail(self.log)}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/users/me").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"studios serve did not answer within 60 s:\n{tail(self.log)}")
            time.sleep(0.05)

    @property
    def db_path(self) -> Path:
        return self.data / "studios.db"

    def create_studio(self, **fields: Any) -> int:
        r = self.http.post("/studios", json={"name": "bench", **fields})
        if r.status_code != 201:
            raise RuntimeError(f"POST /studios answered {r.status_code}: {r.text[:300]}")
        return int(r.json()["id"])

    def deploy(self, studio_id: int) -> int:
        r = self.http.post(f"/studios/{studio_id}/deployments")
        if r.status_code != 201:
            raise RuntimeError(f"POST deployments answered {r.status_code}: {r.text[:300]}")
        did = int(r.json()["deploymentId"])
        self.deployments.append((studio_id, did))
        return did

    def get(self, studio_id: int, did: int) -> dict[str, Any]:
        return self.http.get(f"/studios/{studio_id}/deployments/{did}").json()

    def wait_state(self, studio_id: int, did: int, state: str, deadline: float, every: float = 0.002) -> tuple[float, dict[str, Any]]:
        """Poll tightly; the monotonic time the state was first seen, and the deployment."""
        while True:
            dep = self.get(studio_id, did)
            now = time.monotonic()
            if dep["state"] == state:
                return now, dep
            if dep["state"] == "terminated":
                raise RuntimeError(f"deployment {did} ended: {dep['stateMessage']}\n{self.system_lines(studio_id, did)}")
            if now > deadline:
                raise RuntimeError(f"deployment {did} not {state} in time (state {dep['state']}: {dep['stateMessage']})")
            if self.proc.poll() is not None:
                raise RuntimeError(f"studios serve exited with {self.proc.returncode}:\n{tail(self.log)}")
            time.sleep(every)

    def system_lines(self, studio_id: int, did: int) -> list[str]:
        r = self.http.get(f"/studios/{studio_id}/deployments/{did}/logs", params={"limit": 200})
        return [l["message"] for l in r.json() if l["source"] == "system"] if r.status_code == 200 else []

    def ready_after_ms(self, studio_id: int, did: int) -> float | None:
        """The engine's own figure: "ready after N ms" (runtime start -> the app answered)."""
        for line in self.system_lines(studio_id, did):
            m = re.match(r"ready after (\d+) ms", line)
            if m:
                return float(m.group(1))
        return None

    def delete(self, studio_id: int, did: int) -> None:
        r = self.http.delete(f"/studios/{studio_id}/deployments/{did}", timeout=60)
        if r.status_code not in (204, 404):
            print(f"  DELETE deployment {did} answered {r.status_code}: {r.text[:200]}", file=sys.stderr)
        with contextlib.suppress(ValueError):
            self.deployments.remove((studio_id, did))

    def open_display_url(self, display_url: str) -> int:
        """What a browser does with a displayUrl: the token exchange (a 303 that sets the viewer
        cookie), then `GET /` with the cookie. The status of that last GET."""
        url = httpx.URL(display_url)
        host = f"{url.host}:{url.port}" if url.port else url.host
        first = self.viewer.get(url.raw_path.decode(), headers={"Host": host})
        if first.status_code not in (302, 303, 307):
            return first.status_code
        cookie = first.headers["set-cookie"].split(";", 1)[0]
        location = httpx.URL(first.headers["location"])
        return self.viewer.get(location.raw_path.decode() or "/", headers={"Host": host, "Cookie": cookie}).status_code

    def close(self) -> None:
        """Delete what is still deployed (workloads outlive the service), then stop it."""
        for studio_id, did in list(self.deployments):
            with contextlib.suppress(Exception):
                self.delete(studio_id, did)
        self.http.close()
        self.viewer.close()

    def kill_leftover_workloads(self) -> None:
        """Last resort after the service stopped: host-process apps and supervisors it left."""
        for path in (self.data / "process-runtime").glob("*.json"):
            with contextlib.suppress(Exception):
                handle = json.loads(path.read_text())
                for ident in (handle.get("app"), handle.get("supervisor")):
                    if ident and ident.get("pid"):
                        stat = Path(f"/proc/{ident['pid']}/stat").read_bytes()
                        if int(stat[stat.rindex(b")") + 2 :].split()[19]) == ident.get("start_time"):
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(int(ident["pid"]), signal.SIGKILL)
                            print(f"  killed leftover pid {ident['pid']} of deployment {handle.get('deployment_id')}", file=sys.stderr)


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


def via_api(srv: Studios, studio_id: int, timeout: float) -> dict[str, float | None]:
    t0 = time.monotonic()
    did = srv.deploy(studio_id)
    t_post = time.monotonic()
    try:
        t_running, dep = srv.wait_state(studio_id, did, "running", t0 + timeout)
        status = srv.open_display_url(dep["displayUrl"])
        t200 = time.monotonic()
        if status != 200:
            raise RuntimeError(f"the displayUrl of deployment {did} answered {status}")
        ready = srv.ready_after_ms(studio_id, did)
    finally:
        srv.delete(studio_id, did)
    return {"post_ms": ms(t_post - t0), "deploy_to_running_ms": ms(t_running - t0), "deploy_to_200_via_display_url_ms": ms(t200 - t0),
            "engine_ready_after_ms": ready, "deployment_id": did}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds; medians reported (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--app", choices=("python", "busybox"), default="python", help="the tiny app: a raw-socket Python server (default) or busybox httpd")
    parser.add_argument("--timeout", type=float, default=30, help="seconds allowed per measurement (default 30)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (server log, data dir)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/deploy_bench-<time>.json)")
    args = parser.parse_args()

    install_signal_handlers()
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="deploy_bench-"))
    started = dt.datetime.now(dt.timezone.utc)
    srv: Studios | None = None
    try:
        command = app_command(args.app, tmp)
        image = "bench/tiny-app"
        print(f"app: {command}", file=sys.stderr)
        srv = Studios(procs, tmp, {"STUDIOS_RUNTIME": "process", "STUDIOS_IMAGE_COMMANDS": json.dumps({image: command})})
        studio_id = srv.create_studio(dockerImageName=image)
        for _ in range(args.warmup):
            by_hand(procs, command, args.timeout)
            via_api(srv, studio_id, args.timeout)
        hand_runs: list[dict] = []
        api_runs: list[dict] = []
        for r in range(args.rounds):
            order = ("hand", "api") if r % 2 == 0 else ("api", "hand")
            for which in order:
                if which == "hand":
                    hand_runs.append(by_hand(procs, command, args.timeout))
                else:
                    api_runs.append(via_api(srv, studio_id, args.timeout))
            procs.check_alive()
            a, h = api_runs[-1], hand_runs[-1]
            print(f"  round {r + 1:2}/{args.rounds}  by hand {h['spawn_to_200_ms']:7.1f} ms   via API: running {a['deploy_to_running_ms']:7.1f} ms,"
                  f" 200 via displayUrl {a['deploy_to_200_via_display_url_ms']:7.1f} ms  (POST {a['post_ms']:.1f} ms, engine 'ready after' {a['engine_ready_after_ms']} ms)",
                  file=sys.stderr)

        def med(runs: list[dict], key: str) -> float | None:
            values = [r[key] for r in runs if r.get(key) is not None]
            return round(statistics.median(values), 2) if values else None

        hand = med(hand_runs, "spawn_to_200_ms")
        medians = {"spawn_to_200_ms": hand, **{k: med(api_runs, k) for k in ("post_ms", "deploy_to_running_ms", "deploy_to_200_via_display_url_ms", "engine_ready_after_ms")}}
        extra_running = round(medians["deploy_to_running_ms"] - hand, 2)
        extra_200 = round(medians["deploy_to_200_via_display_url_ms"] - hand, 2)
        ok = extra_running <= GOAL_EXTRA_MS
        print(f"\nmedians of {args.rounds} ({args.app} app)")
        print(f"  {'spawn by hand -> first 200':44} {hand:8.1f} ms   (reference anchor {REFERENCE_SPAWN_MS} ms)")
        print(f"  {'deploy via API -> running (polled)':44} {medians['deploy_to_running_ms']:8.1f} ms   +{extra_running:.1f} ms over by hand")
        print(f"  {'deploy via API -> first 200 via displayUrl':44} {medians['deploy_to_200_via_display_url_ms']:8.1f} ms   +{extra_200:.1f} ms over by hand")
        print(f"  {'  of which POST /deployments':44} {medians['post_ms']:8.1f} ms")
        print(f"  {'  engine log: ready after':44} {medians['engine_ready_after_ms']:8.1f} ms   (runtime start -> app answered, server-side)")
        print(f"goal: deploy -> running <= spawn -> 200 + {GOAL_EXTRA_MS:g} ms: {'MET' if ok else 'NOT MET'} (+{extra_running:.1f} ms)")
        write_results("deploy_bench", started, {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "app_command": command,
            "runs": {"by_hand": hand_runs, "via_api": api_runs},
            "median": medians,
            "extra_ms": {"running": extra_running, "first_200_via_display_url": extra_200},
            "goal": {"max_extra_ms": GOAL_EXTRA_MS, "met": ok},
        }, args.output)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything this bench started ...", file=sys.stderr)
        return 130
    finally:
        ignore_signals()
        if srv is not None:
            srv.close()
        procs.stop_all()
        if srv is not None:
            srv.kill_leftover_workloads()
        if args.keep_temp:
            print(f"temporary files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
