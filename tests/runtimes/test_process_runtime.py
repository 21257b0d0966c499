"""The host-process runtime against real processes: apps written by the tests, real cgroups
(where the machine allows), a real "service restart" (a separate process that starts an app
and exits), no sleeps used as synchronisation."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from runtimes.conftest import git_repo, process_runtime_at
from studios.runtimes import cgroups
from studios.runtimes.base import LaunchError
from studios.runtimes.process.command import NO_START_COMMAND

pytestmark = pytest.mark.anyio

HTTP_APP = """
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("GET", self.path, flush=True)
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        print("served", file=sys.stderr, flush=True)
print("listening on", os.environ["PORT"], flush=True)
print("to stderr", file=sys.stderr, flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


async def wait_for(condition: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition") -> Any:
    """Await `condition()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


async def http_get(host: str, port: int) -> int | None:
    """Status of GET / or None if nothing answers yet."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        status = await reader.readline()
        return int(status.split()[1]) if status else None
    except (OSError, IndexError, ValueError):
        return None
    finally:
        writer.close()

CGROUPS = cgroups.detect().mode != "rlimit"
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason="cannot create cgroups here")


async def test_http_app_runs_answers_logs_and_stops(process_runtime, make_repo, make_spec, lines_of):
    runtime = process_runtime
    reported: list[str] = []
    spec = make_spec(make_repo(HTTP_APP), memory_mb=256, cpu_millicores=500)
    began = time.monotonic()
    handle = await runtime.start(spec, reported.append)
    host, port = runtime.address(handle)
    assert (host, port) == ("127.0.0.1", handle["port"])
    assert await wait_for(lambda: http_get(host, port), what="HTTP 200") == 200
    print(f"\nspawn -> first HTTP 200: {(time.monotonic() - began) * 1000:.1f} ms ({runtime.limits_mode})")
    assert "start command: ./start" in reported
    assert await runtime.poll(handle) is None
    assert await runtime.adopt(handle)

    ended = await runtime.stop(handle, grace_seconds=5)
    assert ended.signal == 15 and ended.message == "killed by signal 15 (SIGTERM)"
    assert await runtime.poll(handle) == ended  # idempotent
    lines = await lines_of(runtime, handle)
    assert ("stdout", f"listening on {port}") in lines
    assert ("stderr", "to stderr") in lines
    assert ("stdout", "GET /") in lines and ("stderr", "served") in lines
    usage = await runtime.usage(handle)
    assert usage.max_memory_mb is not None and 1 < usage.max_memory_mb < 256

    await runtime.cleanup(handle)
    if handle["group"]:
        assert not any(Path(d).exists() for d in handle["group"]["dirs"])
    assert not Path(handle["workdir"]).exists()  # its lines are the service's now: nothing left behind
    assert await runtime.usage(handle) is not None


async def test_app_gets_port_env_and_sane_base(process_runtime, make_repo, make_spec, lines_of):
    runtime = process_runtime
    app = "import os; [print(k, os.environ.get(k)) for k in ('PORT', 'STUDIO_PARAM', 'HOME', 'LANG')]; print(os.getcwd())"
    spec = make_spec(make_repo(app))
    handle = await runtime.start(spec, lambda line: None)
    lines = [message for _, message in await lines_of(runtime, handle)]
    app_dir = Path(handle["app_dir"])
    assert lines[:3] == [f"PORT {handle['port']}", "STUDIO_PARAM 42", f"HOME {app_dir}"]
    assert lines[3] != "LANG None" and lines[4] == str(app_dir)
    assert sorted(p.name for p in app_dir.iterdir()) == [".git", "app.py", "start"]  # the user's code, nothing of the runtime's
    assert (await runtime.poll(handle)).message == "exited with code 0"


async def test_crasher_exit_code_and_partial_last_line(process_runtime, make_repo, make_spec, lines_of):
    runtime = process_runtime
    app = "import sys; print('about to crash'); sys.stdout.write('no newline'); sys.exit(3)"
    handle = await runtime.start(make_spec(make_repo(app)), lambda line: None)
    ended = await wait_for(lambda: runtime.poll(handle))
    assert await runtime.stop(handle, 1) == ended  # stopping an ended app returns its exit
    assert (ended.code, ended.signal, ended.oom_killed) == (3, None, False)
    assert ended.message == "exited with code 3"
    assert await lines_of(runtime, handle) == [("stdout", "about to crash"), ("stdout", "no newline")]
    assert not await runtime.adopt(handle)


@needs_cgroups
async def test_memory_hog_is_oom_killed_at_its_limit(process_runtime, make_repo, make_spec):
    runtime = process_runtime
    app = """
    hog = []
    while True:
        hog.append(b"x" * (4 << 20))
        print(len(hog) * 4, "MB", flush=True)
    """
    handle = await runtime.start(make_spec(make_repo(app), memory_mb=64), lambda line: None)
    ended = await wait_for(lambda: runtime.poll(handle), what="the OOM kill")
    assert ended.oom_killed and ended.message == "killed: out of memory (limit 64 MB)"
    peak = (await runtime.usage(handle)).max_memory_mb
    assert peak is not None and 48 <= peak <= 65


@needs_cgroups
async def test_cpu_quota_and_peak_cpu(process_runtime, make_spec):
    runtime = process_runtime
    spec = make_spec(image="busy", cpu_millicores=300)
    handle = await runtime.start(spec, lambda line: None)

    async def two_samples() -> bool:
        usage = await runtime.usage(handle)
        return usage.max_cpu_millicores is not None and usage.max_cpu_millicores > 150

    await wait_for(two_samples, what="a cpu sample")
    await runtime.stop(handle, 1)
    peak = (await runtime.usage(handle)).max_cpu_millicores
    print(f"\npeak cpu under a 300 millicore quota: {peak}")
    assert peak is not None and 150 < peak < 420, peak


async def test_rlimit_fallback_limits_memory_and_measures(state_dir, make_repo, make_spec):
    runtime = process_runtime_at(state_dir, cgroups="off")
    assert runtime.limits_mode == "rlimit" and "disabled" in runtime.limits_reason
    reported: list[str] = []
    app = "hog = []\nwhile True: hog.append(b'x' * (4 << 20))"
    handle = await runtime.start(make_spec(make_repo(app), memory_mb=128, cpu_millicores=200), reported.append)
    assert any("RLIMIT_AS" in line for line in reported)
    ended = await wait_for(lambda: runtime.poll(handle))
    assert ended.code == 1 and not ended.oom_killed  # MemoryError, not a kill
    peak = (await runtime.usage(handle)).max_memory_mb
    assert peak is not None and 30 < peak <= 128
    await runtime.cleanup(handle)


async def test_stop_kills_an_app_that_ignores_sigterm(process_runtime, make_repo, make_spec, lines_of):
    runtime = process_runtime
    app = """
    import os, signal, time
    signal.signal(signal.SIGTERM, lambda *a: os.write(1, b"ignoring TERM\\n"))
    print("ready", flush=True)
    while True:
        time.sleep(1)
    """
    handle = await runtime.start(make_spec(make_repo(app)), lambda line: None)

    async def ready() -> bool:
        return (Path(handle["workdir"]) / "stdout.log").read_text().endswith("ready\n")

    await wait_for(ready)
    began = time.monotonic()
    ended = await runtime.stop(handle, grace_seconds=0.5)
    assert time.monotonic() - began < 5.0  # the 0.5 s grace, not a hang (slack for a loaded host)
    assert ended.message == "killed by signal 9 (SIGKILL)"
    assert [m for _, m in await lines_of(runtime, handle)] == ["ready", "ignoring TERM"]


async def test_app_that_never_listens(process_runtime, make_repo, make_spec):
    runtime = process_runtime
    app = "import time\nwhile True: time.sleep(1)"
    handle = await runtime.start(make_spec(make_repo(app)), lambda line: None)
    assert await http_get(*runtime.address(handle)) is None
    assert await runtime.poll(handle) is None
    assert (await runtime.stop(handle, 2)).signal == 15


async def test_procfile_web_line_with_port(process_runtime, make_repo, make_spec):
    runtime = process_runtime
    app = "import sys, os; assert sys.argv[2] == os.environ['PORT']; print('procfile ok')"
    handle = await runtime.start(make_spec(make_repo(app, procfile=True)), lambda line: None)
    assert (await wait_for(lambda: runtime.poll(handle))).message == "exited with code 0"


async def test_nothing_to_run(process_runtime, make_spec, tmp_path):
    runtime = process_runtime
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    with pytest.raises(LaunchError) as error:
        await runtime.start(make_spec(git_repo(empty)), lambda line: None)
    assert str(error.value) == NO_START_COMMAND
    with pytest.raises(LaunchError, match=r"image jupyter:4 has no host command.*map"):
        await runtime.start(make_spec(image="jupyter", tag="4"), lambda line: None)


async def test_image_command_runs_in_workdir_without_repo(state_dir, make_spec, lines_of):
    runtime = process_runtime_at(state_dir, image_commands={"lab:1": "echo lab on $PORT; pwd"})
    spec = make_spec(image="lab", tag="1")
    handle = await runtime.start(spec, lambda line: None)
    assert [m for _, m in await lines_of(runtime, handle)] == [f"lab on {handle['port']}", handle["app_dir"]]
    await runtime.cleanup(handle)


async def test_an_app_that_ended_between_two_looks_was_started(state_dir, tmp_path, monkeypatch):
    """The supervisor writes the app's record, then, once the app has ended, its exit record. An
    app that ends at once (a fast start: a fresh run caught it with `echo ...; pwd`) can have
    both written between the runtime's look for the first and its look for the second: the app
    ran, so the start succeeded (its ending is the watch's to report), never "exited with code 0"
    as a launch error."""
    from studios.runtimes.process import runtime as module

    runtime = process_runtime_at(state_dir)
    workdir = tmp_path / "deployment"
    workdir.mkdir()
    (workdir / "process-app.json").write_text('{"pid": 4242, "start_time": 7}')
    (workdir / "process-exit.json").write_text('{"code": 0, "signal": null, "oom_killed": false}')
    looks: list[str] = []
    real = module._read_json

    def app_written_just_after_the_first_look(path: Path) -> Any:
        looks.append(path.name)
        if looks == ["process-app.json"]:
            return None
        return real(path)

    class EndedSupervisor:
        def poll(self) -> int:
            return 0

        def kill(self) -> None:
            raise AssertionError("a supervisor that started the app is not killed")

    monkeypatch.setattr(module, "_read_json", app_written_just_after_the_first_look)
    handle = {"workdir": str(workdir), "deployment_id": 1, "memory_mb": None}
    assert await runtime._await_app(handle, EndedSupervisor()) == {"pid": 4242, "start_time": 7}  # type: ignore[arg-type]


async def test_an_environment_larger_than_a_pipe_reaches_the_app_whole(state_dir, make_spec, lines_of):
    """The supervisor's request (config path and the app's environment) is written straight into
    its stdin pipe when it fits; a larger one (params can be long) goes through a thread, whole."""
    runtime = process_runtime_at(state_dir, image_commands={"env": 'echo "${#BIG1} ${#BIG2} ${#SMALL}"'})
    big = "".join(chr(ord("a") + i % 26) for i in range(60_000))  # one string may not pass 128 KiB (the kernel's limit)
    handle = await runtime.start(make_spec(image="env", env={"BIG1": big, "BIG2": big, "SMALL": "x" * 10}), lambda line: None)
    assert [m for _, m in await lines_of(runtime, handle)] == ["60000 60000 10"]
    await runtime.cleanup(handle)
    await runtime.close()


async def test_unstartable_program_is_a_launch_error(process_runtime, make_spec, tmp_path):
    runtime = process_runtime
    repo = tmp_path / "bad-shebang"
    repo.mkdir()
    (repo / "start").write_text("#!/nonexistent/interpreter\n")
    (repo / "start").chmod(0o755)
    with pytest.raises(LaunchError, match=r"cannot start .*start.*No such file"):
        await runtime.start(make_spec(git_repo(repo)), lambda line: None)
    assert not list(runtime.state_dir.glob("*.json"))


SERVICE = """
import asyncio, json, sys
from pathlib import Path
from studios.runtimes.base import LaunchSpec, RuntimeEnv, Source
from studios.runtimes.process import ProcessRuntime
from studios.runtimes.process.runtime import ProcessSettings

async def main():
    runtime = ProcessRuntime(ProcessSettings(run_as="service"), RuntimeEnv(Path(sys.argv[1]), "test", "http://localhost:8000"))
    fields = json.loads(sys.argv[2])
    spec = LaunchSpec(**{**fields, "source": Source(**fields["source"])})
    handle = await runtime.start(spec, lambda line: None)
    seen = []
    async for batch, cursor in runtime.logs(handle, None):
        seen += [line.message for line in batch]
        if len(seen) >= 100:
            break
    print(json.dumps({"handle": handle, "cursor": cursor, "seen": seen}))

asyncio.run(main())
"""

COUNTER_APP = """
import os, time
for i in range(100):
    print(i, flush=True)
while not os.path.exists("go"):
    time.sleep(0.01)
for i in range(100, 200):
    print(i, flush=True)
"""


async def test_adopt_after_the_service_exited(state_dir, make_repo, make_spec):
    spec = make_spec(make_repo(COUNTER_APP))
    fields = {**spec.__dict__, "source": dataclasses.asdict(spec.source)}
    service = subprocess.run(
        [sys.executable, "-c", SERVICE, str(state_dir), json.dumps(fields)], capture_output=True, text=True, timeout=30
    )
    assert service.returncode == 0, service.stderr
    state = json.loads(service.stdout)
    handle, cursor = state["handle"], state["cursor"]
    assert state["seen"] == [str(i) for i in range(100)]

    runtime = process_runtime_at(state_dir)  # the restarted service
    assert await runtime.adopt(handle)
    assert await runtime.orphans({spec.deployment_id}) == []
    assert await runtime.orphans(set()) == [spec.deployment_id]
    (Path(handle["app_dir"]) / "go").touch()
    rest = [line.message async for batch, _ in runtime.logs(handle, cursor) for line in batch]
    assert rest == [str(i) for i in range(100, 200)]
    assert (await runtime.poll(handle)).message == "exited with code 0"
    assert not await runtime.adopt(handle)
    await runtime.cleanup(handle)


async def test_a_reused_pid_is_never_adopted(process_runtime, make_repo, make_spec):
    runtime = process_runtime
    handle = await runtime.start(make_spec(make_repo("import time\nwhile True: time.sleep(1)")), lambda line: None)
    assert await runtime.adopt(handle)
    wrong_time = {**handle, "app": {**handle["app"], "start_time": handle["app"]["start_time"] + 1}}
    assert not await runtime.adopt(wrong_time)
    stranger = {**handle, "app": {"pid": os.getpid(), "start_time": 1}}
    assert not await runtime.adopt(stranger)
    await runtime.stop(handle, 1)


async def test_orphans_are_found_and_removed(process_runtime, make_repo, make_spec):
    runtime = process_runtime
    spec = make_spec(make_repo("import time\nwhile True: time.sleep(1)"), deployment_id=424242)
    handle = await runtime.start(spec, lambda line: None)
    assert await runtime.orphans({1, 2}) == [424242]
    assert await runtime.orphans({424242}) == []
    await runtime.remove_orphan(424242)
    assert await runtime.poll(handle) is not None
    assert await runtime.orphans(set()) == []


async def test_a_million_lines_none_lost(process_runtime, make_repo, make_spec):
    runtime = process_runtime
    app = "import sys\nw = sys.stdout.write\nfor i in range(1_000_000): w(f'line {i}\\n')"
    began = time.monotonic()
    handle = await runtime.start(make_spec(make_repo(app)), lambda line: None)
    count, batches = 0, 0
    async for batch, cursor in runtime.logs(handle, None):  # noqa: B007 (the last cursor is checked after the loop)
        batches += 1
        for line in batch:
            assert line.message == f"line {count}"
            count += 1
    elapsed = time.monotonic() - began
    print(f"\n1,000,000 lines in {elapsed:.2f} s: {count / elapsed:,.0f} lines/s in {batches} batches")
    assert count == 1_000_000
    assert cursor["stdout"] == (Path(handle["workdir"]) / "stdout.log").stat().st_size
    # The rate is printed, not asserted: speed is measured by bench/logs_bench.py against its anchor.


def test_cgroup_v2_limits_on_a_fake_tree(tmp_path):
    root = tmp_path / "unified"
    (root / "svc").mkdir(parents=True)
    (root / "svc" / "cgroup.controllers").write_text("cpu io memory pids\n")
    (root / "svc" / "cgroup.subtree_control").write_text("")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"30 25 0:26 / {root} rw,nosuid shared:4 - cgroup2 cgroup2 rw\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/svc\n")
    (root / "svc" / "studios").mkdir()
    (root / "svc" / "studios" / "cgroup.subtree_control").write_text("")
    hierarchy = cgroups.detect("auto", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    assert hierarchy.mode == "cgroup-v2", hierarchy.reason
    assert (root / "svc" / "cgroup.subtree_control").read_text() == "+cpu +memory"
    leaf = root / "svc" / "studios" / "d1"
    leaf.mkdir()
    (leaf / "cpu.max").write_text("max 100000")
    group = cgroups._limit_v2(leaf, 256, 500)
    assert (leaf / "memory.max").read_text() == str(256 << 20)
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert group.cpu_usage_unit == "usec" and group.oom_file == str(leaf / "memory.events")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cgroups.read_oom_kills(group) == 1


def test_no_cgroup_hierarchy_means_rlimit_with_a_reason(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/\n")
    hierarchy = cgroups.detect("auto", mountinfo=mountinfo, proc_cgroup=proc_cgroup)
    assert hierarchy.mode == "rlimit" and "not mounted" in hierarchy.reason



async def test_a_spare_supervisor_waits_for_the_next_deploy_and_knows_nothing_until_then(state_dir, make_spec, lines_of):
    """After a deploy the runtime starts the next deploy's supervisor ahead (its interpreter's
    start is then not part of that deploy). Until a deploy reaches it, it has the fixed minimal
    environment and no deployment; the deploy that takes it runs as any other; close ends it."""
    from studios.runtimes.process.runtime import SUPERVISOR_ENV

    commands = {"env": 'echo "param=$STUDIO_PARAM"; exec sleep 60'}
    rt = process_runtime_at(state_dir, image_commands=commands)
    first = await rt.start(make_spec(image="env", env={"STUDIO_PARAM": "first"}), lambda line: None)

    async def spare() -> int | None:
        # Popen returns once the exec has begun; the kernel shows the new environment a moment
        # later (until then /proc/PID/environ reads empty), so wait for it to be there.
        pid = rt.spare_pid
        try:
            return pid if pid is not None and Path(f"/proc/{pid}/environ").read_text() else None
        except FileNotFoundError:
            return None

    waiting = await wait_for(spare, 10, "a spare supervisor, its environment shown")
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{waiting}/environ").read_text().split("\0") if item)
    assert environ == SUPERVISOR_ENV  # nothing of any user's
    assert os.readlink(f"/proc/{waiting}/cwd") == "/"
    assert str(state_dir) not in Path(f"/proc/{waiting}/cmdline").read_text()

    spare_group = rt._spare.group if rt._spare is not None else None
    child = None
    if rt.limits_mode != "rlimit":
        # In a cgroup mode the spare's child waits in the next deploy's group, joined ahead (a
        # cgroup v1 join can wait milliseconds for the kernel); it becomes that deploy's app.
        assert spare_group is not None
        child = await wait_for(lambda: _only(cgroups.members(spare_group)), 10, "the spare's child in its group")
        assert _parent_of(child) == waiting

    second = await rt.start(make_spec(image="env", env={"STUDIO_PARAM": "second"}, memory_mb=256), lambda line: None)
    assert second["supervisor"]["pid"] == waiting
    assert os.readlink(f"/proc/{waiting}/cwd") == second["workdir"]
    if child is not None:
        assert second["app"]["pid"] == child
        assert second["group"] == spare_group.to_json()  # type: ignore[union-attr]
        assert second["limits"] == rt.limits_mode
        memory_dir = Path(second["group"]["memory_current_file"]).parent  # its limit was set at the deploy
        limit_file = memory_dir / ("memory.limit_in_bytes" if rt.limits_mode == "cgroup-v1" else "memory.max")
        assert int(limit_file.read_text()) == 256 * 1024 * 1024
    for handle, param in ((first, "first"), (second, "second")):
        await rt.stop(handle, 1)
        assert ("stdout", f"param={param}") in await lines_of(rt, handle)
        await rt.cleanup(handle)

    assert await wait_for(spare, 10, "the next spare supervisor") != waiting
    last = rt._spare
    assert last is not None
    await rt.close()
    assert rt.spare_pid is None
    assert last.supervisor.returncode == 0  # its stdin closed: it ended, reaped
    if last.group is not None:  # and the group made for the deploy that never came is gone
        assert not any(Path(d).exists() for d in last.group.dirs)


async def _only(pids: set[int]) -> int | None:
    return next(iter(pids)) if len(pids) == 1 else None


def _gated_spawns(rt: Any) -> tuple[threading.Event, list[subprocess.Popen[bytes]]]:
    """Make the runtime's supervisor starts wait for a gate that only the event loop opens, once
    per start (it closes behind each): a start made on the loop itself would hold the loop until
    the gate's own timeout, then fail."""
    gate = threading.Event()
    started: list[subprocess.Popen[bytes]] = []
    spawn = rt._spawn_supervisor

    def gated(join: list[str] | None = None) -> subprocess.Popen[bytes]:
        if not gate.wait(10):
            raise OSError("the supervisor was started on the event loop: the loop never opened the gate")
        gate.clear()
        started.append(spawn(join))
        return started[-1]

    rt._spawn_supervisor = gated
    return gate, started


async def test_supervisors_start_while_the_event_loop_goes_on(state_dir, make_spec):
    """`Popen` returns only once the child has exec'd (milliseconds on a busy machine): the
    spare supervisor and one started for a deploy that found no spare both start in a worker
    thread, while the event loop serves everything else."""
    rt = process_runtime_at(state_dir, image_commands={"sleeper": "exec sleep 60"})
    try:
        gate, started = _gated_spawns(rt)
        deploy = asyncio.ensure_future(rt.start(make_spec(image="sleeper"), lambda line: None))
        await asyncio.sleep(0.01)  # the deploy is starting its supervisor; the loop runs on
        assert not deploy.done() and not started
        gate.set()
        handle = await asyncio.wait_for(deploy, 10)
        assert handle["supervisor"]["pid"] == started[0].pid

        spare = await wait_for(lambda: asyncio.sleep(0, rt._spare_coming), 10, "the spare being started")
        await asyncio.sleep(0.01)
        assert not spare.done() and rt.spare_pid is None  # on its way, in its thread
        gate.set()
        await asyncio.wait_for(asyncio.shield(spare), 10)
        assert rt.spare_pid == started[1].pid
        await rt.stop(handle, 1)
        await rt.cleanup(handle)
    finally:
        await rt.close()


async def test_a_deploy_cancelled_while_its_supervisor_starts_leaves_no_supervisor(state_dir, make_spec):
    """A deploy cancelled (its deployment stopped, the service closing) while its supervisor is
    still being started: the supervisor, once started, is told to go (its stdin closed before
    any deployment reached it) and exits; nothing is left running."""
    rt = process_runtime_at(state_dir, image_commands={"sleeper": "exec sleep 60"})
    try:
        gate, started = _gated_spawns(rt)
        made: list[Any] = []
        make_group = rt._make_group
        rt._make_group = lambda *args: (made.append((result := make_group(*args))[0]), result)[1]
        deploy = asyncio.ensure_future(rt.start(make_spec(image="sleeper"), lambda line: None))
        await asyncio.sleep(0.01)
        deploy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await deploy
        gate.set()
        supervisor = await wait_for(lambda: asyncio.sleep(0, started[0] if started else None), 10, "the supervisor started after all")
        await wait_for(lambda: asyncio.sleep(0, supervisor.poll() is not None), 10, "the unneeded supervisor to exit")
        assert supervisor.returncode == 0
        if rt.limits_mode != "rlimit":  # and the cgroup made for the deploy is gone
            assert made and made[0] is not None
            await wait_for(lambda: asyncio.sleep(0, not any(Path(d).exists() for d in made[0].dirs)), 10, "the deploy's cgroup removed")
    finally:
        await rt.close()


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


class _ScriptedKernel:
    """Stands in for the `socket` module in the runtime: each probe for a free port gets the
    next port of `offers`, as a kernel may offer a just-released port again."""

    AF_INET = __import__("socket").AF_INET
    SOCK_STREAM = __import__("socket").SOCK_STREAM

    def __init__(self, offers: list[int]) -> None:
        self.offers = offers

    def socket(self, *_: object) -> Any:
        kernel = self

        class Probe:
            def __enter__(self) -> Probe:
                return self

            def __exit__(self, *_: object) -> None:
                pass

            def bind(self, address: tuple[str, int]) -> None:
                assert address == ("127.0.0.1", 0)

            def getsockname(self) -> tuple[str, int]:
                return ("127.0.0.1", kernel.offers.pop(0))

        return Probe()


async def test_apps_started_together_never_get_the_same_port(process_runtime, make_repo, make_spec, monkeypatch):
    """The kernel offers a released port again; an app binds its $PORT only once it has
    started. Two deployments started together were once given the same port, and the second
    found the first one's app answering on it (`bench/mixed_bench.py`, 50 apps at once)."""
    runtime_module = importlib.import_module("studios.runtimes.process.runtime")
    kernel = _ScriptedKernel([41001, 41001, 41002, 41001])
    monkeypatch.setattr(runtime_module, "socket", kernel)
    runtime = process_runtime
    repo = make_repo("import time\nwhile True: time.sleep(1)")
    first = await runtime.start(make_spec(repo, deployment_id=1001), lambda line: None)
    second = await runtime.start(make_spec(repo, deployment_id=1002), lambda line: None)
    assert (first["port"], second["port"]) == (41001, 41002)
    await runtime.stop(first, 1)
    await runtime.cleanup(first)  # its port is free to give again
    third = await runtime.start(make_spec(repo, deployment_id=1003), lambda line: None)
    assert third["port"] == 41001
    assert kernel.offers == []
    for handle in (second, third):
        await runtime.stop(handle, 1)
        await runtime.cleanup(handle)
