"""Fixtures: a real upstream app (uvicorn) and the proxy, both on free 127.0.0.1 ports in the
test's event loop. Sockets are bound and listening before anything connects, so no test waits
for a server to come up."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from studios.proxy.backend import MemoryBackend, Target
from studios.proxy.config import ProxyConfig
from studios.proxy.server import ProxyServer
from studios.proxy.tokens import DisplayLinks

from .apps import UpstreamApp

USER = 7
DEPLOYMENT = 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def listening_socket() -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (uvicorn)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def serve_upstream(app) -> AsyncIterator[tuple[str, int]]:
    """Run an ASGI app with uvicorn on a free port in this loop."""
    sock = listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning",
                                          access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclasses.dataclass
class Stack:
    proxy: ProxyServer
    backend: MemoryBackend
    links: DisplayLinks
    app: UpstreamApp
    upstream: tuple[str, int]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def host(self, deployment_id: int = DEPLOYMENT) -> str:
        return self.links.host_for(deployment_id)

    def prefix(self, deployment_id: int = DEPLOYMENT) -> str:
        return self.links.prefix_for(deployment_id)

    def cookie(self, deployment_id: int = DEPLOYMENT, user_id: int = USER) -> str:
        return f"studios_session={self.links.make_cookie(deployment_id, user_id)}"

    def headers(self, deployment_id: int = DEPLOYMENT, user_id: int = USER) -> dict[str, str]:
        return {"Host": self.host(deployment_id), "Cookie": self.cookie(deployment_id, user_id)}

    def url(self, path: str, deployment_id: int = DEPLOYMENT) -> str:
        return self.base + self.prefix(deployment_id) + path


@contextlib.asynccontextmanager
async def make_stack(mode: str = "host") -> AsyncIterator[Stack]:
    app = UpstreamApp()
    async with serve_upstream(app) as upstream:
        sock = listening_socket()
        port = sock.getsockname()[1]
        public = f"http://localhost:{port}"
        config = ProxyConfig(secret_keys=["test-key", "old-key"], public_url=public, mode=mode)
        backend = MemoryBackend()
        backend.put(Target(DEPLOYMENT, 10, "running", "", upstream), [USER])
        proxy = ProxyServer(config, backend)
        await proxy.start(sock=sock)
        try:
            yield Stack(proxy, backend, proxy.links, app, upstream, port)
        finally:
            await proxy.close()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with make_stack("host") as s:
        yield s


@pytest.fixture
async def path_stack() -> AsyncIterator[Stack]:
    async with make_stack("path") as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c
