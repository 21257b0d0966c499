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
# The interpreter the benches' apps run with: an interpreter itself, not a pyenv shim (a shell
# script that costs ~50 ms per start). As root the process runtime runs each app as its author's
# own uid, which cannot enter root's home (where pyenv keeps this interpreter): the system's
# python3 then, readable by every user; by hand the apps run with the same one.
REAL_PYTHON = "/usr/bin/python3" if os.geteuid() == 0 and os.access("/usr/bin/python3", os.X_OK) else os.path.realpath(sys.executable)

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
    tmp.chmod(0o755)  # the apps' files in it are read by their authors' own uids (as root)
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


def start_bare_app(procs: Processes, tmp: Path, *args: str) -> tuple[int, subprocess.Popen]:
    """The bare FastAPI anchor app (bench/anchors/bare_app.py, uvicorn as `studios serve` runs
    it) with `args`, once it answers: its port and process."""
    port, log = free_port(), tmp / "bare.log"
    proc = procs.start("bare FastAPI", [sys.executable, str(BENCH / "anchors" / "bare_app.py"), "--port", str(port), *args], log=log)
    deadline = time.monotonic() + 60
    while http_status(port) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the bare FastAPI app did not answer within 60 s; its log:\n{tail(log)}")
        time.sleep(0.05)
    return port, proc


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

    def __init__(self, procs: Processes, tmp: Path, extra_env: dict[str, str], serve_args: list[str] | None = None, key: str | None = None) -> None:
        self.procs = procs
        tmp.mkdir(parents=True, exist_ok=True)
        self.data = tmp / "studios-data"
        self.port, self.proxy_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))}
        self.env |= {"STUDIOS_DATA_DIR": str(self.data), "STUDIOS_PROXY_PORT": str(self.proxy_port), "STUDIOS_HOST": "127.0.0.1",
                     "STUDIOS_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
                     # Polling every few ms is past the default per-key limit: a high ceiling keeps every request counted and answered.
                     "STUDIOS_RATE_LIMIT_PER_KEY": "1000000000/hour",
                     # The benches open dozens of display URLs from one address in seconds (30 a minute by default).
                     "STUDIOS_PROXY_AUTH_ATTEMPTS_PER_MINUTE": "1000000", **extra_env}
        self.key = key or create_user(self.env)  # another server of the same database: its user's key
        self.log = tmp / "studios.log"
        argv = [str(OUR_VENV_BIN / "studios"), "serve", "--port", str(self.port), *(serve_args or [])]
        self.proc = procs.start("studios serve", argv, log=self.log, env=self.env)
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

    def wait_state_streamed(self, studio_id: int, did: int, state: str, deadline: float) -> tuple[float, dict[str, Any]]:
        """Follow the deployment's event stream (`docs/streams.md`) instead of polling; the
        monotonic time the state was first seen, and the deployment. Costs the server nothing
        between changes, where polling every 2 ms keeps a core busy while the app starts."""
        event = None
        with self.http.stream("GET", f"/studios/{studio_id}/deployments/{did}/events", timeout=max(1.0, deadline - time.monotonic())) as r:
            if r.status_code != 200:
                raise RuntimeError(f"the events stream answered {r.status_code}")
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "deployment":
                    dep = json.loads(line[5:])
                    now = time.monotonic()
                    if dep["state"] == state:
                        return now, dep
                    if dep["state"] == "terminated":
                        raise RuntimeError(f"deployment {did} ended: {dep['stateMessage']}\n{self.system_lines(studio_id, did)}")
                if time.monotonic() > deadline:
                    break
        raise RuntimeError(f"deployment {did} not {state} in time (the events stream ended or the deadline passed)")

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
        handles = [*(self.data / "runtimes" / "process" / "state").glob("*.json"), *(self.data / "process-runtime").glob("*.json")]  # new layout, old
        for path in handles:
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


def via_api(srv: Studios, studio_id: int, timeout: float, watch: str = "poll") -> dict[str, float | None]:
    """One deploy through the API: POST -> `running` (polled every 2 ms, or seen on the
    deployment's event stream with watch="stream") -> the first 200 via the displayUrl; the
    deployment is deleted after."""
    t0 = time.monotonic()
    did = srv.deploy(studio_id)
    t_post = time.monotonic()
    try:
        if watch == "stream":
            t_running, dep = srv.wait_state_streamed(studio_id, did, "running", t0 + timeout)
        else:
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


# ---------------------------------------------------------------------------------------------
# CPU from /proc, and wrk with the server's CPU per request beside req/s.

WRK = shutil.which("wrk") or "/usr/bin/wrk"
HZ = os.sysconf("SC_CLK_TCK")


def busy_jiffies() -> int:
    """CPU time spent by the whole machine (all cores), in clock ticks."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def descendants(pids: list[int]) -> set[int]:
    """These processes and all their descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def jiffies(pids: list[int] | set[int]) -> int:
    """CPU time (user + system, all threads) of exactly these processes, in clock ticks."""
    return sum(user_system_jiffies(pids))


def user_system_jiffies(pids: list[int] | set[int]) -> tuple[int, int]:
    """`jiffies` in its two parts: time in the processes' own code, and in the kernel for them."""
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            after = stat[stat.rindex(")") + 2 :].split()
            user, system = user + int(after[11]), system + int(after[12])  # utime, stime
    return user, system


def tree_jiffies(pids: list[int]) -> int:
    return jiffies(descendants(pids))


