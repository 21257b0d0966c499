"""The apps people deploy, through a real `studios serve` and Debian's chromium, in both proxy
modes: JupyterLab (the built-in `jupyterlab` image recipe) opens and runs a cell; Streamlit,
Shiny and Dash (their recipes) render and react to a widget; a 50 MB download (three in a
row, over one keep-alive connection pool) and a server-sent-events stream arrive whole.

Every wait is for what a person would wait for (the Lab's launcher, the cell's output, the
page's text), bounded; nothing sleeps a fixed time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chromium import NO_CHROMIUM, launched

from .server import StudiosServer, poll, studios_server

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the browser fixture skips then
    PlaywrightTimeout = TimeoutError  # type: ignore[misc, assignment]

APPS = Path(__file__).parent / "apps"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(NO_CHROMIUM, reason="Debian chromium is not installed (apt-get install -y chromium)"),
    # What these check (the apps' recipes, the proxy's bytes) is the same on either database;
    # the service's path from deploy to running on PostgreSQL has its own tests.
    pytest.mark.database_neutral,
]


@pytest.fixture(scope="module", params=["host", "path"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    mode = request.param
    root = tmp_path_factory.mktemp(f"apps-{mode}")
    env = {
        "STUDIOS_PROXY_MODE": mode,
        "STUDIOS_START_TIMEOUT_SECONDS": "120",
        "STUDIOS_STOP_GRACE_SECONDS": "3",
        "STUDIOS_IDLE_SLEEP_SECONDS": "0",
        "STUDIOS_IMAGE_COMMANDS": json.dumps({"stream-app": f"exec {sys.executable} {APPS / 'stream_app.py'}"}),
    }
    with studios_server(root / "server", name=f"apps_{mode}", runtime="process", env=env) as srv:
        srv.mode = mode  # type: ignore[attr-defined]
        srv.key = srv.create_user("alice")  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:
        yield b


def deploy(server: StudiosServer, name: str, image: str, params: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Create a studio and deploy it; the deployment once `running`."""
    headers = {"Authorization": f"Bearer {server.key}"}  # type: ignore[attr-defined]
    with httpx.Client(base_url=server.url, headers=headers, trust_env=False, timeout=30) as http:
        studio = http.post("/studios", json={"name": name, "dockerImageName": image, "params": params or []})
        assert studio.status_code == 201, studio.text
        sid = studio.json()["id"]
        created = http.post(f"/studios/{sid}/deployments", json={})
        assert created.status_code == 201, created.text
        did = created.json()["deploymentId"]

        def running() -> dict[str, Any] | None:
            dep = http.get(f"/studios/{sid}/deployments/{did}").json()
            assert dep["state"] in ("pending", "running"), f"{name}: {dep['state']} {dep['stateMessage']}\n{server.log_tail()}"
            return dep if dep["state"] == "running" else None

        dep = poll(running, 150, f"{name} to be running", interval=0.2)
        dep["studioId"] = sid
        return dep


