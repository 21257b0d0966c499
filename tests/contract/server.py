"""`studios serve` as a real subprocess for end-to-end tests through the published `civis`
client, plus small helpers those tests share (git repos, deployment polling, opening a displayUrl).

    with studios_server(tmp_dir, runtime="process", name="deploy_process") as server:
        key = server.create_user("alice")          # `studios users create alice`
        server.restart()                           # SIGTERM, then the same data dir and ports
        server.stop()

The server gets its own data dir, free loopback ports (API and display-URL proxy) and an
environment without any inherited `STUDIOS_*`/`CIVIS_*` variable. When
`STUDIOS_TEST_DATABASE_URL` is set, `studios_server` creates a fresh PostgreSQL database for
it with conftest's `pg_database(name)` (named after `name` and the xdist worker, made with that
URL's role), and drops it afterwards.
Every process started here is killed in teardown, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from conftest import TEST_DATABASE_URL, free_port, pg_database, wait_until

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}


def poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """conftest's `wait_until`, checking every 0.1 s unless told otherwise."""
    return wait_until(condition, timeout, what, interval)


# ----------------------------------------------------------------------------- the server


class PortTaken(Exception):
    """`studios serve` could not bind a port that was free when it was picked (the machine is
    shared: another process took it in between)."""


class StudiosServer:
    """One `studios serve` process; `restart()` keeps data dir, database and ports.

    Ports are picked free, but another process may take one before the server binds it: the
    first start then picks new ones (and runs `configure` again), up to three times. A start
    counts only once this process's own uvicorn says it listens on the port, so a foreign
    server that answers on a stolen port is never taken for this one."""

    def __init__(self, root: Path, env: dict[str, str], configure: Callable[[StudiosServer], None] | None = None) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))}
        self.env |= {"HOME": str(root), "STUDIOS_DATA_DIR": str(root / "data")}
        self.env |= env
        self.configure = configure
        self._pick_ports()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "serve.log"
        self.starts = 0

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.proxy_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env |= {"STUDIOS_PORT": str(self.port), "STUDIOS_PROXY_PORT": str(self.proxy_port), "STUDIOS_PUBLIC_URL": self.url}
        if self.configure is not None:
            self.configure(self)

    def studios(self, *args: str) -> str:
        result = subprocess.run([str(BIN / "studios"), *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"studios {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout.strip()

    def studios_stderr(self, *args: str) -> str:
        """What `studios ARGS` says on stderr (its messages to people); fails if it fails."""
        result = subprocess.run([str(BIN / "studios"), *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"studios {' '.join(args)} failed:\n{result.stderr}"
        return result.stderr

    def create_user(self, name: str, *extra: str) -> str:
        """`studios users create NAME`: its stdout is the new API key."""
        key = self.studios("users", "create", name, *extra)
        assert key and "\n" not in key, f"users create printed more than a key: {key!r}"
        return key

    def start(self, timeout: float = 30.0) -> None:
        first = self.starts == 0
        for attempt in range(3 if first else 1):
            try:
                self._start(timeout)
                return
            except PortTaken:
                if not first or attempt == 2:
                    raise
                self._pick_ports()

    def _start(self, timeout: float) -> None:
        assert self.process is None, "already running"
        self.starts += 1
        with self.log.open("ab") as out:
            marker = f"\n===== start {self.starts} =====\n".encode()
            out.write(marker)
            out.flush()
            self.process = subprocess.Popen([str(BIN / "studios"), "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        listening = f"Uvicorn running on http://127.0.0.1:{self.port} "
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=2) as http:
            while True:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    self.process = None
                    if "address already in use" in self.log_of_this_start(marker):
                        raise PortTaken(self.log_tail())
                    raise AssertionError(f"studios serve exited with {code}:\n{self.log_tail()}")
                try:
                    if listening in self.log_of_this_start(marker) and http.get(f"{self.url}/endpoints").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"studios serve did not answer within {timeout} s:\n{self.log_tail()}")
                time.sleep(0.05)

    def log_of_this_start(self, marker: bytes) -> str:
        text = self.log.read_bytes()
        return text[text.rfind(marker):].decode(errors="replace")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL (of its whole session) if it does not exit in time."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL the server process alone (its workloads live on, as after a crash)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def end_workloads(self) -> None:
        """Teardown: DELETE every deployment still pending, running or sleeping (a failed test
        may leave one), as an admin made for the purpose. Workloads outlive the server."""
        if self.process is None or self.process.poll() is not None:
            return
        key = self.create_user(f"teardown-{self.starts}-{os.getpid()}-{self.port}", "--admin")
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=30) as http:

            def every(path: str, **params: Any) -> Iterator[dict[str, Any]]:
                for page in range(1, 1000):
                    response = http.get(path, params={**params, "limit": 50, "page_num": page})
                    response.raise_for_status()
                    if not response.json():
                        return
                    yield from response.json()

            for studio in list(every("/studios", archived="all")):
                for dep in list(every(f"/studios/{studio['id']}/deployments")):
                    if dep["state"] in ("pending", "running", "sleeping"):
                        http.delete(f"/studios/{studio['id']}/deployments/{dep['deploymentId']}")

    def kill_leftovers(self) -> None:
        """Last resort after the server stopped: kill what the runtimes still run for it
        (process supervisors and apps by their stored handles, containers by label)."""
        data = Path(self.env["STUDIOS_DATA_DIR"])
        for handle_file in (data / "runtimes" / "process" / "state").glob("*.json"):
            with contextlib.suppress(Exception):
                handle = json.loads(handle_file.read_text())
                for part in ("app", "supervisor"):
                    ident = handle.get(part) or {}
                    stat = Path(f"/proc/{ident['pid']}/stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[19]) == ident["start_time"]:
                        os.killpg(ident["pid"], signal.SIGKILL)
        if self.env.get("STUDIOS_RUNTIME") in ("docker", "auto"):
            instance = self.env["STUDIOS_INSTANCE"]
            with contextlib.suppress(Exception):
                ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=studios.instance={instance}"], capture_output=True, text=True, timeout=30).stdout.split()
                if ids:
                    subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextlib.contextmanager
def studios_server(root: Path, *, name: str, runtime: str = "process", env: dict[str, str] | None = None, configure: Callable[[StudiosServer], None] | None = None) -> Iterator[StudiosServer]:
    """A started server on a fresh database; stopped (and its database dropped) afterwards.
    `configure(server)` runs before the start (e.g. to set variables naming its ports)."""
    root.mkdir(parents=True, exist_ok=True)
    with pg_database(name) if TEST_DATABASE_URL else contextlib.nullcontext() as db_url:
        # Its own installation id: its containers are told apart from every other test's.
        # Apps run as the service's user unless a test asks for authors' own users.
        extra = {"STUDIOS_RUNTIME": runtime, "STUDIOS_INSTANCE": f"t{uuid.uuid4().hex[:10]}", "STUDIOS_PROCESS_RUN_AS": "service", **(env or {})}
        if db_url:
            extra["STUDIOS_DATABASE_URL"] = db_url
        server = StudiosServer(root, extra, configure)
        try:
            server.start()
            yield server
        finally:
            try:
                server.end_workloads()
            finally:
                server.stop()
                server.kill_leftovers()


# ----------------------------------------------------------------------------- deployments


def wait_state(client: Any, studio_id: int, deployment_id: int, states: str | tuple[str, ...], timeout: float = 30.0) -> Any:
    """Poll `get_deployments` until the deployment is in one of `states`; fail with the last
    state seen (and leave early if it ends in another state)."""
    wanted = (states,) if isinstance(states, str) else states
    last: list[Any] = []

    def check() -> Any:
        dep = client.studios.get_deployments(studio_id, deployment_id)
        last[:] = [dep]
        if dep.state in wanted:
            return dep
        if dep.state == "terminated":
            raise AssertionError(f"deployment {deployment_id} ended instead of reaching {wanted}: {dep.state_message!r}")
        return None

    try:
        return poll(check, timeout, f"deployment {deployment_id} to be {wanted}")
    except AssertionError as exc:
        if last and "timed out" in str(exc):
            raise AssertionError(f"{exc}; last: {last[0].state} {last[0].state_message!r}") from None
        raise


def log_lines(client: Any, studio_id: int, deployment_id: int) -> list[Any]:
    return list(client.studios.list_deployments_logs(studio_id, deployment_id))


def messages(lines: list[Any], source: str | None = None, stream: str | None = None) -> list[str]:
    return [line.message for line in lines if (source is None or line.source == source) and (stream is None or line.stream == stream)]


def open_link(url: str) -> httpx.Response:
    """What a browser does with a displayUrl: follow the token exchange's redirect with the
    cookie. `*.localhost` names go to 127.0.0.1 with the Host header set."""
    parsed = httpx.URL(url)
    host_header = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
    with httpx.Client(follow_redirects=False, timeout=10, trust_env=False) as http:
        first = http.get(str(parsed.copy_with(host="127.0.0.1")), headers={"Host": host_header})
        if first.status_code not in (302, 303, 307):
            return first
        cookie = first.headers["set-cookie"].split(";", 1)[0]
        target = parsed.copy_with(host="127.0.0.1", path=httpx.URL(first.headers["location"]).path, query=None)
        return http.get(str(target), headers={"Host": host_header, "Cookie": cookie})


class OpenedApp:
    """A deployed app opened as a browser would: its displayUrl exchanged once for the viewer
    cookie (tokens are single-use), then requests with that cookie. `*.localhost` names go to
    127.0.0.1 with the Host header set. The fake runtime's app prints a line for `print`."""

    def __init__(self, display_url: str) -> None:
        parsed = httpx.URL(display_url)
        self.host = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        self.base = parsed.copy_with(host="127.0.0.1", query=None)
        self.http = httpx.Client(follow_redirects=False, timeout=10, trust_env=False)
        first = self.http.get(str(parsed.copy_with(host="127.0.0.1")), headers={"Host": self.host})
        assert first.status_code in (302, 303, 307), first.text
        self.cookie = first.headers["set-cookie"].split(";", 1)[0]

    def get(self, path: str, query: str = "") -> httpx.Response:
        return self.http.get(str(self.base.copy_with(path=path, query=query.encode() or None)), headers={"Host": self.host, "Cookie": self.cookie})

    def print(self, text: str) -> None:
        assert self.get("/print", f"text={text}").text == "printed\n"

    def close(self) -> None:
        self.http.close()


# ----------------------------------------------------------------------------- git


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    """A git repo at `path` with `files` committed on `main`."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
        if rel in executable:
            (path / rel).chmod(0o755)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "app")
    return path
