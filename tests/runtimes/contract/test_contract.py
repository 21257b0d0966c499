"""The runtime contract (`studios.runtimes.base`), one suite for every runtime: a runtime proves
itself by passing it. Each runtime brings a `Kind` (in `kinds.py`): how to build it (twice: a
new instance stands for a restarted service) and a launch spec for the suite's app, which
prints `GREETING=<param>` and `SECRET=<secret>` on stdout and a line on stderr, then answers
HTTP on $PORT (and, with a source, serves the source's `index.html`). As the engine does, the
suite takes the handle `watch` gives once the workload runs: a cluster's runtime knows where the
app answers only once it is placed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from runtimes.contract.kinds import KINDS, Kind
from studios.runtimes.base import Handle, LaunchError, LogLine, Runtime, Status

T = TypeVar("T")
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=list(KINDS))
async def kind(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Kind]:
    made = KINDS[request.param](tmp_path)
    if made.unavailable:
        pytest.skip(made.unavailable)
    yield made
    await made.sweep()


async def eventually(check: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


def latest(handle: Handle, statuses: list[Status]) -> Handle:
    """The handle as `watch` last changed it (the engine stores each new one)."""
    return next((status.handle for status in reversed(statuses) if status.handle is not None), handle)


async def answers(runtime: Runtime, handle: Handle, within: float = 30.0, statuses: list[Status] | None = None) -> httpx.Response:
    """The app's first answer at `address()` of the handle (as updated by `statuses`, a watch
    running alongside)."""

    async def get() -> httpx.Response | None:
        address = runtime.address(latest(handle, statuses or []))
        if address is None:
            return None
        try:
            async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
                return await client.get(f"http://{address[0]}:{address[1]}/")
        except httpx.HTTPError:
            return None

    return await eventually(get, within, "the app to answer HTTP")


async def lines_until(runtime: Runtime, handle: Handle, cursor: Any, done: Callable[[list[LogLine]], bool], within: float = 30.0) -> tuple[list[LogLine], Any]:
    """Follow logs from `cursor` until `done(lines so far)`; the lines and the cursor there."""
    seen: list[LogLine] = []

    async def follow() -> Any:
        async for batch, after in runtime.logs(handle, cursor):
            seen.extend(batch)
            if done(seen):
                return after
        return None

    after = await asyncio.wait_for(follow(), within)
    return seen, after


async def until_running(runtime: Runtime, handle: Handle, within: float = 30.0) -> Handle:
    """Follow `watch` until it says the workload runs; the handle then. Before that, only
    statuses of a workload not placed or not started yet (running=False, no exit)."""
    stream = runtime.watch(handle)
    seen: list[Status] = []

    async def first() -> Handle:
        async for status in stream:
            seen.append(status)
            assert status.exit is None, f"ended before it ran: {seen}"
            if status.running:
                return latest(handle, seen)
        raise AssertionError(f"watch ended without saying it runs: {seen}")

    try:
        return await asyncio.wait_for(first(), within)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_starts_runs_answers_and_gets_its_environment(kind: Kind) -> None:
    runtime = kind.runtime
    spec = kind.spec(env={"GREETING": "hello from a param"}, secret_env={"SECRET": "s3cret-value"})
    reported: list[str] = []
    handle = await runtime.start(spec, reported.append)
    assert "s3cret-value" not in repr(handle) and "s3cret-value" not in "".join(reported)  # never in the stored handle or a log line
    handle = await until_running(runtime, handle)
    assert (await answers(runtime, handle)).status_code == 200
    lines, _ = await lines_until(runtime, handle, None, lambda seen: any(line.stream == "stderr" for line in seen) and any(line.message.startswith("SECRET=") for line in seen))
    stdout = [line.message for line in lines if line.stream == "stdout"]
    assert "GREETING=hello from a param" in stdout and "SECRET=s3cret-value" in stdout
    assert all(line.stream in ("stdout", "stderr") for line in lines)
    assert await runtime.poll(handle) is None
    usage = await runtime.usage(handle)
    assert usage.max_memory_mb is None or usage.max_memory_mb > 0
    ended = await runtime.stop(handle, 2.0)
    assert ended.message and await runtime.poll(handle) == ended  # idempotent
    assert await runtime.stop(handle, 2.0) == ended
    await runtime.cleanup(handle)


async def test_watch_ends_with_the_exit(kind: Kind) -> None:
    runtime = kind.runtime
    handle = await runtime.start(kind.spec(), lambda _: None)
    statuses: list[Status] = []

    async def watch() -> None:
        async for status in runtime.watch(handle):
            statuses.append(status)

    watcher = asyncio.create_task(watch())
    await answers(runtime, handle, statuses=statuses)
    ended = await runtime.stop(handle, 2.0)
    await asyncio.wait_for(watcher, 30)
    first_running = next(i for i, status in enumerate(statuses) if status.running)
    assert not any(status.exit for status in statuses[:first_running])  # before: not placed or starting
    assert statuses[-1].exit == ended and not any(status.exit for status in statuses[:-1])
    await runtime.cleanup(handle)


async def test_logs_resume_exactly_once_in_a_new_runtime(kind: Kind) -> None:
    runtime = kind.runtime
    handle = await runtime.start(kind.spec(env={"GREETING": "g"}, secret_env={"SECRET": "s"}), lambda _: None)
    first, cursor = await lines_until(runtime, handle, None, lambda seen: any(line.message.startswith("GREETING=") for line in seen))
    assert cursor is not None
    again = kind.restart()  # the restarted service
    assert await again.adopt(handle)
    await again.stop(handle, 2.0)
    rest, _ = await lines_until(again, handle, cursor, lambda seen: False)
    assert not {line.message for line in first if line.message.startswith("GREETING=")} & {line.message for line in rest}
    everything, _ = await lines_until(again, handle, None, lambda seen: False)
    for stream in ("stdout", "stderr"):  # each stream in order (how they interleave may differ)
        assert [line.message for line in everything if line.stream == stream] == [line.message for line in first + rest if line.stream == stream]
    assert not await again.adopt(handle)  # ended
    await again.cleanup(handle)


async def test_orphans_are_found_and_removed(kind: Kind) -> None:
    runtime = kind.runtime
    spec = kind.spec()
    handle = await until_running(runtime, await runtime.start(spec, lambda _: None))
    await answers(runtime, handle)
    assert spec.deployment_id in await runtime.orphans(set())
    assert spec.deployment_id not in await runtime.orphans({spec.deployment_id})
    await runtime.remove_orphan(spec.deployment_id)
    assert spec.deployment_id not in await runtime.orphans(set())
    assert not await runtime.adopt(handle)


async def test_the_source_is_where_the_app_runs(kind: Kind) -> None:
    runtime = kind.runtime
    spec = kind.spec(source=kind.source({"index.html": "served from the studio's repository\n"}))
    handle = await until_running(runtime, await runtime.start(spec, lambda _: None))
    response = await answers(runtime, handle)
    assert response.text == "served from the studio's repository\n"
    await runtime.stop(handle, 2.0)
    await runtime.cleanup(handle)


async def test_what_cannot_start_is_a_launch_error(kind: Kind) -> None:
    with pytest.raises(LaunchError) as refusal:
        await kind.runtime.start(kind.unstartable(), lambda _: None)
    assert str(refusal.value)  # a sentence a user can act on
