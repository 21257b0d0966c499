"""The Docker runtime when its engine goes away: dies, or restarts under running containers.

The docker SDK raises the transport's own `ConnectionError` then, not a `DockerException`
(`runtimes/docker/failures.py`). A deploy ends with the reason; a followed container is not
taken for ended while the engine is away, and once it answers again its answer counts; a log is
read on from its cursor, each line once. Three tests use an Engine API on a unix socket that can
go away and come back (`tests/gone_engine.py`); the last kills and restarts a real dockerd, node
swn2's of the one-machine swarm used as a plain Docker engine (under the swarm's exclusive lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from gone_engine import engine_that_goes_away
from studios.runtimes.base import EngineUnreachable, LaunchError, LaunchSpec, RuntimeEnv
from studios.runtimes.docker import DockerRuntime
from studios.runtimes.docker import logs as docker_logs
from studios.runtimes.docker.runtime import ENGINE_BACK, ENGINE_GONE, DockerSettings
from swarm import lab

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def swarm() -> dict[str, str]:
    return lab.require()


exclusive_swarm = lab.exclusive_swarm


@pytest.mark.anyio
async def test_an_engine_gone_mid_start_ends_the_deploy_with_the_reason(tmp_path: Path) -> None:
    """The engine answered when the runtime first spoke to it, then died: the SDK raises the
    transport's ConnectionError, which must end the deploy as "the container engine is
    unavailable", not as an internal error, and leave no cgroup behind."""

    with engine_that_goes_away(tmp_path) as engine:
        rt = DockerRuntime(DockerSettings(url=engine.url), RuntimeEnv(tmp_path / "docker-runtime", f"gone-{uuid.uuid4().hex[:8]}", "http://localhost:8000"))
        try:
            layout = await rt._layout()  # what the runtime learns from the engine while it answers
            engine.go_away()
            spec = LaunchSpec(deployment_id=5, studio_id=1, user_id=1, image="studios-test/busybox", tag="latest", memory_mb=64, cpu_millicores=250, disk_gb=None, env={})
            with pytest.raises(LaunchError, match=r"^the container engine is unavailable: nothing listens at its socket \(no such file\)$"):
                await rt.start(spec, lambda _line: None)
            handle = {"container_id": "f" * 64, "memory_mb": 64, "cgroup": {"paths": layout.paths(5), "leaf": ""}, "state_file": None}
            for attempt in (rt.adopt(handle), rt.stop(handle, 1), rt.cleanup(handle), rt.remove_orphan(5)):  # not known, not done: said
                with pytest.raises(EngineUnreachable, match=r"^the container engine does not answer: nothing listens at its socket \(no such file\)$"):
                    await attempt
            assert not any(Path(p).exists() for p in layout.paths(5).values())
        finally:
            await rt.close()


def running_container(engine: Any, tmp_path: Path, cid: str) -> tuple[DockerRuntime, dict[str, Any]]:
    """A runtime on the engine that goes away, and the handle of a container it says runs."""
    engine.answers[f"/containers/{cid}/json"] = {"Id": cid, "State": {"Status": "running", "Running": True}}
    rt = DockerRuntime(DockerSettings(url=engine.url), RuntimeEnv(tmp_path / "docker-runtime", "restarts", "http://localhost:8000"))
    cgroup = {"memory": str(tmp_path / "memory"), "cpu": str(tmp_path / "cpu")}
    handle = {"container_id": cid, "host": "127.0.0.1", "port": 1, "memory_mb": 64,
              "cgroup": {"paths": cgroup, "leaf": str(tmp_path / "cpu" / cid)}, "state_file": str(tmp_path / "state.json")}  # fmt: skip
    return rt, handle


