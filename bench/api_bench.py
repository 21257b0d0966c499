"""Benchmark of the Studios API against its anchors, in one interleaved run.

    .venv/bin/python bench/api_bench.py                      # the full run (~3 minutes)
    .venv/bin/python bench/api_bench.py --duration 3 --rounds 1   # a quick look

What it measures, each with `wrk -t2 -cN -dD --latency` (the defaults: 2 threads, 32
connections, 10 s), interleaved target by target for R rounds (default 3), reporting the median
req/s, p50 and p99 of each target:

  ours GET /studios/{id}   `studios serve` as it runs by default (a subprocess of the real
  ours GET /studios        command, SQLite in a temporary data dir), 40 studios by one user
  bare FastAPI             a ~1 KB dict from one route, same uvicorn settings as ours
  bare FastAPI row, page   the same server: one SQLite row, or 20 stored list items, read in
                           FastAPI's thread pool (the floors of a GET and of a list page)
  JupyterHub GET user      JupyterHub 6.1.1, `GET /hub/api/users/<name>` and
  JupyterHub GET users     `GET /hub/api/users` (21 users), with a generated API token

and prints the ratios against the goals of `bench/performance-goals.md`:
GET /studios/{id} >= 10x JupyterHub's single-user GET and >= 0.5x the bare route, with p99 <
25 ms, and GET /studios >= 10x JupyterHub's user list. The figures go to bench/results/api_bench-<time>.json.

JupyterHub is installed on first use into its own venv, bench/.venvs/jupyterhub (git-ignored),
never into ours. Every server runs on a free loopback port in a temporary directory, and every
process the script starts is stopped when it ends, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH, OUR_VENV_BIN, REPO, Processes, bench_session, create_user, free_port, median_of, parse_wrk, settings, start_bare_app, tail, write_results

ANCHORS = BENCH / "anchors"
JH_VENV = BENCH / ".venvs" / "jupyterhub"
JH_VERSION = "6.1.1"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

# The goals (bench/performance-goals.md) and the reference anchor figures there.
GOAL_RATIO = 10.0
GOAL_BARE_RATIO = 0.5
GOAL_P99_MS = 25.0
REFERENCE = {"jh_get_rps": 470.0, "jh_list_rps": 190.0, "bare_rps": 6490.0}
FOREIGN_CPU_WARN = 0.15  # cores used by processes that are not ours during a run: flagged


# ---------------------------------------------------------------------------------------------
# HTTP helpers (stdlib only: the bench must not need anything our venv lacks).


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: object = None, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(port: int, path: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 60, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering; its log:\n{tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = request(port, "GET", path, headers, timeout=2)
            if status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer 200 on {path} within {timeout:.0f} s; its log:\n{tail(log)}")


# ---------------------------------------------------------------------------------------------
# The servers.


@dataclass
class Target:
    key: str
    label: str
    port: int
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    pid: int = 0  # the server process, whose CPU per request is reported


def start_ours(procs: Processes, tmp: Path, n_studios: int, admin: bool, variant: str = "", extra_env: dict[str, str] | None = None,
               scale: tuple[int, int, int] | None = None) -> list[Target]:
    """`studios serve --port P` exactly as a person runs it: the real console script, the
    default SQLite database in STUDIOS_DATA_DIR, one user who owns every studio. A `variant`
    (with its `extra_env`) is a second server, measured as `ours_get_<variant>`. `scale`:
    (studios, deployments, log lines) seeded into the database first (its targets are named
    `ours_scale_*`)."""
    studios_cmd = str(OUR_VENV_BIN / "studios")
    tmp = tmp / (("scale" if scale else "small") + variant)
    tmp.mkdir()
    data = tmp / "studios-data"
    env = {**os.environ, "STUDIOS_DATA_DIR": str(data)}
    for var in ("STUDIOS_DATABASE_URL", "STUDIOS_ACCESS_LOG", "STUDIOS_SECRET_KEY", "STUDIOS_HOST", "STUDIOS_PORT"):
        env.pop(var, None)  # "as it runs by default"
    env |= extra_env or {}
    # The per-key limit (STUDIOS_RATE_LIMIT_PER_KEY, default 10000/minute) would answer most of
    # wrk's requests with a 429: raise its ceiling so every request is counted and answered as a
    # real client's. Set the variable to measure another value ("" turns the limits off).
    env.setdefault("STUDIOS_RATE_LIMIT_PER_KEY", "1000000000/hour")
    key = create_user(env, admin)
    auth = {"Authorization": f"Bearer {key}"}
    if scale:
        from seed import seed

        t0 = time.monotonic()
        seed(f"sqlite:///{data / 'studios.db'}", "bench", studios=scale[0], deployments=scale[1], log_lines=scale[2])
        print(f"  seeded {scale[0]:,} studios, {scale[1]:,} deployments, {scale[2]:,} log lines in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    port = free_port()
    log = tmp / f"studios{variant}.log"
    proc = procs.start(f"studios serve{variant}", [studios_cmd, "serve", "--port", str(port)], log=log, env=env)
    wait_http(port, "/users/me", proc, log, "studios serve", headers=auth)

    ids = []
    for i in range(n_studios):
        status, body = request(port, "POST", "/studios", auth, {"name": f"bench studio {i:03d}", "dockerImageName": "civisanalytics/datascience-python"})
        if status != 201:
            raise RuntimeError(f"POST /studios answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["id"])
    one = ids[len(ids) // 2]
    total = len(ids) + (scale[0] if scale else 0)
    last = (total + 19) // 20
    name, label = ("ours_scale", "ours at scale") if scale else ("ours", "ours")
    suffix = f" ({variant.strip('_').replace('_', ' ')})" if variant else ""
    targets = [
        Target(f"{name}_get{variant}", f"{label} GET /studios/{{id}}{suffix}", port, f"/studios/{one}", auth, proc.pid),
        Target(f"{name}_list{variant}", f"{label} GET /studios (20){suffix}", port, "/studios", auth, proc.pid),
        Target(f"{name}_list_last{variant}", f"{label} GET /studios last page{suffix}", port, f"/studios?page_num={last}", auth, proc.pid),
    ]
    if not scale and not variant:
        # A deployment's GET and its studio's page of deployments (what clients poll while they
        # wait): a studio of an image no runtime knows, so its one deployment ends at once.
        status, body = request(port, "POST", "/studios", auth, {"name": "bench deployments", "dockerImageName": "bench/no-such-image"})
        studio = json.loads(body)["id"]
        status, body = request(port, "POST", f"/studios/{studio}/deployments", auth, {})
        if status != 201:
            raise RuntimeError(f"POST /studios/{studio}/deployments answered {status}: {body[:300]!r}")
        deployment = json.loads(body)["deploymentId"]
        targets += [
            Target(f"{name}_get_deployment", f"{label} GET /studios/{{id}}/deployments/{{did}}", port, f"/studios/{studio}/deployments/{deployment}", auth, proc.pid),
            Target(f"{name}_deployments", f"{label} GET /studios/{{id}}/deployments", port, f"/studios/{studio}/deployments", auth, proc.pid),
        ]
    if scale:  # the first page of seeded studios: the same content as the last page (each has deployments), near the list's head
        seeded = (len(ids) + 19) // 20 + 1
        targets.append(Target(f"{name}_list_seeded{variant}", f"{label} GET /studios seeded page{suffix}", port, f"/studios?page_num={seeded}", auth, proc.pid))
    return targets


def start_bare(procs: Processes, tmp: Path) -> list[Target]:
    port, proc = start_bare_app(procs, tmp, "--db", str(tmp / "bare.db"))
    return [Target("bare", "bare FastAPI ~1 KB dict", port, "/item", {}, proc.pid),
            Target("bare_row", "bare FastAPI 1 SQLite row, thread", port, "/row/1", {}, proc.pid),
            Target("bare_page", "bare FastAPI 20 SQLite rows, thread", port, "/page", {}, proc.pid)]


def ensure_jupyterhub(quiet: bool = False) -> Path:
    """bench/.venvs/jupyterhub with jupyterhub==6.1.1, made on first use; returns its binary."""
    binary = JH_VENV / "bin" / "jupyterhub"
    if binary.exists():
        version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
        if version == JH_VERSION:
            return binary
    print(f"installing jupyterhub=={JH_VERSION} into {JH_VENV.relative_to(REPO)} (once) ...", file=sys.stderr)
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    JH_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base_python, "-m", "venv", "--clear", str(JH_VENV)], check=True)
    pip = [str(JH_VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", f"jupyterhub=={JH_VERSION}"]
    subprocess.run(pip + (["-q"] if quiet else []), check=True)
    return binary


def start_jupyterhub(procs: Processes, tmp: Path, token_kind: str, n_users: int) -> list[Target]:
    binary = ensure_jupyterhub()
    workdir = tmp / "jupyterhub"
    workdir.mkdir()
    hub_port, public_port = free_port(), free_port()
    service_token = secrets.token_hex(32)
    env = {
        **os.environ,
        "BENCH_JH_DIR": str(workdir),
        "BENCH_JH_HUB_PORT": str(hub_port),
        "BENCH_JH_PORT": str(public_port),
        "BENCH_JH_TOKEN": service_token,
        "BENCH_JH_USERS": str(n_users),
        "PATH": f"{JH_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    log = tmp / "jupyterhub.log"
    proc = procs.start("jupyterhub", [str(binary), "-f", str(ANCHORS / "jupyterhub_config.py")], log=log, env=env, cwd=workdir)
    wait_http(hub_port, "/hub/api/", proc, log, "jupyterhub", timeout=120)

    token = service_token
    if token_kind == "generated":
        # A token the Hub generates (stored with one hash round, as the reference anchor used);
        # config-file tokens are hashed with 16,384 rounds on every request (--jupyterhub-token config).
        status, body = request(hub_port, "POST", "/hub/api/users/admin/tokens", {"Authorization": f"token {service_token}"}, {"note": "api_bench"})
        if status != 201:
            raise RuntimeError(f"JupyterHub would not generate a token ({status}): {body[:300]!r}")
        token = json.loads(body)["token"]
    auth = {"Authorization": f"token {token}"}
    return [
        Target("jh_get", "JupyterHub GET /users/<name>", hub_port, "/hub/api/users/user05", auth, proc.pid),
        Target("jh_list", f"JupyterHub GET /users ({n_users})", hub_port, "/hub/api/users", auth, proc.pid),
    ]


def check_target(t: Target) -> dict:
    """One request before the load: it must be a 200, and lists must be the expected size."""
    status, body = request(t.port, "GET", t.path, t.headers)
    if status != 200:
        raise RuntimeError(f"{t.label}: GET {t.path} answered {status}: {body[:300]!r}")
    info: dict = {"status": status, "body_bytes": len(body)}
    parsed = json.loads(body)
    if isinstance(parsed, list):
        info["items"] = len(parsed)
    return info


# ---------------------------------------------------------------------------------------------
# wrk.

def _busy_jiffies() -> int:
    """CPU time spent by the whole machine (all cores), in clock ticks."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


