"""The readiness probe (`engine.follow.answers`): a deployment is `running` once its app answers
any HTTP request on its address, and not before: a closed port, a server that accepts and says
nothing, and a server that speaks something other than HTTP are not ready."""

from __future__ import annotations

import asyncio
import importlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

follow = importlib.import_module("studios.services.engine.follow")  # the package's `follow` is the function

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


def reply(data: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        writer.close()

    return handle


async def test_any_http_answer_is_ready_even_an_error(serve) -> None:
    port = await serve(reply(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    assert await follow.answers("127.0.0.1", port)


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_closed_port_is_not_ready() -> None:
    assert not await follow.answers("127.0.0.1", closed_port())


async def test_a_server_that_accepts_and_says_nothing_is_not_ready(serve, monkeypatch) -> None:
    monkeypatch.setattr(follow, "ANSWER_TIMEOUT", 0.3)
    silent = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await silent.wait()

    port = await serve(handle)
    began = time.monotonic()
    assert not await follow.answers("127.0.0.1", port)
    assert time.monotonic() - began < 5
    silent.set()


async def test_a_server_that_is_not_http_is_not_ready(serve) -> None:
    port = await serve(reply(b"SSH-2.0-OpenSSH_9.2\r\n"))
    assert not await follow.answers("127.0.0.1", port)


async def test_a_cancelled_knock_ends_even_as_its_connect_fails() -> None:
    """The engine cancels the knocking when the workload ends. A cancellation that arrives just
    as a connection is refused must still end it (with Python 3.11's wait_for it could be
    swallowed, and the knock went on forever)."""
    closed = closed_port()
    for round_ in range(200):
        task = asyncio.ensure_future(follow.knock(None, ("127.0.0.1", closed), time.monotonic()))
        for _ in range(round_ % 7):  # cancel at different points of the connect
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
