"""The Docker runtime against a real engine and the locally built busybox image.

Needs a daemon (`scripts/start-dockerd.sh`) and builds `studios-test/busybox:latest` itself
with `scripts/build-test-images.sh` when it is missing. The image runs the shell code in the
APP_CMD env var (default: `httpd -f -p $PORT` serving its working directory). Every test waits
for conditions with deadlines; none sleeps to synchronise. Tests without a daemon (cursor
arithmetic, `docker_available`) run everywhere.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from runtimes.conftest import git_repo
from studios.runtimes.base import Exit, LaunchError, LaunchSpec, LogLine, RuntimeEnv
from studios.runtimes.docker import DockerRuntime, docker_available
from studios.runtimes.docker import logs as docker_logs
from studios.runtimes.docker.images import _Progress, image_reference
from studios.runtimes.docker.oom import oom_kill_count
from studios.runtimes.docker.runtime import LABEL_DEPLOYMENT, LABEL_INSTANCE, DockerSettings

IMAGE = "studios-test/busybox"
REPO = Path(__file__).resolve().parents[2]
_ids = itertools.count(int(time.time()) % 100_000 * 100)
T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def engine() -> None:
    reason = docker_available(os.environ.get("DOCKER_HOST"))
    if reason is not None:
        pytest.skip(f"no Docker daemon ({reason}); run scripts/start-dockerd.sh")
    subprocess.run([str(REPO / "scripts" / "build-test-images.sh")], check=True, capture_output=True)


def docker_runtime(tmp_path: Path, instance: str) -> DockerRuntime:
    return DockerRuntime(DockerSettings(url=os.environ.get("DOCKER_HOST")), RuntimeEnv(tmp_path / "docker-runtime", instance, "http://localhost:8000"))


@pytest.fixture
async def runtime(engine: None, tmp_path: Path) -> AsyncIterator[DockerRuntime]:
    rt = docker_runtime(tmp_path, f"test-{uuid.uuid4().hex[:8]}")
    yield rt
    for deployment_id in await rt.orphans(set()):
        await rt.remove_orphan(deployment_id)
    await rt.close()


def make_spec(tmp_path: Path, app_cmd: str | None = None, **changes: Any) -> LaunchSpec:
    deployment_id = next(_ids)
    values: dict[str, Any] = dict(
        deployment_id=deployment_id, studio_id=7, user_id=1, image=IMAGE, tag="latest",
        memory_mb=64, cpu_millicores=500, disk_gb=None,
        env={"APP_CMD": app_cmd} if app_cmd else {},
    )
    values.update(changes)
    return LaunchSpec(**values)


async def eventually(check: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """Await `check()` until it returns something other than None, or fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


async def http_get(address: tuple[str, int], within: float = 10.0) -> httpx.Response:
    async with httpx.AsyncClient(timeout=2.0) as client:
        async def get() -> httpx.Response | None:
            try:
                return await client.get(f"http://{address[0]}:{address[1]}/index.html")
            except httpx.HTTPError:
                return None

        return await eventually(get, within, f"HTTP on {address}")


async def read_all(rt: DockerRuntime, handle: dict[str, Any], cursor: Any = None) -> list[tuple[list[LogLine], Any]]:
    async def collect() -> list[tuple[list[LogLine], Any]]:
        return [batch async for batch in rt.logs(handle, cursor)]

    return await asyncio.wait_for(collect(), 20)


