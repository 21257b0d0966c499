"""Mixed load for a few minutes: API reads and writes, deploys, log reads and proxied traffic at
once, with many chatty deployments printing all the while. Reports the error rate, p99 per kind
of request, the server's memory over time, and whether any log line was lost or doubled.

    .venv/bin/python bench/mixed_bench.py                                 # SQLite, 50 chatty apps, 3 minutes
    .venv/bin/python bench/mixed_bench.py --database postgresql
    .venv/bin/python bench/mixed_bench.py --chatty 15 --duration 30        # a quick look

The server: `studios serve` on the process runtime (SQLite by default, or a private
PostgreSQL cluster). `--chatty` deployments each run bench/anchors/chatty_app.py, which prints
`--rate` numbered lines a second and answers HTTP. While they run, client threads (each paced,
so the server is busy but not saturated) do, for `--duration` seconds:

  api-read    GET /studios/{id}, GET /studios, GET .../deployments/{did}    (3 threads)
  api-write   POST /studios, PATCH /studios/{id}                           (1 thread)
  deploy      POST .../deployments on 4 studios of their own, in turn: each new one replaces
              the studio's previous deployment; wait for `running`; every 5th is DELETEd
  logs        GET .../logs?limit=1000 of a chatty deployment                (1 thread)
  proxy       GET / through a chatty deployment's display URL, keep-alive   (2 threads)
  users       `studios users create` (the command line, its own database connection) every 10 s

Every request must succeed: any 5xx, connection error, timeout or unexpected status counts as
a failure (the goal is 0); a replaced deployment must say `replaced by deployment N`. The
server's RSS is sampled every `--sample` seconds (goal: flat). At the end every chatty
deployment is DELETEd (which waits until its last line is stored) and its whole log is read
back: the numbers of its lines must be exactly 1..N, none lost, none twice.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from common import BENCH, OUR_VENV_BIN, REAL_PYTHON, Postgres, Studios, bench_session, rss_mb, server_pids, settings, write_results

CHATTY = BENCH / "anchors" / "chatty_app.py"
LINE = re.compile(r"^chatty (\d+) (end )?(\d+)$")


@dataclasses.dataclass
class Tally:
    """Latencies and failures per kind of request (threads append; lists are thread-safe)."""

    latencies: dict[str, list[float]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    failures: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)
    attempts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def timed(self, kind: str, fn: Any, expect: tuple[int, ...] = (200,)) -> httpx.Response | None:
        self.attempts[kind] += 1
        t0 = time.monotonic()
        try:
            r = fn()
        except httpx.HTTPError as error:
            self.failures.append((t0, kind, f"{error.__class__.__name__}: {error}"))
            return None
        self.latencies[kind].append(time.monotonic() - t0)
        if r.status_code not in expect:
            self.failures.append((t0, kind, f"{r.status_code}: {r.text[:200]}"))
            return None
        return r


def pace(every: float, until: float) -> Any:
    """Yield at most once per `every` seconds until `until` (monotonic)."""
    nxt = time.monotonic()
    while time.monotonic() < until:
        yield
        nxt += every
        time.sleep(max(0.0, nxt - time.monotonic()))


def api_reader(srv: Studios, tally: Tally, studios: list[int], chatty: list[tuple[int, int]], until: float, every: float) -> None:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=30, trust_env=False) as http:
        for i, _ in enumerate(pace(every, until)):
            kind = i % 3
            if kind == 0:
                tally.timed("api-read", lambda: http.get(f"/studios/{random.choice(studios)}"))
            elif kind == 1:
                tally.timed("api-list", lambda: http.get("/studios", params={"limit": 20}))
            else:
                sid, did = random.choice(chatty)
                tally.timed("api-read", lambda sid=sid, did=did: http.get(f"/studios/{sid}/deployments/{did}"))


def api_writer(srv: Studios, tally: Tally, until: float, every: float) -> None:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=30, trust_env=False) as http:
        mine: list[int] = []
        for i, _ in enumerate(pace(every, until)):
            if i % 2 == 0 or not mine:
                r = tally.timed("api-write", lambda i=i: http.post("/studios", json={"name": f"mixed {i}", "dockerImageName": "busybox"}), (201,))
                if r is not None:
                    mine.append(r.json()["id"])
            else:
                sid = random.choice(mine)
                tally.timed("api-write", lambda sid=sid, i=i: http.patch(f"/studios/{sid}", json={"name": f"mixed {i} edited"}))


def deployer(srv: Studios, tally: Tally, studios: list[int], until: float, outcomes: list[dict[str, Any]]) -> None:
    """Deploy the studios in turn; each deploy replaces that studio's previous deployment."""
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=60, trust_env=False) as http:
        previous: dict[int, int] = {}
        n = 0
        while time.monotonic() < until:
            sid = studios[n % len(studios)]
            n += 1
            r = tally.timed("deploy", lambda sid=sid: http.post(f"/studios/{sid}/deployments"), (201,))
            if r is None:
                continue
            did = r.json()["deploymentId"]
            t0 = time.monotonic()
            state = "pending"
            while time.monotonic() - t0 < 60:
                got = tally.timed("api-read", lambda sid=sid, did=did: http.get(f"/studios/{sid}/deployments/{did}"))
                state = got.json()["state"] if got is not None else state
                if state in ("running", "terminated"):
                    break
                time.sleep(0.05)
            outcome = {"studio": sid, "deployment": did, "state": state, "to_running_s": round(time.monotonic() - t0, 3), "replaced": previous.get(sid)}
            outcomes.append(outcome)
            if state != "running":
                got = http.get(f"/studios/{sid}/deployments/{did}")
                tally.failures.append((t0, "deploy", f"deployment {did} ended as {state}: {got.json().get('stateMessage')}"))
            if n % 5 == 0:
                tally.timed("deploy", lambda sid=sid, did=did: http.delete(f"/studios/{sid}/deployments/{did}"), (204,))
                previous.pop(sid, None)
            else:
                previous[sid] = did


