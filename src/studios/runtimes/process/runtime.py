"""The host-process runtime: each deployment is a process on this machine, under a supervisor.

`ProcessRuntime` owns the deployment's processes, its cgroup and the state files in the
deployment's workdir; it never touches the database or the workdir's other contents. It starts a
detached supervisor (`process/supervisor.py`, its own session) that starts the app, so apps keep
running when the service exits or restarts; everything the runtime later says (alive, exit,
logs, usage) is read from files and /proc, never from memory, so a new instance can adopt a
handle made by an old one. See docs/runtimes/process.md for the conventions.

Handle (JSON, no secrets)::

    {"runtime": "process", "deployment_id": 7, "workdir": "/…/7", "port": 41234,
     "memory_mb": 256, "cpu_millicores": 500, "limits": "cgroup-v1",
     "supervisor": {"pid": 100, "start_time": 123456}, "app": {"pid": 101, "start_time": 123457},
     "group": {cgroup dirs and files, see cgroups.Group} | null}

Log cursor: `{"stdout": byte offset, "stderr": byte offset}` into the workdir's log files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import marshal
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from studios.runtimes import cgroups, git
from studios.runtimes.base import Exit, Handle, LaunchError, LaunchSpec, LogCursor, LogLine, Reporter, Runtime, RuntimeEnv, RuntimeSettings, Status, Usage
from studios.runtimes.process import command as process_command
from studios.runtimes.process import logs as process_logs
from studios.runtimes.process import recipes
from studios.runtimes.process import supervisor as process_supervisor

log = logging.getLogger("studios.runtimes.process")
MIB = 1024 * 1024
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUPERVISOR_ENV = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
SPARE_DELAY_SECONDS = 0.025
"""How long after a deploy's app was started the next spare supervisor is started
(`ProcessRuntime._keep_spare`): late enough not to compete with a small app's own start for the
CPU, early enough that deploys a tenth of a second apart each find one (with 0.1 s every other
one did not)."""
SPARE_GROUP_PREFIX = "next-"
"""A deployment's cgroup is `deployment-<id>-<random>`, or `next-<random>` when it was made
ahead, for the spare supervisor's child to wait in (`ProcessRuntime._make_spare`)."""
STATE_FILES = ("process-app.json", "process-exit.json", "process-usage.json", "stdout.log", "stderr.log")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(ident: Mapping[str, Any] | None) -> bool:
    """The process `{"pid", "start_time"}` exists, is the same one (not a reused pid), and is
    not a zombie."""
    if not ident or not ident.get("pid"):
        return False
    try:  # os.open and one read, not Path.read_bytes: a third of the time (~16 against 48 µs),
        # and the usage sampler asks this of every deployment every 2 s
        fd = os.open(f"/proc/{int(ident['pid'])}/stat", os.O_RDONLY)
    except OSError:
        return False
    try:
        data = os.read(fd, 4096)
    except OSError:
        return False
    finally:
        os.close(fd)
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0] not in (b"Z", b"X") and int(fields[19]) == ident.get("start_time")


def _signal_group(ident: Mapping[str, Any] | None, sig: int) -> None:
    """Signal the app's process group, only if the app is still the process we started."""
    if _alive(ident):
        try:
            os.killpg(int(ident["pid"]), sig)  # type: ignore[index]
        except (ProcessLookupError, PermissionError):
            pass


def _pipe_capacity(supervisor: subprocess.Popen[bytes]) -> int:
    """What the supervisor's stdin pipe holds before a write blocks (64 KiB by default; less for
    a user past the kernel's pipe-user-pages-soft): a request this size or smaller is written on
    the event loop, a larger one in a thread."""
    assert supervisor.stdin is not None
    try:
        return int(fcntl.fcntl(supervisor.stdin.fileno(), fcntl.F_GETPIPE_SZ))
    except OSError:
        return 0


