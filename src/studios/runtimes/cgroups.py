"""Control groups for the host-process runtime: find them, create one per deployment, limit it.

This module owns everything that knows the difference between cgroup v1 (one hierarchy per
controller, `memory.limit_in_bytes`, `cpu.cfs_quota_us`, `cpuacct.usage`) and v2 (one unified
hierarchy, `memory.max`, `cpu.max`, `cpu.stat`). It hands the rest of the runtime a plain
`Group`: the directories it created and the names of the files to join, sample and read, so
the supervisor (which must stay importable without this package) only ever reads files.

Groups are nested under the service's own cgroup (read from /proc/self/cgroup) in a
`studios-process/` child, never at the root of a hierarchy, so a deployment can never escape the limits
the service itself runs under. When nothing can be created, `detect` says why and the runtime
falls back to rlimits (see docs/runtimes/process.md). It must not touch processes itself,
except to kill the members of a group it is asked to remove.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import time
from pathlib import Path
from typing import Literal

Mode = Literal["cgroup-v1", "cgroup-v2", "rlimit"]

CPU_PERIOD_US = 100_000


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """Where deployment groups are created: per controller directory (v1) or one (v2)."""

    mode: Mode
    parents: dict[str, Path]
    """v1: {"memory": ..., "cpu": ..., "cpuacct": ...}; v2: {"unified": ...}."""
    reason: str = ""
    """Why the runtime fell back to rlimits (empty in a cgroup mode)."""


@dataclasses.dataclass(frozen=True)
class Group:
    """One deployment's cgroup: what to create, join, sample and read. Plain data (JSON)."""

    dirs: list[str]
    procs_files: list[str]
    cpu_usage_file: str | None
    cpu_usage_unit: Literal["ns", "usec"]
    memory_peak_file: str | None
    memory_current_file: str | None
    oom_file: str | None
    memory_failcnt_file: str | None

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Group:
        return cls(**data)  # type: ignore[arg-type]


def _mounts(mountinfo: Path) -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    found = []
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((fields[4], rfields[0], set(rfields[2].split(","))))
    return found


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def _probe(parent: Path) -> None:
    """Create the `studios` parent if needed and prove a child can be made there."""
    parent.mkdir(exist_ok=True)
    probe = parent / f"probe-{os.getpid()}-{time.monotonic_ns()}"
    probe.mkdir()
    probe.rmdir()
    _rmdir(parent)  # made again by `create`; nothing is left behind by a mere probe


def detect(
    prefer: Literal["auto", "v1", "v2", "off"] = "auto",
    *,
    name: str = "studios-process",
    mountinfo: Path = Path("/proc/self/mountinfo"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
) -> Hierarchy:
    """Find where this service may create deployment cgroups, or why it can't."""
    if prefer == "off":
        return Hierarchy("rlimit", {}, "cgroups disabled by configuration")
    try:
        mounts, own = _mounts(mountinfo), _own_paths(proc_cgroup)
    except OSError as error:
        return Hierarchy("rlimit", {}, f"cannot read cgroup mounts: {error}")
    reasons = []
    if prefer in ("auto", "v1"):
        parents: dict[str, Path] = {}
        for controller in ("memory", "cpu", "cpuacct"):
            for point, fstype, options in mounts:
                if fstype == "cgroup" and controller in options and controller in own:
                    parents[controller] = Path(point) / own[controller].lstrip("/") / name
                    break
        if "memory" in parents:
            try:
                for parent in parents.values():
                    _probe(parent)
                return Hierarchy("cgroup-v1", parents)
            except OSError as error:
                reasons.append(f"cgroup v1: {error.strerror} ({error.filename})")
        else:
            reasons.append("cgroup v1: no memory controller mounted")
    if prefer in ("auto", "v2"):
        unified = next((p for p, fstype, _ in mounts if fstype == "cgroup2"), None)
        if unified is None or "" not in own:
            reasons.append("cgroup v2: not mounted")
        else:
            base = Path(unified) / own[""].lstrip("/")
            try:
                available = set((base / "cgroup.controllers").read_text().split())
                if "memory" not in available:
                    raise OSError(errno.ENOENT, "memory controller not delegated", str(base))
                _enable(base, available & {"memory", "cpu"})
                _probe(base / name)
                return Hierarchy("cgroup-v2", {"unified": base / name})
            except OSError as error:
                reasons.append(f"cgroup v2: {error.strerror} ({error.filename})")
    return Hierarchy("rlimit", {}, "; ".join(reasons))


def _enable(directory: Path, controllers: set[str]) -> None:
    """Enable controllers for the children of a v2 group (fails with EBUSY if it has tasks)."""
    enabled = set((directory / "cgroup.subtree_control").read_text().split())
    missing = controllers - enabled
    if missing:
        (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(missing)))


def create(hierarchy: Hierarchy, leaf: str, memory_mb: int | None, cpu_millicores: int | None) -> Group:
    """Create the deployment's group `leaf` under every parent and apply the limits."""
    for _ in range(3):
        try:
            return _create(hierarchy, leaf, memory_mb, cpu_millicores)
        except FileNotFoundError:
            continue  # a parent was removed by a concurrent `remove`: make it again
    return _create(hierarchy, leaf, memory_mb, cpu_millicores)


