"""Each runtime the contract suite runs against: how to build it, the suite's app as a launch
spec for it, a source holding given files, and a spec it cannot start. Add a runtime here (and
nothing else) to hold it to the contract."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtimes.conftest import git_repo
from studios.runtimes.base import LaunchSpec, Runtime, RuntimeEnv, Source

_ids = itertools.count(int(time.time()) % 100_000 * 100)
REPO = Path(__file__).resolve().parents[3]

PYTHON_APP = """
import http.server, os, sys
print("GREETING=" + os.environ.get("GREETING", ""), flush=True)
print("SECRET=" + os.environ.get("SECRET", ""), flush=True)
print("to stderr", file=sys.stderr, flush=True)
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
SHELL_APP = 'echo "GREETING=$GREETING"; echo "SECRET=$SECRET"; echo to-stderr >&2; exec httpd -f -p $PORT'


class Kind:
    """One runtime under the contract suite."""

    name = "base"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.instance = f"contract-{uuid.uuid4().hex[:8]}"
        self.env = RuntimeEnv(tmp / f"{self.name}-runtime", self.instance, "http://localhost:8000")
        self.unavailable: str | None = None
        self._runtime: Runtime | None = None
        self._made: list[Runtime] = []

    def make(self) -> Runtime:
        raise NotImplementedError

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = self.make()
            self._made.append(self._runtime)
        return self._runtime

    def restart(self) -> Runtime:
        """A new runtime object on the same state: the service restarted."""
        made = self.make()
        self._made.append(made)
        return made

    def base_spec(self, **fields: Any) -> LaunchSpec:
        values: dict[str, Any] = dict(deployment_id=next(_ids), studio_id=1, user_id=1, image=None, tag="latest", memory_mb=256, cpu_millicores=500, disk_gb=None, env={})
        values.update(fields)
        return LaunchSpec(**values)

    def spec(self, env: dict[str, str] | None = None, secret_env: dict[str, str] | None = None, source: Source | None = None) -> LaunchSpec:
        raise NotImplementedError

    def source(self, files: dict[str, str]) -> Source:
        repo = self.tmp / f"source-{next(_ids)}"
        repo.mkdir()
        for name, text in files.items():
            (repo / name).write_text(text)
        self.prepare_source(repo)
        return git_repo(repo)

    def prepare_source(self, repo: Path) -> None:
        """Add what this runtime needs to run the suite's app from a repository."""

    def unstartable(self) -> LaunchSpec:
        raise NotImplementedError

    async def sweep(self) -> None:
        for runtime in self._made:
            for deployment_id in await runtime.orphans(set()):
                await runtime.remove_orphan(deployment_id)
            await runtime.close()


class FakeKind(Kind):
    name = "fake"

    def make(self) -> Runtime:
        from studios.runtimes.fake import FakeRuntime, FakeSettings

        return FakeRuntime(FakeSettings(), self.env)

    def spec(self, env: dict[str, str] | None = None, secret_env: dict[str, str] | None = None, source: Source | None = None) -> LaunchSpec:
        return self.base_spec(image="fake", env={**(env or {}), "STUDIOS_FAKE_ECHO": "GREETING,SECRET"}, secret_env=secret_env or {}, source=source)

    def unstartable(self) -> LaunchSpec:
        return self.base_spec(image="fake", env={"STUDIOS_FAKE": "fail-start=the fake was told to refuse"})


class ProcessKind(Kind):
    name = "process"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.app = tmp / "contract_app.py"
        self.app.write_text(PYTHON_APP)

    def make(self) -> Runtime:
        from studios.runtimes.process import ProcessRuntime
        from studios.runtimes.process.runtime import ProcessSettings

        return ProcessRuntime(ProcessSettings(image_commands={"contract-app": f"exec {sys.executable} {self.app}"}, run_as="service"), self.env)

    def spec(self, env: dict[str, str] | None = None, secret_env: dict[str, str] | None = None, source: Source | None = None) -> LaunchSpec:
        return self.base_spec(image=None if source else "contract-app", env=env or {}, secret_env=secret_env or {}, source=source)

    def prepare_source(self, repo: Path) -> None:
        start = repo / "start"
        start.write_text(f"#!/bin/sh\nexec {sys.executable} {self.app}\n")
        start.chmod(0o755)

    def unstartable(self) -> LaunchSpec:
        return self.base_spec(image="no-such-image-command")


