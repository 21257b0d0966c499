"""Apps of different authors on the process runtime, as a multi-user server runs them: each
author's apps run as a user of its own, in a directory outside the service's data directory,
and can read neither the service's secrets and database nor another author's app's
environment (which holds that app's CIVIS_API_KEY). Needs root (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Api, TestUser, wait_until
from studios.context import Context
from studios.store import deployments as dep_store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running apps as their authors' own users needs root")

PROBE = """
import http.server, os
print("uid", os.getuid(), "gid", os.getgid(), flush=True)
for path in filter(None, os.environ.get("PROBE_PATHS", "").split(",")):
    try:
        with open(path, "rb") as f:
            f.read(1)
        print("READ", path, flush=True)
    except OSError as error:
        print("DENIED", path, type(error).__name__, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A world-readable directory for the probe's code (apps run as other users)."""
    folder = Path(tempfile.mkdtemp(prefix="studios-isolation-"))
    folder.chmod(0o755)
    (folder / "probe.py").write_text(PROBE)
    (folder / "probe.py").chmod(0o644)
    (folder / "apps").mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def settings_overrides(shared: Path) -> dict[str, Any]:
    return {"runtime": "process", "process_run_as": "author", "process_apps_dir": shared / "apps", "image_commands": {"probe": f"exec /usr/bin/python3 {shared}/probe.py"}}


def run_probe(me: Api, paths: list[str] | None = None) -> tuple[int, int, list[str]]:
    paths = paths or []
    studio = me.post("/studios", json={"name": "probe", "dockerImageName": "probe", "params": [{"name": "PROBE_PATHS", "type": "string", "value": ",".join(paths)}]}).json()
    dep = me.post(f"/studios/{studio['id']}/deployments", json={}).json()
    path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
    wait_until(lambda: me.get(path).json()["state"] == "running", 20, "the probe running")
    wanted = len(paths) + 1
    lines = wait_until(lambda: (got := [line["message"] for line in me.get(f"{path}/logs").json() if line["source"] == "user"]) and len(got) >= wanted and got, 20, "the probe's findings")
    return studio["id"], dep["deploymentId"], lines


PRELOAD = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/loaded-by-uid-%d", MARKER_DIR, (int)getuid());
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the preload library")
def test_a_param_like_ld_preload_reaches_the_app_only_never_its_root_supervisor(api: Api, author: TestUser, shared: Path) -> None:
    markers = shared / "markers"
    markers.mkdir(exist_ok=True)
    markers.chmod(0o1777)
    source = shared / "preload.c"
    source.write_text(PRELOAD.replace("MARKER_DIR", f'"{markers}"'))
    library = shared / "preload.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True, capture_output=True)
    library.chmod(0o755)
    me = api.as_(author)
    studio = me.post("/studios", json={"name": "preload", "dockerImageName": "probe", "params": [{"name": "LD_PRELOAD", "type": "string", "value": str(library)}]}).json()
    dep = me.post(f"/studios/{studio['id']}/deployments", json={}).json()
    path = f"/studios/{studio['id']}/deployments/{dep['deploymentId']}"
    wait_until(lambda: me.get(path).json()["state"] == "running", 20, "the app running")
    loaded_by = sorted(p.name for p in markers.iterdir())
    assert "loaded-by-uid-0" not in loaded_by, "a user's LD_PRELOAD ran inside a root process"
    assert loaded_by and all(name != "loaded-by-uid-0" for name in loaded_by)  # the app itself did load it
    me.delete(path)


def test_apps_cannot_read_the_service_or_each_other(api: Api, author: TestUser, other: TestUser, ctx: Context, settings: Any) -> None:
    data_dir = Path(settings.data_dir)
    secret = data_dir / "secret_key"
    secret.write_text("the service's secret key\n")
    secret.chmod(0o600)
    _, ann_dep, ann_lines = run_probe(api.as_(author))
    with ctx.db.reading() as session:
        handle = dep_store.get(session, ann_dep).handle  # type: ignore[union-attr]
    ann_pid = handle["app"]["pid"]
    assert Path(f"/proc/{ann_pid}/environ").read_bytes().count(b"CIVIS_API_KEY=") == 1  # it is there to steal

    targets = [str(secret), str(data_dir / "runtimes" / "process" / "state" / f"{ann_dep}.json"), f"/proc/{ann_pid}/environ", str(Path(handle["app_dir"]) / "probe-owned-by-ann")]
    if settings.effective_database_url.startswith("sqlite"):
        targets.append(settings.effective_database_url.removeprefix("sqlite:///"))
    Path(targets[3]).write_text("ann's file")
    os.chown(targets[3], handle["uid"], handle["uid"])
    _, _, otto_lines = run_probe(api.as_(other), targets)

    ann_uid = int(ann_lines[0].split()[1])
    otto_uid = int(otto_lines[0].split()[1])
    assert ann_uid != 0 and otto_uid != 0 and ann_uid != otto_uid, (ann_lines[0], otto_lines[0])
    denied = {line.split()[1] for line in otto_lines if line.startswith("DENIED ")}
    assert denied == set(targets), otto_lines
    # Outside the service's data directory, and private to the app's user.
    app_dir = Path(handle["app_dir"])
    assert data_dir.resolve() not in app_dir.resolve().parents
    assert app_dir.stat().st_uid == ann_uid and (app_dir.stat().st_mode & 0o077) == 0
