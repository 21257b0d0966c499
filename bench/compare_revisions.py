"""One benchmark of bench/ run against two checkouts of the project, interleaved, in one session:
did a change make any of its figures worse?

    git worktree add ../before a60e9ed && (cd ../before && python3 -m venv .venv && .venv/bin/pip install -e '.[test]')
    .venv/bin/python bench/compare_revisions.py --before ../before api_bench.py -- --duration 5 --rounds 1
    .venv/bin/python bench/compare_revisions.py --before ../before --runs 3 deploy_bench.py -- --rounds 5

Each run starts `<checkout>/.venv/bin/python <checkout>/bench/<script> [args]` for the before
checkout and this one in turn (the order alternating run by run), reads the `median` figures
of the JSON it writes, and prints, for every figure, the median over the runs of each
checkout, their ratio, and `!!` where the after checkout is worse by more than `--tolerance`
(10%). Which way is better is read from the figure's name: req/s, rows/s and lines/s up;
times, latencies and CPU per request down. Figures go to bench/results/compare-<script>-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import REPO, write_results

HIGHER_IS_BETTER = ("rps", "per_s", "lines_per_s", "rows_per_s")
IGNORED = ("server_cpu_cores", "foreign_cpu_cores", "anchor", "sqlite_ms", "spawn_to_200_ms", "direct", "chp", "nginx", "bare", "jh_")
"""Anchors and load figures: not the project's own figures (shown, never flagged)."""


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, name + ".")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def run_once(checkout: Path, script: str, extra: list[str], out: Path) -> dict[str, float]:
    python = checkout / ".venv" / "bin" / "python"
    argv = [str(python), str(checkout / "bench" / script), *extra]
    if script != "proxy_bench.py":  # it writes bench/results/proxy_bench.json in its checkout
        argv += ["--output", str(out)]
    done = subprocess.run(argv, cwd=checkout, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: a goal not met, still figures
        raise RuntimeError(f"{argv} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    source = checkout / "bench" / "results" / "proxy_bench.json" if script == "proxy_bench.py" else out
    data = json.loads(source.read_text())
    # Most scripts put their figures under "median"; the others (mixed_bench) at the top level.
    return flatten(data.get("median", data))


def better(name: str, before: float, after: float) -> float:
    """after relative to before, > 1 when after is better."""
    if not before or not after:
        return 1.0
    leaf = name.rsplit(".", 1)[-1]
    higher = any(leaf.endswith(h) or leaf == h for h in HIGHER_IS_BETTER)
    return after / before if higher else before / after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (with its own .venv)")
    parser.add_argument("--after", type=Path, default=REPO)
    parser.add_argument("--runs", type=int, default=2, help="runs of the script per checkout, alternating")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--output", type=Path)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    extra = [a for a in args.args if a != "--"]
    started = dt.datetime.now(dt.UTC)
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    figures: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for run in range(args.runs):
            order = ["before", "after"] if run % 2 == 0 else ["after", "before"]
            for name in order:
                got = run_once(checkouts[name], args.script, extra, Path(tmp) / f"{name}-{run}.json")
                figures[name].append(got)
                print(f"run {run + 1} {name}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(got.items())), flush=True)
    keys = sorted(set(figures["before"][0]) & set(figures["after"][0]))
    table = {}
    worse = []
    print(f"\n{args.script} {' '.join(extra)}: median of {args.runs} runs per checkout")
    print(f"  {'figure':52} {'before':>12} {'after':>12}  after vs before")
    for key in keys:
        b = statistics.median(f[key] for f in figures["before"] if key in f)
        a = statistics.median(f[key] for f in figures["after"] if key in f)
        rel = better(key, b, a)
        anchor = any(part in key for part in IGNORED)
        flag = "" if anchor else (f"  !! worse by more than {args.tolerance:.0%}" if rel < 1 - args.tolerance else "")
        if flag:
            worse.append(key)
        table[key] = {"before": b, "after": a, "after_vs_before_better_is_above_1": round(rel, 3), "anchor_or_load": anchor}
        print(f"  {key:52} {b:12.3f} {a:12.3f}  {rel:5.2f}x{' (anchor)' if anchor else ''}{flag}")
    write_results(f"compare-{Path(args.script).stem}", started, {"checkouts": {k: str(v) for k, v in checkouts.items()}, "script_args": extra,
                                                                  "runs": figures, "table": table, "worse": worse}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
