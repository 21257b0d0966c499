"""Many idle running deployments: the server's CPU at rest, its event-loop lag, and `GET
/studios/{id}` against the same server with none running, in one interleaved run.

    .venv/bin/python bench/idle_bench.py                                   # 200 busybox httpd, process runtime, SQLite
    .venv/bin/python bench/idle_bench.py --runtime fake --database postgresql
    .venv/bin/python bench/idle_bench.py --deployments 50 --rounds 1 --duration 5   # a quick look

Two `studios serve` run side by side with the same settings and the same studios (one per
deployment, plus the one measured): the anchor with nothing deployed, the target with
`--deployments` deployments running (process runtime: `exec busybox httpd -f -p $PORT` each,
mapped by STUDIOS_IMAGE_COMMANDS; fake runtime: the service's in-process HTTP app). Both share
the machine with the workloads, so the ratio isolates what following them costs the server.

Measured: the CPU of each server process (its threads, not its children) over `--rest` seconds
with no request in flight (goal < 0.05 of a core with 200 running), the workloads' own CPU
(supervisors and apps) beside it, the event-loop lag each server logs
(STUDIOS_LOOP_LAG_LOG_SECONDS, goal p99 < 10 ms), and `wrk -t2 -c32` on `GET /studios/{id}`
against each, alternating, `--rounds` times (goal: the target >= 0.8x the anchor), with CPU per
request beside req/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import Postgres, Studios, bench_session, cpu_at_rest, descendants, loop_lag_lines, median_of, run_wrk, server_pids, settings, write_results

BUSYBOX = "exec busybox httpd -f -p $PORT"
LAG_WINDOW = 5.0


def make_server(session: Any, name: str, args: argparse.Namespace, pg: Postgres | None) -> Studios:
    env = {"STUDIOS_RUNTIME": args.runtime, "STUDIOS_LOOP_LAG_LOG_SECONDS": str(LAG_WINDOW), "STUDIOS_IDLE_SLEEP_SECONDS": "0"}
    if args.runtime == "process":
        env["STUDIOS_IMAGE_COMMANDS"] = json.dumps({"busybox": BUSYBOX})
    if pg is not None:
        env["STUDIOS_DATABASE_URL"] = pg.database(name)
    srv = Studios(session.procs, session.tmp / name, env)
    srv.cleanup_with(session, kill_leftovers=args.runtime == "process")
    return srv


def deploy_all(srv: Studios, studio_ids: list[int], timeout: float) -> list[int]:
    """Deploy every studio (8 requests at a time) and wait until all are running."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        dids = list(pool.map(srv.deploy, studio_ids))
    deadline = time.monotonic() + timeout
    waiting = dict(zip(dids, studio_ids, strict=True))
    while waiting:
        for did, sid in list(waiting.items()):
            dep = srv.get(sid, did)
            if dep["state"] == "running":
                del waiting[did]
            elif dep["state"] == "terminated":
                raise RuntimeError(f"deployment {did} ended: {dep['stateMessage']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} deployments not running after {timeout:.0f} s")
        time.sleep(0.2)
    return dids


