"""What the request limits (studios/api/ratelimit.py) cost per request, measured in process.

    .venv/bin/python bench/ratelimit_bench.py                 # ~30 s
    .venv/bin/python bench/ratelimit_bench.py --rounds 200

Three apps from `create_app` on one SQLite database (a user, 40 studios): one with the default
limits (a per-key ceiling high enough that no request is refused, so every request is counted
and answered 200), and two with the limits off (no middleware at all). Each round sends the
same `GET /studios/{id}` through the whole ASGI stack of each app in turn (no network, no
server process), timing the CPU of this thread only (`time.thread_time`). Short rounds, the
order reversed every other round, and differences taken round by round keep other processes on
a shared machine from skewing one app more than another; the two identical apps show how much
noise is left (the noise floor).
`bench/api_bench.py --limits-anchor` measures the same over HTTP with wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import write_results
from studios.app import build_context, create_app
from studios.services import keys as key_service
from studios.settings import Settings
from studios.store import users as user_store


def make_app(data: Path, db_url: str, limits: bool) -> Any:
    values: dict[str, Any] = {"data_dir": data, "database_url": db_url, "secret_key": "bench", "runtime": "process"}
    values |= {"rate_limit_per_key": "1000000000/hour"} if limits else {"rate_limit_per_key": "", "auth_failure_limit": ""}
    return create_app(ctx=build_context(Settings(**values)), serve_proxy=False)


async def request(app: Any, path: str, auth: bytes) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"bench"), (b"authorization", auth)], "client": ("127.0.0.1", 5000), "server": ("bench", 80), "state": {},
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ratelimit-bench-") as tmp:
        data = Path(tmp)
        db_url = f"sqlite:///{data / 'studios.db'}"
        apps = {"limits on": make_app(data, db_url, True), "limits off": make_app(data, db_url, False), "limits off again": make_app(data, db_url, False)}
        ctx = apps["limits on"].state.ctx
        with ctx.db() as session:
            user = user_store.create(session, "bench", "Bench", None, False)
            key = key_service.mint(session, ctx.hasher, user.id, "bench")
            session.commit()
        auth = f"Bearer {key}".encode()
        async with contextlib.AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            from httpx import ASGITransport, AsyncClient

            async with AsyncClient(transport=ASGITransport(apps["limits off"]), base_url="http://bench") as http:
                for i in range(args.studios):
                    made = await http.post("/studios", json={"name": f"s{i}"}, headers={"Authorization": auth.decode()})
                    assert made.status_code == 201, made.text
            path = f"/studios/{args.studios // 2}"
            for app in apps.values():  # warm up, and check the answers are 200
                for _ in range(500):
                    assert await request(app, path, auth) == 200
            per_request: dict[str, list[float]] = {name: [] for name in apps}
            names = list(apps)
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    app = apps[name]
                    started = time.thread_time()
                    for _ in range(args.requests):
                        await request(app, path, auth)
                    per_request[name].append((time.thread_time() - started) / args.requests * 1e6)
                if (r + 1) % 10 == 0:
                    print(f"  {r + 1}/{args.rounds} rounds", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in per_request.items()}
    paired = {name: statistics.median(a - b for a, b in zip(per_request[name], per_request["limits off"], strict=True)) for name in ("limits on", "limits off again")}
    off = medians["limits off"]
    for name in apps:
        print(f"{name:17} {medians[name]:7.1f} us CPU per GET /studios/{{id}} (median of {args.rounds} rounds)")
    print(f"\nlimits on - off, paired by round: {paired['limits on']:+.1f} us ({paired['limits on'] / off * 100:+.1f}%);"
          f" the noise floor, off again - off: {paired['limits off again']:+.1f} us ({paired['limits off again'] / off * 100:+.1f}%)")
    return {"us_per_request": per_request, "median_us": medians, "paired_diff_us": paired}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per app per round (default 300)")
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds, the order reversed every other one (default 60)")
    parser.add_argument("--studios", type=int, default=40)
    args = parser.parse_args()
    started = dt.datetime.now()
    figures = asyncio.run(run(args))
    write_results("ratelimit_bench", started, {"settings": vars(args), **figures}, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
