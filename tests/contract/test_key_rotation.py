"""Rotating the secret key, as an operator would: `studios serve` runs with STUDIOS_SECRET_KEY=old,
is restarted with a new key in front (new,old), and everything made under the old key keeps
working: API keys (re-hashed with the new key on use), a displayUrl and the viewer cookie it
bought, and a sealed credential handed to an app. After `studios credentials reseal`, the old key
can be dropped: keys used since the rotation and the credential still work; a key nobody used
during the overlap does not (docs/security.md says so)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server import StudiosServer, studios_server, wait_state

civis = pytest.importorskip("civis", reason="the contract tests need the civis client (pip install -e '.[test]')")

OLD, NEW = "old-secret-0123456789abcdef", "new-secret-fedcba9876543210"

APP = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("password=" + os.environ.get("DB_PASSWORD", "")).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StudiosServer]:
    app = tmp_path / "secret_app.py"
    app.write_text(APP)
    env = {"STUDIOS_SECRET_KEY": OLD, "STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_STOP_GRACE_SECONDS": "1",
           "STUDIOS_IMAGE_COMMANDS": json.dumps({"secret-app": f"exec {sys.executable} {app}"})}
    with studios_server(tmp_path / "server", name="rotation", runtime="process", env=env) as srv:
        yield srv


def as_user(server: StudiosServer, key: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CIVIS_API_ENDPOINT", server.url)
    monkeypatch.setenv("CIVIS_API_KEY", key)
    return civis.APIClient()


def status(server: StudiosServer, key: str) -> int:
    return httpx.get(f"{server.url}/users/me", headers={"Authorization": f"Bearer {key}"}, trust_env=False).status_code


class Viewer:
    """A browser's part: trade a displayUrl for the cookie, then send it with each request."""

    def __init__(self, display_url: str) -> None:
        url = httpx.URL(display_url)
        self.host = f"{url.host}:{url.port}"
        self.base = str(url.copy_with(host="127.0.0.1", path="/", query=None))
        self.display_url = str(url.copy_with(host="127.0.0.1"))
        self.cookie = ""

    def sign_in(self) -> int:
        response = httpx.get(self.display_url, headers={"Host": self.host}, trust_env=False)
        if response.status_code == 303:
            self.cookie = response.headers["set-cookie"].split(";", 1)[0]
        return response.status_code

    def page(self) -> httpx.Response:
        return httpx.get(self.base, headers={"Host": self.host, "Cookie": self.cookie}, trust_env=False)


def rotate(server: StudiosServer, keys: str) -> None:
    server.stop()
    server.env["STUDIOS_SECRET_KEY"] = keys
    server.start()


def test_a_rotation_keeps_keys_links_cookies_and_credentials_working(server: StudiosServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    alice, idle = server.create_user("alice"), server.create_user("idle")
    client = as_user(server, alice, monkeypatch)
    cred = client.credentials.post(type="Custom", username="db-user", password="s3cret-pw", name="db")
    params = [{"name": "DB", "type": "credential_custom", "value": str(cred.id)}]
    studio = client.studios.post(name="secrets", docker_image_name="secret-app", params=params)
    first = wait_state(client, studio.id, client.studios.post_deployments(studio.id).deployment_id, "running")
    viewer = Viewer(first.display_url)
    assert viewer.sign_in() == 303 and viewer.page().text == "password=s3cret-pw"
    # Two more links signed with the old key, not opened yet (a link opens once, restarts included).
    unopened = [client.studios.get_deployments(studio.id, first.deployment_id).display_url for _ in range(2)]

    rotate(server, f"{NEW},{OLD}")  # a new key in front; the old one still verifies
    client = as_user(server, alice, monkeypatch)  # the old API key
    assert client.users.get_me().username == "alice"
    assert viewer.page().text == "password=s3cret-pw"  # the viewer cookie signed with the old key
    assert Viewer(first.display_url).sign_in() == 403  # spent before the restart: still spent
    assert Viewer(unopened[0]).sign_in() == 303  # a displayUrl signed with the old key
    second = wait_state(client, studio.id, client.studios.post_deployments(studio.id).deployment_id, "running")
    fresh = Viewer(second.display_url)  # the credential sealed under the old key is opened for the app
    assert fresh.sign_in() == 303 and fresh.page().text == "password=s3cret-pw"
    bob = server.create_user("bob")  # made with the new key
    assert status(server, bob) == 200

    assert "resealed 1 credential" in server.studios_stderr("credentials", "reseal")
    rotate(server, NEW)  # the old key dropped
    assert status(server, alice) == 200  # re-hashed with the new key when used during the overlap
    assert status(server, bob) == 200
    assert status(server, idle) == 401  # never used during the overlap: still under the old key
    assert Viewer(unopened[1]).sign_in() == 403  # links signed with the dropped key end
    client = as_user(server, alice, monkeypatch)
    third = wait_state(client, studio.id, client.studios.post_deployments(studio.id).deployment_id, "running")
    viewer = Viewer(third.display_url)
    assert viewer.sign_in() == 303 and viewer.page().text == "password=s3cret-pw"  # resealed with the new key
    client.studios.delete_deployments(studio.id, third.deployment_id)
