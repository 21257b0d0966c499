"""A runtime that runs nothing outside the service: each workload is a small HTTP app served by
the service's own event loop, with behaviours a test (or a developer trying the API) can pick.

It is a real runtime by the contract (the readiness probe, the proxy and the logs see a real
HTTP server and real lines), registered as `fake`, and passes the same contract suite as the
others. Behaviours come from the deployment's environment variable `STUDIOS_FAKE` (a studio
param of that name), comma-separated:

    slow-start=S      listen only after S seconds          never-ready      never listen
    crash-after=S     exit with code 1 S s after it listens oom-after=S      be "OOM-killed" after S s
    fail-start=TEXT   refuse to start (LaunchError TEXT)   lost-on-restart  a new runtime can't adopt it
    fail-stop=N       the first N stops raise an error      unplaceable=S    "no suitable node" for S s
    move-after=S      after S s its "node" is lost and it comes back on a new port

The app answers `GET /` with `hello from fake deployment N`, `GET /env` with its environment as
JSON, `GET /print?text=..&stream=stdout|stderr` by logging that line, and `GET /exit?code=N` by
ending; with a source, `GET /` serves the checkout's `index.html`. At start it logs `NAME=value` for each variable named in `STUDIOS_FAKE_ECHO`
(comma-separated) and one line on stderr. Workloads live in a registry shared by every `FakeRuntime` of this process and
installation, so a new runtime object (a service "restart" in tests) can adopt them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

from pydantic_settings import SettingsConfigDict

from studios.runtimes import git
from studios.runtimes.base import Exit, Handle, LaunchError, LaunchSpec, LogCursor, LogLine, Reporter, Runtime, RuntimeSettings, Status, Usage


class FakeSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIOS_FAKE_", extra="ignore")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def behaviours(env: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env.get("STUDIOS_FAKE", "").split(","):
        name, _, value = item.strip().partition("=")
        if name:
            out[name] = value
    return out


@dataclasses.dataclass
class Workload:
    deployment_id: int
    env: dict[str, str]
    behave: dict[str, str]
    port: int
    generation: int = 0
    lines: list[LogLine] = dataclasses.field(default_factory=list)
    exit: Exit | None = None
    stops_failed: int = 0
    server: asyncio.AbstractServer | None = None
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    placed: bool = True
    root: Path | None = None
    """Where its source was checked out (its `index.html` is served at /), if it has one."""

    def log(self, message: str, stream: str = "stdout") -> None:
        self.lines.append(LogLine("stderr" if stream == "stderr" else "stdout", message, datetime.now(UTC)))
        self.poke()

    def poke(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class FakeRuntime(Runtime):
    name = "fake"
    settings_model = FakeSettings
    workloads: ClassVar[dict[tuple[str, int], Workload]] = {}

    def _key(self, deployment_id: int) -> tuple[str, int]:
        return (self.env.instance, deployment_id)

    # -- the app --------------------------------------------------------------------------

    async def _serve(self, work: Workload, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if work.exit is not None:
            return

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    target = head.split(b" ", 2)[1].decode()
                    url = urlsplit(target)
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    status, body = 200, f"hello from fake deployment {work.deployment_id}\n".encode()
                    if url.path == "/" and work.root is not None and (work.root / "index.html").is_file():
                        body = (work.root / "index.html").read_bytes()
                    if url.path == "/env":
                        body = json.dumps(work.env).encode()
                    elif url.path == "/print":
                        work.log(query.get("text", ""), query.get("stream", "stdout"))
                        body = b"printed\n"
                    elif url.path == "/exit":
                        self._end(work, Exit(int(query.get("code", "0")), None, False, f"exited with code {int(query.get('code', '0'))}"))
                    writer.write(b"HTTP/1.1 %d OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (status, len(body), body))
                    await writer.drain()
            writer.close()

        work.server = await asyncio.start_server(handle, "127.0.0.1", work.port)
        work.log(f"fake app listening on port {work.port}")
        for name in filter(None, work.env.get("STUDIOS_FAKE_ECHO", "").split(",")):
            work.log(f"{name}={work.env.get(name, '')}")
        work.log("fake app: stderr works", "stderr")
        if "crash-after" in work.behave:
            work.tasks.append(asyncio.create_task(self._later(work, float(work.behave["crash-after"]), Exit(1, None, False, "exited with code 1"))))
        if "oom-after" in work.behave:
            work.tasks.append(asyncio.create_task(self._later(work, float(work.behave["oom-after"]), Exit(None, 9, True, "killed: out of memory (fake)"))))
        if "move-after" in work.behave:
            work.tasks.append(asyncio.create_task(self._move(work, float(work.behave.pop("move-after")))))

    async def _later(self, work: Workload, seconds: float, outcome: Exit) -> None:
        await asyncio.sleep(seconds)
        self._end(work, outcome)

    async def _move(self, work: Workload, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if work.exit is not None:
            return
        work.placed = False
        if work.server is not None:
            work.server.close()
        work.log("the fake node was lost; rescheduling", "stderr")
        await asyncio.sleep(0.2)
        work.port, work.generation, work.placed = _free_port(), work.generation + 1, True
        await self._serve(work, 0.0)

    def _end(self, work: Workload, outcome: Exit) -> None:
        if work.exit is not None:
            return
        work.exit = outcome
        if work.server is not None:
            work.server.close()
        for task in work.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        work.log(f"fake app ended: {outcome.message}", "stderr")

    # -- the contract ---------------------------------------------------------------------

    async def start(self, spec: LaunchSpec, report: Reporter) -> Handle:
        env = {**spec.env, **spec.secret_env}
        behave = behaviours(env)
        if "fail-start" in behave:
            raise LaunchError(behave["fail-start"] or "the fake runtime was told to fail")
        root = None
        if spec.source is not None:
            root = self.env.data_dir / "deployments" / str(spec.deployment_id)
            shutil.rmtree(root, ignore_errors=True)
            try:
                await git.fetch(spec.source, root, report)
            except git.CheckoutError as error:
                raise LaunchError(str(error)) from None
        port = _free_port()
        work = Workload(spec.deployment_id, {**env, "PORT": str(port)}, behave, port, root=root)
        old = self.workloads.pop(self._key(spec.deployment_id), None)
        if old is not None:
            self._end(old, Exit(None, 9, False, "replaced"))
        self.workloads[self._key(spec.deployment_id)] = work
        if "unplaceable" in behave:
            work.placed = False
            work.tasks.append(asyncio.create_task(self._place_later(work, float(behave["unplaceable"] or 1))))
        if "never-ready" not in behave:
            work.tasks.append(asyncio.create_task(self._serve(work, float(behave.get("slow-start") or 0))))
        report("fake: started")
        return self._handle(work)

    async def _place_later(self, work: Workload, seconds: float) -> None:
        await asyncio.sleep(seconds)
        work.placed = True
        work.poke()

    def _handle(self, work: Workload) -> Handle:
        return {"runtime": self.name, "deployment_id": work.deployment_id, "port": work.port, "generation": work.generation}

    def address(self, handle: Handle) -> tuple[str, int] | None:
        return ("127.0.0.1", int(handle["port"])) if handle.get("port") else None

    async def watch(self, handle: Handle) -> AsyncIterator[Status]:
        work = self.workloads.get(self._key(int(handle["deployment_id"])))
        if work is None:
            yield Status("vanished", running=False, exit=Exit(None, None, False, "the workload is gone"))
            return
        seen: tuple[bool, int] | None = None
        while True:
            changed = work.changed
            if work.exit is not None:
                yield Status(work.exit.message, running=False, exit=work.exit)
                return
            now = (work.placed, work.generation)
            if now != seen:
                moved = seen is not None and seen[1] != work.generation
                if not work.placed:
                    yield Status("no suitable node (fake)" if seen is None else "its node was lost; rescheduling", running=False)
                else:
                    yield Status("running", running=True, handle=self._handle(work) if moved else None)
                seen = now
            await changed.wait()

    async def poll(self, handle: Handle) -> Exit | None:
        work = self.workloads.get(self._key(int(handle["deployment_id"])))
        if work is None:
            return Exit(None, None, False, "the workload is gone")
        return work.exit

    async def stop(self, handle: Handle, grace_seconds: float) -> Exit:
        work = self.workloads.get(self._key(int(handle["deployment_id"])))
        if work is None:
            return Exit(None, None, False, "the workload is gone")
        limit = int(work.behave.get("fail-stop") or 0)
        if work.exit is None and work.stops_failed < limit:
            work.stops_failed += 1
            raise RuntimeError(f"fake: stop failed ({work.stops_failed} of {limit})")
        self._end(work, Exit(None, 15, False, "killed by signal 15 (SIGTERM)"))
        assert work.exit is not None
        return work.exit

    async def usage(self, handle: Handle) -> Usage:
        work = self.workloads.get(self._key(int(handle["deployment_id"])))
        if work is None:
            return Usage(None, None)
        return Usage(max_memory_mb=10.0 + len(work.lines) / 10, max_cpu_millicores=5.0)

    async def logs(self, handle: Handle, cursor: LogCursor | None) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
        work = self.workloads.get(self._key(int(handle["deployment_id"])))
        if work is None:
            return
        n = int((cursor or {}).get("n", 0))
        while True:
            changed = work.changed
            if n < len(work.lines):
                batch = work.lines[n:]
                n = len(work.lines)
                yield batch, {"n": n}
                continue
            if work.exit is not None:
                return
            await changed.wait()

    async def adopt(self, handle: Handle) -> bool:
        work = self.workloads.get(self._key(int(handle["deployment_id"])))
        if work is None or work.exit is not None:
            return False
        if "lost-on-restart" in work.behave:
            self._end(work, Exit(None, 9, False, "lost"))
            return False
        return True

    async def cleanup(self, handle: Handle) -> None:
        work = self.workloads.pop(self._key(int(handle["deployment_id"])), None)
        if work is not None:
            self._end(work, Exit(None, 9, False, "removed"))
            if work.root is not None:
                shutil.rmtree(work.root, ignore_errors=True)

    async def orphans(self, known: set[int]) -> list[int]:
        return sorted(d for (instance, d), w in self.workloads.items() if instance == self.env.instance and d not in known and w.exit is None)

    async def remove_orphan(self, deployment_id: int) -> None:
        work = self.workloads.pop(self._key(deployment_id), None)
        if work is not None:
            self._end(work, Exit(None, 9, False, "removed as an orphan"))