@pytest.mark.docker
@pytest.mark.anyio
async def test_app_answers_logs_apart_and_peak_usage(runtime: DockerRuntime, tmp_path: Path) -> None:
    reports: list[str] = []
    spec = make_spec(tmp_path, None, env={
        "X": "from-params", "APP_CMD": 'echo to-out; echo to-err >&2; echo "port=$PORT x=$X"; exec httpd -f -p $PORT'})
    handle = await runtime.start(spec, reports.append)
    assert handle["host"] == "127.0.0.1" and handle["port"] > 0
    response = await http_get(runtime.address(handle))
    assert response.status_code == 200 and "hello from studios-test" in response.text
    assert await runtime.poll(handle) is None

    ended = await runtime.stop(handle, grace_seconds=5)
    assert ended.signal == 15 and ended.message == "killed by signal 15 (SIGTERM)"
    assert await runtime.poll(handle) == ended

    lines = [line for batch, _ in await read_all(runtime, handle) for line in batch]
    assert [(line.stream, line.message) for line in lines if line.stream == "stderr"] == [("stderr", "to-err")]
    assert [line.message for line in lines if line.stream == "stdout"] == ["to-out", "port=8080 x=from-params"]
    used = await runtime.usage(handle)
    assert used.max_memory_mb and used.max_memory_mb > 0
    assert used.max_cpu_millicores and used.max_cpu_millicores > 0
    await runtime.cleanup(handle)
    assert not Path(handle["cgroup"]["paths"]["memory"]).exists()
    assert (await runtime.poll(handle)) is not None  # still ended once everything is removed


@pytest.mark.docker
@pytest.mark.anyio
async def test_logs_resume_from_every_cursor_exactly_once(runtime: DockerRuntime, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, 'for i in $(seq 1 40); do echo out$i; echo err$i >&2; done; exit 3')
    handle = await runtime.start(spec, lambda line: None)
    batches = await read_all(runtime, handle)
    everything = [(line.stream, line.message) for batch, _ in batches for line in batch]
    assert [m for s, m in everything if s == "stdout"] == [f"out{i}" for i in range(1, 41)]
    assert [m for s, m in everything if s == "stderr"] == [f"err{i}" for i in range(1, 41)]
    ended = await eventually(lambda: runtime.poll(handle), 10, "the exit")
    assert ended == Exit(code=3, signal=None, oom_killed=False, message="exited with code 3")

    for index, (_, cursor) in enumerate(batches):
        rest = [(line.stream, line.message) for batch, _ in await read_all(runtime, handle, cursor) for line in batch]
        expected = [(line.stream, line.message) for batch, _ in batches[index + 1:] for line in batch]
        assert sorted(rest) == sorted(expected)
    assert await read_all(runtime, handle, batches[-1][1]) == []


@pytest.mark.docker
@pytest.mark.anyio
async def test_memory_hog_is_killed_with_the_limit_in_the_message(runtime: DockerRuntime, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "head -c 200m /dev/zero | tail", memory_mb=32)
    handle = await runtime.start(spec, lambda line: None)
    ended = await eventually(lambda: runtime.poll(handle), 20, "the OOM kill")
    assert ended.oom_killed and ended.message == "killed: out of memory (limit 32 MB)"
    used = await runtime.usage(handle)
    assert used.max_memory_mb is not None and 28 <= used.max_memory_mb <= 36  # podman: + conmon


@pytest.mark.docker
@pytest.mark.anyio
async def test_a_main_process_killed_for_memory_is_told_by_the_exit_alone(runtime: DockerRuntime, tmp_path: Path) -> None:
    reports: list[str] = []
    handle = await runtime.start(make_spec(tmp_path, "exec dd if=/dev/zero of=/dev/null bs=100M count=1", memory_mb=32), reports.append)
    ended = await eventually(lambda: runtime.poll(handle), 20, "the OOM kill")
    assert ended.oom_killed and ended.message == "killed: out of memory (limit 32 MB)"
    assert not [line for line in reports if "in the app was killed" in line]  # no second, misleading line


