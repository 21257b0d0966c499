"""The published civis client and CLI, unmodified, against `studios serve` run as a process:
users made with `studios users create`, then every studio call the issue names."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

civis = pytest.importorskip("civis", reason="the contract tests need the civis client (pip install -e '.[test]')")
from civis.base import CivisAPIError, CivisAPIKeyError  # noqa: E402

from .server import BIN, StudiosServer, studios_server  # noqa: E402


class Server:
    """The running `studios serve` (a `StudiosServer`), the users' keys and ids by name, and
    the civis CLI as each user."""

    def __init__(self, studios: StudiosServer) -> None:
        self.studios = studios
        self.url = studios.url
        self.env = studios.env
        self.home = studios.root
        self.keys: dict[str, str] = {}
        self.ids: dict[str, int] = {}

    def client(self, user: str) -> Any:
        return civis.APIClient(api_key=self.keys[user], force_refresh_api_spec=True)

    def civis_cli(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        # A trailing slash on the base URL: the CLI then asks for //studios/<id>.
        env = {**self.env, "HOME": str(self.home), "CIVIS_API_ENDPOINT": self.url + "/", "CIVIS_API_KEY": self.keys[user]}
        return subprocess.run([str(BIN / "civis"), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("contract")
    with studios_server(root, name="contract", runtime="process") as studios, pytest.MonkeyPatch.context() as mp:
        srv = Server(studios)
        for name, extra in (("alice", []), ("bob", []), ("carol", []), ("root", ["--admin"])):
            srv.keys[name] = studios.studios("users", "create", name, *extra)
            assert srv.keys[name] and "\n" not in srv.keys[name], "users create must print only the key on stdout"
        mp.setenv("CIVIS_API_ENDPOINT", srv.url)
        mp.setenv("HOME", str(root))
        mp.delenv("CIVIS_API_KEY", raising=False)
        for name in srv.keys:
            srv.ids[name] = httpx.get(f"{srv.url}/users/me", headers={"Authorization": f"Bearer {srv.keys[name]}"}).json()["id"]
        yield srv


@pytest.mark.filterwarnings("ignore:The method name ``<client>.users.list_me`` is deprecated:FutureWarning")
def test_users_me(server: Server) -> None:
    client = server.client("alice")
    me = client.users.list_me()  # GET /users/me, as the issue names it (get_me in newer clients)
    assert me.id == server.ids["alice"] and me.username == "alice"
    assert client.users.get_me().id == me.id


def test_post_get_patch_put_archive(server: Server) -> None:
    client = server.client("alice")
    made = client.studios.post(
        name="contract", docker_image_name="studios-test/busybox", required_resources={"disk_space": 0.5, "memory": 512},
        params=[{"name": "GREETING", "type": "string", "value": "hi"}], git_repo_url="https://example.com/r.git", git_ref="main",
    )
    assert made.name == "contract" and made.docker_image_tag == "latest"
    assert made.author.id == server.ids["alice"] and made.my_permission_level == "manage"
    assert made.required_resources.disk_space == 0.5 and made.required_resources.memory == 512
    assert made.most_recent_deployment is None

    got = client.studios.get(made.id)
    assert (got.name, got.git_ref, got.params[0].name, got.params[0].value) == ("contract", "main", "GREETING", "hi")

    patched = client.studios.patch(made.id, name="patched")
    assert patched.name == "patched" and patched.git_ref == "main" and patched.required_resources.memory == 512

    replaced = client.studios.put(made.id, name="replaced", docker_image_tag="v2")
    assert (replaced.name, replaced.docker_image_tag, replaced.git_ref, replaced.params, replaced.docker_image_name) == ("replaced", "v2", None, [], None)

    archived = client.studios.put_archive(made.id, status=True)
    assert archived.archived is True
    assert made.id not in {s.id for s in client.studios.list(limit=50)}
    assert made.id in {s.id for s in client.studios.list(archived="true", limit=50)}


def test_list_iterator_sees_every_studio_once(server: Server) -> None:
    client = server.client("carol")
    made = {client.studios.post(name=f"iter-{i:02d}").id for i in range(53)}
    seen = [s.id for s in client.studios.list(iterator=True)]
    assert len(seen) == len(set(seen)) == 53
    assert set(seen) == made
    first_page = client.studios.list()
    assert len(first_page) == 20


def test_shares(server: Server) -> None:
    alice, bob = server.client("alice"), server.client("bob")
    sid = alice.studios.post(name="shared").id
    with pytest.raises(CivisAPIError) as hidden:
        bob.studios.get(sid)
    assert hidden.value.status_code == 404

    index = alice.studios.put_shares_users(sid, user_ids=[server.ids["bob"]], permission_level="read")
    assert [u.id for u in index.readers.users] == [server.ids["bob"]]
    [listed] = alice.studios.list_shares(sid)
    assert [u.id for u in listed.owners.users] == [server.ids["alice"]]
    assert [u.id for u in listed.readers.users] == [server.ids["bob"]]

    assert bob.studios.get(sid).my_permission_level == "read"
    with pytest.raises(CivisAPIError) as refused:
        bob.studios.patch(sid, name="mine now")
    assert refused.value.status_code == 403

    alice.studios.delete_shares_users(sid, server.ids["bob"])
    with pytest.raises(CivisAPIError) as gone:
        bob.studios.get(sid)
    assert gone.value.status_code == 404
    assert server.client("root").studios.get(sid).my_permission_level == "manage"


def test_cli_studios_get(server: Server) -> None:
    sid = server.client("alice").studios.post(name="seen by the CLI").id
    result = server.civis_cli("alice", "studios", "get", str(sid))
    assert result.returncode == 0, result.stderr + result.stdout
    names = re.findall(r"^name: *'?(.*?)'?$", result.stdout, re.MULTILINE)
    assert "seen by the CLI" in names, result.stdout
    assert re.search(rf"^id: *{sid}$", result.stdout, re.MULTILINE), result.stdout


def test_cli_error_exits_non_zero(server: Server) -> None:
    result = server.civis_cli("bob", "studios", "get", "999999")
    assert result.returncode != 0
    assert "not found" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"required_resources": {"memory": -1}}, "requiredResources.memory"),
        ({"params": [{"name": "1X", "type": "string"}]}, "params"),
        ({"instance_type": "nope"}, "instanceType"),
    ],
)
def test_bad_request_raises_with_our_description(server: Server, kwargs: dict[str, Any], field: str) -> None:
    client = server.client("alice")
    before = len(client.studios.list(archived="all", limit=50))
    with pytest.raises(CivisAPIError) as error:
        client.studios.post(**kwargs)
    assert error.value.status_code == 400
    # The field is named as the client spelled it (snake_case) or as the spec does (camelCase).
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", field).lower()
    assert field in error.value.error_message or snake in error.value.error_message, error.value.error_message
    assert len(client.studios.list(archived="all", limit=50)) == before


@pytest.mark.filterwarnings("ignore:The method name ``<client>.users.list_me`` is deprecated:FutureWarning")
def test_bad_key_raises_civis_key_error_not_a_crash(server: Server) -> None:
    """Without WWW-Authenticate the client would die with a KeyError instead."""
    with pytest.raises(CivisAPIKeyError):
        civis.APIClient(api_key="stu_wrong", force_refresh_api_spec=True).users.list_me()