@pytest.mark.anyio
async def test_an_engine_that_restarts_ends_nothing_and_is_asked_again(tmp_path: Path) -> None:
    """The engine stops answering while a container is followed (its daemon restarts): nothing
    is taken for the container's end (it was an internal error that ended the deployment, and
    its release then removed a container that may have lived on); once the engine answers
    again, what it says counts."""

    cid = "d" * 64
    with engine_that_goes_away(tmp_path) as engine:
        rt, handle = running_container(engine, tmp_path, cid)
        watch = rt.watch(handle)
        try:
            assert (await anext(watch)).running
            following = asyncio.ensure_future(anext(watch))
            await asyncio.sleep(0.3)
            assert not following.done()  # it runs, and the engine says so
            engine.go_away()
            async with asyncio.timeout(15):  # the events stream breaks and every watcher looks again
                said = await following
            # Not "ended": not known. The deployment's log says why nothing is known, once.
            assert said.running and said.exit is None, said
            assert said.log == f"{ENGINE_GONE}: nothing listens at its socket (no such file); whether the app still runs is not known until it answers again"
            following = asyncio.ensure_future(anext(watch))
            await asyncio.sleep(1.5)  # asked again meanwhile (every 0.5 s, then less often)
            assert not following.done(), following.result()
            engine.answers[f"/containers/{cid}/json"] = {"Id": cid, "State": {"Status": "exited", "Running": False, "ExitCode": 3}}
            engine.come_back()
            async with asyncio.timeout(15):
                back = await following
                status = await anext(watch)
            assert back.log == f"{ENGINE_BACK}: the container ended meanwhile" and back.exit is None, back
            assert status.exit is not None and status.message == "exited with code 3"
        finally:
            await watch.aclose()
            await rt.close()


@pytest.mark.anyio
async def test_a_container_that_lives_through_its_engine_restart_is_said_to(tmp_path: Path) -> None:
    """With live-restore the container lives on while its engine restarts: the log says the
    engine answers again and the container lived on, and the watch goes on."""

    cid = "f" * 64
    with engine_that_goes_away(tmp_path) as engine:
        rt, handle = running_container(engine, tmp_path, cid)
        watch = rt.watch(handle)
        try:
            assert (await anext(watch)).running
            engine.go_away()
            async with asyncio.timeout(15):
                said = await anext(watch)
            assert said.log is not None and said.log.startswith(f"{ENGINE_GONE}: "), said
            engine.come_back()
            async with asyncio.timeout(15):
                back = await anext(watch)
            assert back.running and back.exit is None and back.log == f"{ENGINE_BACK}: the container lived on", back
            following = asyncio.ensure_future(anext(watch))
            await asyncio.sleep(0.5)
            assert not following.done(), following.result()  # it runs on, followed
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        finally:
            await watch.aclose()
            await rt.close()


@pytest.mark.anyio
async def test_a_log_read_through_an_engine_restart_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """The engine goes away while a running container's log is followed, and comes back (with
    live-restore the container lives on): the log is read on from the cursor, each line once;
    the follow ends when the streams end and the container no longer runs."""


    cid = "e" * 64
    written: list[str] = ["one", "two", "three"]

    def log_stream(query: dict[str, list[str]]) -> bytes:  # the whole log each time (the follow skips what it had)
        if query.get("stdout") != ["1"]:
            return b""
        entries = [f"2026-11-27T10:00:0{i}.000000001Z {line}\n".encode() for i, line in enumerate(written)]
        return b"".join(struct.pack(">BxxxL", 1, len(entry)) + entry for entry in entries)

    with engine_that_goes_away(tmp_path) as engine:
        inspect = {"Id": cid, "Config": {"Tty": False}, "State": {"Status": "running", "Running": True}}
        engine.answers[f"/containers/{cid}/json"] = inspect
        engine.answers[f"/containers/{cid}/logs"] = log_stream
        rt = DockerRuntime(DockerSettings(url=engine.url), RuntimeEnv(tmp_path / "docker-runtime", "restarts", "http://localhost:8000"))
        seen: list[str] = []
        follow = rt.logs({"container_id": cid}, None)

        async def read_until(count: int) -> None:
            async with asyncio.timeout(20):
                while len(seen) < count:
                    lines, _ = await anext(follow)
                    seen.extend(line.message for line in lines)

        try:
            await read_until(3)
            engine.go_away()
            written += ["four", "five"]  # written while the engine was away
            await asyncio.sleep(2 * docker_logs.REOPEN_SECONDS)  # the follow finds it gone, and asks again
            engine.come_back()
            await read_until(5)
            engine.answers[f"/containers/{cid}/json"] = {**inspect, "State": {"Status": "exited", "Running": False, "ExitCode": 0}}
            async with asyncio.timeout(20):
                rest = [line.message async for lines, _ in follow for line in lines]
            assert seen + rest == ["one", "two", "three", "four", "five"]
        finally:
            await follow.aclose()
            await rt.close()