@pytest.mark.docker
@pytest.mark.anyio
async def test_a_child_killed_for_memory_while_the_app_lives_is_reported(runtime: DockerRuntime, tmp_path: Path) -> None:
    """The app's main process serves HTTP and starts a child that allocates past the limit; the
    kernel kills the child, the container lives on, and a system line says what happened."""
    reports: list[str] = []
    # One process grows (dd's 100 MB buffer): a pipe writer blocked in a charge during the OOM
    # could make the kernel kill a second process, the shell, on some kernels.
    hog = "httpd -p $PORT; dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null; echo child ended $?; exec sleep 1000"
    handle = await runtime.start(make_spec(tmp_path, hog, memory_mb=32), reports.append)
    await read_all_until(runtime, handle, "child ended 137")  # the child was SIGKILLed, the shell goes on

    async def reported() -> list[str] | None:
        found = [line for line in reports if "killed: out of memory" in line]
        return found or None

    try:
        found = await eventually(reported, 20, "the OOM kill's system line")
    except AssertionError as error:  # say where it stood: the engine's events, the kernel's counter
        api = runtime.client().api
        events = list(api.events(since=int(time.time()) - 120, until=int(time.time()), filters={"container": handle["container_id"]}, decode=True))
        counter = oom_kill_count(handle["cgroup"]["paths"].get("memory"), handle["container_id"])
        raise AssertionError(f"{error}; system lines {reports}; engine events {[e.get('Action') for e in events]}; oom_kill counter {counter}") from None
    assert found == ["a process in the app was killed: out of memory (limit 32 MB)"]
    assert await runtime.poll(handle) is None  # the container (and the app) lived on
    assert (await http_get(runtime.address(handle))).status_code == 200
    ended = await runtime.stop(handle, grace_seconds=1)
    assert not ended.oom_killed and ended.message == "killed by signal 15 (SIGTERM)"  # the app did not die of it
    assert [line for line in reports if "out of memory" in line] == ["a process in the app was killed: out of memory (limit 32 MB)"]


@pytest.mark.docker
@pytest.mark.anyio
async def test_a_missing_image_is_a_launch_error_with_the_engines_reason(runtime: DockerRuntime, tmp_path: Path) -> None:
    reports: list[str] = []
    with pytest.raises(LaunchError) as raised:
        await runtime.start(make_spec(tmp_path, image="nope", tag="latest"), reports.append)
    message = str(raised.value)
    assert message.startswith("image nope:latest could not be pulled: ")
    assert len(message) > len("image nope:latest could not be pulled: ") + 10
    assert reports == ["pulling nope:latest: not present locally"]
    with pytest.raises(LaunchError, match="invalid reference format"):
        await runtime.start(make_spec(tmp_path, image="Bad Name!", tag="latest"), reports.append)


@pytest.mark.docker
@pytest.mark.anyio
async def test_a_container_left_by_an_interrupted_start_is_replaced_and_a_strangers_is_refused(runtime: DockerRuntime, tmp_path: Path) -> None:
    """The container's name is the deployment's: a start interrupted after the create left one
    (this deployment's labels): it is removed and the start goes on. A container of that name
    that is not this deployment's is left alone and the start refused."""
    client = runtime.client()
    spec = make_spec(tmp_path, "exec httpd -f -p $PORT")
    name = runtime.container_name(spec.deployment_id)
    labels = {LABEL_INSTANCE: runtime.instance, LABEL_DEPLOYMENT: str(spec.deployment_id)}
    left = client.containers.create(f"{IMAGE}:latest", "sleep 1000", name=name, labels=labels)
    reports: list[str] = []
    handle = await runtime.start(spec, reports.append)
    assert f"removing container {name} left by an earlier start" in reports
    assert handle["container_id"] != left.id
    assert (await http_get(runtime.address(handle))).status_code == 200
    await runtime.stop(handle, 1)
    await runtime.cleanup(handle)

    other = make_spec(tmp_path, "exec httpd -f -p $PORT")
    stranger = client.containers.create(f"{IMAGE}:latest", "sleep 1000", name=runtime.container_name(other.deployment_id))
    try:
        with pytest.raises(LaunchError, match="exists and is not this deployment's"):
            await runtime.start(other, lambda line: None)
        assert client.containers.get(stranger.id).name == runtime.container_name(other.deployment_id)
    finally:
        stranger.remove(force=True)


@pytest.mark.docker
@pytest.mark.anyio
async def test_stop_takes_the_grace_not_ten_seconds(runtime: DockerRuntime, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "trap '' TERM; echo ready; while true; do sleep 1; done")
    handle = await runtime.start(spec, lambda line: None)
    await read_all_until(runtime, handle, "ready")  # the trap is set
    began = time.monotonic()
    ended = await runtime.stop(handle, grace_seconds=1)
    took = time.monotonic() - began
    assert ended.signal == 9 and ended.message == "killed by signal 9 (SIGKILL)"
    assert 0.9 <= took < 5, took  # the grace, not the 10 s default (slack for a loaded host)

    polite = await runtime.start(make_spec(tmp_path, "exec sleep 100"), lambda line: None)
    began = time.monotonic()
    await runtime.stop(polite, grace_seconds=10)
    assert time.monotonic() - began < 5  # init passes SIGTERM on at once: no 10 s wait


