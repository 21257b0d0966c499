"""A deployment's displayUrl through the proxy that runs inside the service: the signed link
opens the app for a viewer with read permission, a tampered link or a revoked share does not,
and an idle deployment sleeps and wakes when its link is opened again."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest

from chromium import NO_CHROMIUM, launched
from conftest import Api, TestUser, wait_until

APP = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from the app at " + self.path + " base=" + os.environ.get("STUDIOS_BASE_PATH", "")).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.fixture
def settings_overrides(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Idle sleep is off unless a test asks for it (indirect parametrization): a test that
    opens a link after a browser has started must not race a 2 s idle clock."""
    app = tmp_path_factory.mktemp("app") / "web_app.py"
    app.write_text(APP)
    return {"runtime": "process", "image_commands": {"web": f"exec {sys.executable} {app}"}, "idle_sleep_seconds": 0, "stop_grace_seconds": 1.0, **getattr(request, "param", {})}


def running_response(me: Api, studio_id: int, deployment_id: int) -> httpx.Response:
    """The first GET of the deployment that says `running` (its headers belong to that moment)."""
    return wait_until(lambda: (r := me.get(f"/studios/{studio_id}/deployments/{deployment_id}")).json()["state"] == "running" and r, 30, "running")


def running(me: Api, studio_id: int, deployment_id: int) -> dict[str, Any]:
    return running_response(me, studio_id, deployment_id).json()


def open_link(url: str) -> httpx.Response:
    """What a browser does: follow the token exchange's redirect, keeping the cookie."""
    # *.localhost names resolve to loopback in browsers; httpx needs the address spelled out.
    host = httpx.URL(url).host
    with httpx.Client(follow_redirects=False, timeout=10, trust_env=False) as client:
        first = client.get(url.replace(host, "127.0.0.1", 1), headers={"Host": f"{host}:{httpx.URL(url).port}"})
        if first.status_code not in (302, 303, 307):
            return first
        cookie = first.headers["set-cookie"].split(";", 1)[0]
        target = httpx.URL(url).copy_with(path=httpx.URL(first.headers["location"]).path, query=None)
        return client.get(str(target).replace(host, "127.0.0.1", 1), headers={"Host": f"{host}:{httpx.URL(url).port}", "Cookie": cookie})


def test_display_url_opens_the_app_and_a_tampered_link_does_not(api: Api, author: TestUser, other: TestUser) -> None:
    me = api.as_(author)
    s = me.post("/studios", json={"name": "web", "dockerImageName": "web"}).json()
    dep = running(me, s["id"], me.post(f"/studios/{s['id']}/deployments").json()["deploymentId"])
    assert dep["host"].startswith(f"d-{dep['deploymentId']}.localhost")
    page = open_link(dep["displayUrl"])
    assert page.status_code == 200 and page.text.startswith("hello from the app at / base=/")

    tampered = dep["displayUrl"][:-3] + ("AAA" if not dep["displayUrl"].endswith("AAA") else "BBB")
    refused = open_link(tampered)
    assert refused.status_code == 403 and "<html" in refused.text.lower()

    # The other user has no share: their own link is refused until the author shares.
    me.put(f"/studios/{s['id']}/shares/users", json={"userIds": [other.id], "permissionLevel": "read"})
    theirs = api.as_(other).get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").json()["displayUrl"]
    opened = open_link(theirs)
    assert opened.status_code == 200
    assert open_link(theirs).status_code == 403  # a link opens a studio once
    # Unsharing closes the session that link opened, at its next request.
    host, cookie = opened.request.headers["Host"], opened.request.headers["Cookie"]
    again = httpx.get(str(opened.request.url), headers={"Host": host, "Cookie": cookie}, trust_env=False)
    assert again.status_code == 200
    me.delete(f"/studios/{s['id']}/shares/users/{other.id}")
    refused = httpx.get(str(opened.request.url), headers={"Host": host, "Cookie": cookie}, trust_env=False)
    assert refused.status_code == 403 and "do not have access" in refused.text
    me.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}")


@pytest.mark.parametrize("settings_overrides", [{"idle_sleep_seconds": 2.0}], indirect=True, ids=["idle-2s"])
def test_idle_sleep_then_the_link_wakes_it(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = me.post("/studios", json={"name": "sleepy", "dockerImageName": "web"}).json()
    response = running_response(me, s["id"], me.post(f"/studios/{s['id']}/deployments").json()["deploymentId"])
    dep = response.json()
    assert response.headers["x-studios-sleeps-at"] > dep["updatedAt"]
    asleep = wait_until(lambda: (d := me.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}").json())["state"] == "sleeping" and d, 30, "sleeping")
    assert asleep["stateMessage"] == "sleeping"
    lines = [line["message"] for line in me.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}/logs").json()]
    assert any(m.startswith("sleeping: no traffic for 2 s") for m in lines)

    page = open_link(asleep["displayUrl"])
    assert page.status_code == 503 and "starting" in page.text.lower()  # the "starting" page, which polls until running
    awake = running(me, s["id"], dep["deploymentId"])
    # What the starting page does (and a person would): load again until the app answers. With
    # a 2 s idle clock it may have dozed off again in between; opening the link wakes it again.
    wait_until(lambda: open_link(awake["displayUrl"]).text.startswith("hello from the app"), 30, "the app behind the link")
    lines = [line["message"] for line in me.get(f"/studios/{s['id']}/deployments/{dep['deploymentId']}/logs").json()]
    assert "waking up: the display URL was opened" in lines
    me.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}")






@pytest.mark.browser
@pytest.mark.skipif(NO_CHROMIUM, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_a_real_browser_opens_the_display_url_of_a_deployed_app(api: Api, author: TestUser) -> None:
    me = api.as_(author)
    s = me.post("/studios", json={"name": "browser", "dockerImageName": "web"}).json()
    dep = running(me, s["id"], me.post(f"/studios/{s['id']}/deployments").json()["deploymentId"])
    with launched() as browser:
        page = browser.new_page()
        page.goto(dep["displayUrl"])
        # A person waits for the app's text (the starting page, if shown, reloads into it).
        page.wait_for_function("document.body && document.body.innerText.startsWith('hello from the app')", timeout=30_000)
        assert page.inner_text("body").startswith("hello from the app at / base=/")
        tampered = browser.new_page()
        response = tampered.goto(dep["displayUrl"][:-4] + "AAAA")
        assert response is not None and response.status == 403
        assert "access denied" in tampered.inner_text("body").lower()
    me.delete(f"/studios/{s['id']}/deployments/{dep['deploymentId']}")
