"""A chatty container's log read through the engine's file rotation: every line once, none
stuck. Docker 20.10's json-file follow (Debian 12's docker.io) either sends the lines written
after a rotation twice or stops at the rotation; measured before the fix with the settings below
(2 MB files, 30,000 lines of about 100 bytes each as the engine stores them): three follows in
four repeated 10,641 lines, the fourth stopped after 19,359 lines while the container lived on.
The service then stored the last line twice, or lost the rest of the log until the container
ended. `runtimes/docker/logs.py` drops what it yielded before and opens quiet streams again."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from runtimes.test_docker_runtime import IMAGE, engine, make_spec  # noqa: F401 (engine: a fixture)
from studios.runtimes.base import RuntimeEnv
from studios.runtimes.docker import DockerRuntime
from studios.runtimes.docker import logs as docker_logs
from studios.runtimes.docker.runtime import DockerSettings

LINES = 30_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_every_line_once_through_rotations(engine: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(docker_logs, "QUIET_SECONDS", 0.3)  # a stalled follow is noticed sooner
    opened = 0
    real_opener = docker_logs._opener

    def counting_opener(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal opened
        opened += 1
        return real_opener(*args, **kwargs)

    monkeypatch.setattr(docker_logs, "_opener", counting_opener)
    rt = DockerRuntime(DockerSettings(url=os.environ.get("DOCKER_HOST"), log_max_size="2m"),
                       RuntimeEnv(tmp_path / "docker-runtime", f"rotation-{uuid.uuid4().hex[:8]}", "http://localhost:8000"))  # fmt: skip
    spec = make_spec(tmp_path, f"seq 1 {LINES} | sed 's/^/line of a chatty app, number /'; exec sleep 3600")
    handle = await rt.start(spec, lambda _line: None)
    messages: list[str] = []
    follow = rt.logs(handle, None)
    try:
        async with asyncio.timeout(90):
            while len(messages) < LINES:
                lines, _ = await anext(follow)
                messages += [line.message for line in lines]
        # Quiet now: its streams are opened again (twice more, each a re-read from the cursor),
        # and must yield nothing they yielded before.
        reading = asyncio.ensure_future(anext(follow))
        async with asyncio.timeout(30):
            seen = opened
            while opened < seen + 2 * len(docker_logs.STREAMS):
                await asyncio.sleep(0.05)
        await rt.stop(handle, 1)
        async with asyncio.timeout(60):
            try:
                while True:
                    lines, _ = await reading
                    messages += [line.message for line in lines]
                    reading = asyncio.ensure_future(anext(follow))
            except StopAsyncIteration:
                pass
    finally:
        await follow.aclose()
        await rt.cleanup(handle)
        await rt.close()
    numbers = [int(m.rsplit(" ", 1)[1]) for m in messages]
    assert numbers == list(range(1, LINES + 1)), f"{len(numbers)} lines: lost or repeated ({numbers[-3:]})"
