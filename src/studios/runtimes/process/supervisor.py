"""The supervisor of one host-process deployment: starts the app, keeps its logs, records its end.

Started detached by `ProcessRuntime` as `python -I -S process/supervisor.py` in a session of its
own, it waits on its stdin for its config file and the app's environment (a spare one is started
ahead of the next deploy, so the interpreter's start is not part of it), then outlives the
service: it is the app's parent, so only it can collect the exit status. It owns the files it
writes in the deployment's workdir and nothing else:

- `stdout.log`, `stderr.log`: every line the app wrote, each prefixed with the wall-clock time
  (`1718000000.123456 `) of the chunk it arrived in; a last line without a newline is ended
  with one when the app has exited.
- `process-app.json`: the app's pid and start time (clock ticks, from /proc/<pid>/stat).
- `process-usage.json`: peak memory (bytes) and peak cpu (millicores), rewritten as they grow.
- `process-exit.json`: code, signal, oom flag; written atomically once every log line is on
  disk, so its presence means "ended and fully logged".

It imports only the standard library (the runtime runs it in isolated mode, so the app's
environment, which the supervisor inherits and passes on, can't break it). The config names
the cgroup files to join and read; the supervisor knows nothing of cgroup versions.
"""

from __future__ import annotations

import marshal
import os
import sys
import time

# Only what starting the app needs is imported before it starts (the supervisor's start-up time
# is part of every deployment's time to ready); the rest comes after.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SIGTERM, SIGKILL = 15, 9  # Linux numbers; the signal module is imported only after the spawn
MAX_LINE = 1 << 18
"""A line longer than this (no newline yet) is cut and written as it is."""


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def write_json(path: str, data: dict[str, Any]) -> None:
    """Replace `path` atomically, so a reader sees the old or the new content, never half."""
    import json

    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        json.dump(data, out)
    os.replace(tmp, path)


def open_log(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def pump(fd: int, out: int) -> None:
    """Copy the app's pipe into the log `out`, one timestamp per chunk, in whole lines."""
    partial = b""

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]

    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            break
        prefix = b"%.6f " % time.time()
        data = partial + chunk if partial else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            partial = data
        else:
            complete, partial = data[:cut], data[cut + 1 :]
            write(prefix + complete.replace(b"\n", b"\n" + prefix) + b"\n")
        if len(partial) >= MAX_LINE:
            write(prefix + partial + b"\n")
            partial = b""
    if partial:
        write(b"%.6f " % time.time() + partial + b"\n")
    os.close(fd)
    os.close(out)


def read_int(path: str | None, key: str | None = None) -> int | None:
    """An integer file (`cpuacct.usage`) or the value of `key` in a flat keyed file."""
    if not path:
        return None
    try:
        with open(path) as source:
            text = source.read()
    except OSError:
        return None
    if key is None:
        return int(text.split()[0]) if text.strip() else None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def proc_status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cpu_ticks(pid: int) -> int | None:
    """utime + stime + cutime + cstime of the app, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return sum(int(f) for f in fields[11:15])


class Sampler:
    """Peak memory and peak cpu rate, from the cgroup when there is one, else from /proc."""

    def __init__(self, config: dict[str, Any], pid: int, usage_path: str) -> None:
        self.group: dict[str, Any] | None = config.get("group")
        self.pid = pid
        self.path = usage_path
        self.peak_memory: int | None = None
        self.peak_cpu: float | None = None
        self.last: tuple[float, float] | None = None
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.window = 0.8 * float(config.get("sample_interval", 0.5))

    def cpu_seconds(self) -> float | None:
        if self.group and self.group.get("cpu_usage_file"):
            if self.group["cpu_usage_unit"] == "ns":
                value = read_int(self.group["cpu_usage_file"])
                return None if value is None else value / 1e9
            value = read_int(self.group["cpu_usage_file"], "usage_usec")
            return None if value is None else value / 1e6
        ticks = proc_cpu_ticks(self.pid)
        return None if ticks is None else ticks / self.ticks

    def memory_bytes(self) -> int | None:
        if self.group:
            peak = read_int(self.group.get("memory_peak_file"))
            return peak if peak is not None else read_int(self.group.get("memory_current_file"))
        kb = proc_status_kb(self.pid, "VmHWM")
        return None if kb is None else kb * 1024

    def sample(self) -> None:
        changed = False
        now, cpu = time.monotonic(), self.cpu_seconds()
        if cpu is not None:
            if self.last is None:
                self.last = (now, cpu)
            elif now - self.last[0] >= self.window:
                # A rate over less than a few CFS periods says nothing about a quota.
                rate = max(0.0, (cpu - self.last[1]) / (now - self.last[0])) * 1000
                if self.peak_cpu is None or rate > self.peak_cpu:
                    self.peak_cpu, changed = rate, True
                self.last = (now, cpu)
        self.note_memory(self.memory_bytes())
        if changed:
            self.save()

    def note_memory(self, value: int | None) -> None:
        if value is not None and (self.peak_memory is None or value > self.peak_memory):
            self.peak_memory = value
            self.save()

    def save(self) -> None:
        write_json(self.path, {"max_memory_bytes": self.peak_memory, "max_cpu_millicores": self.peak_cpu})


def oom_killed(group: dict[str, Any] | None, code: int | None, sig: int | None) -> bool:
    """The kernel killed something in the group for memory and the app did not succeed."""
    if not group or (code == 0 and sig is None):
        return False
    count = read_int(group.get("oom_file"), "oom_kill")
    if count is not None:
        return count > 0
    failures = read_int(group.get("memory_failcnt_file"))
    return bool(failures) and sig == SIGKILL


def _enter(stdout: int, stderr: int, procs_files: list[str]) -> None:
    """In a forked child: its own session, default signals, the app's stdio, its cgroup.
    Joining a cgroup (v1) can wait for an RCU grace period in the kernel, 6-19 ms on this
    machine: a spare supervisor's child does it before the deploy (`Prepared`)."""
    import _signal

    os.setsid()
    for sig in ("SIGPIPE", "SIGXFSZ"):  # Python ignores these; the app must not inherit that
        _signal.signal(getattr(_signal, sig), _signal.SIG_DFL)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    for procs in procs_files:
        with open(procs, "w") as target:
            target.write(str(os.getpid()))


