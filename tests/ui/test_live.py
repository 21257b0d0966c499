"""The pages' live updates in a real browser through a real `studios serve`: the studios list and
a studio's page follow deployments from the deployments stream without reloading; a
deployment page whose streams fail polls and says so; one whose stream drops (the service
restarts) comes back and goes on from the last line it had, nothing shown twice."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.server import OpenedApp, StudiosServer, poll, studios_server
from ui.browsing import NO_CHROMIUM, WAIT_MS, new_page, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(NO_CHROMIUM, reason="Debian chromium is not installed (apt-get install -y chromium)"),
]


def api(server: StudiosServer, user: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys[user]}"}, trust_env=False, timeout=30)  # type: ignore[attr-defined]


def running(http: httpx.Client, sid: int, did: int) -> dict[str, Any]:
    return poll(lambda: (d := http.get(f"/studios/{sid}/deployments/{did}").json())["state"] == "running" and d, 30, "running")


def test_the_lists_follow_deployments_live(browser: Any, server: StudiosServer, repo: str) -> None:
    context, page, problems = new_page(browser)
    sign_in(page, server, "bob")
    with api(server, "bob") as http:
        sid = http.post("/studios", json={"name": "Followed", "gitRepoUrl": repo}).json()["id"]
        page.reload()
        row = f"tr[data-studio='{sid}']"
        page.wait_for_selector(f"{row} td.newest [data-state=none]")
        page.evaluate("window.__sameDocument = true")
        first = http.post(f"/studios/{sid}/deployments").json()["deploymentId"]
        page.wait_for_selector(f"{row} td.newest [data-state=running]")  # no reload: the stream said so

        page.click(f"{row} a:has-text('Followed')")
        page.wait_for_selector(f"tr[data-deployment='{first}'] [data-state=running]")
        second = http.post(f"/studios/{sid}/deployments").json()["deploymentId"]
        # the new deployment joins the table and runs; the first one ends, in place
        page.wait_for_selector(f"tr[data-deployment='{second}'] [data-state=running]")
        page.wait_for_selector(f"tr[data-deployment='{first}'] [data-state=terminated]")
        assert f"replaced by deployment {second}" in page.text_content(f"tr[data-deployment='{first}']")
        page.wait_for_selector(f".latest a:has-text('Deployment #{second}')")
        page.wait_for_selector(".latest a:has-text('Open the app')")
        http.delete(f"/studios/{sid}/deployments/{second}")
        page.wait_for_selector(f"tr[data-deployment='{second}'] [data-state=terminated]")
        page.wait_for_selector(".latest [data-state=terminated]")
        assert page.locator(".latest a:has-text('Open the app')").count() == 0
        assert page.evaluate("window.__sameDocument") is True
    assert problems == []
    context.close()


def test_a_page_whose_streams_fail_polls_and_says_so(browser: Any, server: StudiosServer, repo: str) -> None:
    context, page, problems = new_page(browser)
    # a proxy in front of the service that breaks event streams
    context.route(re.compile(r".*/(events|logs/stream)(\?.*)?$"), lambda route: route.fulfill(status=502, body="Bad Gateway"))
    sign_in(page, server, "alice")
    with api(server, "alice") as http:
        sid = http.post("/studios", json={"name": "Unstreamed", "gitRepoUrl": repo, "params": [{"name": "GREETING", "type": "string", "value": "polled"}]}).json()["id"]
        did = http.post(f"/studios/{sid}/deployments").json()["deploymentId"]
        dep = running(http, sid, did)
        page.goto(f"{server.url}/ui/studios/{sid}/deployments/{did}")
        status = page.wait_for_selector("#live-status[data-mode=polling]")
        assert "checks for changes every second" in status.text_content()
        page.wait_for_selector("#state [data-state=running]")
        page.wait_for_selector("#log .ln.stdout:has-text('hello polled')")
        app = OpenedApp(dep["displayUrl"])
        try:
            assert app.get("/while-polled").status_code == 200
        finally:
            app.close()
        page.wait_for_selector("#log .ln.stdout:has-text('served /while-polled')")
        http.delete(f"/studios/{sid}/deployments/{did}")
        page.wait_for_selector("#state [data-state=terminated]")
        assert page.locator("#log .ln:has-text('hello polled')").count() == 1
    assert problems == []
    context.close()


def test_a_dropped_stream_resumes_from_the_last_line(browser: Any, tmp_path: Path, repo: str) -> None:
    env = {"STUDIOS_START_TIMEOUT_SECONDS": "20", "STUDIOS_STOP_GRACE_SECONDS": "1", "STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_ALLOW_LOCAL_GIT_REPOS": "true"}
    with studios_server(tmp_path / "restarting", name="ui_restart", runtime="process", env=env) as srv:
        srv.keys = {"dan": srv.create_user("dan")}  # type: ignore[attr-defined]
        context, page, problems = new_page(browser)
        sign_in(page, srv, "dan")
        with api(srv, "dan") as http:
            sid = http.post("/studios", json={"name": "Restarted", "gitRepoUrl": repo, "params": [{"name": "GREETING", "type": "string", "value": "again"}]}).json()["id"]
            did = http.post(f"/studios/{sid}/deployments").json()["deploymentId"]
            app = OpenedApp(running(http, sid, did)["displayUrl"])
        try:
            page.goto(f"{srv.url}/ui/studios/{sid}/deployments/{did}")
            page.wait_for_selector("#live-status[data-mode=live]")
            page.evaluate("window.__sameDocument = true")
            assert app.get("/before").status_code == 200
            page.wait_for_selector("#log .ln:has-text('served /before')")
            srv.restart()  # the streams drop; the app lives on and is adopted
            assert app.get("/after").status_code == 200
            page.wait_for_selector("#log .ln:has-text('served /after')", timeout=WAIT_MS * 2)
            page.wait_for_selector("#live-status[data-mode=live]")
            for text in ("hello again", "served /before", "served /after"):
                assert page.locator(f"#log .ln:has-text('{text}')").count() == 1, text
            assert page.evaluate("window.__sameDocument") is True
        finally:
            app.close()
        assert problems == []
        context.close()
