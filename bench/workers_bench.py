"""`studios serve --workers 2` against one worker on PostgreSQL: `GET /studios/{id}` req/s and
CPU per request, in one interleaved run.

    .venv/bin/python bench/workers_bench.py                 # 3 rounds of 10 s each
    .venv/bin/python bench/workers_bench.py --rounds 1 --duration 5

A private PostgreSQL cluster (fsync off), two databases, one `studios serve` on each: one
started with `--workers 1`, one with `--workers 2`; the same 40 studios in each, one user.
`wrk -t2 -c32` on `GET /studios/{id}` alternates between them, `--rounds` times, and the bench
prints the ratio of the medians (goal: two workers >= 1.6x one). CPU per request sums every
worker process. Two workers and wrk share this machine's cores, so on a 2-core machine the
ceiling is well under 2x: the bare FastAPI anchor of shared/reference/performance-goals.md
goes from 6,490 to 11,848 req/s (1.83x) with two workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from common import Postgres, Studios, bench_session, median_of, run_wrk, server_pids, settings, write_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--studios", type=int, default=40)
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    payload: dict[str, Any] = {"settings": settings(args)}
    with bench_session("workers-bench", args.keep_temp) as session:
        pg = Postgres(session.procs, session.tmp / "pg")
        servers: dict[str, Studios] = {}
        for name, workers in (("one", 1), ("two", 2)):
            env = {"STUDIOS_DATABASE_URL": pg.database(f"w{workers}"), "STUDIOS_RUNTIME": "fake"}
            servers[name] = Studios(session.procs, session.tmp / name, env, serve_args=["--workers", str(workers)])
            servers[name].cleanup_with(session, kill_leftovers=False)
        ids = {name: [srv.create_studio(dockerImageName="busybox") for _ in range(args.studios)] for name, srv in servers.items()}
        time.sleep(2)  # every worker up and warm
        for name, srv in servers.items():  # warm-up: each worker's caches
            run_wrk(session.procs, f"{srv.url}/studios/{ids[name][0]}", headers={"Authorization": f"Bearer {srv.key}"}, measured=server_pids(srv.proc),
                    duration=2, connections=args.connections, log=session.tmp / "wrk-warm.out")
        runs: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
        for rnd in range(args.rounds):
            order = ["one", "two"] if rnd % 2 == 0 else ["two", "one"]
            for name in order:
                srv = servers[name]
                pids = server_pids(srv.proc)
                result = run_wrk(session.procs, f"{srv.url}/studios/{ids[name][args.studios // 2]}", headers={"Authorization": f"Bearer {srv.key}"},
                                 measured=pids, duration=args.duration, connections=args.connections, log=session.tmp / f"wrk-{name}.out")
                if result["non_2xx"] or result["socket_errors"]:
                    raise RuntimeError(f"{name}: {result['non_2xx']} non-2xx, {result['socket_errors']} socket errors")
                result["processes"] = len(pids)
                runs[name].append(result)
                print(f"round {rnd + 1} {name} worker(s) ({len(pids)} processes) {result['rps']:8,.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                      f"p99 {result['p99_ms']:7.2f} ms  CPU {result['server_cpu_ms_per_req']:.3f} ms/req ({result['server_cpu_cores']:.2f} cores)  "
                      f"other load {result['foreign_cpu_cores']:.2f}", flush=True)
        med = {name: {k: median_of(rs, k, 3) for k in ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_req", "server_cpu_cores", "foreign_cpu_cores")} for name, rs in runs.items()}
        ratio = med["two"]["rps"] / med["one"]["rps"]
        payload |= {"runs": runs, "median": med, "ratio_rps": ratio, "goal_met": ratio >= 1.6}
        print(f"\nGET /studios/{{id}} on PostgreSQL, median of {args.rounds}:")
        for name in ("one", "two"):
            m = med[name]
            print(f"  {name} worker(s) {m['rps']:8,.0f} req/s  p99 {m['p99_ms']:7.2f} ms  CPU {m['server_cpu_ms_per_req']:.3f} ms/req on {m['server_cpu_cores']:.2f} cores")
        print(f"  two / one: {ratio:.2f}x (goal >= 1.6x)")
        write_results("workers_bench", session.started, payload, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
