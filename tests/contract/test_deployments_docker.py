"""Deployments end to end on the Docker runtime: the published `civis` client against
`studios serve` run as a subprocess (STUDIOS_RUNTIME=docker), with the locally built test
image `studios-test/busybox:latest` (it runs the shell code in the `APP_CMD` param; default
`httpd -f -p $PORT`). Skipped, with the reason, only when `docker info` fails."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitserver import git_http_server

from .server import REPO, StudiosServer, log_lines, make_repo, messages, open_link, poll, studios_server, wait_state

civis = pytest.importorskip("civis", reason="the contract tests need the civis client (pip install -e '.[test]')")
from civis.base import CivisAPIError  # noqa: E402

pytestmark = pytest.mark.docker

IMAGE = "studios-test/busybox"
GIT_USER, GIT_PASSWORD = "gitter", "pr1vate-Pa55"


@pytest.fixture(scope="module")
def docker_ready() -> None:
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"`docker info` failed, no Docker engine to test against (run scripts/start-dockerd.sh): {info.stderr.strip()[-300:]}")
    built = subprocess.run([str(REPO / "scripts" / "build-test-images.sh")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"scripts/build-test-images.sh failed:\n{built.stdout}\n{built.stderr}"


@pytest.fixture(scope="module")
def server(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    root = tmp_path_factory.mktemp("deploy-docker")
    env = {"STUDIOS_START_TIMEOUT_SECONDS": "30", "STUDIOS_STOP_GRACE_SECONDS": "2", "STUDIOS_IDLE_SLEEP_SECONDS": "0"}
    if os.environ.get("DOCKER_HOST"):
        env["STUDIOS_DOCKER_URL"] = os.environ["DOCKER_HOST"]
    with studios_server(root / "server", name="deploy_docker", runtime="docker", env=env) as srv:
        srv.keys = {name: srv.create_user(name) for name in ("alice", "bob")}  # type: ignore[attr-defined]
        yield srv


def as_user(server: StudiosServer, user: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CIVIS_API_ENDPOINT", server.url)
    monkeypatch.setenv("CIVIS_API_KEY", server.keys[user])  # type: ignore[attr-defined]
    return civis.APIClient()


@pytest.fixture
def client(server: StudiosServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return as_user(server, "alice", monkeypatch)


def image_studio(client: Any, name: str, app_cmd: str | None = None, **extra: Any) -> int:
    params = [{"name": "APP_CMD", "type": "string", "value": app_cmd}] if app_cmd else []
    return client.studios.post(name=name, docker_image_name=IMAGE, docker_image_tag="latest", params=params, **extra).id


def deploy(client: Any, studio_id: int) -> int:
    dep = client.studios.post_deployments(studio_id)
    assert dep.state == "pending", dep
    return dep.deployment_id


def test_image_studio_runs_reaches_logs_and_usage(client: Any) -> None:
    sid = image_studio(client, "busybox httpd", "echo out-line; echo err-line >&2; exec httpd -f -p $PORT")
    did = deploy(client, sid)
    dep = wait_state(client, sid, did, "running")
    page = open_link(dep.display_url)
    assert page.status_code == 200 and page.text.strip() == "hello from studios-test", (page.status_code, page.text[:300])

    lines = poll(lambda: (ls := log_lines(client, sid, did)) and {"out-line", "err-line"} <= set(messages(ls, "user")) and ls, 10, "the app's lines")
    user = [(line.message, line.stream) for line in lines if line.source == "user"]
    assert ("out-line", "stdout") in user and ("err-line", "stderr") in user
    assert ("out-line", "stderr") not in user and ("err-line", "stdout") not in user
    assert any(m.startswith("ready after ") for m in messages(lines, "system"))

    client.studios.delete_deployments(sid, did)
    ended = wait_state(client, sid, did, "terminated", timeout=15)
    assert ended.state_message == "stopped by alice"
    assert ended.max_memory_usage is not None and ended.max_memory_usage > 0, ended.max_memory_usage


def test_memory_hog_is_killed_at_its_limit(client: Any) -> None:
    sid = image_studio(client, "hog", "head -c 200m /dev/zero | tail", required_resources={"memory": 32})
    did = deploy(client, sid)
    dep = wait_state(client, sid, did, "terminated")
    assert dep.state_message == "killed: out of memory (limit 32 MB)"
    assert dep.state_message in messages(log_lines(client, sid, did), "system")


def test_a_child_killed_for_memory_is_a_system_line_and_the_app_lives_on(client: Any) -> None:
    app = "httpd -f -p $PORT & dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null; echo child ended $?; wait"
    sid = image_studio(client, "child hog", app, required_resources={"memory": 32})
    did = deploy(client, sid)
    wanted = "a process in the app was killed: out of memory (limit 32 MB)"
    lines = poll(lambda: (ls := log_lines(client, sid, did)) and wanted in messages(ls, "system") and ls, 30, "the OOM kill's system line")
    assert "child ended 137" in messages(lines, "user")
    dep = wait_state(client, sid, did, "running")
    assert open_link(dep.display_url).status_code == 200
    client.studios.delete_deployments(sid, did)
    assert wait_state(client, sid, did, "terminated", timeout=15).state_message == "stopped by alice"


def test_bad_image_name(client: Any) -> None:
    sid = client.studios.post(name="no image", docker_image_name="studios-test/no-such-image", docker_image_tag="v0").id
    did = deploy(client, sid)
    dep = wait_state(client, sid, did, "terminated", timeout=60)
    assert dep.state_message.startswith("image studios-test/no-such-image:v0 could not be pulled: "), dep.state_message
    assert len(dep.state_message) > len("image studios-test/no-such-image:v0 could not be pulled: ")
    assert dep.state_message in messages(log_lines(client, sid, did), "system")


@pytest.fixture
def private_repo(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "git-root"
    make_repo(root / "private", {"index.html": "private content\n"})
    with git_http_server(root, GIT_USER, GIT_PASSWORD) as base:
        yield f"{base}/private"


def test_private_git_repo_needs_the_credential(client: Any, server: StudiosServer, private_repo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = "exec httpd -f -p $PORT -h /workspace"
    # No credential at all: git's authentication failure.
    refused = image_studio(client, "private, no credential", app, git_repo_url=private_repo, git_ref="main")
    did = deploy(client, refused)
    dep = wait_state(client, refused, did, "terminated")
    assert dep.state_message.startswith("git clone failed: "), dep.state_message
    assert "terminal prompts disabled" in dep.state_message or "Authentication failed" in dep.state_message, dep.state_message
    assert GIT_PASSWORD not in dep.state_message
    assert dep.state_message in messages(log_lines(client, refused, did), "system")

    cred = client.credentials.post(type="Git", username=GIT_USER, password=GIT_PASSWORD, name="private git")
    assert not hasattr(cred, "password") or cred.password in (None, "")

    # Named by the studio, then the fallback: the user's first Git credential.
    named = image_studio(client, "private, named credential", app, git_repo_url=private_repo, git_ref="main", git_credential_id=cred.id)
    for sid in (named, refused):
        did = deploy(client, sid)
        dep = wait_state(client, sid, did, "running")
        page = open_link(dep.display_url)
        assert page.status_code == 200 and page.text == "private content\n", (sid, page.status_code, page.text[:300])
        assert GIT_PASSWORD not in " ".join(m.message for m in log_lines(client, sid, did))
        client.studios.delete_deployments(sid, did)
        wait_state(client, sid, did, "terminated", timeout=15)

    # Someone else deploying a studio that names alice's credential is refused at the POST.
    bob_id = as_user(server, "bob", monkeypatch).users.get_me().id
    monkeypatch.setenv("CIVIS_API_KEY", server.keys["alice"])  # type: ignore[attr-defined]
    client.studios.put_shares_users(named, user_ids=[bob_id], permission_level="write")
    bob = as_user(server, "bob", monkeypatch)
    with pytest.raises(CivisAPIError) as error:
        bob.studios.post_deployments(named)
    assert error.value.status_code == 400
    assert str(cred.id) in error.value.error_message, error.value.error_message


def test_restart_adopts_a_running_container(client: Any, server: StudiosServer) -> None:
    ticker = 'httpd -p $PORT; i=0; while true; do echo "tick $i"; i=$((i+1)); usleep 50000; done'
    sid = image_studio(client, "adopt me", ticker)
    did = deploy(client, sid)
    wait_state(client, sid, did, "running")

    def ticks() -> list[int]:
        return [int(m.split()[1]) for m in messages(log_lines(client, sid, did), "user", "stdout") if m.startswith("tick ")]

    poll(lambda: len(ticks()) >= 5, 10, "ticks before the restart")
    server.stop()
    instance = server.env["STUDIOS_INSTANCE"]
    printed = lambda: subprocess.run(["docker", "logs", f"studios-{instance}-d{did}"], capture_output=True, text=True).stdout.count("tick ")  # noqa: E731
    down_from = printed()
    poll(lambda: printed() >= down_from + 10, 10, "lines printed while the service is down", interval=0.05)
    server.start()

    dep = client.studios.get_deployments(sid, did)
    assert dep.state == "running", (dep.state, dep.state_message)
    # The engine adopts the container once it holds its lease, which may be just after the server answers.
    poll(lambda: "adopted after a service restart" in messages(log_lines(client, sid, did), "system"), 30, "the adoption in the system log")
    page = open_link(dep.display_url)
    assert page.status_code == 200 and page.text.strip() == "hello from studios-test"
    after = poll(lambda: (t := ticks()) and max(t) >= down_from + 10 and t, 10, "the ticks printed while the service was down")
    assert after == list(range(len(after))), f"gaps or duplicates around the restart: {sorted(set(range(max(after) + 1)) - set(after))[:10]} missing, {len(after) - len(set(after))} repeated"
    client.studios.delete_deployments(sid, did)
    assert wait_state(client, sid, did, "terminated", timeout=15).state_message == "stopped by alice"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"partition_label": "no-such-partition"}, ["no-such-partition"]),
        ({"instance_type": "huge"}, ["huge", "small", "medium", "large"]),
        ({"required_resources": {"memory": 999999}}, ["999999", "2048"]),
    ],
    ids=["partition", "instance-type", "memory-ceiling"],
)
def test_partition_and_instance_type_validation(client: Any, kwargs: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(CivisAPIError) as error:
        client.studios.post(name="invalid", docker_image_name=IMAGE, **kwargs)
    assert error.value.status_code == 400
    for word in named:
        assert word in error.value.error_message, (word, error.value.error_message)


def test_two_services_on_one_engine_keep_their_usage_apart(tmp_path: Path, docker_ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two services sharing an engine (the `studios.instance` label keeps their containers
    apart) both number their deployments from 1: one's peak memory must not be the other's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {"STUDIOS_STOP_GRACE_SECONDS": "2", "STUDIOS_IDLE_SLEEP_SECONDS": "0"}
    with studios_server(tmp_path / "a", name="deploy_docker_a", runtime="docker", env=env) as first, studios_server(tmp_path / "b", name="deploy_docker_b", runtime="docker", env=env) as second:
        monkeypatch.setenv("CIVIS_API_ENDPOINT", second.url)
        monkeypatch.setenv("CIVIS_API_KEY", second.create_user("hog"))
        hog = civis.APIClient()
        hog_sid = image_studio(hog, "hog then serve", "head -c 150m /dev/zero | tail >/dev/null; exec httpd -f -p $PORT")
        hog_did = deploy(hog, hog_sid)
        wait_state(hog, hog_sid, hog_did, "running")

        monkeypatch.setenv("CIVIS_API_ENDPOINT", first.url)
        monkeypatch.setenv("CIVIS_API_KEY", first.create_user("quiet"))
        quiet = civis.APIClient()
        sid = image_studio(quiet, "idle httpd")
        did = deploy(quiet, sid)
        assert did == hog_did == 1
        wait_state(quiet, sid, did, "running")
        quiet.studios.delete_deployments(sid, did)
        ended = wait_state(quiet, sid, did, "terminated", timeout=15)
        assert ended.max_memory_usage is not None and 0 < ended.max_memory_usage < 50, f"an idle httpd peaked at {ended.max_memory_usage} MB: the other service's deployment 1 was counted"