def _hand_over(supervisor: subprocess.Popen[bytes], request: bytes) -> None:
    """Send the supervisor its request (its config file and the app's environment) on its stdin
    (it waits for them before anything else; a spare one has waited since it was started)."""
    assert supervisor.stdin is not None
    try:
        supervisor.stdin.write(request)
        supervisor.stdin.close()
    except BrokenPipeError:  # it died at once: _await_app reports why
        pass


def _own(directory: Path, uid: int) -> None:
    """Give the app's directory (and the checkout in it) to the app's user."""
    os.chown(directory, uid, uid)
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


async def _exit_of(ident: Mapping[str, Any] | None, timeout: float) -> None:
    """Return when the process `{"pid", "start_time"}` exits (a pidfd becomes readable), or
    after `timeout` seconds, or at once if it is not that process any more."""
    if not _alive(ident):
        return
    assert ident is not None
    try:
        fd = os.pidfd_open(int(ident["pid"]))
    except OSError:  # gone already, or a kernel without pidfds: a slow poll
        await asyncio.sleep(min(timeout, 1.0))
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    try:
        if not _alive(ident):  # the pid was reused between the check and the open
            return
        loop.add_reader(fd, lambda: None if done.done() else done.set_result(None))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _free_port(taken: Mapping[int, int]) -> int:
    """A port free now and not in `taken`. The kernel may offer a port again as soon as its
    probe is closed, and an app binds its $PORT only when it has started (a second or more under
    load): without `taken`, two deployments started together were once given the same port, and
    the second found the first one's app answering on it."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port
    raise LaunchError("no free port for the app on 127.0.0.1")


def exit_message(record: Mapping[str, Any], memory_mb: int | None) -> Exit:
    """The user-facing `Exit` for a supervisor's exit record."""
    code, sig, oom = record.get("code"), record.get("signal"), bool(record.get("oom_killed"))
    if record.get("error"):
        message = str(record["error"])
    elif oom:
        message = f"killed: out of memory (limit {memory_mb} MB)" if memory_mb else "killed: out of memory"
    elif sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        message = f"killed by signal {sig} ({name})"
    else:
        message = f"exited with code {code}"
    return Exit(code=code, signal=sig, oom_killed=oom, message=message)


@dataclasses.dataclass(frozen=True)
class _Spare:
    """A supervisor started ahead of the next deploy and, in a cgroup mode, the group (no
    limits yet) its child waits in."""

    supervisor: subprocess.Popen[bytes]
    group: cgroups.Group | None


class ProcessSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIOS_PROCESS_", extra="ignore", populate_by_name=True)

    image_commands: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("STUDIOS_PROCESS_IMAGE_COMMANDS", "STUDIOS_IMAGE_COMMANDS"),
        description='JSON map of image name (or name:tag) to the host command run for it, e.g. {"jupyter/base-notebook": "jupyter lab --port $PORT"}. Also read from STUDIOS_IMAGE_COMMANDS.',
    )
    cgroups: Literal["auto", "v1", "v2", "off"] = Field("auto", description="Limits: cgroup v1, then v2, then rlimits (auto); or force one; off: rlimits only.")
    cgroup_name: str = Field("studios-process", description="Name of the cgroup under which deployments' cgroups are made.")
    start_timeout: float = Field(10.0, description="Seconds the supervisor may take to start the app's process.")
    run_as: Literal["author", "service"] = Field(
        "author",
        description="author: each app runs as a user of its own per author (uid = uid_base + the author's id), which can read neither the service's files nor other authors' apps (needs root). service: apps run with the service's own privileges (a single-user setup; `studios serve` warns).",
    )
    uid_base: int = Field(270000, ge=1000, description="Apps of the author with id N run as uid and gid uid_base + N (run_as=author).")
    apps_dir: Path | None = Field(None, description="Where apps' working directories are made, outside the service's data directory. Default: /var/lib/studios-apps/<instance> (run_as=author), else <data dir>/runtimes/process/apps.")

    @field_validator("image_commands", mode="before")
    @classmethod
    def _parse_json_map(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value


class ProcessRuntime(Runtime):
    """Runs deployments as supervised host processes, limited by cgroups where possible.

    Its directory (`env.data_dir`) holds `state/` (a copy of every live handle, for `orphans`)
    and `deployments/<id>/` (the supervisor's files and logs) with the app's own working
    directory `deployments/<id>/app/` inside (the checkout, if any; nothing of ours).
    `limits_mode` says what is in force: "cgroup-v1", "cgroup-v2" or "rlimit" (`limits_reason`
    says why cgroups could not be used). `base_env`: the environment every app starts from
    (default: PATH and LANG of the service).
    """

    name = "process"
    settings_model = ProcessSettings
    settings: ProcessSettings

    @classmethod
    def available(cls, settings: RuntimeSettings) -> str | None:
        assert isinstance(settings, ProcessSettings)
        if settings.run_as == "author" and os.geteuid() != 0:
            return (
                "running each author's apps as a user of its own needs root; to run apps with this "
                "service's own privileges (one user's machine), set STUDIOS_PROCESS_RUN_AS=service"
            )
        return None

    def uid_of(self, user_id: int) -> int | None:
        """The uid (and gid) an app of this author runs as; None: the service's own."""
        return self.settings.uid_base + user_id if self.separate_users else None

    def __init__(self, settings: ProcessSettings, env: RuntimeEnv, *, base_env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.hierarchy = cgroups.detect(settings.cgroups, name=settings.cgroup_name)
        self.limits_mode: cgroups.Mode = self.hierarchy.mode
        self.limits_reason = self.hierarchy.reason
        self.state_dir = env.data_dir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.deployments_dir = env.data_dir / "deployments"
        self.image_commands = {**recipes.installed(), **settings.image_commands}
        self.base_env = dict(
            base_env
            if base_env is not None
            else {"PATH": os.environ.get("PATH", DEFAULT_PATH), "LANG": os.environ.get("LANG", "C.UTF-8")}
        )
        self.start_timeout = settings.start_timeout
        self.separate_users = settings.run_as == "author"
        if not self.separate_users:
            log.warning(
                "studios: process runtime: apps run with this service's own privileges (STUDIOS_PROCESS_RUN_AS=service): "
                "any user who can deploy can read the service's secrets and database; use it only on one person's machine"
            )
        default_apps = Path("/var/lib/studios-apps") / env.instance if self.separate_users else env.data_dir / "apps"
        self.apps_dir = settings.apps_dir or default_apps
        self.apps_dir.mkdir(parents=True, exist_ok=True)
        self.apps_dir.chmod(0o711)  # each app can reach its own directory, and list none
        for private in (env.data_dir, self.state_dir):
            private.chmod(0o700)  # apps never read the runtime's files
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._spare: _Spare | None = None
        self._spare_timer: asyncio.TimerHandle | None = None
        self._spare_coming: asyncio.Task[None] | None = None
        """The next spare, being started in a worker thread (`_make_spare`)."""
        self._closed = False
        self._usage_seen: dict[int, tuple[tuple[int, int] | None, Usage]] = {}
        """deployment id -> (its usage file's mtime and size, the usage read then)"""
        self._ports: dict[int, int] = {}
        """port -> deployment id: the $PORT of every app this runtime started or adopted and has
        not cleaned up (never handed to another app meanwhile)."""
        self._files = process_logs.FileWatcher()
        if self.limits_mode != "rlimit":
            cgroups.remove_stale(self.hierarchy, SPARE_GROUP_PREFIX, older_than=60.0)

    # -- start -----------------------------------------------------------------------------

    async def start(self, spec: LaunchSpec, report: Reporter) -> Handle:
        workdir = self.deployments_dir / str(spec.deployment_id)
        app_dir = self.apps_dir / str(spec.deployment_id)
        for old in (workdir, app_dir):
            if old.exists():  # a left-over of an interrupted start
                await asyncio.to_thread(shutil.rmtree, old, True)
        workdir.mkdir(parents=True, mode=0o700)
        app_dir.mkdir(parents=True, mode=0o700)
        checkout = None
        if spec.source is not None:
            try:
                await git.fetch(spec.source, app_dir, report)
            except git.CheckoutError as error:
                raise LaunchError(str(error)) from None
            checkout = app_dir
        if checkout is None and spec.image:
            for path in recipes.example_files(spec.image, self.image_commands):
                await asyncio.to_thread(shutil.copyfile, path, app_dir / path.name)
        uid = self.uid_of(spec.user_id)
        if uid is not None:
            if checkout is None:  # a few example files at most
                _own(app_dir, uid)
            else:
                await asyncio.to_thread(_own, app_dir, uid)
            report(f"runs as its author's own user (uid {uid})")
        argv, cwd = process_command.resolve(spec, app_dir, checkout, self.image_commands, report)
        spare = await self._take_spare()
        joined = spare.group if spare is not None else None  # the group the spare's child is in
        group = self._spare_group(spec, joined, report) if joined is not None else None
        limits: cgroups.Mode = self.limits_mode
        if group is None:
            if spare is not None and joined is not None:  # its group could not be taken: nor can the spare
                await asyncio.to_thread(self._end_spare, spare)
                spare, joined = None, None
            group, limits = self._make_group(spec, report)
        port = _free_port(self._ports)
        self._ports[port] = spec.deployment_id
        handed = False
        try:
            user = {"USER": f"studios-user-{spec.user_id}", "LOGNAME": f"studios-user-{spec.user_id}"} if uid is not None else {}
            env = {**self.base_env, **user, "HOME": str(app_dir), **spec.env, **spec.secret_env, "PORT": str(port)}
            config = {
                "argv": argv,
                "cwd": str(cwd),
                "workdir": str(workdir),
                "group": group.to_json() if group else None,
                "joined": joined is not None,  # the spare's child is in the group already
                "rlimit_as_bytes": spec.memory_mb * MIB if spec.memory_mb and group is None else None,
                "sample_interval": 0.5,
                "uid": uid,
                "gid": uid,
            }
            config_path = workdir / "process-supervisor.marshal"  # the supervisor reads it without imports
            config_path.write_bytes(marshal.dumps(config))
            supervisor = spare.supervisor if spare is not None else await self._spawned()
            self._children[supervisor.pid] = supervisor
            handed = True
            request = marshal.dumps({"config": str(config_path), "env": env})
            if len(request) <= _pipe_capacity(supervisor):  # into the empty pipe at once: no thread's wake-up on the way
                _hand_over(supervisor, request)
            else:
                await asyncio.to_thread(_hand_over, supervisor, request)
            handle: Handle = {
                "runtime": self.name,
                "deployment_id": spec.deployment_id,
                "workdir": str(workdir),
                "app_dir": str(app_dir),
                "uid": uid,
                "port": port,
                "memory_mb": spec.memory_mb,
                "cpu_millicores": spec.cpu_millicores,
                "limits": limits,
                "supervisor": {"pid": supervisor.pid, "start_time": process_supervisor.start_time(supervisor.pid)},
                "app": None,
                "group": group.to_json() if group else None,
            }
            self._save(handle)
            handle["app"] = await self._await_app(handle, supervisor)
            self._save(handle)
            self._keep_spare()
            return handle
        except BaseException:
            self._release_port(spec.deployment_id)
            if spare is not None and not handed:  # taken but never used: it and its group go
                asyncio.get_running_loop().run_in_executor(None, self._end_spare, spare)
            elif group is not None and not handed:  # made for this deploy, never joined
                asyncio.get_running_loop().run_in_executor(None, cgroups.remove, group)
            raise

    def _release_port(self, deployment_id: int) -> None:
        for port in [p for p, owner in self._ports.items() if owner == deployment_id]:
            del self._ports[port]

    # -- supervisors -------------------------------------------------------------------------

    def _spawn_supervisor(self, join: list[str] | None = None) -> subprocess.Popen[bytes]:
        """A supervisor that waits on its stdin for what to run (`_hand_over`). It gets a fixed
        minimal environment (it is root when apps run as their authors' users); the app's, which
        users choose, reaches it on stdin and only the app. Its stderr goes to the deployment's
        `process-supervisor.log` once it knows the deployment. With `join` (a spare's group's
        `cgroup.procs` files) it forks the app's child into that group at once."""
        return subprocess.Popen(
            [sys.executable, "-I", "-S", process_supervisor.__file__, *(["--join", *join] if join else [])],
            env=SUPERVISOR_ENV,
            cwd="/",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def _spawned(self) -> subprocess.Popen[bytes]:
        """A new supervisor, started in a worker thread: `Popen` returns only once the child has
        exec'd, which on a busy machine took ~5 ms of the event loop's time (py-spy, during
        `bench/deploy_bench.py`). Cancelled meanwhile, the supervisor still comes: it is told
        to go (its stdin closed before any deployment reached it, it exits) and reaped later."""
        spawning = asyncio.ensure_future(asyncio.to_thread(self._spawn_supervisor))
        try:
            return await asyncio.shield(spawning)
        except asyncio.CancelledError:
            spawning.add_done_callback(self._dismiss)
            raise

    def _dismiss(self, spawning: asyncio.Future[subprocess.Popen[bytes]]) -> None:
        if spawning.cancelled() or spawning.exception() is not None:
            return
        supervisor = spawning.result()
        self._children[supervisor.pid] = supervisor
        with contextlib.suppress(OSError):
            if supervisor.stdin is not None:
                supervisor.stdin.close()

    @property
    def spare_pid(self) -> int | None:
        """The pid of the spare supervisor waiting for the next deploy, if there is one."""
        return self._spare.supervisor.pid if self._spare is not None else None

    async def _take_spare(self) -> _Spare | None:
        """The spare, started after the last deploy and since waiting with Python started (an
        interpreter's start, ~13 ms, is then not part of this deploy's time) and, in a cgroup
        mode, with the app's child already in the group made for this deploy; or None. One
        being started now is awaited: it is further on than a new one would be."""
        if self._spare is None and self._spare_coming is not None:
            await asyncio.wait({self._spare_coming})
        spare, self._spare = self._spare, None
        if self._spare_timer is not None:
            self._spare_timer.cancel()
            self._spare_timer = None
        if spare is not None and spare.supervisor.poll() is not None:
            await asyncio.to_thread(self._end_spare, spare)
            return None
        return spare

    def _keep_spare(self) -> None:
        """Start the next spare supervisor a moment after this deploy (not at once: its start
        would compete for the CPU with the app that is starting now)."""
        if self._spare is None and self._spare_timer is None and self._spare_coming is None and not self._closed:
            self._spare_timer = asyncio.get_running_loop().call_later(SPARE_DELAY_SECONDS, self._begin_spare)

    def _begin_spare(self) -> None:
        self._spare_timer = None
        if self._spare is None and self._spare_coming is None and not self._closed:
            self._spare_coming = asyncio.ensure_future(self._make_spare())

    async def _make_spare(self) -> None:
        """The next spare, made in a worker thread (`_new_spare`): its cgroup's creation and
        `Popen`, which returns only once the child has exec'd, are not the event loop's time."""
        try:
            spare = await asyncio.to_thread(self._new_spare)
        except OSError as error:
            log.warning("could not start a spare process supervisor: %s", error)
            return
        finally:
            self._spare_coming = None
        if self._spare is not None or self._closed:  # closed meanwhile: it goes
            await asyncio.to_thread(self._end_spare, spare)
            return
        self._spare = spare

    def _new_spare(self) -> _Spare:
        """In a cgroup mode the spare gets the next deploy's group now, without limits, and its
        child joins it while no deploy waits: joining a cgroup v1 can wait for an RCU grace
        period in the kernel (6-19 ms on this machine), which used to be part of every deploy."""
        group = None
        if self.limits_mode != "rlimit":
            try:
                group = cgroups.create(self.hierarchy, f"{SPARE_GROUP_PREFIX}{secrets.token_hex(4)}", None, None)
            except OSError as error:  # the deploy makes its own group (and says why if it cannot)
                log.info("could not make a cgroup for the spare supervisor: %s", error)
        try:
            return _Spare(self._spawn_supervisor(group.procs_files if group else None), group)
        except OSError:
            if group is not None:
                cgroups.remove(group)
            raise

    @staticmethod
    def _end_spare(spare: _Spare) -> None:
        """Its stdin closed before any deployment reached it, a spare exits at once (and its
        waiting child with it); then its group goes."""
        with contextlib.suppress(OSError):
            if spare.supervisor.stdin is not None:
                spare.supervisor.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            spare.supervisor.wait(timeout=5)
        if spare.group is not None:
            cgroups.remove(spare.group)

    @staticmethod
    def _wanted(spec: LaunchSpec) -> list[str]:
        wanted = []
        if spec.memory_mb:
            wanted.append(f"memory {spec.memory_mb} MB")
        if spec.cpu_millicores:
            wanted.append(f"cpu {spec.cpu_millicores} millicores")
        return wanted

    def _spare_group(self, spec: LaunchSpec, spare: cgroups.Group, report: Reporter) -> cgroups.Group | None:
        """The spare's group made the deployment's, with its limits; None if it cannot be."""
        try:
            group = cgroups.apply_limits(self.hierarchy, spare, spec.memory_mb, spec.cpu_millicores)
        except OSError as error:
            log.warning("deployment %s: the spare supervisor's cgroup could not be used (%s); making another", spec.deployment_id, error)
            return None
        report(f"limits: {', '.join(self._wanted(spec)) or 'none'} ({self.limits_mode})")
        return group

    def _make_group(self, spec: LaunchSpec, report: Reporter) -> tuple[cgroups.Group | None, cgroups.Mode]:
        """The deployment's cgroup with its limits, or None (rlimit fallback), and the mode."""
        wanted = self._wanted(spec)
        if self.limits_mode != "rlimit":
            leaf = f"deployment-{spec.deployment_id}-{secrets.token_hex(3)}"
            try:
                group = cgroups.create(self.hierarchy, leaf, spec.memory_mb, spec.cpu_millicores)
                report(f"limits: {', '.join(wanted) or 'none'} ({self.limits_mode})")
                return group, self.limits_mode
            except OSError as error:
                reason = f"cannot create a cgroup ({error.strerror}: {error.filename})"
        else:
            reason = f"cgroups unavailable: {self.limits_reason}"
        if wanted:
            report(
                f"limits: {reason}; memory limited with RLIMIT_AS, cpu not limited"
                if spec.memory_mb
                else f"limits: {reason}; cpu not limited"
            )
        return None, "rlimit"

    async def _await_app(self, handle: Handle, supervisor: subprocess.Popen[bytes]) -> dict[str, Any]:
        """Wait (bounded) for the supervisor to report the app's pid, or its failure to start it."""
        workdir = Path(handle["workdir"])
        deadline = time.monotonic() + self.start_timeout
        while True:
            app = _read_json(workdir / "process-app.json")
            if app is not None:
                return app
            record = _read_json(workdir / "process-exit.json")
            if record is not None or supervisor.poll() is not None or time.monotonic() > deadline:
                # The supervisor writes the app's record before its exit: an app that ran and
                # ended between the two reads above was started (its ending is the watch's).
                app = _read_json(workdir / "process-app.json")
                if app is not None:
                    return app
                break
            await asyncio.sleep(0.002)
        if record is None:
            supervisor.kill()
            log = (workdir / "process-supervisor.log").read_text(errors="replace").strip().splitlines()
            record = {"error": "the process supervisor failed: " + (log[-1] if log else "no app started in time")}
        await self.cleanup(handle)
        raise LaunchError(str(record.get("error") or exit_message(record, handle["memory_mb"]).message))

    # -- state -----------------------------------------------------------------------------

    def _save(self, handle: Handle) -> None:
        path = self.state_dir / f"{handle['deployment_id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(handle))
        os.replace(tmp, path)

    def _reap(self, handle: Handle | None = None) -> None:
        """Collect exited supervisors that are our children (no zombies): the handle's own, or
        (no handle) all of them. Per handle, so a follower's check costs one waitpid, not one
        per live deployment."""
        if handle is None:
            pids = list(self._children)
        else:
            pid = (handle.get("supervisor") or {}).get("pid")
            pids = [pid] if pid in self._children else []
        for pid in pids:
            if self._children[pid].poll() is not None:
                del self._children[pid]

    def _record(self, handle: Handle) -> dict[str, Any] | None:
        return _read_json(Path(handle["workdir"]) / "process-exit.json")

    def _ended(self, handle: Handle) -> bool:
        """Ended and fully logged (exit record), or nothing of it is left alive."""
        self._reap(handle)
        if self._record(handle) is not None:
            return True
        return not (_alive(handle.get("supervisor")) or _alive(handle.get("app")))

    # -- contract --------------------------------------------------------------------------

    def address(self, handle: Handle) -> tuple[str, int]:
        return "127.0.0.1", int(handle["port"])

    async def watch(self, handle: Handle) -> AsyncIterator[Status]:
        """Waits on the supervisor's exit through a pidfd (the supervisor writes the exit
        record, then exits): no polling while the app runs."""
        yield Status("running", running=True)
        while (ended := await self.poll(handle)) is None:
            await _exit_of(handle.get("supervisor") if _alive(handle.get("supervisor")) else handle.get("app"), self.watch_interval * 30)
        self._files.poke(Path(handle["workdir"]))  # its log follower reads the tail now
        yield Status(ended.message, running=False, exit=ended)

    async def poll(self, handle: Handle) -> Exit | None:
        self._reap(handle)
        record = self._record(handle)
        if record is None and (_alive(handle.get("supervisor")) or _alive(handle.get("app"))):
            return None
        record = record or self._record(handle)  # the supervisor may have just written it
        if record is None:
            return Exit(None, None, False, "ended, exit status unknown: its supervisor was killed")
        return exit_message(record, handle.get("memory_mb"))

    async def stop(self, handle: Handle, grace_seconds: float) -> Exit:
        ended = await self.poll(handle)
        if ended is not None:
            return ended
        _signal_group(handle.get("app"), signal.SIGTERM)
        ended = await self._wait_exit(handle, grace_seconds)
        if ended is None:
            self._kill(handle)
            ended = await self._wait_exit(handle, 10.0)
        return ended or Exit(None, signal.SIGKILL, False, "killed by signal 9 (SIGKILL)")

    def _kill(self, handle: Handle) -> None:
        _signal_group(handle.get("app"), signal.SIGKILL)
        if handle.get("group"):
            cgroups.kill_all(cgroups.Group.from_json(handle["group"]))

    async def _wait_exit(self, handle: Handle, seconds: float) -> Exit | None:
        deadline = time.monotonic() + seconds
        while (ended := await self.poll(handle)) is None and time.monotonic() < deadline:  # noqa: ASYNC110 (polls files and /proc: no event to await)
            await asyncio.sleep(0.01)
        return ended

    async def usage(self, handle: Handle) -> Usage:
        """The supervisor keeps the peaks in `process-usage.json` (rewritten when one rises):
        while it lives and that file is unchanged (one stat), the last answer stands; otherwise
        the file and the cgroup's live peak are read."""
        try:
            stat = os.stat(handle["workdir"] + "/process-usage.json")  # a str path: a quarter of a Path's cost
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None
        dep_id = int(handle["deployment_id"])
        cached = self._usage_seen.get(dep_id)
        if key is not None and cached is not None and cached[0] == key and _alive(handle.get("supervisor")):
            return cached[1]
        usage = self._usage(handle)  # two small files; read on the loop, as every other state file is
        self._usage_seen[dep_id] = (key, usage)
        return usage

    def _usage(self, handle: Handle) -> Usage:
        record = _read_json(Path(handle["workdir"]) / "process-usage.json") or {}
        memory, cpu = record.get("max_memory_bytes"), record.get("max_cpu_millicores")
        if handle.get("group"):
            live = cgroups.read_memory_peak(cgroups.Group.from_json(handle["group"]))
            if live is not None and (memory is None or live > memory):
                memory = live
        return Usage(
            max_memory_mb=round(memory / MIB, 1) if memory is not None else None,
            max_cpu_millicores=round(cpu, 1) if cpu is not None else None,
        )

    def logs(self, handle: Handle, cursor: LogCursor | None) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
        workdir = Path(handle["workdir"])
        paths: dict[str, Path] = {stream: workdir / f"{stream}.log" for stream in process_logs.STREAMS}
        return process_logs.follow(paths, cursor, lambda: self._ended(handle), self._files)

    async def adopt(self, handle: Handle) -> bool:
        if handle.get("runtime") != self.name or self._record(handle) is not None:
            return False
        if not _alive(handle.get("app")):
            return False
        if handle.get("port"):
            self._ports[int(handle["port"])] = int(handle["deployment_id"])
        return True

    async def cleanup(self, handle: Handle) -> None:
        if not self._ended(handle):
            self._kill(handle)
            deadline = time.monotonic() + 5.0
            while not self._ended(handle) and time.monotonic() < deadline:  # noqa: ASYNC110 (polls files and /proc: no event to await)
                await asyncio.sleep(0.01)
        # The supervisor exits right after writing the exit record: let it, before its files go.
        await _exit_of(handle.get("supervisor"), 5.0)
        if _alive(handle.get("supervisor")):
            os.kill(int(handle["supervisor"]["pid"]), signal.SIGKILL)
        if handle.get("group"):
            await asyncio.to_thread(cgroups.remove, cgroups.Group.from_json(handle["group"]))
        self._usage_seen.pop(int(handle["deployment_id"]), None)
        self._release_port(int(handle["deployment_id"]))
        (self.state_dir / f"{handle['deployment_id']}.json").unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, handle["workdir"], True)
        if handle.get("app_dir"):
            await asyncio.to_thread(shutil.rmtree, handle["app_dir"], True)
        self._reap()

    async def orphans(self, known: set[int]) -> list[int]:
        # Sync on purpose (a read of each live handle, every reconcile): awaited in a worker
        # thread, a reconcile cancelled at shutdown could leave the service's shutdown waiting.
        return self._orphans(known)

    def _orphans(self, known: set[int]) -> list[int]:
        found = []
        for path in self.state_dir.glob("*.json"):
            if path.stem.isdigit() and int(path.stem) in known:
                continue  # named by its deployment's id: no need to read a known one
            handle = _read_json(path)
            if handle is None or handle.get("deployment_id") in known:
                continue
            if _alive(handle.get("supervisor")) or _alive(handle.get("app")):
                found.append(int(handle["deployment_id"]))
        return sorted(found)

    async def remove_orphan(self, deployment_id: int) -> None:
        handle = _read_json(self.state_dir / f"{deployment_id}.json")
        if handle is not None:
            await self.stop(handle, grace_seconds=2.0)
            await self.cleanup(handle)

    async def close(self) -> None:
        self._closed = True
        if self._spare_timer is not None:
            self._spare_timer.cancel()
            self._spare_timer = None
        if self._spare_coming is not None:  # not cancelled: its thread would start it anyway
            await asyncio.wait({self._spare_coming})
        spare, self._spare = self._spare, None
        if spare is not None:
            await asyncio.to_thread(self._end_spare, spare)
        self._files.close()
        self._reap()
