"""The runtime contract (`studios.runtimes.base`), one suite for every runtime: a runtime proves
itself by passing it. Each runtime brings a `Kind` (in `kinds.py`): how to build it (twice: a
new instance stands for a restarted service) and a launch spec for the suite's app, which
prints `GREETING=<param>` and `SECRET=<secret>` on stdout and a line on stderr, then answers
HTTP on $PORT (and, with a source, serves the source's `index.html`)."""

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


async def answers(runtime: Runtime, handle: Handle, within: float = 30.0) -> httpx.Response:
    async def get() -> httpx.Response | None:
        address = runtime.address(handle)
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


async def first_status(runtime: Runtime, handle: Handle, within: float = 30.0) -> Status:
    stream = runtime.watch(handle)
    try:
        return await asyncio.wait_for(anext(stream), within)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_starts_runs_answers_and_gets_its_environment(kind: Kind) -> None:
    runtime = kind.runtime
    spec = kind.spec(env={"GREETING": "hello from a param"}, secret_env={"SECRET": "s3cret-value"})
    reported: list[str] = []
    handle = await runtime.start(spec, reported.append)
    assert "s3cret-value" not in repr(handle) and "s3cret-value" not in "".join(reported)  # never in the stored handle or a log line
    assert (await first_status(runtime, handle)).running
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
    await answers(runtime, handle)
    ended = await runtime.stop(handle, 2.0)
    await asyncio.wait_for(watcher, 30)
    assert statuses[0].running and statuses[-1].exit == ended
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
    handle = await runtime.start(spec, lambda _: None)
    await answers(runtime, handle)
    assert spec.deployment_id in await runtime.orphans(set())
    assert spec.deployment_id not in await runtime.orphans({spec.deployment_id})
    await runtime.remove_orphan(spec.deployment_id)
    assert spec.deployment_id not in await runtime.orphans(set())
    assert not await runtime.adopt(handle)


async def test_the_source_is_where_the_app_runs(kind: Kind) -> None:
    runtime = kind.runtime
    spec = kind.spec(source=kind.source({"index.html": "served from the studio's repository\n"}))
    handle = await runtime.start(spec, lambda _: None)
    response = await answers(runtime, handle)
    assert response.text == "served from the studio's repository\n"
    await runtime.stop(handle, 2.0)
    await runtime.cleanup(handle)


async def test_what_cannot_start_is_a_launch_error(kind: Kind) -> None:
    with pytest.raises(LaunchError) as refusal:
        await kind.runtime.start(kind.unstartable(), lambda _: None)
    assert str(refusal.value)  # a sentence a user can act on