def _tree_jiffies(pids: list[int]) -> int:
    """CPU time (user + system, all threads) of these processes and their descendants."""
    total = 0
    for pid in _descendants(pids):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            after = stat[stat.rindex(")") + 2 :].split()
            total += int(after[11]) + int(after[12])  # utime, stime
    return total


def _descendants(pids: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    seen, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def run_wrk(procs: Processes, t: Target, threads: int, connections: int, duration: float, tmp: Path) -> dict:
    argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s"]
    for name, value in t.headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{t.port}{t.path}")
    log = tmp / f"wrk-{t.key}.out"
    procs.check_alive()
    ours = [p.pid for _, p in procs.children]
    busy0, ours0, server0, t0 = _busy_jiffies(), _tree_jiffies(ours), _tree_jiffies([t.pid]), time.monotonic()
    proc = procs.start(f"wrk {t.key}", argv, log=log)
    # Sample wrk's own CPU just before it exits (a reaped process has no /proc entry).
    wrk_jiffies = 0
    while proc.poll() is None and time.monotonic() - t0 < duration + 60:
        wrk_jiffies = max(wrk_jiffies, _tree_jiffies([proc.pid]))
        time.sleep(min(0.25, max(0.01, duration - (time.monotonic() - t0) - 0.05)))
    proc.wait(max(1.0, duration + 60 - (time.monotonic() - t0)))  # on a timeout or Ctrl-C, stop_all() ends it
    procs.forget(proc)
    busy1, ours1, server1, elapsed = _busy_jiffies(), _tree_jiffies(ours), _tree_jiffies([t.pid]), time.monotonic() - t0
    out = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}) on {t.label}:\n{out}")
    procs.check_alive()
    result = parse_wrk(out)
    # CPU that neither our servers nor wrk used while wrk ran, in cores: other people's load on
    # this shared machine (a run with much of it is not comparable; the report flags it).
    hz = os.sysconf("SC_CLK_TCK")
    result["foreign_cpu_cores"] = round(max(0, (busy1 - busy0) - (ours1 - ours0) - wrk_jiffies) / hz / elapsed, 2)
    # The server's own CPU per request: steadier than req/s when the machine is shared.
    result["server_cpu_ms_per_req"] = round((server1 - server0) / hz * 1000 / max(1, result["requests"]), 3)
    result["server_cpu_cores"] = round((server1 - server0) / hz / elapsed, 2)
    return result


