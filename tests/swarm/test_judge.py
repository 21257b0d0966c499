"""What a service's task list means for its deployment (`tasks.judge`), and the pure parts of
the service spec and payload: no swarm needed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from studios.runtimes.base import LaunchError
from studios.runtimes.swarm import payload
from studios.runtimes.swarm import spec as naming
from studios.runtimes.swarm.tasks import Node, Snapshot, judge

NODES = {
    "n1": Node("n1", "swn1", "10.231.0.1", "ready"),
    "n2": Node("n2", "swn2", "10.231.0.2", "ready"),
    "n3": Node("n3", "swn3", "10.231.0.3", "ready"),
}
SERVICE = {"ID": "s1", "Version": {"Index": 10}, "Spec": {"Labels": {}, "Mode": {"Replicated": {"Replicas": 1}}}}
T0 = 1_800_000_000


def stamp(seconds: float) -> str:
    whole = int(seconds)
    return f"2027-01-15T08:{(whole // 60) % 60:02d}:{whole % 60:02d}.{int((seconds - whole) * 1e9):09d}Z"


def task(tid: str, at: float, state: str, desired: str = "running", node: str | None = "n2", *, updated: float | None = None,
         err: str | None = None, code: int | None = None, port: int | None = 32768) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"State": state, "Message": state}
    if err:
        status["Err"] = err
    if code is not None or state in ("running", "failed", "complete"):
        status["ContainerStatus"] = {"ContainerID": f"c-{tid}", "ExitCode": code or 0}
    if state == "running" and port:
        status["PortStatus"] = {"Ports": [{"TargetPort": 8080, "PublishedPort": port, "PublishMode": "host"}]}
    result = {"ID": tid, "CreatedAt": stamp(at), "UpdatedAt": stamp(updated if updated is not None else at + 0.3),
              "DesiredState": desired, "Status": status}  # fmt: skip
    if node:
        result["NodeID"] = node
    return result


def view(tasks: list[dict[str, Any]], nodes: dict[str, Node] = NODES, service: dict[str, Any] | None = SERVICE, now: float = T0 + 5, **kw: Any) -> Any:
    return judge(Snapshot(service, tasks, nodes, now=now), container_port=8080, **kw)


def test_pending_with_the_schedulers_reason() -> None:
    reason = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    v = view([task("a", 0, "pending", node=None, err=reason)])
    assert (v.message, v.running, v.exit, v.end, v.log) == (reason, False, None, False, reason)
    assert not v.settled


def test_running_gives_the_node_address_and_published_port() -> None:
    v = view([task("a", 0, "running", port=30001)])
    assert v.running and v.message == "running on swn2" and v.log == "running on swn2"  # a system log line says where
    assert (v.node.addr, v.port) == ("10.231.0.2", 30001)
    assert v.settled


def test_an_app_that_exits_ends_the_deployment_before_the_swarm_restarts_it() -> None:
    failed = task("a", 0, "failed", desired="shutdown", updated=10.0, err="task: non-zero exit (3)", code=3)
    restart = task("b", 10.0, "ready", desired="ready", node=None)
    v = view([failed, restart])
    assert v.exit is not None and v.exit.code == 3 and v.exit.message == "exited with code 3"
    assert v.end and v.log == "the app exited with code 3 on swn2"
    complete = task("a", 0, "complete", desired="shutdown", code=0)
    assert view([complete]).exit.message == "exited with code 0"


def test_killed_by_a_signal() -> None:
    v = view([task("a", 0, "failed", desired="shutdown", err="task: non-zero exit (137)", code=137)])
    assert v.exit.signal == 9 and v.exit.message == "killed by signal 9 (SIGKILL)"


def test_a_restart_that_already_runs_is_left_running() -> None:
    failed = task("a", 0, "failed", desired="shutdown", updated=10.0, err="task: non-zero exit (3)", code=3)
    v = view([failed, task("b", 10.0, "running", node="n3")])
    assert v.running and v.exit is None


def test_node_down_then_moved_and_the_late_report_of_the_old_task_is_not_an_exit() -> None:
    down = {**NODES, "n2": Node("n2", "swn2", "10.231.0.2", "down")}
    old = task("a", 0, "running", desired="shutdown")
    new = task("b", 20.0, "pending", node=None)
    v = view([old, new], down)
    assert v.message.startswith("node swn2 is down; waiting for another node") and not v.running
    new = task("b", 20.0, "starting", node="n3")
    assert view([old, new], down).message == "node swn2 is down; starting again on swn3"
    new = task("b", 20.0, "running", node="n3", port=30002)
    v = view([old, new], down)
    assert v.running and v.node.hostname == "swn3" and v.port == 30002
    assert v.log == "moved to swn3 after node swn2 went down"
    # swn2 comes back (a "reboot") and reports its old task failed, long after the replacement.
    late = task("a", 0, "failed", desired="shutdown", updated=40.0, err="task: non-zero exit (255)", code=255)
    v = view([late, new])
    assert v.running and v.exit is None


def test_no_other_node_fits_ends_after_the_reschedule_timeout_naming_the_node() -> None:
    down = {**NODES, "n2": Node("n2", "swn2", "10.231.0.2", "down")}
    reason = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    tasks = [task("a", 0, "running", desired="shutdown"), task("b", 20.0, "pending", node=None, err=reason)]
    waiting = view(tasks, down, now=T0 + 25, reschedule_timeout=10)
    assert waiting.exit is None and "node swn2 is down" in waiting.message
    ended = view(tasks, down, now=T0 + 31, reschedule_timeout=10)
    assert ended.end and ended.exit.message == f"node swn2 went down and no other node could take over: {reason}"


def test_repeated_rejections_end_it() -> None:
    rejected = [task(t, i, "rejected", desired="shutdown", err="No such image: nope:latest") for i, t in enumerate("abc")]
    v = view(rejected)
    assert v.end and v.exit.message == "the swarm could not start it on swn2: No such image: nope:latest"
    assert not view(rejected[:2]).end


def test_a_container_that_failed_to_start_is_retried_not_taken_for_the_apps_exit() -> None:
    """The engine could not start the container (seen in CI: its secrets' mount was busy); the
    task failed with exit code 128 before the app ran. The swarm starts another: the deployment
    waits for it, and ends only after three such failures in a row, saying why."""
    err = "starting container failed: unable to remount dir as readonly: device or resource busy"
    failed = task("a", 0, "failed", desired="shutdown", updated=0.5, err=err, code=128)
    first = view([failed])
    assert first.exit is None and not first.end and not first.running
    assert first.message == f"the swarm could not start it on swn2: {err}; retrying"
    assert view([failed, task("b", 1.5, "running", node="n3")]).running
    again = [task(t, i * 1.5, "failed", desired="shutdown", updated=i * 1.5 + 0.5, err=err, code=128) for i, t in enumerate("abc")]
    assert not view(again[:2]).end
    ended = view(again)
    assert ended.end and ended.exit is not None and ended.exit.message == f"the swarm could not start it on swn2: {err}"


def test_recorded_exit_and_stopped_and_gone() -> None:
    labels = {naming.LABEL_EXIT: json.dumps({"code": 3, "signal": None, "oom_killed": False, "message": "exited with code 3"})}
    ended = {**SERVICE, "Spec": {"Labels": labels, "Mode": {"Replicated": {"Replicas": 0}}}}
    assert view([task("a", 0, "failed", code=3)], service=ended).exit.message == "exited with code 3"
    stopped = {**SERVICE, "Spec": {"Labels": {}, "Mode": {"Replicated": {"Replicas": 0}}}}
    assert view([], service=stopped).exit.message == "stopped"
    assert view([], service=None).exit is not None


def test_names_constraints_resources() -> None:
    assert naming.service_name("a1b2c3", 42) == "studios-a1b2c3-d42"
    templates = ["node.labels.partition=={partition}", "node.labels.type.{instance_type}==true", "node.role==worker"]
    assert naming.constraints(templates, "gpu", None) == ["node.labels.partition==gpu", "node.role==worker"]
    assert naming.constraints(templates, None, "small") == ["node.labels.type.small==true", "node.role==worker"]
    table = {"gpu": {"NVIDIA-GPU": 1}, "gpu/big": {"NVIDIA-GPU": 2}}
    assert naming.generic_resources(table, "gpu", "big") == {"NVIDIA-GPU": 2}
    assert naming.generic_resources(table, "gpu", "small") == {"NVIDIA-GPU": 1}
    assert naming.generic_resources(table, "cpu", None) == {}
    assert naming.resources(256, 500, 0.5, {}) == {"mem_limit": 256 << 20, "mem_reservation": 128 << 20, "cpu_limit": 500_000_000, "cpu_reservation": 250_000_000}


def test_env_file_is_safe_for_the_shell(tmp_path: Path) -> None:
    values = {"A": "it's $HOME `id` \"q\"", "B": "two\nlines", "C": ""}
    script = tmp_path / "env"
    script.write_bytes(payload.env_file(values))
    out = subprocess.run(["sh", "-c", f'. {script}; printf "%s|%s|%s" "$A" "$B" "$C"'], capture_output=True, text=True, check=True).stdout
    assert out == "it's $HOME `id` \"q\"|two\nlines|"
    with pytest.raises(LaunchError, match="not a valid variable name"):
        payload.env_file({"BAD-NAME": "x"})


def test_pack_cuts_into_secret_sized_pieces_and_refuses_too_large(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text("secret")
    (repo / "app").mkdir()
    (repo / "app" / "run").write_text("#!/bin/sh\n")
    (repo / "app" / "run").chmod(0o755)
    (repo / "big.bin").write_bytes(bytes(range(256)) * 4096 + os.urandom(1_200_000))  # ~1.2 MB compressed
    pieces = payload.pack(repo, 8 << 20)
    assert len(pieces) == 3 and all(len(p) <= payload.SECRET_LIMIT for p in pieces)
    with tarfile.open(fileobj=io.BytesIO(b"".join(pieces))) as archive:
        names = archive.getnames()
        assert sorted(names) == ["app", "app/run", "big.bin"]
        assert archive.getmember("app/run").mode & 0o111
    with pytest.raises(LaunchError, match=r"larger than 0\.5 MB"):
        payload.pack(repo, 512 << 10)


def test_init_runs_the_image_command_after_unpacking(tmp_path: Path) -> None:
    cmd = payload.command(["/bin/echo"], ["hello"], 0)
    assert cmd[:2] == ["/bin/sh", "-c"] and cmd[3:] == ["studios-init", "0", "/bin/echo", "hello"]
    assert subprocess.run(cmd, capture_output=True, text=True, check=True).stdout == "hello\n"
    with pytest.raises(LaunchError, match="no command"):
        payload.command(None, None, 0)