class ProcessUsersKind(ProcessKind):
    """The process runtime as a multi-user server runs it: each author's apps as a user of its
    own, in directories outside the service's data directory."""

    name = "process-users"

    def __init__(self, tmp: Path) -> None:
        # The app's code must be readable by the app's own user: a world-readable directory.
        shared = Path(tempfile.mkdtemp(prefix="studios-contract-"))
        shared.chmod(0o755)
        super().__init__(shared)
        self.env = RuntimeEnv(tmp / "process-runtime", self.instance, "http://localhost:8000")
        self.apps = shared / "apps"  # app users must be able to reach their directories
        if os.geteuid() != 0:
            self.unavailable = "running apps as their authors' own users needs root"

    def make(self) -> Runtime:
        from studios.runtimes.process import ProcessRuntime
        from studios.runtimes.process.runtime import ProcessSettings

        settings = ProcessSettings(image_commands={"contract-app": f"exec /usr/bin/python3 {self.app}"}, run_as="author", apps_dir=self.apps)
        return ProcessRuntime(settings, self.env)

    def prepare_source(self, repo: Path) -> None:
        start = repo / "start"
        start.write_text(f"#!/bin/sh\nexec /usr/bin/python3 {self.app}\n")
        start.chmod(0o755)

    async def sweep(self) -> None:
        await super().sweep()
        shutil.rmtree(self.tmp, ignore_errors=True)


class DockerKind(Kind):
    name = "docker"
    IMAGE = "studios-test/busybox"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        from studios.runtimes.docker import docker_available

        self.unavailable = docker_available(os.environ.get("DOCKER_HOST"))
        if self.unavailable is None:
            subprocess.run([str(REPO / "scripts" / "build-test-images.sh")], check=True, capture_output=True)
        elif os.environ.get("CI"):
            raise AssertionError(f"CI needs a Docker engine for the contract suite: {self.unavailable}")

    def make(self) -> Runtime:
        from studios.runtimes.docker import DockerRuntime
        from studios.runtimes.docker.runtime import DockerSettings

        return DockerRuntime(DockerSettings(url=os.environ.get("DOCKER_HOST")), self.env)

    def spec(self, env: dict[str, str] | None = None, secret_env: dict[str, str] | None = None, source: Source | None = None) -> LaunchSpec:
        return self.base_spec(image=self.IMAGE, env={**(env or {}), "APP_CMD": SHELL_APP}, secret_env=secret_env or {}, source=source)

    def unstartable(self) -> LaunchSpec:
        return self.base_spec(image="localhost:1/studios-contract/nothing-here")


class SwarmKind(Kind):
    """The one-machine swarm (`scripts/swarm-up`), held shared for the test (no node crashed)."""

    name = "swarm"

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        from swarm import lab

        self.swarm, self.unavailable = lab.bring_up()
        if self.unavailable is not None and os.environ.get("CI"):
            raise AssertionError(f"CI needs the one-machine swarm for the contract suite: {self.unavailable}")
        self._held = contextlib.ExitStack()
        if self.swarm is not None:
            self._held.enter_context(lab.shared())

    def make(self) -> Runtime:
        from studios.runtimes.swarm import SwarmRuntime, SwarmSettings

        assert self.swarm is not None
        return SwarmRuntime(SwarmSettings(url=self.swarm["STUDIOS_SWARM_URL"], node_urls=json.loads(self.swarm["STUDIOS_SWARM_NODE_URLS"])), self.env)

    def spec(self, env: dict[str, str] | None = None, secret_env: dict[str, str] | None = None, source: Source | None = None) -> LaunchSpec:
        return self.base_spec(image=DockerKind.IMAGE, env={**(env or {}), "APP_CMD": SHELL_APP}, secret_env=secret_env or {}, source=source)

    def unstartable(self) -> LaunchSpec:
        # Studios always passes a secret (the app's API key), so the image's command is read
        # before the service is made: an image no engine has and none can pull is refused then.
        return self.base_spec(image="localhost:1/studios-contract/nothing-here", secret_env={"CIVIS_API_KEY": "k"})

    async def sweep(self) -> None:
        try:
            await super().sweep()
        finally:
            self._held.close()


KINDS: dict[str, Callable[[Path], Kind]] = {"fake": FakeKind, "process": ProcessKind, "process-users": ProcessUsersKind, "docker": DockerKind, "swarm": SwarmKind}
