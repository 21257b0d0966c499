"""Takeover of the lifecycle engine after `kill -9` of its holder: two `studios serve` on one
PostgreSQL database (and one data directory, as servers of one machine share it), measured
against the engine lease's own life in the same run.

    .venv/bin/python bench/takeover_bench.py              # 5 takeovers
    .venv/bin/python bench/takeover_bench.py --rounds 2

Each round: the holder of the engine runs a deployment (process runtime, busybox httpd); it is
killed with SIGKILL (its workloads, in sessions of their own, live on); the bench then times,
from the kill, (1) until the survivor logs that it runs the engine, (2) until a deployment
POSTed to the survivor right after the kill is `running`, and checks that the first deployment
is still `running` (adopted, not started twice) and answers through the survivor's proxy.
The killed server is started again as the standby and the next round kills the other.
Goal: takeover under 10 s; the lease (STUDIOS_ENGINE_LEASE_SECONDS, default 6 s) is the
anchor: no takeover can come sooner than the dead holder's lease runs out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import Postgres, Studios, bench_session, settings, write_results

ENGINE_LINE = "this server runs the lifecycle engine"
BUSYBOX = "exec busybox httpd -f -p 127.0.0.1:$PORT -h {www}"


def engine_lines(srv: Studios) -> int:
    return srv.log.read_text(errors="replace").count(ENGINE_LINE) if srv.log.exists() else 0


def wait_engine(srv: Studios, seen: int, deadline: float) -> float:
    while engine_lines(srv) <= seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{srv.url} did not take the engine over in time")
        time.sleep(0.01)
    return time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease", type=float, default=6.0, help="STUDIOS_ENGINE_LEASE_SECONDS")
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    payload: dict[str, Any] = {"settings": settings(args), "rounds": []}
    with bench_session("takeover-bench", args.keep_temp) as session:
        pg = Postgres(session.procs, session.tmp / "pg")
        shared = session.tmp / "shared-data"
        www = session.tmp / "www"
        www.mkdir()
        (www / "index.html").write_text("hello\n")
        env = {"STUDIOS_DATABASE_URL": pg.database("takeover"), "STUDIOS_DATA_DIR": str(shared), "STUDIOS_RUNTIME": "process",
               "STUDIOS_IMAGE_COMMANDS": json.dumps({"busybox": BUSYBOX.format(www=www)}), "STUDIOS_ENGINE_LEASE_SECONDS": str(args.lease)}
        holder = Studios(session.procs, session.tmp / "a", env)
        holder.cleanup_with(session)
        wait_engine(holder, 0, time.monotonic() + 60)
        standby = Studios(session.procs, session.tmp / "b", env, key=holder.key)
        standby.cleanup_with(session)
        studio, other = holder.create_studio(dockerImageName="busybox"), holder.create_studio(dockerImageName="busybox")
        for rnd in range(args.rounds):
            did = holder.deploy(studio)
            holder.wait_state(studio, did, "running", time.monotonic() + 60)
            time.sleep(1.0)  # the standby is retrying the lease, as it would be at any moment
            seen = engine_lines(standby)
            t_kill = time.monotonic()
            os.kill(holder.proc.pid, signal.SIGKILL)
            holder.proc.wait(10)
            session.procs.forget(holder.proc)
            new = standby.deploy(other)  # another studio: a second deployment of one studio would replace the first
            t_engine = wait_engine(standby, seen, t_kill + 60)
            t_running = standby.wait_state(other, new, "running", t_kill + 120, every=0.01)[0]
            first = standby.get(studio, did)
            viewed = standby.open_display_url(standby.get(studio, did)["displayUrl"]) if first["state"] == "running" else None
            result = {"engine_after_s": round(t_engine - t_kill, 2), "new_deployment_running_after_s": round(t_running - t_kill, 2),
                      "first_deployment_state": first["state"], "first_deployment_via_survivor_proxy": viewed}
            payload["rounds"].append(result)
            print(f"round {rnd + 1}: engine taken over {result['engine_after_s']:.2f} s after kill -9; a deployment posted then ran after "
                  f"{result['new_deployment_running_after_s']:.2f} s; the first is {first['state']} (display URL {viewed})", flush=True)
            if first["state"] != "running" or viewed != 200:
                raise RuntimeError(f"deployment {did} was not adopted: {first['state']}: {first['stateMessage']}")
            standby.delete(other, new)
            standby.delete(studio, did)
            # The killed server comes back as the standby; the next round kills the other one.
            holder.deployments.clear()
            holder, standby = standby, Studios(session.procs, session.tmp / f"r{rnd}", env, key=holder.key)
            standby.cleanup_with(session)
        takeovers = [r["engine_after_s"] for r in payload["rounds"]]
        payload["median_engine_after_s"] = statistics.median(takeovers)
        payload["max_engine_after_s"] = max(takeovers)
        payload["goal_met"] = max(takeovers) < 10
        print(f"\ntakeover after kill -9: median {statistics.median(takeovers):.2f} s, worst {max(takeovers):.2f} s "
              f"(lease {args.lease:g} s; goal < 10 s); deploy -> running across it: median "
              f"{statistics.median(r['new_deployment_running_after_s'] for r in payload['rounds']):.2f} s")
        write_results("takeover_bench", session.started, payload, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