def lag_during(srv: Studios, began: int) -> dict[str, float] | None:
    """The worst window's p99 and the median window's p50 among the lag lines logged since the
    `began`-th one."""
    windows = loop_lag_lines(srv.log)[began:]
    if not windows:
        return None
    return {"p99_ms_worst_window": max(w["p99_ms"] for w in windows), "p99_ms_median_window": statistics.median(w["p99_ms"] for w in windows),
            "p50_ms": statistics.median(w["p50_ms"] for w in windows), "windows": len(windows),
            "own_p99_ms_worst_window": max((w["own_p99_ms"] or 0.0) for w in windows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=["process", "fake"], default="process")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--rest", type=float, default=20.0, help="seconds of CPU measured at rest")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the last deployment is running before measuring")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    payload: dict[str, Any] = {"settings": settings(args)}
    with bench_session("idle-bench", args.keep_temp) as session:
        pg = Postgres(session.procs, session.tmp / "pg") if args.database == "postgresql" else None
        anchor = make_server(session, "none", args, pg)
        target = make_server(session, "busy", args, pg)
        studio_fields = {"dockerImageName": "busybox"}
        ids = {}
        for name, srv in (("none", anchor), ("busy", target)):
            made = [srv.create_studio(**studio_fields) for _ in range(args.deployments + 1)]
            ids[name] = made
        print(f"deploying {args.deployments} on the {args.runtime} runtime ({args.database}) ...", flush=True)
        t0 = time.monotonic()
        deploy_all(target, ids["busy"][1:], timeout=max(120.0, args.deployments * 2.0))
        print(f"  all running after {time.monotonic() - t0:.1f} s; settling {args.settle:g} s", flush=True)
        time.sleep(args.settle)

        workloads = sorted(descendants([target.proc.pid]) - set(server_pids(target.proc)))
        lag_mark = {"none": len(loop_lag_lines(anchor.log)), "busy": len(loop_lag_lines(target.log))}
        rest = cpu_at_rest({"anchor_server": server_pids(anchor.proc), "target_server": server_pids(target.proc), "workloads": workloads}, args.rest)
        payload["rest"] = {"cores": rest, "workload_processes": len(workloads),
                           "loop_lag": {"anchor": lag_during(anchor, lag_mark["none"]), "target": lag_during(target, lag_mark["busy"])}}
        print(f"at rest over {args.rest:g} s: target server {rest['target_server']:.3f} cores, anchor {rest['anchor_server']:.3f}, "
              f"workloads ({len(workloads)} processes) {rest['workloads']:.3f}, machine {rest['machine']:.2f}")
        print(f"  loop lag at rest: target {payload['rest']['loop_lag']['target']}, anchor {payload['rest']['loop_lag']['anchor']}", flush=True)

        runs: dict[str, list[dict[str, Any]]] = {"none": [], "busy": []}
        lag_mark = {"none": len(loop_lag_lines(anchor.log)), "busy": len(loop_lag_lines(target.log))}
        for rnd in range(args.rounds):
            order = [("none", anchor), ("busy", target)]
            if rnd % 2:
                order.reverse()
            for name, srv in order:
                sid = ids[name][0]
                result = run_wrk(session.procs, f"{srv.url}/studios/{sid}", headers={"Authorization": f"Bearer {srv.key}"}, measured=server_pids(srv.proc),
                                 duration=args.duration, connections=args.connections, log=session.tmp / f"wrk-{name}.out")
                if result["non_2xx"] or result["socket_errors"]:
                    raise RuntimeError(f"{name}: {result['non_2xx']} non-2xx, {result['socket_errors']} socket errors")
                runs[name].append(result)
                print(f"round {rnd + 1} {name:5s} {result['rps']:8,.0f} req/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                      f"CPU {result['server_cpu_ms_per_req']:.3f} ms/req  other load {result['foreign_cpu_cores']:.2f}", flush=True)
        payload["runs"] = runs
        payload["load_loop_lag"] = {"anchor": lag_during(anchor, lag_mark["none"]), "target": lag_during(target, lag_mark["busy"])}
        med = {name: {k: median_of(rs, k, 3) for k in ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_req", "foreign_cpu_cores")} for name, rs in runs.items()}
        payload["median"] = med
        ratio = med["busy"]["rps"] / med["none"]["rps"] if med["none"]["rps"] else None
        cpu_ratio = med["none"]["server_cpu_ms_per_req"] / med["busy"]["server_cpu_ms_per_req"] if med["busy"]["server_cpu_ms_per_req"] else None
        payload["ratios"] = {"rps_busy_over_none": ratio, "cpu_per_req_none_over_busy": cpu_ratio}
        lag = payload["rest"]["loop_lag"]["target"] or {}
        goals = {"rest_cores_lt_0.05": rest["target_server"] < 0.05, "get_ratio_ge_0.8": bool(ratio and ratio >= 0.8),
                 "loop_lag_p99_at_rest_lt_10ms": bool(lag) and lag["p99_ms_worst_window"] < 10,
                 "own_loop_lag_p99_at_rest_lt_10ms": bool(lag) and lag["own_p99_ms_worst_window"] < 10}
        payload["goals"] = goals
        print(f"\n{args.deployments} idle deployments, {args.runtime} runtime, {args.database}; median of {args.rounds}:")
        for name in ("none", "busy"):
            m = med[name]
            print(f"  {name:5s} {m['rps']:8,.0f} req/s  p50 {m['p50_ms']:6.2f}  p99 {m['p99_ms']:7.2f} ms  CPU {m['server_cpu_ms_per_req']:.3f} ms/req")
        print(f"  busy / none: req/s {ratio:.2f}x, CPU per request {cpu_ratio:.2f}x (goal >= 0.8x)")
        print(f"  server at rest: {rest['target_server']:.3f} cores (goal < 0.05); loop lag p99 at rest {lag.get('p99_ms_worst_window')} ms (worst {LAG_WINDOW:g} s window), "
              f"under load {payload['load_loop_lag']['target']}")
        print(f"  goals: {goals}")
        write_results(f"idle_bench-{args.runtime}-{args.database}", session.started, payload, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