def _create(hierarchy: Hierarchy, leaf: str, memory_mb: int | None, cpu_millicores: int | None) -> Group:
    made: list[Path] = []
    try:
        for parent in hierarchy.parents.values():
            parent.mkdir(exist_ok=True)  # `remove` takes it away when its last group goes
            if hierarchy.mode == "cgroup-v2":
                _enable(parent, set((parent / "cgroup.controllers").read_text().split()) & {"memory", "cpu"})
            (parent / leaf).mkdir()
            made.append(parent / leaf)
        if hierarchy.mode == "cgroup-v1":
            return _limit_v1({k: p / leaf for k, p in hierarchy.parents.items()}, memory_mb, cpu_millicores)
        return _limit_v2(hierarchy.parents["unified"] / leaf, memory_mb, cpu_millicores)
    except OSError:
        for directory in made:
            _rmdir(directory)
        raise


def apply_limits(hierarchy: Hierarchy, group: Group, memory_mb: int | None, cpu_millicores: int | None) -> Group:
    """Limits for a group made without them (`create(..., None, None)`, ahead of the deploy it is
    for, a process already waiting in it)."""
    dirs = {key: Path(directory) for key, directory in zip(hierarchy.parents, group.dirs, strict=True)}
    if hierarchy.mode == "cgroup-v1":
        return _limit_v1(dirs, memory_mb, cpu_millicores)
    return _limit_v2(dirs["unified"], memory_mb, cpu_millicores)


def remove_stale(hierarchy: Hierarchy, prefix: str, older_than: float) -> int:
    """Remove the empty groups named `prefix*` made more than `older_than` seconds ago (spares
    a service that was killed left behind); how many. A group with a process in it cannot be
    removed, and a younger one may be another service's, about to be joined."""
    removed = 0
    for parent in dict.fromkeys(hierarchy.parents.values()):
        try:
            candidates = [d for d in parent.iterdir() if d.name.startswith(prefix) and d.is_dir()]
        except OSError:
            continue
        for directory in candidates:
            try:
                if time.time() - directory.stat().st_mtime > older_than and _rmdir(directory):
                    removed += 1
            except OSError:
                continue
    return removed


def _limit_v1(dirs: dict[str, Path], memory_mb: int | None, cpu_millicores: int | None) -> Group:
    memory = dirs["memory"]
    if memory_mb:
        limit = str(memory_mb * 1024 * 1024)
        (memory / "memory.limit_in_bytes").write_text(limit)
        if (memory / "memory.memsw.limit_in_bytes").exists():
            (memory / "memory.memsw.limit_in_bytes").write_text(limit)
    cpu = dirs.get("cpu")
    if cpu_millicores and cpu is not None:
        (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        quota = max(1000, cpu_millicores * CPU_PERIOD_US // 1000)
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))
    acct = dirs.get("cpuacct")
    return Group(
        dirs=[str(d) for d in dirs.values()],
        procs_files=[str(d / "cgroup.procs") for d in dict.fromkeys(dirs.values())],
        cpu_usage_file=str(acct / "cpuacct.usage") if acct else None,
        cpu_usage_unit="ns",
        memory_peak_file=str(memory / "memory.max_usage_in_bytes"),
        memory_current_file=str(memory / "memory.usage_in_bytes"),
        oom_file=str(memory / "memory.oom_control"),
        memory_failcnt_file=str(memory / "memory.failcnt"),
    )


def _limit_v2(directory: Path, memory_mb: int | None, cpu_millicores: int | None) -> Group:
    if memory_mb:
        (directory / "memory.max").write_text(str(memory_mb * 1024 * 1024))
        if (directory / "memory.swap.max").exists():
            (directory / "memory.swap.max").write_text("0")
    if cpu_millicores and (directory / "cpu.max").exists():
        quota = max(1000, cpu_millicores * CPU_PERIOD_US // 1000)
        (directory / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
    peak = directory / "memory.peak"
    return Group(
        dirs=[str(directory)],
        procs_files=[str(directory / "cgroup.procs")],
        cpu_usage_file=str(directory / "cpu.stat"),
        cpu_usage_unit="usec",
        memory_peak_file=str(peak) if peak.exists() else None,
        memory_current_file=str(directory / "memory.current"),
        oom_file=str(directory / "memory.events"),
        memory_failcnt_file=None,
    )


def members(group: Group) -> set[int]:
    """Pids in the group (any hierarchy); empty once it is gone."""
    pids: set[int] = set()
    for procs in group.procs_files:
        try:
            pids.update(int(p) for p in Path(procs).read_text().split())
        except OSError:
            pass
    return pids


def kill_all(group: Group, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to every member of the group (used once the deployment is over)."""
    for pid in members(group):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def remove(group: Group, timeout: float = 5.0) -> None:
    """Kill what is left in the group and remove its directories (v1: every hierarchy), and
    the `studios` parents too once empty, so nothing is left under the service's cgroup."""
    deadline = time.monotonic() + timeout
    while True:
        kill_all(group)
        busy = [d for d in group.dirs if not _rmdir(Path(d))]
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for directory in group.dirs:
        _rmdir(Path(directory).parent)  # fails (harmlessly) while other deployments live


def _rmdir(directory: Path) -> bool:
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def read_oom_kills(group: Group) -> int:
    """How many processes the kernel OOM-killed in the group (v1 `memory.oom_control`, v2
    `memory.events`); on an old v1 kernel without that counter, `memory.failcnt` instead (a
    hit of the limit, which the caller must pair with a SIGKILL to call it an OOM kill)."""
    if group.oom_file:
        try:
            for line in Path(group.oom_file).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            return 0
    if group.memory_failcnt_file:
        try:
            return int(Path(group.memory_failcnt_file).read_text())
        except (OSError, ValueError):
            return 0
    return 0


def read_memory_peak(group: Group) -> int | None:
    """Peak memory in bytes since the group was made, or None when it can't be read."""
    for name in (group.memory_peak_file, group.memory_current_file):
        if name:
            try:
                return int(Path(name).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return None
