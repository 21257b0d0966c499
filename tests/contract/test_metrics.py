"""Prometheus `/metrics` through a real `studios serve` (fake runtime): refused without access,
and each metric moves when its thing happens: a request (under its route's template), a
deployment starting (by state, start-up phases), its lines stored and dropped past the cap,
requests and bytes through the proxy, the event loop measured. With `--workers 2` (PostgreSQL)
any worker's answer counts every worker's requests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import TEST_DATABASE_URL
from contract.server import OpenedApp, StudiosServer, poll, studios_server

TOKEN = secrets.token_urlsafe(32)
CAP = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    env = {"STUDIOS_METRICS_TOKEN": TOKEN, "STUDIOS_LOG_LINE_CAP": str(CAP)}
    with studios_server(tmp_path_factory.mktemp("metrics"), name="metrics", runtime="fake", env=env) as started:
        started.admin = started.create_user("root", "--admin")  # type: ignore[attr-defined]
        started.user = started.create_user("pat")  # type: ignore[attr-defined]
        yield started


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: StudiosServer, token: str = TOKEN) -> Samples:
    response = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def api(server: StudiosServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, trust_env=False, timeout=30)


def test_refused_without_access(server: StudiosServer) -> None:
    url = f"{server.url}/metrics"
    with httpx.Client(trust_env=False, timeout=30) as http:
        nobody = http.get(url)
        assert nobody.status_code == 401 and nobody.json()["error"] == "unauthorized"
        wrong = http.get(url, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
        assert wrong.status_code == 401 and "studios_" not in wrong.text
        user = http.get(url, headers={"Authorization": f"Bearer {server.user}"})  # type: ignore[attr-defined]
        assert user.status_code == 403 and user.json()["error"] == "forbidden" and "studios_" not in user.text
        admin = http.get(url, headers={"Authorization": f"Bearer {server.admin}"})  # type: ignore[attr-defined]
        assert admin.status_code == 200 and "studios_http_request_duration_seconds" in admin.text
    assert "/metrics" not in httpx.get(f"{server.url}/endpoints", trust_env=False).json()["paths"]


def test_a_request_counts_under_its_route_template(server: StudiosServer) -> None:
    with api(server, server.user) as http:  # type: ignore[attr-defined]
        studio = http.post("/studios", json={"name": "counted", "dockerImageName": "fake"}).json()
        before = scrape(server)
        for _ in range(3):
            assert http.get(f"/studios/{studio['id']}").status_code == 200
        assert http.get("/studios/999999").status_code == 404
        assert http.get("/no/such/path").status_code == 404
    after = scrape(server)
    name = "studios_http_request_duration_seconds_count"
    route = {"method": "GET", "route": "/studios/{id}"}
    assert value(after, name, **route, status="2xx") - value(before, name, **route, status="2xx") == 3
    assert value(after, name, **route, status="4xx") - value(before, name, **route, status="4xx") == 1
    assert value(after, name, method="GET", route="<unmatched>", status="4xx") - value(before, name, method="GET", route="<unmatched>", status="4xx") == 1
    # a raw path never becomes a label: the ids would make a series per studio
    assert not any(f"/studios/{studio['id']}" in dict(labels).get("route", "") for _, labels in after)
    bucket = "studios_http_request_duration_seconds_bucket"
    assert value(after, bucket, **route, status="2xx", le="+Inf") == value(after, name, **route, status="2xx")


def test_a_deployment_moves_states_startup_lines_and_proxy(server: StudiosServer) -> None:
    before = scrape(server)
    with api(server, server.user) as http:  # type: ignore[attr-defined]
        studio = http.post("/studios", json={"name": "moving", "dockerImageName": "fake", "params": [{"name": "STUDIOS_FAKE", "type": "string", "value": "slow-start=0.3"}]}).json()
        dep = http.post(f"/studios/{studio['id']}/deployments", json={}).json()
        path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
        running = poll(lambda: (d := http.get(path).json())["state"] == "running" and d, 30, "running")
        # the counts are read at most every 5 s: wait for them to say so
        during = poll(lambda: (s := scrape(server)) and value(s, "studios_deployments", state="running", runtime="fake") == 1 and s, 30, "one running deployment in the metrics")
        for phase in ("queued", "starting"):
            grew = value(during, "studios_deployment_startup_seconds_count", phase=phase, runtime="fake") - value(before, "studios_deployment_startup_seconds_count", phase=phase, runtime="fake")
            assert grew == 1, phase
        took = value(during, "studios_deployment_startup_seconds_sum", phase="starting", runtime="fake") - value(before, "studios_deployment_startup_seconds_sum", phase="starting", runtime="fake")
        # The app listened only after 0.3 s. The phase is timed from the events this server hears:
        # on PostgreSQL the "starting" one may be heard some ms after its commit, the "running"
        # one sooner (seen 0.297 s), so the bound allows for that delay.
        assert took >= 0.25

        app = OpenedApp(running["displayUrl"])
        for n in range(CAP + 5):  # more than the cap: some are dropped
            app.print(f"line-{n}")
        app.close()

        def user_lines() -> int:
            return sum(1 for line in http.get(f"{path}/logs", params={"limit": 1000}).json() if line["source"] == "user")

        stored_name, dropped_name = "studios_log_lines_stored_total", "studios_log_lines_dropped_total"
        after = poll(lambda: (s := scrape(server)) and value(s, dropped_name) > value(before, dropped_name) and s, 30, "dropped lines in the metrics")
        stored = value(after, stored_name) - value(before, stored_name)
        dropped = value(after, dropped_name) - value(before, dropped_name)
        assert stored == user_lines() == CAP
        assert dropped >= 5

        proxied = value(after, "studios_proxy_requests_total") - value(before, "studios_proxy_requests_total")
        assert proxied >= CAP + 6  # the link's exchange, then each print
        assert value(after, "studios_proxy_bytes_total", direction="in") > value(before, "studios_proxy_bytes_total", direction="in")
        assert value(after, "studios_proxy_bytes_total", direction="out") - value(before, "studios_proxy_bytes_total", direction="out") >= len(b"printed\n") * (CAP + 5)

        assert http.delete(path).status_code == 204
        ended = poll(lambda: (s := scrape(server)) and value(s, "studios_deployments", state="running", runtime="fake") == 0 and s, 30, "no running deployment in the metrics")
        assert value(ended, "studios_deployments", state="terminated", runtime="fake") >= 1
    assert value(after, "studios_event_loop_lag_seconds_count") > 0


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="--workers needs PostgreSQL (STUDIOS_TEST_DATABASE_URL)")
def test_with_workers_any_worker_answers_for_all(tmp_path: Path) -> None:
    env = {"STUDIOS_METRICS_TOKEN": TOKEN, "STUDIOS_WORKERS": "2"}
    with studios_server(tmp_path, name="metrics_workers", runtime="fake", env=env) as server:
        key = server.create_user("wes")
        requests = 40
        for _ in range(requests):  # a new connection each: the workers share them out
            with api(server, key) as http:
                assert http.get("/studios").status_code == 200
        name, route = "studios_http_request_duration_seconds_count", {"method": "GET", "route": "/studios", "status": "2xx"}
        seen = {value(scrape(server), name, **route) for _ in range(6)}
        assert seen == {requests}, seen
