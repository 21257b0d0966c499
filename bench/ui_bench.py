"""The web UI's deployment page: how long it takes to open with 10,000 log lines, and how soon
a line the app prints shows on a page that is open and in `studios logs --follow`, each against
its anchor, in one run.

    .venv/bin/python bench/ui_bench.py                  # 5 rounds, 20 follow samples (about 2 minutes)
    .venv/bin/python bench/ui_bench.py --rounds 2 --samples 6

One `studios serve` (STUDIOS_RUNTIME=process, the app mapped with STUDIOS_IMAGE_COMMANDS, run as
the service's user) runs an app that prints 10,000 numbered lines at start, then `tick <n> <unix
time>` every 250 ms. Debian's chromium (Playwright, headless) signs in once.

(a) Open. A fresh tab goes to `/ui/studios/S/deployments/D` and waits until the log holds all
10,000 lines (its `studios:log-lines` mark counts them); median of `--rounds`. Timed by the page's own
clock from navigation start (the `studios:log-lines` performance marks the log view sets a frame
after it draws, and `studios:log-caught-up`, set when the log stream has sent its backlog): when
its newest lines were shown (the page is open: the page draws the newest 500 at once and the
older ones above them in chunks), when all 10,000 were, and when the backlog had arrived.
Anchors, interleaved: the same tab opening the studios list until its table shows (the page and
its scripts without the log), and `GET .../logs?limit=10000` through one keep-alive httpx client
(body parsed): the data alone. Goal (issue 11): under 1 s.

(b) Follow, in the browser. With the deployment page open (following the log stream), for each
of `--samples` ticks: the time from the app printing it (the time in the line) until the page drew
it (its `studios:log-lines` mark, on the page's clock: `performance.timeOrigin`, the same
machine's wall clock). Anchor, interleaved: the same, for the line to be returned by
`GET .../logs?start_at=...` polled every 10 ms (when the API has it: the runtime's read and the
log writer's store). Goal (issue 11): 200 ms.

(c) Follow, in the CLI. `studios logs S --follow` (the log stream) in a subprocess: for each of
`--samples` ticks, from the app printing it until the bench read it from the CLI's stdout.

Figures go to bench/results/ui_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import OUR_VENV_BIN, REAL_PYTHON, SERVE_200_SOURCE, Studios, bench_session, ms, settings, write_results

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GOAL_OPEN_MS = 1000.0
GOAL_FOLLOW_MS = 200.0
LINES = 10_000

APP = r"""
import os, socket, sys, threading, time
reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
""" + SERVE_200_SOURCE + r"""
def accept():
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
for i in range(1, 10001):
    print(f"line {i:05d} of the start-up output, long enough to look like a real log line", flush=(i % 1000 == 0))
sys.stdout.flush()
n = 0
while True:
    time.sleep(0.25)
    n += 1
    print(f"tick {n} {time.time():.6f}", flush=True)
