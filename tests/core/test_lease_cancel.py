"""The lease stops when it is cancelled (the service shutting down), even when the cancellation
arrives just as a renewal completes: it must not swallow it and hold on, which left the
service's shutdown (and a test's teardown) waiting forever."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from studios.services.lease import Lease

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ControlledDatabase:
    """Each write is a future the test completes."""

    def __init__(self) -> None:
        self.writes: list[asyncio.Future[Any]] = []
        self.wrote = asyncio.Event()

    def write(self, fn: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.writes.append(future)
        self.wrote.set()
        return future


async def test_cancelled_as_a_renewal_completes_the_lease_stops() -> None:
    db = ControlledDatabase()
    lease = Lease(db, "engine", "this-server", ttl=6.0)  # type: ignore[arg-type]
    started = asyncio.Event()

    async def job() -> None:
        started.set()
        await asyncio.Event().wait()

    running = asyncio.create_task(lease.run(job))
    await asyncio.wait_for(db.wrote.wait(), 5)
    loop = asyncio.get_running_loop()
    loop.call_soon(db.writes[0].set_result, True)  # the renewal's write completes ...
    loop.call_soon(running.cancel)  # ... in the same turn as the shutdown's cancel
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)
    assert not started.is_set() and not lease.held