# ---------------------------------------------------------------------------------------------
# Report.


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def fmt_ratio(r: float | None) -> str:
    return f"{r:.2f}x" if r is not None else "n/a"


def report(targets: list[Target], medians: dict[str, dict], runs: dict[str, list[dict]]) -> dict:
    print()
    print(f"{'target':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>10} {'cores':>6}   runs (req/s)")
    for t in targets:
        m = medians[t.key]
        each = " ".join(f"{r['rps']:.0f}" for r in runs[t.key])
        bad = sum(r["non_2xx"] + r["socket_errors"] for r in runs[t.key])
        warn = f"   !! {bad} non-2xx/socket errors" if bad else ""
        foreign = max(r.get("foreign_cpu_cores", 0) for r in runs[t.key])
        if foreign >= FOREIGN_CPU_WARN:
            warn += f"   !! other processes used up to {foreign:.2f} cores"
        print(f"{t.label:34} {m['rps']:9.0f} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} {m['server_cpu_ms_per_req']:10.3f} {m['server_cpu_cores']:6.2f}   {each}{warn}")

    def rps(key: str) -> float | None:
        return medians.get(key, {}).get("rps")

    ratios = {
        "ours_get_vs_jh_get": ratio(rps("ours_get"), rps("jh_get")),
        "ours_list_vs_jh_list": ratio(rps("ours_list"), rps("jh_list")),
        "ours_get_vs_bare": ratio(rps("ours_get"), rps("bare")),
        "ours_list_vs_bare": ratio(rps("ours_list"), rps("bare")),
        "ours_get_vs_bare_row": ratio(rps("ours_get"), rps("bare_row")),
        "bare_row_vs_bare": ratio(rps("bare_row"), rps("bare")),
        "ours_list_vs_bare_page": ratio(rps("ours_list"), rps("bare_page")),
        "bare_page_vs_jh_list": ratio(rps("bare_page"), rps("jh_list")),
        "jh_get_vs_reference_470": ratio(rps("jh_get"), REFERENCE["jh_get_rps"]),
        "jh_list_vs_reference_190": ratio(rps("jh_list"), REFERENCE["jh_list_rps"]),
        "bare_vs_reference_6490": ratio(rps("bare"), REFERENCE["bare_rps"]),
    }
    ratios["scale_get_vs_small"] = ratio(rps("ours_scale_get"), rps("ours_get"))
    ratios["scale_list_vs_small"] = ratio(rps("ours_scale_list"), rps("ours_list"))
    ratios["scale_list_last_vs_small"] = ratio(rps("ours_scale_list_last"), rps("ours_list"))
    ratios["scale_list_last_vs_seeded"] = ratio(rps("ours_scale_list_last"), rps("ours_scale_list_seeded"))
    for key in ("ours_list", "ours_scale_list"):
        m = medians.get(key)
        if m and m.get("p50_ms"):
            ratios[f"{key}_p99_over_p50"] = m["p99_ms"] / m["p50_ms"]

    def cpu(key: str) -> float | None:
        return medians.get(key, {}).get("server_cpu_ms_per_req")

    # The same comparison in server CPU per request (how many of ours fit in one of theirs):
    # less moved by other load on a shared machine than req/s, so a check on the req/s ratios.
    ratios["cpu_ours_get_vs_jh_get"] = ratio(cpu("jh_get"), cpu("ours_get"))
    ratios["cpu_ours_list_vs_jh_list"] = ratio(cpu("jh_list"), cpu("ours_list"))
    ratios["cpu_ours_get_vs_bare"] = ratio(cpu("bare"), cpu("ours_get"))
    ratios["cpu_ours_get_vs_bare_row"] = ratio(cpu("bare_row"), cpu("ours_get"))
    ratios["cpu_bare_row_vs_bare"] = ratio(cpu("bare"), cpu("bare_row"))
    ratios["cpu_ours_list_vs_bare_page"] = ratio(cpu("bare_page"), cpu("ours_list"))
    p99 = medians.get("ours_get", {}).get("p99_ms")
    goals = {}
    if ratios["ours_get_vs_jh_get"] is not None and p99 is not None:
        goals["get_studio"] = {
            "ratio": ratios["ours_get_vs_jh_get"], "needed_ratio": GOAL_RATIO, "p99_ms": p99, "needed_p99_ms": GOAL_P99_MS,
            "bare_ratio": ratios["ours_get_vs_bare"], "needed_bare_ratio": GOAL_BARE_RATIO,
            "met": ratios["ours_get_vs_jh_get"] >= GOAL_RATIO and p99 < GOAL_P99_MS and (ratios["ours_get_vs_bare"] or 0) >= GOAL_BARE_RATIO,
        }
    if ratios["ours_list_vs_jh_list"] is not None:
        goals["list_studios"] = {"ratio": ratios["ours_list_vs_jh_list"], "needed_ratio": GOAL_RATIO, "met": ratios["ours_list_vs_jh_list"] >= GOAL_RATIO}

    print()
    print(f"{'ratio':47} {'req/s':>8} {'CPU/req':>8}")
    print(f"{'ours GET /studios/{id} / JupyterHub GET user':47} {fmt_ratio(ratios['ours_get_vs_jh_get']):>8} {fmt_ratio(ratios['cpu_ours_get_vs_jh_get']):>8}")
    print(f"{'ours GET /studios      / JupyterHub GET users':47} {fmt_ratio(ratios['ours_list_vs_jh_list']):>8} {fmt_ratio(ratios['cpu_ours_list_vs_jh_list']):>8}")
    print(f"{'ours GET /studios/{id} / bare FastAPI':47} {fmt_ratio(ratios['ours_get_vs_bare']):>8} {fmt_ratio(ratios['cpu_ours_get_vs_bare']):>8}")
    print(f"{'ours GET /studios      / bare FastAPI':47} {fmt_ratio(ratios['ours_list_vs_bare']):>8}")
    print(f"{'ours GET /studios/{id} / bare FastAPI row':47} {fmt_ratio(ratios['ours_get_vs_bare_row']):>8} {fmt_ratio(ratios['cpu_ours_get_vs_bare_row']):>8}")
    print(f"{'bare FastAPI row       / bare FastAPI':47} {fmt_ratio(ratios['bare_row_vs_bare']):>8} {fmt_ratio(ratios['cpu_bare_row_vs_bare']):>8}")
    print(f"{'ours GET /studios      / bare FastAPI page':47} {fmt_ratio(ratios['ours_list_vs_bare_page']):>8} {fmt_ratio(ratios['cpu_ours_list_vs_bare_page']):>8}")
    print(f"{'bare FastAPI page      / JupyterHub GET users':47} {fmt_ratio(ratios['bare_page_vs_jh_list']):>8}")
    if ratios["scale_list_vs_small"] is not None:
        print(f"{'at scale (10,000 studios) / 40 studios: GET':47} {fmt_ratio(ratios['scale_get_vs_small']):>8}   list {fmt_ratio(ratios['scale_list_vs_small'])}, "
              f"last page {fmt_ratio(ratios['scale_list_last_vs_small'])} (goal >= 0.8x)")
        print(f"{'at scale: last page / first page of seeded':47} {fmt_ratio(ratios['scale_list_last_vs_seeded']):>8}   (the same content, each studio with "
              f"deployments, at the list's end and near its head: what the data's size costs)")
    for key in ("ours_list", "ours_scale_list"):
        if f"{key}_p99_over_p50" in ratios:
            print(f"{key}: p99 / p50 = {ratios[f'{key}_p99_over_p50']:.2f} (goal < 3)")
    print(f"anchors vs. the reference figures (470 / 190 / 6,490 req/s): JupyterHub GET {fmt_ratio(ratios['jh_get_vs_reference_470'])}, "
          f"list {fmt_ratio(ratios['jh_list_vs_reference_190'])}, bare {fmt_ratio(ratios['bare_vs_reference_6490'])}")
    print()
    if "get_studio" in goals:
        g = goals["get_studio"]
        print(f"goal GET /studios/{{id}} >= {GOAL_RATIO:g}x JupyterHub, >= {GOAL_BARE_RATIO:g}x bare FastAPI and p99 < {GOAL_P99_MS:g} ms: "
              f"{'MET' if g['met'] else 'NOT MET'} ({g['ratio']:.2f}x, {fmt_ratio(g['bare_ratio'])} bare, p99 {g['p99_ms']:.2f} ms)")
    if "list_studios" in goals:
        g = goals["list_studios"]
        print(f"goal GET /studios >= {GOAL_RATIO:g}x JupyterHub's list: {'MET' if g['met'] else 'NOT MET'} ({g['ratio']:.2f}x)")
    return {"ratios": ratios, "goals": goals}


