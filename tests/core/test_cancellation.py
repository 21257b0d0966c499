"""A waiter cancelled in the same moment as what it waits for arrives is cancelled, and what
arrived stays for the next reader. On Python 3.11 `asyncio.wait_for` returns the result instead
and drops the cancellation: a stream's loop or a poller then runs on after it was told to stop
(a readiness knock once knocked a dead app for ever that way). Everything in `src/` waits with
`asyncio.timeout`; these tests hold the waits whose callers loop."""

from __future__ import annotations

import asyncio

import pytest

from studios.services.events import Bus, Event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_subscription_read_cancelled_as_its_event_arrives_is_cancelled_and_keeps_the_event() -> None:
    bus = Bus()
    bus.attach(asyncio.get_running_loop())
    sub = bus.subscribe("progress")
    reader = asyncio.create_task(sub.get(timeout=30))
    await asyncio.sleep(0)  # the reader now waits on the empty queue
    bus.publish([Event("progress", 7, data={"message": "cloning"})])  # arrives ...
    reader.cancel()  # ... as the reader is told to stop, before it runs again
    with pytest.raises(asyncio.CancelledError):
        await reader
    kept = await sub.get(timeout=5)
    assert kept is not None and kept.data["message"] == "cloning", "the event was lost with the cancelled read"


async def test_a_board_subscriber_cancelled_as_a_snapshot_arrives_is_cancelled() -> None:
    from studios.runtimes.swarm.board import Board, Subscription
    from studios.runtimes.swarm.tasks import Snapshot

    board = Board(lambda: None, "inst", slow=60, fast=60)  # never polls: the test offers snapshots itself
    sub = Subscription(board, "s", 0)
    sub.offer(Snapshot(None, [], {}))
    assert (await sub.next(timeout=30)).service is None
    waiter = asyncio.create_task(sub.next(timeout=30))
    await asyncio.sleep(0)
    sub.offer(Snapshot({"ID": "s", "Version": {"Index": 2}}, [], {}))
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