class Watch:
    """What the page saw go wrong (requests that failed or got >= 400, console errors), and how
    many of its requests the browser dropped because it saw the machine's network change."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.network_changes = 0


@contextlib.contextmanager
def viewing(browser: Any, server: StudiosServer, dep: dict[str, Any], timeout_ms: int = 60_000,
            **context_options: Any) -> Iterator[tuple[Any, Watch]]:
    """A page in a browser context of its own (closed afterwards), with `timeout_ms` for every
    wait, `explained` on a failure."""
    context = browser.new_context(**context_options)
    try:
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        with explained(server, dep, page) as watch:
            yield page, watch
    finally:
        context.close()


@contextlib.contextmanager
def explained(server: StudiosServer, dep: dict[str, Any], page: Any) -> Iterator[Watch]:
    """On a failure, add what a person would look at next: the page's failed requests and
    console errors, the app's newest log lines and the server's log."""
    watch = Watch()
    seen = watch.seen

    def failed(r: Any) -> None:
        seen.append(f"failed {r.method} {r.url}: {r.failure}")
        if "ERR_NETWORK_CHANGED" in (r.failure or ""):
            watch.network_changes += 1

    def response(r: Any) -> None:
        if r.status >= 400:
            seen.append(f"{r.status} {r.request.method} {r.url}")

    def console(m: Any) -> None:
        if m.type == "error":
            seen.append(f"console: {m.text}")

    page.on("response", response)
    page.on("requestfailed", failed)
    page.on("console", console)
    try:
        yield watch
    except Exception as error:
        headers = {"Authorization": f"Bearer {server.key}"}  # type: ignore[attr-defined]
        url = f"{server.url}/studios/{dep['studioId']}/deployments/{dep['deploymentId']}/logs"
        try:
            lines = httpx.get(url, params={"limit": 60}, headers=headers, trust_env=False, timeout=10).json()
            app_log = "\n".join(f"{line['createdAt']} {line['message']}" for line in sorted(lines, key=lambda x: x["createdAt"]))
        except Exception as reading:  # the failure itself matters more than this
            app_log = f"(could not read it: {reading!r})"
        raise AssertionError(f"{error}\n--- the page saw:\n" + "\n".join(seen[-40:])
                             + f"\n--- the app's log:\n{app_log}\n--- studios serve:\n{server.log_tail(3000)}") from error


def opened(page: Any, url: str, ready: Any, watch: Watch, timeout: float = 60) -> None:
    """Open `url` and wait until `ready` shows, as a person would: reloading the page (up to
    three times) when the browser dropped some of its requests because it saw the machine's
    network change. Chromium does that (net::ERR_NETWORK_CHANGED) whenever an interface or
    address comes or goes, which other tests running beside this one do all the time (Docker
    networks, swarm nodes' namespaces); a page whose scripts were dropped never renders."""
    page.goto(url)
    deadline = time.monotonic() + timeout
    changes, reloads = watch.network_changes, 0
    while True:
        try:
            ready.wait_for(timeout=1_000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            if watch.network_changes > changes and reloads < 3:
                changes, reloads = watch.network_changes, reloads + 1
                page.reload()


def app_root(server: StudiosServer, dep: dict[str, Any]) -> str:
    prefix = f"/_d/{dep['deploymentId']}/" if server.mode == "path" else "/"  # type: ignore[attr-defined]
    return f"http://{dep['host']}{prefix}"


def test_jupyterlab_opens_and_runs_a_cell(server: StudiosServer, browser: Any) -> None:
    dep = deploy(server, "lab", "jupyterlab")
    with viewing(browser, server, dep, 180_000) as (page, watch):  # a loaded CI machine: the Lab can take minutes
        # A Lab whose environment holds a source extension (dash's, here) offers a rebuild
        # once loaded; a person dismisses it, whenever it shows up.
        page.add_locator_handler(page.locator(".jp-Dialog", has_text="Build Recommended"),
                                 lambda dialog: dialog.get_by_role("button", name="Cancel").click())
        card = page.locator('.jp-LauncherCard[data-category="Notebook"]').first
        opened(page, dep["displayUrl"], card, watch, timeout=180)
        assert page.url.startswith(app_root(server, dep))  # the Lab, under the studio's own root
        card.click()
        cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        cell.click()
        page.keyboard.type("print(6 * 7)")
        # As a person would, wait until the notebook's kernel says it is idle before running the
        # cell: a cell run while the kernel is still starting can be dropped, and then only the
        # 30 s wait below would notice (the slowest test of the suite on a loaded machine).
        page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for()
        # Run it (over the kernel's WebSocket) and read the output, as a person would: and, as
        # a person would, run it again if nothing came back, since a kernel that is slow to
        # start on a loaded machine can be restarted by Jupyter and drop what was queued.
        output = page.locator(".jp-OutputArea-output", has_text="42").first
        deadline = time.monotonic() + 300
        while True:
            cell.click()
            page.keyboard.press("Control+Enter")
            try:
                output.wait_for(timeout=30_000)
                break
            except PlaywrightTimeout:
                if time.monotonic() > deadline:
                    raise


def test_streamlit_renders_and_reacts_to_a_widget(server: StudiosServer, browser: Any) -> None:
    params = [{"name": "STREAMLIT_APP", "type": "string", "value": str(APPS / "streamlit_app.py")}]
    dep = deploy(server, "streamlit", "streamlit", params)
    with viewing(browser, server, dep) as (page, watch):
        opened(page, dep["displayUrl"], page.get_by_text("hello, nobody"), watch)  # rendered over Streamlit's WebSocket
        field = page.get_by_label("Your name")
        field.fill("studios")
        field.press("Enter")
        page.get_by_text("hello, studios").wait_for()


def test_a_50_mb_download_and_an_event_stream_arrive_whole(server: StudiosServer, browser: Any, tmp_path: Path) -> None:
    dep = deploy(server, "stream", "stream-app")
    expected = hashlib.sha256(bytes(range(256)) * 4096 * 50).hexdigest()
    with viewing(browser, server, dep, accept_downloads=True) as (page, watch):
        events = page.locator("#events")
        opened(page, dep["displayUrl"], events.filter(has_text="end"), watch)
        assert events.text_content() == ",".join([*map(str, range(100)), "end"])
        for n in range(3):  # once a third download never got its response (a paused app connection pooled)
            with page.expect_download(timeout=90_000) as info:
                page.click("#download")
            saved = tmp_path / f"big-{n}.bin"
            info.value.save_as(saved)
            assert saved.stat().st_size == 50 * 1024 * 1024
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == expected


def test_shiny_renders_and_reacts_to_a_widget(server: StudiosServer, browser: Any) -> None:
    params = [{"name": "SHINY_APP", "type": "string", "value": str(APPS / "shiny_app.py")},
              # Shiny serves at its root: in path mode the proxy strips /_d/<id> for it
              {"name": "STUDIOS_PATH_PREFIX", "type": "string", "value": "strip"}]
    dep = deploy(server, "shiny", "shiny", params)
    with viewing(browser, server, dep) as (page, watch):
        opened(page, dep["displayUrl"], page.get_by_text("hello, nobody"), watch)  # rendered over Shiny's WebSocket
        page.get_by_label("Your name").fill("studios")
        page.get_by_text("hello, studios").wait_for()


def test_dash_renders_and_reacts_to_a_widget(server: StudiosServer, browser: Any) -> None:
    params = [{"name": "DASH_APP", "type": "string", "value": str(APPS / "dash_app.py")}]
    dep = deploy(server, "dash", "dash", params)
    with viewing(browser, server, dep) as (page, watch):
        opened(page, dep["displayUrl"], page.get_by_text("hello, nobody"), watch)  # the layout, then the first callback
        page.get_by_placeholder("Your name").fill("studios")
        page.get_by_text("hello, studios").wait_for()