@pytest.mark.swarm
@pytest.mark.anyio
async def test_a_real_engine_killed_and_started_again_under_a_followed_container(exclusive_swarm: dict[str, str], tmp_path: Path) -> None:
    """Node swn2's dockerd is killed (SIGKILL: the container and its shim live on) while a
    container is watched and its log followed, then started again. While it is away nothing
    ends; back, it stops the container it finds alive (no live-restore) and that exit ends the
    watch; the log is read to its end with no line lost in between or read twice."""
    rt = DockerRuntime(DockerSettings(url=lab.node_urls(exclusive_swarm)["swn2"], bind_host="10.231.0.2"),
                       RuntimeEnv(tmp_path / "docker-runtime", f"gone-{uuid.uuid4().hex[:8]}", "http://localhost:8000"))  # fmt: skip
    ticker = 'httpd -p $PORT; i=0; while true; do echo "tick $i"; i=$((i+1)); usleep 50000; done'
    spec = LaunchSpec(deployment_id=7, studio_id=1, user_id=1, image="studios-test/busybox", tag="latest", memory_mb=64, cpu_millicores=250, disk_gb=None, env={"APP_CMD": ticker})
    handle = await rt.start(spec, lambda _line: None)
    ticks: list[str] = []

    async def read_log() -> None:
        async for lines, _ in rt.logs(handle, None):
            ticks.extend(line.message for line in lines)

    reading = asyncio.ensure_future(read_log())
    watch = rt.watch(handle)
    node = [str(REPO / "scripts" / "swarm" / "node-down"), "2", "dockerd-kill"]
    try:
        assert (await anext(watch)).running
        ending = asyncio.ensure_future(anext(watch))
        async with asyncio.timeout(30):
            while len(ticks) < 5:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(subprocess.run, node, check=True, capture_output=True, timeout=60)
        async with asyncio.timeout(30):  # the streams break; both look, and find no engine
            said = await ending
        assert said.exit is None and said.log is not None and said.log.startswith(f"{ENGINE_GONE}: "), said
        ending = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(3 * docker_logs.REOPEN_SECONDS)
        assert not ending.done(), ending.result()
        assert not reading.done(), reading.exception()
        await asyncio.to_thread(subprocess.run, [str(REPO / "scripts" / "swarm" / "node-up"), "2"], check=True, capture_output=True, timeout=120)
        async with asyncio.timeout(90):
            statuses = [await ending]
            while statuses[-1].exit is None:
                statuses.append(await anext(watch))
        assert statuses[0].log is not None and statuses[0].log.startswith(f"{ENGINE_BACK}: "), statuses
        async with asyncio.timeout(90):
            await reading
        numbers = [int(message.split()[1]) for message in ticks if message.startswith("tick ")]
        assert len(numbers) >= 5 and numbers == list(range(len(numbers))), f"lost or doubled: {numbers[:5]}..{numbers[-5:]}"
    finally:
        reading.cancel()
        await watch.aclose()
        await asyncio.to_thread(subprocess.run, [str(REPO / "scripts" / "swarm" / "node-up"), "2"], capture_output=True, timeout=120)
        await rt.cleanup(handle)
        await rt.close()


def test_an_engines_failure_is_said_in_a_line_a_user_can_read(tmp_path: Path) -> None:
    import socket

    import docker
    import docker.errors
    import requests

    from studios.runtimes.docker.failures import why

    refusing = tmp_path / "refusing.sock"
    with socket.socket(socket.AF_UNIX) as bound:  # bound, never listening: connections are refused
        bound.bind(str(refusing))
        for path, said in ((tmp_path / "none.sock", "nothing listens at its socket (no such file)"), (refusing, "connection refused")):
            api = docker.APIClient(base_url=f"unix://{path}", version="1.41")
            with pytest.raises(requests.exceptions.ConnectionError) as raised:
                api.info()
            assert why(raised.value) == said
            api.close()
    assert why(requests.exceptions.ReadTimeout("read timed out")) == "it did not answer in time"
    assert why(docker.errors.APIError("500 Server Error", explanation="no such image: x")) == "no such image: x"
