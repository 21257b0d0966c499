"""A swarm manager that answered once and then went away (its dockerd died or restarts), seen
through the real docker SDK: the SDK raises the transport's own `ConnectionError` then, not a
`DockerException`. A deploy must end with the reason, a followed deployment must not be taken
for ended, a restarted service must not end a deployment it cannot check (it asks again), and a
stop or removal that could not be done says so in a line.
Needs no swarm: the manager is a small Engine API on a unix socket that stops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gone_engine import Engine, engine_that_goes_away
from studios.runtimes.base import EngineUnreachable, LaunchError, RuntimeEnv
from studios.runtimes.swarm import SwarmRuntime, SwarmSettings

from .conftest import make_spec


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Engine]:
    with engine_that_goes_away(tmp_path) as engine:
        yield engine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_manager_gone_since_it_answered_is_said_and_ends_nothing(manager: Engine, tmp_path: Path) -> None:
    runtime = SwarmRuntime(SwarmSettings(url=manager.url, node_urls={}), RuntimeEnv(data_dir=tmp_path / "runtime", instance="tgone", public_url="http://localhost:8000"))
    try:
        runtime.api()  # the client is made while the manager answers (it asks for /version)
        manager.go_away()
        handle = {"service_id": "s" * 25, "service_name": "studios-tgone-d1", "instance": "tgone", "deployment_id": 1, "memory_mb": 64}

        # A deploy ends with the reason, not as an internal error.
        with pytest.raises(LaunchError, match=r"^the swarm manager is unavailable: nothing listens at its socket \(no such file\)$"):
            await runtime.start(make_spec(tmp_path, "httpd -f -p $PORT", deployment_id=1), lambda _line: None)
        # A followed deployment is not known to have ended.
        assert await runtime.poll(handle) is None
        # After a restart of the service: not known to be gone either (the reconcile asks again).
        # A stop or a removal is not done. Each says why in a line.
        for attempt in (runtime.adopt(handle), runtime.stop(handle, 1), runtime.cleanup(handle), runtime.remove_orphan(1)):
            with pytest.raises(EngineUnreachable, match=r"^the swarm manager does not answer: nothing listens at its socket \(no such file\)$"):
                await attempt
    finally:
        await runtime.close()