@pytest.mark.docker
@pytest.mark.anyio
async def test_a_new_runtime_adopts_running_containers(runtime: DockerRuntime, tmp_path: Path) -> None:
    handle = await runtime.start(make_spec(tmp_path, "echo before; exec httpd -f -p $PORT"), lambda line: None)
    await http_get(runtime.address(handle))
    first = await read_all_until(runtime, handle, "before")
    await runtime.close()

    again = docker_runtime(tmp_path, runtime.instance)
    try:
        assert await again.adopt(handle)
        assert not await again.adopt({**handle, "container_id": "0" * 64})
        assert again.address(handle) == runtime.address(handle)
        assert (await http_get(again.address(handle))).status_code == 200
        assert (await again.usage(handle)).max_memory_mb
        await again.stop(handle, 2)
        rest = [line.message for batch, _ in await read_all(again, handle, first) for line in batch]
        assert "before" not in rest
        assert not await again.adopt(handle)  # ended
        await again.cleanup(handle)
        assert not await again.adopt(handle)  # gone
    finally:
        await again.close()


async def read_all_until(rt: DockerRuntime, handle: dict[str, Any], text: str) -> Any:
    """Follow a live container's logs until `text` was printed; return the cursor there."""
    async def follow() -> Any:
        async for batch, cursor in rt.logs(handle, None):
            if any(line.message == text for line in batch):
                return cursor
        raise AssertionError(f"{text!r} never printed")

    return await asyncio.wait_for(follow(), 10)


@pytest.mark.docker
@pytest.mark.anyio
async def test_orphans_are_found_by_label_and_removed(runtime: DockerRuntime, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "exec sleep 100")
    handle = await runtime.start(spec, lambda line: None)
    assert await runtime.orphans({spec.deployment_id + 1}) == [spec.deployment_id]
    assert await runtime.orphans({spec.deployment_id}) == []
    other = docker_runtime(tmp_path, f"{runtime.instance}-other")
    assert spec.deployment_id not in await other.orphans(set())
    await other.close()
    await runtime.remove_orphan(spec.deployment_id)
    assert await runtime.orphans(set()) == []
    assert not await runtime.adopt(handle)
    assert not Path(handle["cgroup"]["paths"]["memory"]).exists()


@pytest.mark.docker
@pytest.mark.anyio
async def test_the_repository_is_copied_into_workspace(runtime: DockerRuntime, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "index.html").write_text("from the checkout\n")
    spec = make_spec(tmp_path, "pwd; echo made > made-here.txt; exec httpd -f -p $PORT", source=git_repo(checkout))
    reported: list[str] = []
    handle = await runtime.start(spec, reported.append)
    response = await http_get(runtime.address(handle))
    assert response.text == "from the checkout\n"
    assert any(line.startswith("copied the checkout into the container at /workspace") for line in reported)
    # The container has its own copy: nothing of the app's writes reaches this machine's disk.
    assert not list(tmp_path.rglob("made-here.txt"))
    await runtime.stop(handle, 2)
    lines = [line.message for batch, _ in await read_all(runtime, handle) for line in batch]
    assert lines[0] == "/workspace"


class _FakeStream(list[bytes]):
    def close(self) -> None:
        pass


class _FakeApi:
    """Serves fixed log entries of an ended container the way the engine does, honouring `since`."""

    def __init__(self, entries: dict[str, list[tuple[int, str]]]) -> None:
        self.entries = entries

    def inspect_container(self, container: str) -> dict[str, Any]:
        return {"Id": container, "State": {"Status": "exited", "Running": False, "ExitCode": 0}}

    def logs(self, container: str, stdout: bool, stderr: bool, since: float | None = None, **_: Any) -> _FakeStream:
        stream = "stdout" if stdout else "stderr"
        return _FakeStream(
            f"{_stamp(ns)} {text}\n".encode() for ns, text in self.entries[stream]
            if since is None or ns >= since * 1e9
        )