def _become(config: dict[str, Any]) -> None:
    """In the child, last: the limits, the app's user, its directory, then exec the app."""
    rlimit_as = config.get("rlimit_as_bytes")
    if rlimit_as:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = rlimit_as if hard == resource.RLIM_INFINITY else min(rlimit_as, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if config.get("uid") is not None:
        # The app's own user: it cannot read the service's files or other users' apps.
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
        os.umask(0o077)
    os.chdir(config["cwd"])
    os.execvpe(config["argv"][0], config["argv"], config["env"])


def _fail(status_w: int, error: BaseException) -> None:
    """In the child: send why it could not exec to the parent (then it exits)."""
    reason = getattr(error, "strerror", None) or str(error)
    os.write(status_w, f"{getattr(error, 'errno', 0) or 0}:{reason}".encode())


def _exec_result(pid: int, status_r: int) -> int:
    """The child's pid once it has exec'd the app (the status pipe closes on exec), or OSError
    with its reason."""
    failure = b""
    while chunk := os.read(status_r, 4096):
        failure += chunk
    os.close(status_r)
    if failure:
        os.waitpid(pid, 0)
        number, _, reason = failure.decode(errors="replace").partition(":")
        raise OSError(int(number or 0), reason)
    return pid


def _group_files(config: dict[str, Any]) -> list[str]:
    return list((config.get("group") or {}).get("procs_files", []))


def spawn(config: dict[str, Any], stdout: int, stderr: int) -> int:
    """Fork and exec the app in a new session, inside its cgroup or rlimit; its pid.

    Raises OSError with the child's reason when the exec fails (a status pipe, closed on a
    successful exec, carries it back)."""
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing here may return
        try:
            _enter(stdout, stderr, _group_files(config))
            _become(config)
        except BaseException as error:  # reported to the parent, then exit
            _fail(status_w, error)
        finally:
            os._exit(127)
    os.close(status_w)
    return _exec_result(pid, status_r)


class Prepared:
    """A child forked by a spare supervisor before any deploy reached it: in its session, with
    the app's stdio, already inside the cgroup the runtime made for the next deploy (`join`),
    waiting on a pipe for the config to exec. It exits when the pipe closes with nothing sent
    (the spare was not used)."""

    def __init__(self, join: list[str], stdout: int, stderr: int) -> None:
        order_r, self.order_w = os.pipe()
        self.status_r, status_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: nothing here may return
            try:
                os.close(self.order_w)
                _enter(stdout, stderr, join)
                data = b""
                while chunk := os.read(order_r, 1 << 16):
                    data += chunk
                if not data:
                    os._exit(0)
                config = marshal.loads(data)
                if not config.get("joined"):  # not the group made for it: join the deploy's now
                    for procs in _group_files(config):
                        with open(procs, "w") as target:
                            target.write(str(os.getpid()))
                _become(config)
            except BaseException as error:
                _fail(status_w, error)
            finally:
                os._exit(127)
        os.close(order_r)
        os.close(status_w)

    def start(self, config: dict[str, Any]) -> int:
        """Send the child its config; its pid once it has exec'd the app (OSError if not)."""
        view = memoryview(marshal.dumps(config))
        try:
            while view:
                view = view[os.write(self.order_w, view) :]
        finally:
            os.close(self.order_w)
        return _exec_result(self.pid, self.status_r)


def read_request() -> dict[str, Any] | None:
    """What to run, sent on stdin by the runtime: `{"config": path, "env": {...}}`, or None when
    stdin closes empty (a spare supervisor no deployment needed). The app's environment comes
    this way, never on disk and never in this process's own environment: the supervisor may run
    as root, and variables like LD_PRELOAD must reach only the app."""
    data = b""
    while chunk := os.read(0, 1 << 16):
        data += chunk
    os.close(0)
    request: dict[str, Any] | None = marshal.loads(data) if data else None
    return request


def main() -> int:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # A spare started with `--join <cgroup.procs>...` forks the app's child at once (`Prepared`).
    prepared = Prepared(sys.argv[2:], out_w, err_w) if sys.argv[1:2] == ["--join"] else None
    request = read_request()
    if request is None:
        return 0  # a spare no deployment needed: its prepared child sees the pipe close and exits
    workdir = os.path.dirname(request["config"])  # the deployment's: its config file is there
    supervisor_log = open_log(os.path.join(workdir, "process-supervisor.log"))  # this process's own errors, from here on
    os.dup2(supervisor_log, 2)
    os.close(supervisor_log)
    os.chdir(workdir)
    with open(request["config"], "rb") as source:
        config = marshal.load(source)
    config["env"] = request["env"]
    files = {name: os.path.join(workdir, name) for name in ("stdout.log", "stderr.log")}
    exit_path = os.path.join(workdir, "process-exit.json")
    logs = {name: open_log(path) for name, path in files.items()}
    try:
        try:
            pid = prepared.start(config) if prepared is not None else spawn(config, out_w, err_w)
        except BrokenPipeError:  # the prepared child is gone (killed before the deploy): a new one
            assert prepared is not None
            os.waitpid(prepared.pid, 0)
            pid = spawn(config, out_w, err_w)
    except OSError as error:
        reason = f"cannot start {config['argv'][0]!r}: {error.strerror or error}"
        os.write(logs["stderr.log"], b"%.6f %s\n" % (time.time(), reason.encode()))
        write_json(exit_path, {"code": 127, "signal": None, "oom_killed": False, "error": reason})
        return 0
    os.close(out_w)
    os.close(err_w)
    app_path = os.path.join(workdir, "process-app.json")
    with open(app_path + ".tmp", "w") as out:
        out.write(f'{{"pid": {pid}, "start_time": {start_time(pid) or 0}}}')
    os.replace(app_path + ".tmp", app_path)

    import signal
    import threading

    # A TERM to the supervisor itself is passed on: the app decides how to end.
    signal.signal(signal.SIGTERM, lambda *_: _signal_group(pid, SIGTERM))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pumps = [
        threading.Thread(target=pump, args=(out_r, logs["stdout.log"]), daemon=True),
        threading.Thread(target=pump, args=(err_r, logs["stderr.log"]), daemon=True),
    ]
    for thread in pumps:
        thread.start()
    sampler = Sampler(config, pid, os.path.join(workdir, "process-usage.json"))
    result: list[tuple[int, int, Any]] = []
    ended = threading.Event()

    def wait() -> None:
        result.append(os.wait4(pid, 0))
        ended.set()

    threading.Thread(target=wait, daemon=True).start()
    sampler.sample()
    while not ended.wait(config.get("sample_interval", 0.5)):
        sampler.sample()
    _, status, rusage = result[0]
    sampler.sample()
    if not config.get("group"):
        sampler.note_memory(rusage.ru_maxrss * 1024)
    # The deployment is over: whatever the app left behind in its group goes with it.
    _signal_group(pid, SIGKILL)
    for procs in (config.get("group") or {}).get("procs_files", []):
        for member in (read_text(procs) or "").split():
            try:
                os.kill(int(member), SIGKILL)
            except ProcessLookupError:
                pass
    for thread in pumps:
        thread.join(timeout=config.get("drain_seconds", 5.0))
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    sampler.save()
    write_json(
        exit_path,
        {"code": code, "signal": sig, "oom_killed": oom_killed(config.get("group"), code, sig), "ended_at": time.time()},
    )
    return 0


def read_text(path: str) -> str | None:
    try:
        with open(path) as source:
            return source.read()
    except OSError:
        return None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main())
