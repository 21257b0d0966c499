"""Per-deployment parent cgroups for Docker containers: where peak usage survives the exit.

Docker deletes a container's own cgroup when it exits, taking its counters with it. So every
container is started with `cgroup_parent` set to a cgroup of its own deployment
(`/studios/d-<id>` with the cgroupfs driver), which this module creates before the start and
removes in cleanup. Its hierarchical counters outlive the container:

- cgroup v1: `memory/<parent>/memory.max_usage_in_bytes` (peak) and
  `cpuacct/<parent>/cpuacct.usage` (cpu nanoseconds);
- cgroup v2: `<parent>/memory.peak` and `<parent>/cpu.stat` (`usage_usec`).

Peak cpu (millicores) is the highest rate of cpu time per wall time between two samples, and
at least the average over the whole life. Samples and the peak are kept in a small JSON state
file (given by the runtime, in the deployment's workdir) so a restarted service continues
from them. This module reads and writes files only: no Docker calls, no event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class CgroupLayout:
    """Where the daemon puts cgroups: its driver and version (from `docker info`) and the
    cgroupfs mount point as seen by this service."""

    driver: str = "cgroupfs"
    version: int = 1
    root: Path = Path("/sys/fs/cgroup")
    instance: str = "default"
    """The service instance: two services on one engine never share a parent cgroup."""

    def parent_for(self, deployment_id: int) -> str:
        """The `cgroup_parent` value handed to the engine for one deployment."""
        if self.driver == "systemd":
            # systemd nests "studios-d5.slice" under "studios.slice" by its naming rule.
            return f"studios-{self.instance}-d{deployment_id}.slice"
        return f"/studios/{self.instance}/d-{deployment_id}"

    def relative_path(self, deployment_id: int) -> str:
        """The parent cgroup's path below each hierarchy's mount point."""
        if self.driver == "systemd":
            return f"studios.slice/studios-{self.instance}.slice/studios-{self.instance}-d{deployment_id}.slice"
        return f"studios/{self.instance}/d-{deployment_id}"

    def paths(self, deployment_id: int) -> dict[str, str]:
        """Directories holding the counters: {"memory", "cpu"} (both the same dir on v2)."""
        rel = self.relative_path(deployment_id)
        if self.version == 2:
            unified = str(self.root / rel)
            return {"memory": unified, "cpu": unified}
        return {"memory": str(self.root / "memory" / rel), "cpu": str(self.root / "cpuacct" / rel)}


def create(paths: dict[str, str]) -> None:
    """Create the parent cgroups (the engine creates the other controllers' dirs itself).
    Failing (not root, read-only cgroupfs) only costs the measurements, so it is ignored."""
    for path in set(paths.values()):
        with contextlib.suppress(OSError):
            os.makedirs(path, exist_ok=True)


def remove(root: Path, relative: str) -> bool:
    """Remove the deployment's parent cgroup in every hierarchy, children first (Podman leaves
    a `conmon` child). A cgroup still holding processes refuses (EBUSY) and is left alone.
    True when nothing is left."""
    candidates = [root / relative]
    with contextlib.suppress(OSError):
        candidates += [entry / relative for entry in root.iterdir() if entry.is_dir()]
    left = False
    for path in candidates:
        if not path.is_dir():
            continue
        for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        try:
            path.rmdir()
        except OSError:
            left = True
    return not left


def leaf_of(paths: dict[str, str], container_id: str) -> str:
    """The container's own cgroup below the parent, as the engine named it: `<id>` (Docker,
    cgroupfs), `libpod-<id>` (Podman), or a systemd scope. Exists only while it runs."""
    base = Path(paths["cpu"])
    names = [container_id, f"libpod-{container_id}", f"docker-{container_id}.scope",
             f"libpod-{container_id}.scope"]
    for name in names:
        if (base / name).is_dir():
            return str(base / name)
    return str(base / container_id)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def peak_memory_bytes(paths: dict[str, str]) -> int | None:
    """Highest memory use of the deployment (hierarchical), or None if unreadable."""
    base = Path(paths["memory"])
    value = _read_int(base / "memory.max_usage_in_bytes")
    return value if value is not None else _read_int(base / "memory.peak")


def cpu_nanoseconds(paths: dict[str, str]) -> int | None:
    """Total cpu time used by the deployment so far (hierarchical), or None if unreadable."""
    base = Path(paths["cpu"])
    value = _read_int(base / "cpuacct.usage")
    if value is not None:
        return value
    try:
        for line in (base / "cpu.stat").read_text().splitlines():
            key, _, number = line.partition(" ")
            if key == "usage_usec":
                return int(number) * 1000
    except (OSError, ValueError):
        pass
    return None


def oom_kills(paths: dict[str, str]) -> int | None:
    """OOM kills counted in the parent (v2 `memory.events` is hierarchical; v1 has no
    hierarchical counter, so None there)."""
    try:
        for line in (Path(paths["memory"]) / "memory.events").read_text().splitlines():
            key, _, number = line.partition(" ")
            if key == "oom_kill":
                return int(number)
    except (OSError, ValueError):
        pass
    return None


class CpuSampler:
    """Peak cpu rate of one deployment, persisted in a JSON state file after every sample.

    State: {"first_ns", "first_wall", "last_ns", "last_wall", "peak_millicores"} (cpu counter
    in ns, wall clock in s). `sample()` is cheap (two small file reads and one write), so it is
    called directly from the event loop.
    """

    def __init__(self, paths: dict[str, str], state_file: Path | None) -> None:
        self.paths = paths
        self.state_file = state_file
        self.state: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        if self.state_file is None:
            return {}
        try:
            data = json.loads(self.state_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self.state))
            os.replace(tmp, self.state_file)

    def sample(self) -> float | None:
        """Read the counter now, update the peak, persist; return the peak (None: unreadable)."""
        used = cpu_nanoseconds(self.paths)
        if used is None:
            return self.peak()
        now = time.time()
        state = self.state
        if "first_ns" not in state:
            state.update(first_ns=used, first_wall=now, peak_millicores=0.0)
        else:
            rates = []
            if now > state["last_wall"] and used >= state["last_ns"]:
                rates.append((used - state["last_ns"]) / (now - state["last_wall"]) / 1e6)
            if now > state["first_wall"] and used >= state["first_ns"]:
                rates.append((used - state["first_ns"]) / (now - state["first_wall"]) / 1e6)
            state["peak_millicores"] = max([state.get("peak_millicores", 0.0), *rates])
        state.update(last_ns=used, last_wall=now)
        self._save()
        return float(state["peak_millicores"])

    def peak(self) -> float | None:
        value = self.state.get("peak_millicores")
        return None if value is None else float(value)

    def remember(self, key: str, value: Any) -> None:
        """Keep one more JSON value in the state file (the runtime stores the final Exit)."""
        self.state[key] = value
        self._save()