def rss_mb(pids: list[int] | set[int]) -> float:
    """Resident memory of these processes, MB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return round(total / 1e6, 1)


def server_pids(proc: subprocess.Popen) -> list[int]:
    """`studios serve`'s own processes: the process itself and, with --workers, uvicorn's
    worker processes (Python children), not the workloads it started (supervisors, apps)."""
    pids = [proc.pid]
    for pid in descendants([proc.pid]) - {proc.pid}:
        with contextlib.suppress(OSError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if ppid == proc.pid and b"supervisor.py" not in cmdline and (b"python" in cmdline or b"studios" in cmdline):
                pids.append(pid)
    return pids


def run_wrk(procs: Processes, url: str, *, headers: dict[str, str] | None = None, measured: list[int], duration: float = 10, threads: int = 2,
            connections: int = 32, log: Path, script: Path | None = None) -> dict[str, Any]:
    """`wrk --latency` against `url`; its figures plus the CPU per request of the `measured`
    processes (exactly those pids: threads included, children not) and the cores they used, and
    the cores used by everything else on the machine but wrk ("foreign")."""
    argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    procs.check_alive()
    busy0, (user0, system0), t0 = busy_jiffies(), user_system_jiffies(measured), time.monotonic()
    ours0 = user0 + system0
    proc = procs.start("wrk", argv, log=log)
    wrk_cpu = 0
    while proc.poll() is None and time.monotonic() - t0 < duration + 60:
        wrk_cpu = max(wrk_cpu, jiffies([proc.pid]))
        time.sleep(min(0.25, max(0.01, duration - (time.monotonic() - t0) - 0.05)))
    proc.wait(max(1.0, duration + 60 - (time.monotonic() - t0)))
    procs.forget(proc)
    busy1, (user1, system1), elapsed = busy_jiffies(), user_system_jiffies(measured), time.monotonic() - t0
    ours1 = user1 + system1
    out = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}) on {url}:\n{out}")
    procs.check_alive()
    result = parse_wrk(out)
    result["server_cpu_ms_per_req"] = round((ours1 - ours0) / HZ * 1000 / max(1, result["requests"]), 3)
    # of that, the part in the processes' own code (the rest is the kernel's, for them)
    result["server_user_us_per_req"] = round((user1 - user0) / HZ * 1e6 / max(1, result["requests"]), 1)
    result["server_cpu_cores"] = round((ours1 - ours0) / HZ / elapsed, 2)
    result["foreign_cpu_cores"] = round(max(0, (busy1 - busy0) - (ours1 - ours0) - wrk_cpu) / HZ / elapsed, 2)
    return result


def cpu_at_rest(groups: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """Cores used by each group of processes (exact pids) over `seconds` of nothing asked."""
    before = {name: jiffies(pids) for name, pids in groups.items()}
    busy0, t0 = busy_jiffies(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    out = {name: round((jiffies(pids) - before[name]) / HZ / elapsed, 4) for name, pids in groups.items()}
    out["machine"] = round((busy_jiffies() - busy0) / HZ / elapsed, 3)
    return out


def loop_lag_lines(log: Path) -> list[dict[str, float]]:
    """The service's "event-loop lag over N s: p50 .. ms, p99 .. ms" lines (STUDIOS_LOOP_LAG_LOG_SECONDS)."""
    found = []
    pattern = r"event-loop lag over [\d.]+ s: p50 ([\d.]+) ms, p99 ([\d.]+) ms, mean ([\d.]+) ms, (\d+) wake-ups(?:; own p99 ([\d.]+) ms)?"
    for m in re.finditer(pattern, log.read_text(errors="replace")):
        found.append({"p50_ms": float(m.group(1)), "p99_ms": float(m.group(2)), "mean_ms": float(m.group(3)), "wakeups": int(m.group(4)),
                      "own_p99_ms": float(m.group(5)) if m.group(5) else None})
    return found


# ---------------------------------------------------------------------------------------------
# A private PostgreSQL cluster (Debian's server binaries; run as `postgres` when we are root).


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
    if not found:
        raise RuntimeError("PostgreSQL's server binaries are missing (apt-get install postgresql)")
    return found[-1]


class Postgres:
    """A throwaway cluster in `directory` on a free port: fsync off (a benchmark's data is
    disposable), 300 connections. `database(name)` creates a database and returns its URL."""

    def __init__(self, procs: Processes, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.bin = _pg_bin()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.as_pg: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            os.chmod(self.dir.parent, 0o755)
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        subprocess.run([*self.as_pg, str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"], check=True, capture_output=True)
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off",
                   "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=256MB"]
        self.proc = procs.start("postgres", [*self.as_pg, str(self.bin / "postgres"), "-D", str(data), *options], log=self.dir.parent / "postgres.log")
        deadline = time.monotonic() + 60
        while subprocess.run([*self.as_pg, str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{tail(self.dir.parent / 'postgres.log')}")
            time.sleep(0.1)
        self.psql("CREATE ROLE studios LOGIN SUPERUSER PASSWORD 'studios'")

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run([*self.as_pg, "psql", "-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                              "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True, text=True)
        return out.stdout

    def database(self, name: str) -> str:
        self.psql(f"CREATE DATABASE {name} OWNER studios")
        return f"postgresql+psycopg://studios:studios@127.0.0.1:{self.port}/{name}"

    def pids(self) -> list[int]:
        return sorted(descendants([self.proc.pid]))