def limits_cost(medians: dict[str, dict]) -> dict:
    """What the request limits cost: ours with them (the default) against ours without."""
    cost = {}
    for what in ("get", "list"):
        on, off = medians.get(f"ours_{what}"), medians.get(f"ours_{what}_no_limits")
        if not on or not off:
            continue
        cost[what] = {"rps_ratio": on["rps"] / off["rps"], "cpu_ratio": on["server_cpu_ms_per_req"] / off["server_cpu_ms_per_req"]}
        print(f"request limits on / off, GET /studios{'/{id}' if what == 'get' else ''}: req/s {cost[what]['rps_ratio']:.3f}x, "
              f"CPU per request {cost[what]['cpu_ratio']:.3f}x ({on['server_cpu_ms_per_req']:.3f} vs {off['server_cpu_ms_per_req']:.3f} ms)")
    return cost


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load on each target first (default 2; 0: none)")
    parser.add_argument("--studios", type=int, default=40, help="studios seeded into ours (default 40: GET /studios returns a full page of 20)")
    parser.add_argument("--scale", action="store_true", help="also a second server of ours with 10,000 studios, 100,000 deployments and 1,000,000 log lines seeded (targets ours_scale_*)")
    parser.add_argument("--admin-caller", action="store_true", help="measure ours with an admin's key (default: the studios' author, a regular user)")
    parser.add_argument("--jupyterhub-token", choices=("generated", "config"), default="generated",
                        help="JupyterHub token kind: one the Hub generated (default, as the reference figures) or the config-file service token (16,384 hash rounds per request)")
    parser.add_argument("--jupyterhub-users", type=int, default=21, help="users in JupyterHub (default 21)")
    parser.add_argument("--only", default="", help="comma-separated subset of: ours_get, ours_list, ours_get_deployment, ours_deployments, bare, jh_get, jh_list (default: all)")
    parser.add_argument("--limits-anchor", action="store_true",
                        help="also run a second studios serve with the request limits off (ours_get_no_limits, ours_list_no_limits), interleaved, and print the limits' cost")
    parser.add_argument("--serve-only", action="store_true", help="start and seed the servers, print the targets and wait for Ctrl-C (for profiling)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (server logs, wrk outputs)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the figures (default bench/results/api_bench-<time>.json)")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {"ours_get", "ours_list", "ours_list_last", "ours_get_deployment", "ours_deployments", "bare", "bare_row", "bare_page", "jh_get", "jh_list", "ours_get_no_limits", "ours_list_no_limits", "ours_list_last_no_limits",
                      "ours_scale_get", "ours_scale_list", "ours_scale_list_last", "ours_scale_list_seeded"}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    if not Path(WRK).exists():
        parser.error("wrk is needed: apt-get install wrk")

    # Ctrl-C, SIGTERM and SIGHUP end in bench_session's cleanup: every server stopped (SIGTERM,
    # then SIGKILL after 5 s), the temporary directory deleted.
    with bench_session("api_bench", args.keep_temp, grace=5) as session:
        procs, tmp = session.procs, session.tmp
        wanted = lambda *keys: not only or bool(only & set(keys))  # noqa: E731
        targets: list[Target] = []
        print("starting servers ...", file=sys.stderr)
        if wanted("ours_get", "ours_list", "ours_list_last", "ours_get_deployment", "ours_deployments"):
            targets += start_ours(procs, tmp, args.studios, args.admin_caller)
        if args.limits_anchor:
            targets += start_ours(procs, tmp, args.studios, args.admin_caller, "_no_limits", {"STUDIOS_RATE_LIMIT_PER_KEY": "", "STUDIOS_AUTH_FAILURE_LIMIT": ""})
        if args.scale and wanted("ours_scale_get", "ours_scale_list", "ours_scale_list_last", "ours_scale_list_seeded"):
            targets += start_ours(procs, tmp, args.studios, args.admin_caller, scale=(10_000, 100_000, 1_000_000))
        if wanted("bare", "bare_row", "bare_page"):
            targets += start_bare(procs, tmp)  # both routes of one server: `--only` picks below
        if wanted("jh_get", "jh_list"):
            targets += start_jupyterhub(procs, tmp, args.jupyterhub_token, args.jupyterhub_users)
        targets = [t for t in targets if not only or t.key in only]
        checks = {}
        for t in targets:
            checks[t.key] = check_target(t)
            items = f", {checks[t.key]['items']} items" if "items" in checks[t.key] else ""
            print(f"  {t.label:34} http://127.0.0.1:{t.port}{t.path}  ({checks[t.key]['body_bytes']} bytes{items})", file=sys.stderr)
        if args.serve_only:
            for t in targets:
                hdrs = " ".join(f"-H '{k}: {v}'" for k, v in t.headers.items())
                print(f"wrk -t2 -c32 -d10s --latency {hdrs} http://127.0.0.1:{t.port}{t.path}")
            print("pids: " + ", ".join(f"{n}={p.pid}" for n, p in procs.children), flush=True)
            print("serving; Ctrl-C to stop", file=sys.stderr, flush=True)
            while True:
                time.sleep(1)
                procs.check_alive()

        if args.warmup > 0:
            print(f"warming up ({args.warmup:g} s each) ...", file=sys.stderr)
            for t in targets:
                run_wrk(procs, t, args.threads, args.connections, args.warmup, tmp)
        runs: dict[str, list[dict]] = {t.key: [] for t in targets}
        for r in range(args.rounds):
            for t in targets:
                result = run_wrk(procs, t, args.threads, args.connections, args.duration, tmp)
                runs[t.key].append(result)
                print(f"  round {r + 1}/{args.rounds}  {t.label:34} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms"
                      f"  server {result['server_cpu_ms_per_req']:.3f} ms CPU/req  (other load {result['foreign_cpu_cores']:.2f} cores)", file=sys.stderr)
        medians = {
            key: {m: median_of(rs, m, digits=None) for m in ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_req", "server_cpu_cores")}
            for key, rs in runs.items()
        }
        summary = report(targets, medians, runs)
        if args.limits_anchor:
            summary["limits_cost"] = limits_cost(medians)

        write_results("api_bench", session.started, {
            "settings": settings(args),
            "wrk": subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.splitlines()[:1],
            "targets": {t.key: {"label": t.label, "path": t.path, **checks[t.key]} for t in targets},
            "runs": runs,
            "median": medians,
            **summary,
        }, args.output)
        return 0
    return 130  # interrupted (bench_session reported it and cleaned up)

if __name__ == "__main__":
    sys.exit(main())
