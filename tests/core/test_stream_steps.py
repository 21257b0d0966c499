"""A deployment's event stream sends each start-up step once. The stream listens first, then
reads the steps stored so far: a step stored in between is both read and heard (on PostgreSQL a
NOTIFY arrives after the commit that the read already sees), and the CLI once printed such steps
twice."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from studios.services import streams
from studios.services.events import Bus, Event

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def frames_of(chunks: list[bytes], kind: str) -> list[dict[str, Any]]:
    found = []
    for chunk in chunks:
        for block in chunk.decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
            if lines.get("event") == kind:
                found.append(json.loads(lines["data"]))
    return found


def progress_frames(chunks: list[bytes]) -> list[str]:
    return [frame["message"] for frame in frames_of(chunks, "progress")]


async def test_a_step_both_read_and_heard_is_sent_once() -> None:
    bus = Bus()
    bus.attach(asyncio.get_running_loop())

    async def view() -> dict[str, Any]:
        return {"id": 7, "state": "pending"}

    async def steps() -> list[tuple[int, str]]:
        # While the stream read the stored steps, step 2 was stored and announced: heard too.
        bus.publish([Event("progress", 7, data={"message": "cloning", "id": 2})])
        return [(1, "queued by alice"), (2, "cloning")]

    stream = streams.deployment(bus, 7, view, steps, heartbeat=30)
    chunks = [await anext(stream) for _ in range(3)]  # the deployment, then the two stored steps
    bus.publish([Event("progress", 7, data={"message": "waiting for the app", "id": 3})])
    chunks.append(await asyncio.wait_for(anext(stream), 5))
    await stream.aclose()
    assert progress_frames(chunks) == ["queued by alice", "cloning", "waiting for the app"]


async def late_event_then_change(view: Any, state: dict[str, Any], step: str, change: dict[str, Any]) -> list[bytes]:
    """A deployment stream hears the event of the state it read on connect (late), then a
    start-up step, then the event of `change` (made to `state` first): the chunks it sent."""
    bus = Bus()
    bus.attach(asyncio.get_running_loop())

    async def steps() -> list[tuple[int, str]]:
        return []

    stream = streams.deployment(bus, 7, view, steps, heartbeat=30)
    chunks = [await anext(stream)]
    bus.publish([Event("deployment", 7, data={"state": state["state"], "message": state["stateMessage"]})])  # heard late
    bus.publish([Event("progress", 7, data={"message": step, "id": 4})])
    chunks.append(await asyncio.wait_for(anext(stream), 5))
    state.update(change)
    bus.publish([Event("deployment", 7, data={"state": state["state"], "message": state["stateMessage"]})])
    chunks.append(await asyncio.wait_for(anext(stream), 5))
    await stream.aclose()
    return chunks


async def test_a_change_heard_after_it_was_read_sends_the_deployment_once() -> None:
    """The "cloning" transition was committed before the stream read the deployment but heard
    after: no second, identical `deployment` frame (the CLI printed such a state twice)."""
    state = {"id": 7, "state": "pending", "stateMessage": "cloning"}

    async def view() -> dict[str, Any]:
        return dict(state)

    chunks = await late_event_then_change(view, state, "fetching HEAD", {"stateMessage": "waiting for the app"})
    assert [d["stateMessage"] for d in frames_of(chunks, "deployment")] == ["cloning", "waiting for the app"]
    assert progress_frames(chunks) == ["fetching HEAD"]


async def test_a_change_heard_after_it_was_read_is_not_sent_again_for_its_new_link() -> None:
    """Every read of a deployment signs a new `displayUrl` (a link opens once): a late event,
    read again, differs only by that link and sends nothing; losing the link is a change."""
    state = {"id": 7, "state": "running", "stateMessage": "running"}
    reads = 0

    async def view() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {**state, "displayUrl": None if state["state"] == "terminated" else f"http://d-7.localhost/_studios/auth?token={reads}"}

    chunks = await late_event_then_change(view, state, "a step", {"state": "terminated", "stateMessage": "stopped by alice"})
    sent = frames_of(chunks, "deployment")
    assert [(d["stateMessage"], d["displayUrl"] is not None) for d in sent] == [("running", True), ("stopped by alice", False)]
    assert progress_frames(chunks) == ["a step"]


async def test_only_the_callers_own_revoked_keys_make_the_stream_check_access_again() -> None:
    """Every deployment's end revokes its app's key: a stream reads the deployment again (its
    access check) only for keys of its own caller, and ends when that read refuses it."""
    from studios.errors import Unauthorized

    bus = Bus()
    bus.attach(asyncio.get_running_loop())
    reads = 0
    revoked = False

    async def view() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if revoked:
            raise Unauthorized("The API key is not valid (unknown or revoked).")
        return {"id": 7, "state": "running", "stateMessage": "running", "displayUrl": None}

    async def steps() -> list[tuple[int, str]]:
        return []

    stream = streams.deployment(bus, 7, view, steps, heartbeat=30, caller_id=1)
    chunks = [await anext(stream)]
    assert reads == 1
    bus.publish([Event("keys", 9, 3, {"hashes": ["h9"], "users": [2]})])  # another user's deployment ended
    bus.publish([Event("progress", 7, data={"message": "a step", "id": 4})])
    chunks.append(await asyncio.wait_for(anext(stream), 5))
    assert reads == 1, "another user's revoked key made the stream read again"
    revoked = True
    bus.publish([Event("keys", data={"hashes": ["h1"], "users": [1]})])  # the caller's own key
    chunks.append(await asyncio.wait_for(anext(stream), 5))
    assert reads == 2
    assert frames_of(chunks, "error")[0]["errorDescription"].startswith("The API key is not valid")
    await stream.aclose()