def _stamp(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}".rstrip("0") + "Z"


@pytest.mark.anyio
async def test_a_cursor_inside_lines_with_one_timestamp_skips_exactly_those_seen() -> None:
    base = 1_795_000_000_123_456_000
    api: Any = _FakeApi({
        "stdout": [(base, "a"), (base, "b"), (base, "c"), (base + 5, "d")],
        "stderr": [(base - 7, "e")],
    })
    cursor = {"stdout": {"ns": base, "n": 2}, "stderr": {"ns": base - 7, "n": 1}}
    got = [line.message async for batch, _ in docker_logs.follow(api, "c", cursor) for line in batch]
    assert got == ["c", "d"]
    first = [(b, c) async for b, c in docker_logs.follow(api, "c", None)]
    assert sorted(line.message for b, _ in first for line in b) == ["a", "b", "c", "d", "e"]
    assert docker_logs.parse_timestamp("2026-11-26T06:02:35.6887996Z") % 10**9 == 688_799_600


def test_docker_available_says_why_not() -> None:
    reason = docker_available("unix:///nonexistent/docker.sock")
    assert reason is not None and "no Docker daemon answers at unix:///nonexistent/docker.sock" in reason


def test_pull_progress_becomes_a_few_lines_and_errors_carry_the_reason() -> None:
    lines: list[str] = []
    progress = _Progress("busybox:1", lines.append)
    progress.feed({"status": "Pulling from library/busybox", "id": "1"})
    for current in range(0, 2_000_001, 100_000):
        progress.feed({"status": "Downloading", "id": "a", "progressDetail": {"current": current, "total": 2_000_000}})
    progress.feed({"status": "Pull complete", "id": "a"})
    progress.feed({"status": "Status: Downloaded newer image for busybox:1"})
    assert lines[0] == "pulling busybox:1: Pulling from library/busybox"
    assert lines[1:-1] == [f"pulling busybox:1: {p}% of 2.0 MB" for p in range(0, 101, 10)]
    assert lines[-1] == "pulling busybox:1: Status: Downloaded newer image for busybox:1"
    with pytest.raises(LaunchError, match=r"^image busybox:1 could not be pulled: toomanyrequests"):
        progress.feed({"error": "toomanyrequests: rate limit", "errorDetail": {}})
    assert image_reference("busybox", "1.36") == "busybox:1.36"
    assert image_reference("localhost:5000/app:v2", "latest") == "localhost:5000/app:v2"
    assert image_reference("app@sha256:" + "0" * 64, "x") == "app@sha256:" + "0" * 64


@pytest.mark.anyio
async def test_a_kill_the_engine_does_not_announce_is_reported_from_the_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine raised no `oom` event for a child killed in a container's first moments (seen
    under load); the kernel's counter rose all the same, and the kill must still be reported."""
    import threading

    from studios.runtimes.docker import oom

    monkeypatch.setattr(oom, "RECHECK_SECONDS", 0.05)
    monkeypatch.setattr(oom, "SETTLE_SECONDS", 0.05)
    container_id = "c" * 64
    counter = tmp_path / container_id / "memory.oom_control"  # cgroup v1: the container's own cgroup
    counter.parent.mkdir()
    counter.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")

    class QuietEngine:
        """An engine whose event stream says nothing until it is closed; the container runs."""

        def __init__(self) -> None:
            self.closed = threading.Event()

        def events(self, **_: Any) -> Any:
            engine = self

            class Stream:
                def __iter__(self) -> Any:
                    engine.closed.wait(30)
                    return iter(())

                def close(self) -> None:
                    engine.closed.set()

            return Stream()

        def inspect_container(self, _: str) -> dict[str, Any]:
            return {"State": {"Running": True, "Pid": 0}}

    lines = oom.oom_kill_lines(QuietEngine(), container_id, memory_mb=32, memory_dir=str(tmp_path), since=time.time())
    first = asyncio.ensure_future(anext(lines))
    await asyncio.sleep(0.2)
    assert not first.done()  # no kill yet: nothing to say
    counter.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    async with asyncio.timeout(10):
        assert await first == "a process in the app was killed: out of memory (limit 32 MB)"
    await lines.aclose()

