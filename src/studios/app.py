"""Builds the service: the only place that wires settings, database, runtimes, lifecycle
engine, API routers and the proxy together."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from studios.api import credentials, deployments, discovery, errors, platform, shares, studios, users
from studios.api.deps import CloseSessions
from studios.api.paths import NormalizePath
from studios.context import Context
from studios.db.engine import make_engine, make_locking_sessionmaker, make_sessionmaker, upgrade
from studios.partitions import Partitions
from studios.proxy import DisplayLinks, ProxyConfig, ProxyServer
from studios.runtimes.select import build_runtimes
from studios.services.engine import Engine
from studios.services.keys import KeyHasher
from studios.services.proxy_backend import DatabaseProxyBackend
from studios.services.secrets import SecretBox
from studios.settings import Settings

log = logging.getLogger("studios")


def proxy_config(settings: Settings) -> ProxyConfig:
    return ProxyConfig.from_settings(settings)


def build_context(settings: Settings, *, migrate: bool = True) -> Context:
    url = settings.effective_database_url
    if migrate:
        upgrade(url)
    engine = make_engine(url)
    return Context(
        settings=settings,
        engine=engine,
        db=make_sessionmaker(engine),
        locking_db=make_locking_sessionmaker(engine),
        partitions=Partitions.load(settings.partitions_file),
        hasher=KeyHasher(settings.secret_keys),
        box=SecretBox(settings.secret_keys),
        links=DisplayLinks(proxy_config(settings)),
    )


def create_app(settings: Settings | None = None, ctx: Context | None = None, *, serve_proxy: bool = True) -> FastAPI:
    ctx = ctx or build_context(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtimes, default, why = build_runtimes(ctx.settings)
        log.warning("studios: runtime %s", why)
        engine = ctx.deployments = Engine(ctx, runtimes, default)
        backend = DatabaseProxyBackend(ctx, lambda name, handle: runtimes[name].address(handle))
        engine.on_change.append(backend.forget)
        engine.activity = backend.activity.get
        proxy = ProxyServer(proxy_config(ctx.settings), backend, ctx.links)  # type: ignore[arg-type]
        await engine.begin()
        if serve_proxy:
            host, port = await proxy.start(ctx.settings.host, ctx.settings.effective_proxy_port)
            log.warning("studios: display-URL proxy on http://%s:%s (public %s, %s mode)", host, port, ctx.settings.effective_proxy_url, ctx.settings.proxy_mode)
        # Everything built so far lives as long as the service: keep the cyclic garbage
        # collector from rescanning it on every full collection (shorter pauses).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await proxy.close()
            await engine.close()
            ctx.deployments = None
            ctx.close()

    api = FastAPI(title="Studios", version="1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.ctx = ctx
    errors.install(api)
    for router in (studios.router, deployments.router, shares.router, credentials.router, users.router, platform.router, discovery.router):
        api.include_router(router)
    api.add_middleware(CloseSessions)
    api.add_middleware(NormalizePath)
    return api