"""


DRAWN_AT = """(prefix) => {
  // The line among the last 50, its position, and when it was drawn: the first log mark that
  // counts it (on the wall clock); null while it is not there (or its mark not yet set).
  // Lines live in blocks (parts/logs.js): walk back from the last one.
  const log = document.getElementById('log');
  let index = -1;
  for (const b of log.children) index += b.childElementCount;
  let blk = log.lastElementChild;
  let el = blk && blk.lastElementChild;
  for (let k = 0; el && k < 50 && !el.textContent.startsWith(prefix); k += 1) {
    el = el.previousElementSibling;
    if (!el && blk.previousElementSibling) { blk = blk.previousElementSibling; el = blk.lastElementChild; }
    index -= 1;
  }
  if (!el || !el.textContent.startsWith(prefix)) return null;
  const mark = performance.getEntriesByName('studios:log-lines').find((m) => m.detail >= index + 1);
  return mark ? [el.textContent, performance.timeOrigin + mark.startTime] : null;
}"""
ALL_DRAWN = f"() => performance.getEntriesByName('studios:log-lines').some((m) => m.detail >= {LINES})"
"""The page has drawn every line (its own count, in the marks): cheap to check, unlike a
selector over 10,000 elements."""


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    result: dict[str, Any] = {}
    with bench_session("ui_bench", args.keep_temp) as session:
        app = session.tmp / "app.py"
        app.write_text(APP)
        image = "bench/ui-app"
        srv = Studios(session.procs, session.tmp, {"STUDIOS_RUNTIME": "process", "STUDIOS_IMAGE_COMMANDS": json.dumps({image: f"exec {REAL_PYTHON} -u {app}"}), "STUDIOS_IDLE_SLEEP_SECONDS": "0",
                                                       # the app and its interpreter are this user's files
                                                       "STUDIOS_PROCESS_RUN_AS": "service"})
        session.before_stop.append(lambda: [srv.delete(s, d) for s, d in list(srv.deployments)])
        sid = srv.create_studio(dockerImageName=image)
        did = srv.deploy(sid)
        srv.wait_state(sid, did, "running", time.monotonic() + 60)
        logs_path = f"/studios/{sid}/deployments/{did}/logs"
        deadline = time.monotonic() + 60
        while sum(1 for line in srv.http.get(logs_path, params={"limit": 100_000}).json() if line["message"].startswith("line ")) < LINES:
            if time.monotonic() > deadline:
                raise RuntimeError("the app's 10,000 lines were not stored within 60 s")
            time.sleep(0.2)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.goto(srv.url + "/ui/signin")
            page.fill("#api-key", srv.key)
            page.keyboard.press("Enter")
            page.wait_for_selector("h1:has-text('Studios')")

            opens: list[dict[str, float]] = []
            for r in range(args.rounds):
                row: dict[str, float] = {}
                for target in (("page", "list"), ("list", "page"))[r % 2]:
                    tab = context.new_page()
                    t0 = time.perf_counter()
                    if target == "page":
                        tab.goto(f"{srv.url}/ui/studios/{sid}/deployments/{did}")
                        tab.wait_for_function(ALL_DRAWN, polling=20)
                        row["deployment_page_ms"] = ms(time.perf_counter() - t0)
                        # by the page's own clock, from navigation start: when the log stream's
                        # backlog had arrived (live.js), when the newest were drawn, when all were
                        # (marks set by logs.js)
                        arrived, marks = tab.evaluate("[(performance.getEntriesByName('studios:log-caught-up')[0] || {startTime: 0}).startTime, "
                                                      "performance.getEntriesByName('studios:log-lines').map(m => [m.startTime, m.detail])]")
                        row["backlog_arrived_ms"] = round(arrived, 1)
                        row["newest_lines_shown_ms"] = round(marks[0][0], 1)
                        row["all_lines_shown_ms"] = round(next(t for t, n in marks if n >= LINES), 1)
                    else:
                        tab.goto(f"{srv.url}/ui")
                        tab.wait_for_selector(f"tr[data-studio='{sid}']")
                        row["studios_list_ms"] = ms(time.perf_counter() - t0)
                    tab.close()
                t0 = time.perf_counter()
                body = srv.http.get(logs_path, params={"limit": LINES}).json()
                row["api_10k_lines_ms"] = ms(time.perf_counter() - t0)
                assert len(body) == LINES
                opens.append(row)
                print(f"  open round {r + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items()), file=sys.stderr)

            # (b) follow: the page open, then ticks as they arrive
            tab = context.new_page()
            tab.goto(f"{srv.url}/ui/studios/{sid}/deployments/{did}")
            tab.wait_for_function(ALL_DRAWN, polling=20)
            page_lat: list[float] = []
            api_lat: list[float] = []
            def latest_tick() -> tuple[int, str]:
                lines = srv.http.get(logs_path, params={"limit": 50}).json()
                return max(int(x["message"].split()[1]) for x in lines if x["message"].startswith("tick ")), lines[-1]["createdAt"]

            for k in range(args.samples):
                n, start_at = latest_tick()
                n += 1  # the next tick, not printed yet
                if k % 2 == 0:  # the page
                    # Looked for from here every 100 ms among the last lines only: a selector
                    # engine scanning 10,000 lines on every change would slow the page it measures.
                    give_up = time.monotonic() + 30
                    while (found := tab.evaluate(DRAWN_AT, f"tick {n} ")) is None and time.monotonic() < give_up:
                        time.sleep(0.1)
                    if found is None:
                        raise RuntimeError(f"tick {n} did not show on the page within 30 s")
                    text, drawn_ms = found
                    page_lat.append(drawn_ms - float(text.split()[2]) * 1000)
                else:  # the API, polled every 10 ms
                    give_up = time.monotonic() + 30
                    while time.monotonic() < give_up:
                        lines = srv.http.get(logs_path, params={"start_at": start_at, "limit": 1000}).json()
                        hit = [x for x in lines if x["message"].startswith(f"tick {n} ")]
                        if hit:
                            api_lat.append((time.time() - float(hit[0]["message"].split()[2])) * 1000)
                            break
                        time.sleep(0.01)
            browser.close()

        # (c) follow in the CLI: `studios logs --follow`, its stdout read as it comes
        cli_lat: list[float] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))} | {"CIVIS_API_ENDPOINT": srv.url, "CIVIS_API_KEY": srv.key}
        cli = subprocess.Popen([str(OUR_VENV_BIN / "studios"), "logs", str(sid), "--follow", "--tail", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        session.procs.children.append(("studios logs --follow", cli))
        got: list[tuple[float, str]] = []
        reader = threading.Thread(target=lambda: got.extend((time.time(), line) for line in iter(cli.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        give_up = time.monotonic() + 60
        while len([1 for _, line in got if line.startswith("tick ")]) < args.samples + 1:
            if time.monotonic() > give_up or cli.poll() is not None:
                raise RuntimeError(f"studios logs --follow showed {len(got)} lines in 60 s")
            time.sleep(0.1)
        cli.terminate()
        ticks = [(read, line) for read, line in got if line.startswith("tick ")][1:]  # the first: the tail it started with
        cli_lat = [(read - float(line.split()[2])) * 1000 for read, line in ticks[: args.samples]]

        result = {
            "open": {"rounds": opens, "median_deployment_page_ms": median([r["deployment_page_ms"] for r in opens]),
                     **{f"median_{k}": median([r[k] for r in opens]) for k in ("backlog_arrived_ms", "newest_lines_shown_ms", "all_lines_shown_ms")},
                     "median_studios_list_ms": median([r["studios_list_ms"] for r in opens]), "median_api_10k_lines_ms": median([r["api_10k_lines_ms"] for r in opens])},
            "follow": {"page_ms": [round(x, 1) for x in page_lat], "api_ms": [round(x, 1) for x in api_lat],
                       "median_page_ms": median(page_lat), "median_api_ms": median(api_lat), "max_page_ms": round(max(page_lat), 1),
                       "cli_ms": [round(x, 1) for x in cli_lat], "median_cli_ms": median(cli_lat), "max_cli_ms": round(max(cli_lat), 1)},
        }
    if not result:
        return 130
    o, f = result["open"], result["follow"]
    opened = o["median_newest_lines_shown_ms"]
    print(f"\n(a) deployment page with {LINES:,} lines: open, its newest lines shown, after {opened:.0f} ms (goal < {GOAL_OPEN_MS:.0f}: {'met' if opened < GOAL_OPEN_MS else 'NOT met'});")
    print(f"    all {LINES:,} on the page after {o['median_all_lines_shown_ms']:.0f} ms ({o['median_deployment_page_ms']:.0f} ms as the test driver saw it); the log stream's backlog had arrived at {o['median_backlog_arrived_ms']:.0f} ms")
    print(f"    anchors: studios list page {o['median_studios_list_ms']:.0f} ms, GET of the 10,000 lines {o['median_api_10k_lines_ms']:.0f} ms")
    print(f"(b) a printed line on the open page after {f['median_page_ms']:.0f} ms (median, max {f['max_page_ms']:.0f}); the API has it after {f['median_api_ms']:.0f} ms")
    print(f"(c) in `studios logs --follow` after {f['median_cli_ms']:.0f} ms (median, max {f['max_cli_ms']:.0f})")
    met = f["median_page_ms"] < GOAL_FOLLOW_MS and f["median_cli_ms"] < GOAL_FOLLOW_MS
    print(f"    goal {GOAL_FOLLOW_MS:.0f} ms: {'met' if met else 'NOT met'} (page and CLI, median)")
    write_results("ui_bench", session.started, {"settings": settings(args), **result}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
