"""The web UI in a real browser (Debian's chromium driven by Playwright) through a real
`studios serve` on the process runtime: sign in, create a studio with a parameter (after a
validation error shown at its field), deploy it and watch the page reach running without
reloading (through the event streams, no polling), see the app's lines arrive, open the app
through its link, stop it; another user sees nothing of it; sign out. (Live lists, a failing
stream and a dropped one: test_live.py.)

Screenshots of the main pages are taken on every run, into a temporary directory; with
STUDIOS_UPDATE_SCREENSHOTS=1 into docs/screenshots/ instead, to refresh the ones docs/ui.md
shows (`STUDIOS_UPDATE_SCREENSHOTS=1 .venv/bin/pytest tests/ui`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from contract.server import StudiosServer, poll, studios_server
from ui.browsing import NO_CHROMIUM, WAIT_MS, new_page, shot, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(NO_CHROMIUM, reason="Debian chromium is not installed (apt-get install -y chromium)"),
]


def test_create_deploy_watch_open_stop_and_sign_out(browser: Any, server: StudiosServer, repo: str) -> None:
    context, page, problems = new_page(browser)
    page.goto(server.url + "/ui/studios/new")  # a deep link without a session: sign in first
    page.wait_for_selector("#api-key")
    shot(page, "sign-in")
    page.fill("#api-key", "stu_wrong")
    page.click("#signin button[type=submit]")
    assert "not valid" in page.wait_for_selector("#signin-error .field-error").text_content()
    page.fill("#api-key", server.keys["alice"])  # type: ignore[attr-defined]
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#studio-form")  # back where the link pointed
    assert page.url.endswith("/ui/studios/new")
    cookie = next(c for c in context.cookies() if c["name"] == "studios_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # a validation error from the API shows at its field, and nothing is created
    page.fill("#name", "Greeter")
    page.fill("#git-repo-url", "not a url")
    page.click("#add-param")
    page.fill("#param-0-name", "GREETING")
    page.fill("#param-0-value", "hello from the browser")
    page.click("#studio-form button[type=submit]")
    error = page.wait_for_selector("#git-repo-url-error:not([hidden])")
    assert "is not a git URL" in error.text_content()
    assert page.get_attribute("#git-repo-url", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "git-repo-url"
    assert "git-repo-url-error" in page.get_attribute("#git-repo-url", "aria-describedby")
    page.set_viewport_size({"width": 1280, "height": 1900})
    shot(page, "studio-form-error")
    page.set_viewport_size({"width": 1280, "height": 860})

    page.fill("#git-repo-url", repo)
    page.click("#studio-form button[type=submit]")
    page.wait_for_selector("h1:has-text('Greeter')")
    studio_id = int(re.search(r"/ui/studios/(\d+)$", page.url).group(1))
    page.wait_for_selector("text=Not deployed yet")
    assert "hello from the browser" in page.text_content("table.list")  # the parameter
    shot(page, "studio")

    # deploy: the page follows the deployment to running without a reload, through its event
    # streams: once it is open, nothing asks the REST API for the deployment or its lines
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.evaluate("window.__sameDocument = true")
    page.click("#deploy")
    page.wait_for_url(re.compile(rf"/ui/studios/{studio_id}/deployments/\d+$"))
    deployment_id = int(page.url.rsplit("/", 1)[1])
    page.wait_for_selector("#live-status[data-mode=live]")
    opened = len(asked)
    page.wait_for_selector("#state [data-state=running]")
    assert page.evaluate("window.__sameDocument") is True
    page.wait_for_selector("#log .ln.stdout:has-text('hello hello from the browser')")
    page.wait_for_selector("#steps li:has-text('ready after')")

    # open the app through its link: a new tab with the app, whose request shows up live in the log
    with page.expect_popup() as popup_info:
        page.click("#open")
    app = popup_info.value
    app.wait_for_selector("#app")
    assert app.text_content("#app") == "hello from the browser"
    app.close()
    page.wait_for_selector("#log .ln.stdout:has-text('served /')")
    assert page.evaluate("window.__sameDocument") is True
    base = f"{server.url}/studios/{studio_id}/deployments/{deployment_id}"
    polled = [url for url in asked[opened:] if url == base or url.startswith((f"{base}?", f"{base}/logs?"))]
    assert polled == [], polled
    assert {f"{base}/events", f"{base}/logs/stream?batch=true&tail=10000"} <= set(asked)

    # the log tells its kinds apart and filters
    assert page.locator("#log .ln.system").count() >= 3
    expect = pytest.importorskip("playwright.sync_api").expect
    page.fill("#log-filter", "HELLO FROM")  # case-insensitive
    expect(page.locator("#log .ln:not([hidden])")).to_have_count(1)
    page.fill("#log-filter", "")
    expect(page.locator("#log .ln[hidden]")).to_have_count(0)
    with page.expect_download() as download_info:
        page.click("#log-download")
    text = Path(download_info.value.path()).read_text()
    assert "stdout\thello hello from the browser" in text and "system\tqueued by alice" in text
    page.wait_for_selector("#usage svg[aria-label^='CPU: peak']")
    shot(page, "deployment-running", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "deployment-phone", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})

    page.click("#stop")
    page.wait_for_selector("#state [data-state=terminated]")
    assert page.text_content("#state-message").strip() == "stopped by alice"
    assert page.is_hidden("#stop") and page.is_hidden("#open")

    page.click("a:has-text('Studios') >> nth=0")
    page.wait_for_selector(f"tr[data-studio='{studio_id}']")
    shot(page, "studios")

    # sign out: back to the sign-in page; the cookie no longer opens anything
    page.click("#sign-out")
    page.wait_for_selector("#api-key")
    assert not [c for c in context.cookies() if c["name"] == "studios_ui"]
    page.goto(server.url + "/ui")
    page.wait_for_selector("#api-key")
    assert page.request.get(server.url + "/studios").status == 401
    assert problems == []
    context.close()


def test_each_validation_error_shows_at_the_field_it_names(browser: Any, server: StudiosServer) -> None:
    context, page, problems = new_page(browser)
    sign_in(page, server, "bob")
    page.goto(server.url + "/ui/studios/new")
    page.wait_for_selector("#studio-form")
    page.fill("#name", "Too big")
    page.fill("#memory", "999999")  # over the instance type's ceiling: the service's own check
    page.click("#studio-form button[type=submit]")
    error = page.wait_for_selector("#memory-error:not([hidden])")
    assert "exceeds the ceiling of instance type 'small'" in error.text_content()
    page.fill("#memory", "")
    page.click("#add-param")
    page.click("#add-param")
    page.fill("#param-0-name", "COUNT")
    page.select_option("#param-0-type", "integer")
    page.fill("#param-0-value", "lots")
    page.fill("#param-1-name", "not a name")
    page.click("#studio-form button[type=submit]")
    page.wait_for_selector("#param-0-value-error:not([hidden])")
    assert "is not an integer" in page.text_content("#param-0-value-error")
    assert "not a valid environment variable name" in page.text_content("#param-1-name-error")
    assert page.is_hidden("#memory-error")  # the earlier message went when its field was fixed
    summary = page.text_content("#error-summary")
    assert "2 problems" in summary and "Parameter 1, value" in summary and "Parameter 2, name" in summary
    import httpx

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys['bob']}"}, trust_env=False) as http:  # type: ignore[attr-defined]
        assert http.get("/studios", params={"name": "Too big"}).json() == []  # nothing was stored
    assert problems == []
    context.close()


def test_another_user_sees_nothing_of_a_studio(browser: Any, server: StudiosServer, repo: str) -> None:
    import httpx

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys['alice']}"}, trust_env=False) as http:  # type: ignore[attr-defined]
        studio = http.post("/studios", json={"name": "Alice's secret plans", "gitRepoUrl": repo}).json()
    context, page, problems = new_page(browser)
    sign_in(page, server, "bob")
    page.wait_for_selector("text=No studios yet")
    assert "secret plans" not in page.content()
    shot(page, "studios-empty")
    page.fill("#search", "secret")
    page.wait_for_selector("text=No studio matches")
    page.goto(f"{server.url}/ui/studios/{studio['id']}")
    page.wait_for_selector(f"text=Studio {studio['id']} was not found.")
    assert "secret plans" not in page.content()
    page.goto(f"{server.url}/ui/studios/{studio['id']}/edit")
    page.wait_for_selector(f"text=Studio {studio['id']} was not found.")
    assert "secret plans" not in page.content()
    assert problems == []
    context.close()


def test_keyboard_focus_is_visible_and_buttons_are_buttons(browser: Any, server: StudiosServer) -> None:
    context, page, _ = new_page(browser)
    sign_in(page, server, "bob")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.evaluate("(() => { const el = document.activeElement; const s = getComputedStyle(el); return [el.tagName, s.outlineStyle, s.outlineWidth]; })()")
    assert focused[0] in ("A", "BUTTON", "INPUT", "SELECT") and focused[1] != "none" and focused[2] != "0px", focused
    assert page.evaluate("[...document.querySelectorAll('[onclick], div[role=button]')].length") == 0
    unlabelled = page.evaluate("[...document.querySelectorAll('input, select, textarea')].filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.id)")
    assert unlabelled == []
    context.close()


def test_a_sleeping_deployment_wakes_from_its_page(browser: Any, tmp_path: Path, repo: str) -> None:
    import httpx

    env = {"STUDIOS_IDLE_SLEEP_SECONDS": "2", "STUDIOS_STOP_GRACE_SECONDS": "1", "STUDIOS_START_TIMEOUT_SECONDS": "20", "STUDIOS_ALLOW_LOCAL_GIT_REPOS": "true"}
    with studios_server(tmp_path / "sleepy", name="ui_sleepy", runtime="process", env=env) as srv:
        srv.keys = {"carol": srv.create_user("carol")}  # type: ignore[attr-defined]
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.keys['carol']}"}, trust_env=False, timeout=30) as http:  # type: ignore[attr-defined]
            sid = http.post("/studios", json={"name": "Sleepy", "gitRepoUrl": repo}).json()["id"]
            did = http.post(f"/studios/{sid}/deployments").json()["deploymentId"]
            poll(lambda: http.get(f"/studios/{sid}/deployments/{did}").json()["state"] == "sleeping", 30, "the deployment to fall asleep")
        context, page, problems = new_page(browser)
        sign_in(page, srv, "carol")
        page.goto(f"{srv.url}/ui/studios/{sid}/deployments/{did}")
        try:
            page.wait_for_selector("#state [data-state=sleeping]")
        except Exception as error:  # say what the page and the API showed instead
            shown = page.evaluate("document.querySelector('main') ? document.querySelector('main').innerText.slice(0, 600) : document.body.innerText.slice(0, 600)")
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.keys['carol']}"}, trust_env=False, timeout=30) as http:  # type: ignore[attr-defined]
                api_state = http.get(f"/studios/{sid}/deployments/{did}").json()
            raise AssertionError(f"{error}\npage {page.url}: {shown!r}\nAPI: {api_state.get('state')} {api_state.get('stateMessage')!r}\n{srv.log_tail(3000)}") from None
        assert page.is_visible("#open")  # opening it would wake it too
        shot(page, "deployment-sleeping")
        page.click("#wake")
        # woken (the state may already be asleep again: idle sleep is 2 s here), as its steps show
        page.wait_for_selector("#steps li:has-text('waking up: the display URL was opened')")
        expect = pytest.importorskip("playwright.sync_api").expect
        expect(page.locator("#steps li:has-text('ready after')")).to_have_count(2, timeout=WAIT_MS)
        assert problems == []
        context.close()


def test_the_pages_log_cursor_hands_over_lines_stored_late(browser: Any, server: StudiosServer) -> None:
    """The polling fallback's LogCursor (static/js/poll.js), run in the browser: an app's lines
    stored after a later system line still come through, once each (the CLI's twin is in
    tests/client)."""
    context, page, _ = new_page(browser)
    page.goto(server.url + "/ui/signin")
    got = page.evaluate("""async () => {
      const { LogCursor } = await import('/ui/static/js/poll.js');
      const line = (t, message, source = 'user') => ({ createdAt: `2026-01-01T00:00:${t}Z`, message, stream: 'stdout', source });
      const cursor = new LogCursor();
      const out = [];
      out.push(cursor.take([line('10.000', 'a'), line('12.000', 'ready', 'system')]).map((l) => l.message));
      out.push(cursor.params().start_at);
      const later = [line('10.000', 'a'), line('11.000', 'b'), line('11.000', 'b'), line('12.000', 'ready', 'system'), line('12.500', 'c')];
      out.push(cursor.take(later).map((l) => l.message));
      out.push(cursor.take(later).map((l) => l.message));
      return out;
    }""")
    assert got == [["a", "ready"], "2026-01-01T00:00:07.000Z", ["b", "b", "c"], []]
    context.close()
