"""One port for everything: with `STUDIOS_PROXY_FALLBACK` pointing at the API's own listener,
`studios serve` forwards what is not for a deployment from the display-URL proxy's port to the
API, so the published civis client works through the proxy's URL alone, while deployment hosts
stay behind the proxy's access checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server import StudiosServer, studios_server

civis = pytest.importorskip("civis", reason="the contract tests need the civis client (pip install -e '.[test]')")


def one_port(server: StudiosServer) -> None:
    proxy_url = f"http://localhost:{server.proxy_port}"
    server.env |= {"STUDIOS_PROXY_FALLBACK": f"127.0.0.1:{server.port}", "STUDIOS_PUBLIC_URL": proxy_url, "STUDIOS_PROXY_PUBLIC_URL": proxy_url}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    root = tmp_path_factory.mktemp("one-port")
    with studios_server(root / "server", name="one_port", runtime="process", env={"STUDIOS_IDLE_SLEEP_SECONDS": "0"}, configure=one_port) as srv:
        yield srv


def test_the_civis_client_works_through_the_proxy_port(server: StudiosServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CIVIS_API_ENDPOINT", f"http://127.0.0.1:{server.proxy_port}")
    monkeypatch.setenv("CIVIS_API_KEY", server.create_user("solo"))
    client: Any = civis.APIClient()  # reads GET /endpoints through the proxy
    studio = client.studios.post(name="through the proxy", docker_image_name="anything")
    assert client.studios.get(studio.id).name == "through the proxy"
    assert client.users.get_me().username == "solo"


def test_deployment_hosts_still_need_a_sign_in(server: StudiosServer) -> None:
    with httpx.Client(trust_env=False, timeout=10) as http:
        refused = http.get(f"http://127.0.0.1:{server.proxy_port}/", headers={"Host": f"d-1.localhost:{server.proxy_port}"})
        assert refused.status_code == 403 and "<html" in refused.text.lower()
        api = http.get(f"http://127.0.0.1:{server.proxy_port}/studios", headers={"Host": f"localhost:{server.proxy_port}"})
        assert api.status_code == 401 and api.json()["code"] == 401  # the API's own answer: a key is required
