"""Helpers shared by the benchmark scripts in bench/ (imported as `common`: Python puts a script's
own directory first on sys.path, so `.venv/bin/python bench/x.py` finds this module).

- processes: `Processes` starts every child in its own process group with a parent-death
  signal, and stops them all on the way out; `bench_session` wraps a run with the signal
  handling, the temporary directory and that cleanup;
- probes: free loopback ports, a raw `GET /` until the first 200, the tail of a log;
- `studios serve` as a subprocess (`Studios`) and one measured deploy through it (`via_api`);
- results: `wrk` output parsing, medians, the JSON written under bench/results/.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
OUR_VENV_BIN = Path(sys.executable).parent
# The interpreter itself, not a pyenv shim (a shell script that costs ~50 ms per start).
REAL_PYTHON = os.path.realpath(sys.executable)

# Python source (stdlib only) of a tiny HTTP server on $PORT: binds `s`, and `serve(c)` answers
# every request on a connection with the bytes in `reply` (which the app defines).
SERVE_200_SOURCE = r"""
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(128)
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
"""


# ---------------------------------------------------------------------------------------------
# Processes: every child is recorded and stopped on the way out, whatever the way out is.


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
    """The children of a run. `grace`: seconds between SIGTERM and SIGKILL in stop_all()."""

    def __init__(self, grace: float = 8.0) -> None:
        self.grace = grace
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], *, log: Path | None, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: Ctrl-C reaches us, we stop it
            preexec_fn=_die_with_parent,
        )
        if log:
            out.close()
        self.children.append((name, proc))
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        self.children = [(n, p) for n, p in self.children if p is not proc]

    def check_alive(self) -> None:
        """Servers must live through the whole run: one that died makes its figures meaningless."""
        for name, proc in self.children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} (pid {proc.pid}) exited with {proc.returncode} during the run")

    def stop_all(self) -> None:
        """SIGTERM each child's process group, wait up to `grace` s, then SIGKILL what is left."""
        for _, proc in self.children:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for _, proc in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for name, proc in self.children:
            # The group may outlive its leader (a grandchild): kill the group in any case.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(5)
                print(f"  killed {name} (pid {proc.pid}) after it ignored SIGTERM", file=sys.stderr)
        self.children.clear()


def raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """Ctrl-C, kill and a closed terminal all end in the cleanup (SIGINT explicitly: a shell that
    starts us in the background would otherwise leave it ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)


def ignore_signals() -> None:
    """During cleanup: a second Ctrl-C must not skip it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


@dataclass
class Session:
    procs: Processes
    tmp: Path
    started: dt.datetime
    before_stop: list[Callable[[], None]] = field(default_factory=list)  # run before the children are stopped
    after_stop: list[Callable[[], None]] = field(default_factory=list)  # and after


@contextlib.contextmanager
def bench_session(name: str, keep_temp: bool, grace: float = 8.0) -> Iterator[Session]:
    """Signal handlers, a `Processes`, a temporary directory `<name>-*`, and the cleanup on the way
    out (the `before_stop` callbacks, every child stopped, the `after_stop` callbacks, the
    directory deleted unless `keep_temp`). An interrupt (Ctrl-C, SIGTERM, SIGHUP) is reported and
    swallowed: the code after the `with` runs, and returns 130."""
    install_signal_handlers()
    procs = Processes(grace)
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    session = Session(procs, tmp, dt.datetime.now(dt.UTC))
    try:
        yield session
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything this bench started ...", file=sys.stderr)
    finally:
        ignore_signals()
        for callback in session.before_stop:
            callback()
        procs.stop_all()
        for callback in session.after_stop:
            callback()
        if keep_temp:
            print(f"temporary files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Probes.


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


# ---------------------------------------------------------------------------------------------
# Figures: wrk's output, medians, the JSON under bench/results/.

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk_ms(text: str) -> float:
    """A wrk latency (`850.00us`, `1.20ms`, `2.00s`) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """The output of `wrk --latency`: req/s, p50, p99, requests, non-2xx and socket errors."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": wrk_ms(p50.group(1)),
        "p99_ms": wrk_ms(p99.group(1)),
        "requests": int(total.group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def median_of(runs: list[dict], key: str, digits: int | None = 2) -> float | None:
    """The median of `key` over the runs that have it (None when none has), rounded to `digits`."""
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None
    median = statistics.median(values)
    return median if digits is None else round(median, digits)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def git_revision() -> str | None:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() + ("+dirty-src" if dirty else "")) if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "loadavg": os.getloadavg()}


def settings(args: Any) -> dict[str, Any]:
    """The parsed command line, JSON-ready."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def write_results(name: str, started: dt.datetime, payload: dict[str, Any], output: Path | None) -> Path:
    out = output or RESULTS / f"{name}-{started.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": name, "started": started.isoformat(timespec="seconds"), "git": git_revision(), "machine": machine(), **payload}, indent=2, default=str) + "\n")
    print(f"\nfigures written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return out


# ---------------------------------------------------------------------------------------------
# `studios serve` as a subprocess, with its deployments cleaned up whatever happens.


def create_user(env: dict[str, str], admin: bool = False) -> str:
    """`studios users create bench`: the new user's API key."""
    argv = [str(OUR_VENV_BIN / "studios"), "users", "create", "bench"] + (["--admin"] if admin else [])
    made = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if made.returncode != 0:
        raise RuntimeError(f"`studios users create` failed:\n{made.stderr}")
    return made.stdout.strip().splitlines()[-1]


class Studios:
    """One `studios serve` in a temporary data dir, one user, an httpx keep-alive client."""

    def __init__(self, procs: Processes, tmp: Path, extra_env: dict[str, str]) -> None:
        self.procs = procs
        self.data = tmp / "studios-data"
        self.port, self.proxy_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))}
        self.env |= {"STUDIOS_DATA_DIR": str(self.data), "STUDIOS_PROXY_PORT": str(self.proxy_port), "STUDIOS_HOST": "127.0.0.1",
                     "STUDIOS_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
                     # Polling every few ms is past the default per-key limit: a high ceiling keeps every request counted and answered.
                     "STUDIOS_RATE_LIMIT_PER_KEY": "1000000000/hour", **extra_env}
        self.key = create_user(self.env)
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
        return [line["message"] for line in r.json() if line["source"] == "system"] if r.status_code == 200 else []

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

    def cleanup_with(self, session: Session, kill_leftovers: bool = True) -> None:
        """Register this server's cleanup with the session: its deployments deleted before the
        children stop, and (host-process runtime) leftover workloads killed after."""
        session.before_stop.append(self.close)
        if kill_leftovers:
            session.after_stop.append(self.kill_leftover_workloads)


def via_api(srv: Studios, studio_id: int, timeout: float) -> dict[str, float | None]:
    """One deploy through the API: POST -> `running` (polled) -> the first 200 via the displayUrl;
    the deployment is deleted after."""
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
