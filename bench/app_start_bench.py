"""Deploy -> first page rendered in a browser, for JupyterLab and Streamlit, against starting
the same app by hand and opening it directly.

    .venv/bin/python bench/app_start_bench.py [--rounds 3] [--apps jupyterlab,streamlit]

Needs the apps (the test extras pin them: `pip install -e '.[test]'`) and Debian's chromium
(driven by Playwright). Each round, in alternating order:

- **by hand**: the app's recipe command (the same shell command the process runtime runs,
  `studios/runtimes/process/recipes.py`) spawned with `/bin/sh -c`, `PORT` and
  `STUDIOS_BASE_PATH=/`; the port probed every 5 ms until it answers HTTP; then chromium opens
  `http://127.0.0.1:PORT/` in a fresh context, until the first page is rendered;
- **via Studios**: `POST /studios/{id}/deployments` on `studios serve` (`STUDIOS_RUNTIME=process`,
  host mode, instance type `medium`: no tighter cpu limit than the machine) -> `running` polled every 2 ms -> chromium opens the `displayUrl` (token exchange,
  cookie, redirect, the app) in a fresh context, until the first page is rendered.

"Rendered" is what a person waits for: the Lab's launcher tiles, or the Streamlit app's first
line of output (which arrives over its WebSocket). Prints each median, the difference and the
ratio; the JSON goes to bench/results/. Figures on a shared 2-core machine drift a lot between
runs; compare the two columns of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import Studios, bench_session, free_port, http_status, kill_group, settings, write_results
from studios.runtimes.process import recipes

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STREAMLIT_APP = 'import streamlit as st\nst.title("bench")\nst.write("hello, bench")\n'
RENDERED = {"jupyterlab": ".jp-LauncherCard", "streamlit": "text=hello, bench"}


def rendered(browser: Any, url: str, app: str, timeout_s: float) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(timeout_s * 1000)
        page.goto(url)
        page.locator(RENDERED[app]).first.wait_for()
    finally:
        context.close()


def by_hand(session: Any, app: str, command: str, env: dict[str, str], browser: Any, timeout: float) -> float:
    port = free_port()
    workdir = session.tmp / f"hand-{app}-{port}"
    workdir.mkdir()
    t0 = time.monotonic()
    proc = session.procs.start(f"{app} by hand", ["/bin/sh", "-c", command], log=workdir / "app.log",
                               env={**env, "PORT": str(port), "STUDIOS_BASE_PATH": "/", "HOME": str(workdir)}, cwd=workdir)
    try:
        while http_status(port, timeout=1.0) is None:
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{app} by hand did not answer:\n{(workdir / 'app.log').read_text()[-2000:]}")
            time.sleep(0.005)
        rendered(browser, f"http://127.0.0.1:{port}/", app, timeout)
        return time.monotonic() - t0
    finally:
        session.procs.forget(proc)
        kill_group(proc)


def via_studios(srv: Studios, studio_id: int, app: str, browser: Any, timeout: float) -> float:
    t0 = time.monotonic()
    did = srv.deploy(studio_id)
    try:
        _, dep = srv.wait_state(studio_id, did, "running", t0 + timeout)
        rendered(browser, dep["displayUrl"], app, timeout)
        return time.monotonic() - t0
    finally:
        srv.delete(studio_id, did)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--apps", default="jupyterlab,streamlit")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    commands = recipes.installed()
    apps = [a for a in args.apps.split(",") if a]
    missing = [a for a in apps if a not in commands]
    if missing:
        raise SystemExit(f"not installed here: {', '.join(missing)} (pip install -e '.[test]')")
    results: dict[str, dict[str, list[float]]] = {a: {"by_hand": [], "via_studios": []} for a in apps}
    with bench_session("app-start-bench", args.keep_temp) as session:
        app_file = session.tmp / "streamlit_app.py"
        app_file.write_text(STREAMLIT_APP)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))}
        env["STREAMLIT_APP"] = str(app_file)
        srv = Studios(session.procs, session.tmp, {"STUDIOS_RUNTIME": "process", "STUDIOS_IDLE_SLEEP_SECONDS": "0",
                                                     "STUDIOS_START_TIMEOUT_SECONDS": str(int(args.timeout))})
        srv.cleanup_with(session)
        # instance type "medium" (2 cores, the whole machine here): the app started by hand has
        # no cpu limit either, so what differs is Studios' own work
        studios = {a: srv.create_studio(dockerImageName=a, instanceType="medium",
                                        params=[{"name": "STREAMLIT_APP", "type": "string", "value": str(app_file)}])
                   for a in apps}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                for app in apps:  # warm-up: imports in the page cache, chromium's first start
                    by_hand(session, app, commands[app], env, browser, args.timeout)
                for rnd in range(args.rounds):
                    for app in apps:
                        order = ["by_hand", "via_studios"] if rnd % 2 == 0 else ["via_studios", "by_hand"]
                        for how in order:
                            took = (by_hand(session, app, commands[app], env, browser, args.timeout) if how == "by_hand"
                                    else via_studios(srv, studios[app], app, browser, args.timeout))
                            results[app][how].append(took)
                            print(f"round {rnd + 1} {app:10s} {how:11s} {took * 1000:8.0f} ms", flush=True)
            finally:
                browser.close()
    print(f"\nmedian of {args.rounds}: start -> first page rendered in chromium")
    summary = {}
    for app in apps:
        hand, ours = statistics.median(results[app]["by_hand"]), statistics.median(results[app]["via_studios"])
        summary[app] = {"by_hand_ms": round(hand * 1000), "via_studios_ms": round(ours * 1000),
                        "difference_ms": round((ours - hand) * 1000), "ratio": round(ours / hand, 2)}
        print(f"  {app:10s} by hand {hand * 1000:7.0f} ms   via Studios {ours * 1000:7.0f} ms   "
              f"{(ours - hand) * 1000:+.0f} ms ({ours / hand:.2f}x)")
    write_results("app_start_bench", session.started, {"settings": settings(args), "runs": results, "median": summary}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