def log_reader(srv: Studios, tally: Tally, chatty: list[tuple[int, int]], until: float, every: float) -> None:
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=30, trust_env=False) as http:
        for _ in pace(every, until):
            sid, did = random.choice(chatty)
            tally.timed("logs", lambda sid=sid, did=did: http.get(f"/studios/{sid}/deployments/{did}/logs", params={"limit": 1000}))


def viewer(srv: Studios, tally: Tally, cookies: list[tuple[str, str]], until: float, every: float) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{srv.proxy_port}", timeout=30, trust_env=False) as http:
        for _ in pace(every, until):
            host, cookie = random.choice(cookies)
            tally.timed("proxy", lambda host=host, cookie=cookie: http.get("/", headers={"Host": host, "Cookie": cookie}))


def users_creator(srv: Studios, tally: Tally, until: float, every: float) -> None:
    for i, _ in enumerate(pace(every, until)):
        t0 = time.monotonic()
        tally.attempts["users-cli"] += 1
        done = subprocess.run([str(OUR_VENV_BIN / "studios"), "users", "create", f"mixed{i}"], env=srv.env, capture_output=True, text=True, timeout=120)
        tally.latencies["users-cli"].append(time.monotonic() - t0)
        if done.returncode != 0:
            tally.failures.append((t0, "users-cli", done.stderr.strip()[-300:]))


def viewer_cookie(srv: Studios, display_url: str) -> tuple[str, str]:
    url = httpx.URL(display_url)
    host = f"{url.host}:{url.port}" if url.port else url.host
    first = srv.viewer.get(url.raw_path.decode(), headers={"Host": host})
    if first.status_code not in (302, 303, 307):
        raise RuntimeError(f"the display URL answered {first.status_code}")
    return host, first.headers["set-cookie"].split(";", 1)[0]


def check_lines(srv: Studios, sid: int, did: int) -> dict[str, Any]:
    r = srv.http.get(f"/studios/{sid}/deployments/{did}/logs", params={"limit": 100_000})
    found = [(m.group(2), int(m.group(3))) for line in r.json() if (m := LINE.match(line["message"])) and int(m.group(1)) == did]
    numbers = [n for end, n in found if not end]
    ends = [n for end, n in found if end]
    count = collections.Counter(numbers)
    top = ends[0] if ends else max(numbers, default=0)  # the app's own count when its last line is there
    missing = [n for n in range(1, top + 1) if n not in count]
    doubled = [n for n, c in count.items() if c > 1]
    return {"deployment": did, "lines": len(numbers), "printed": top, "end_line_stored": bool(ends), "missing": len(missing) + (0 if ends else 1),
            "doubled": len(doubled), "first_missing": missing[:5]}


