"""Peak memory and cpu of each deployment, measured on the node that runs it.

The manager knows nothing of usage; each node's own engine does. For a running task the meter
follows the container's stats stream on that node's engine (`STUDIOS_SWARM_NODE_URLS`), one
sample a second: memory is the kernel's watermark of the container's cgroup (cgroup v1
`max_usage`; v2: the highest `usage` seen), cpu the highest rate of cpu time between two
samples. When the task moves, the new container is followed and the peaks carry on. Peaks are
kept in `<state dir>/d-<id>.json`, so they outlive the container and a restart of the service
(until `forget`). Without a node's URL the usage reads as unknown. Each followed stream is
read by its own daemon thread.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from studios.runtimes.base import Usage
from studios.runtimes.docker.logs import parse_timestamp
from studios.runtimes.swarm.streams import open_stream


class Meter:
    def __init__(self, state_dir: Path, node_urls: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.node_urls = node_urls
        self._lock = threading.Lock()
        self._peaks: dict[int, dict[str, float]] = {}
        self._followers: dict[int, tuple[str, threading.Event, list[Callable[[], None]]]] = {}
        self._clients: dict[str, docker.APIClient] = {}

    def node_api(self, hostname: str) -> docker.APIClient | None:
        url = self.node_urls.get(hostname)
        if url is None:
            return None
        with self._lock:
            if url not in self._clients:
                self._clients[url] = docker.APIClient(base_url=url, version="auto", max_pool_size=64)
            return self._clients[url]

    # -- peaks ------------------------------------------------------------------------------

    def _path(self, deployment_id: int) -> Path:
        return self.state_dir / f"d-{deployment_id}.json"

    def _load(self, deployment_id: int) -> dict[str, float]:
        if deployment_id not in self._peaks:
            try:
                self._peaks[deployment_id] = {k: float(v) for k, v in json.loads(self._path(deployment_id).read_text()).items()}
            except (OSError, ValueError):
                self._peaks[deployment_id] = {}
        return self._peaks[deployment_id]

    def _raise(self, deployment_id: int, memory: float | None, cpu: float | None) -> None:
        with self._lock:
            peaks = self._load(deployment_id)
            changed = False
            for key, value in (("memory_bytes", memory), ("cpu_millicores", cpu)):
                if value is not None and value > peaks.get(key, -1.0):
                    peaks[key] = value
                    changed = True
            if changed:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                tmp = self._path(deployment_id).with_suffix(".tmp")
                tmp.write_text(json.dumps(peaks))
                tmp.replace(self._path(deployment_id))

    def read(self, deployment_id: int) -> Usage:
        with self._lock:
            peaks = dict(self._load(deployment_id))
        memory = peaks.get("memory_bytes")
        cpu = peaks.get("cpu_millicores")
        return Usage(
            max_memory_mb=None if memory is None else round(memory / 2**20, 1),
            max_cpu_millicores=None if cpu is None else round(cpu, 1),
        )

    def seed(self, deployment_id: int, stored: dict[str, Any]) -> None:
        """Peaks recorded elsewhere (on the ended service) count too."""
        self._raise(deployment_id, stored.get("memory_bytes"), stored.get("cpu_millicores"))

    def peaks(self, deployment_id: int) -> dict[str, float]:
        with self._lock:
            return dict(self._load(deployment_id))

    def forget(self, deployment_id: int) -> None:
        self.unwatch(deployment_id)
        with self._lock:
            self._peaks.pop(deployment_id, None)
            self._path(deployment_id).unlink(missing_ok=True)

    # -- following a container --------------------------------------------------------------

    def watch(self, deployment_id: int, hostname: str, container_id: str) -> None:
        """Follow this container's stats (idempotent; replaces a follower of another container)."""
        current = self._followers.get(deployment_id)
        if current is not None and current[0] == container_id:
            return
        self.unwatch(deployment_id)
        api = self.node_api(hostname)
        if api is None:
            return
        stop = threading.Event()
        aborts: list[Callable[[], None]] = []
        self._followers[deployment_id] = (container_id, stop, aborts)
        threading.Thread(
            target=self._follow, args=(api, deployment_id, container_id, stop, aborts),
            name=f"studios-swarm-stats-{deployment_id}", daemon=True,
        ).start()  # fmt: skip

    def following(self, deployment_id: int) -> bool:
        """Whether a running container of this deployment is being measured now."""
        return deployment_id in self._followers

    def unwatch(self, deployment_id: int) -> None:
        follower = self._followers.pop(deployment_id, None)
        if follower is not None:
            _, stop, aborts = follower
            stop.set()
            for abort in list(aborts):
                abort()

    def _follow(self, api: docker.APIClient, deployment_id: int, container_id: str, stop: threading.Event, aborts: list[Callable[[], None]]) -> None:
        previous: tuple[int, int] | None = None
        try:
            samples, abort = open_stream(api, "/containers/{0}/stats", container_id, {"stream": True}, multiplexed=False)
            aborts.append(abort)
            if stop.is_set():
                abort()
                return
            for sample in samples:
                if stop.is_set():
                    return
                memory_stats = sample.get("memory_stats") or {}
                memory = memory_stats.get("max_usage") or memory_stats.get("usage")
                cpu = None
                total = ((sample.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
                read = sample.get("read") or ""
                if total is not None and not read.startswith("0001-"):
                    now = (parse_timestamp(read), int(total))
                    if previous is not None and now[0] > previous[0]:
                        cpu = (now[1] - previous[1]) / (now[0] - previous[0]) * 1000.0
                    previous = now
                if memory or cpu is not None:
                    self._raise(deployment_id, float(memory) if memory else None, cpu)
        except Exception:  # the container or its node went away: what was measured stays
            return

    def close(self) -> None:
        for deployment_id in list(self._followers):
            self.unwatch(deployment_id)
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