def p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--chatty", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="lines a second per chatty app")
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--read-every", type=float, default=0.05, help="seconds between requests of each API reader")
    parser.add_argument("--probe-memory", action="store_true",
                        help="also sample, inside the server, SQLite's allocations and the Python objects' blocks (bench/memprobe), to tell a leak from a cache")
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    payload: dict[str, Any] = {"settings": settings(args)}
    with bench_session("mixed-bench", args.keep_temp) as session:
        env = {"STUDIOS_RUNTIME": "process", "STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_LOOP_LAG_LOG_SECONDS": "10",
               "STUDIOS_IMAGE_COMMANDS": json.dumps({"chatty": f"exec {REAL_PYTHON} -I -S {CHATTY} {args.rate:g}",
                                                     "busybox": f"exec {REAL_PYTHON} -I -S {CHATTY} 1"})}
        if args.database == "postgresql":
            env["STUDIOS_DATABASE_URL"] = Postgres(session.procs, session.tmp / "pg").database("mixed")
        probe = session.tmp / "memprobe.jsonl"
        if args.probe_memory:
            env |= {"PYTHONPATH": str(BENCH / "memprobe"), "MEMPROBE_FILE": str(probe), "MEMPROBE_EVERY": f"{args.sample:g}"}
        srv = Studios(session.procs, session.tmp / "server", env)
        srv.cleanup_with(session)
        chatty_studios = [srv.create_studio(dockerImageName="chatty") for _ in range(args.chatty)]
        deploy_studios = [srv.create_studio(dockerImageName="busybox") for _ in range(4)]
        read_studios = chatty_studios + deploy_studios
        print(f"deploying {args.chatty} chatty apps ({args.rate:g} lines/s each), {args.database} ...", flush=True)
        chatty = [(sid, srv.deploy(sid)) for sid in chatty_studios]
        deadline = time.monotonic() + 180
        for sid, did in chatty:
            try:
                srv.wait_state(sid, did, "running", deadline, every=0.1)
            except RuntimeError:
                lines = srv.http.get(f"/studios/{sid}/deployments/{did}/logs", params={"limit": 50}).json()
                print("\n".join(f"  {x['stream']}: {x['message']}" for x in lines if x["stream"] == "stderr"), file=sys.stderr)
                raise
        cookies = [viewer_cookie(srv, srv.get(sid, did)["displayUrl"]) for sid, did in chatty]
        pids = server_pids(srv.proc)
        memory: list[tuple[float, float]] = []
        tally = Tally()
        outcomes: list[dict[str, Any]] = []
        t_start = time.monotonic()
        until = t_start + args.duration
        threads = [threading.Thread(target=api_reader, args=(srv, tally, read_studios, chatty, until, args.read_every)) for _ in range(3)]
        threads += [threading.Thread(target=api_writer, args=(srv, tally, until, 0.2)),
                    threading.Thread(target=deployer, args=(srv, tally, deploy_studios, until, outcomes)),
                    threading.Thread(target=log_reader, args=(srv, tally, chatty, until, 0.25)),
                    threading.Thread(target=users_creator, args=(srv, tally, until, 10.0))]
        threads += [threading.Thread(target=viewer, args=(srv, tally, cookies, until, 0.02)) for _ in range(2)]
        print(f"mixed load for {args.duration:g} s ...", flush=True)
        load_began = time.time()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            memory.append((round(time.monotonic() - t_start, 1), rss_mb(pids)))
            session.procs.check_alive()
            time.sleep(args.sample)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - t_start
        memory.append((round(elapsed, 1), rss_mb(pids)))

        for sid in deploy_studios:  # the deployer's last deployments
            for dep in srv.http.get(f"/studios/{sid}/deployments").json():
                if dep["state"] in ("pending", "running", "sleeping"):
                    srv.http.delete(f"/studios/{sid}/deployments/{dep['deploymentId']}", timeout=120)
        print("stopping the chatty apps and reading their logs back ...", flush=True)
        for sid, did in chatty:
            tally.timed("deploy", lambda sid=sid, did=did: srv.http.delete(f"/studios/{sid}/deployments/{did}", timeout=120), (204,))
            with contextlib.suppress(ValueError):
                srv.deployments.remove((sid, did))
        lines = [check_lines(srv, sid, did) for sid, did in chatty]
        replaced_ok = []
        for o in outcomes:
            if o["replaced"] is not None:
                msg = srv.get(o["studio"], o["replaced"])["stateMessage"]
                replaced_ok.append(msg == f"replaced by deployment {o['deployment']}")
                if not replaced_ok[-1]:
                    tally.failures.append((0.0, "deploy", f"deployment {o['replaced']} says {msg!r}, not replaced by deployment {o['deployment']}"))

        total = sum(tally.attempts.values())
        kinds = {k: {"requests": len(v), "p50_ms": p(v, 0.5), "p99_ms": p(v, 0.99), "max_ms": p(v, 1.0)} for k, v in sorted(tally.latencies.items())}
        all_lat = [x for k, v in tally.latencies.items() if k != "users-cli" for x in v]
        third = max(1, len(memory) // 3)
        mem_first, mem_last = statistics.mean(m for _, m in memory[:third]), statistics.mean(m for _, m in memory[-third:])
        lost = sum(x["missing"] for x in lines)
        doubled = sum(x["doubled"] for x in lines)
        stored = sum(x["lines"] for x in lines)
        payload |= {"elapsed_s": round(elapsed, 1), "requests": total, "failures": len(tally.failures), "error_rate": len(tally.failures) / max(1, total),
                    "failure_samples": [f"{k}: {m}" for _, k, m in tally.failures[:20]], "kinds": kinds, "p99_ms_all_http": p(all_lat, 0.99),
                    "memory_mb": memory, "memory_growth": round(mem_last / mem_first, 3), "deploys": len(outcomes),
                    "deploy_to_running_s_median": statistics.median(o["to_running_s"] for o in outcomes) if outcomes else None,
                    "replaced_messages_ok": all(replaced_ok), "log_lines_stored": stored, "log_lines_lost": lost, "log_lines_doubled": doubled,
                    "per_deployment": lines}
        print(f"\nmixed load, {args.database}, {args.chatty} chatty apps x {args.rate:g} lines/s, {elapsed:.0f} s:")
        for k, v in kinds.items():
            print(f"  {k:10} {v['requests']:7} requests  p50 {v['p50_ms']} ms  p99 {v['p99_ms']} ms  max {v['max_ms']} ms")
        print(f"  failures: {len(tally.failures)} of {total} requests (error rate {payload['error_rate']:.4%})")
        for f in payload["failure_samples"]:
            print(f"    {f}")
        print(f"  p99 of every HTTP request: {payload['p99_ms_all_http']} ms; {len(outcomes)} deploys, median to running {payload['deploy_to_running_s_median']} s; "
              f"replaced deployments say so: {all(replaced_ok)} ({len(replaced_ok)})")
        print(f"  server RSS (MB) every {args.sample:g} s: {[m for _, m in memory]}")
        print(f"  memory: first third {mem_first:.1f} MB, last third {mem_last:.1f} MB ({payload['memory_growth']:.3f}x)")
        if args.probe_memory:
            samples = [json.loads(line) for line in probe.read_text().splitlines()] if probe.exists() else []
            payload["memory_probe"] = samples
            samples = [x for x in samples if x["wall"] >= load_began]  # the load's, as the RSS above
            if len(samples) >= 3:
                n = max(1, len(samples) // 3)
                first, last = samples[:n], samples[-n:]
                for key, what in (("rss_mb", "RSS (MB)"), ("sqlite_mb", "SQLite's allocations (MB)"), ("python_blocks", "Python objects' blocks")):
                    a, b = statistics.mean(x[key] for x in first), statistics.mean(x[key] for x in last)
                    print(f"  inside the server, {what}: first third {a:,.1f}, last third {b:,.1f} ({b / a:.3f}x)")
        print(f"  log lines: {stored:,} stored, {lost} lost, {doubled} doubled")
        write_results(f"mixed_bench-{args.database}", session.started, payload, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
