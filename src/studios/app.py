"""Builds the service: the only place that wires settings, database, runtimes, lifecycle
engine, API routers and the proxy together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from studios.api import credentials, deployments, discovery, errors, platform, shares, studios, users
from studios.api.paths import NormalizePath
from studios.context import Context
from studios.db.engine import make_engine, make_locking_sessionmaker, make_sessionmaker, upgrade
from studios.partitions import Partitions
from studios.runtimes.select import build_runtimes
from studios.services.engine import Engine
from studios.services.keys import KeyHasher
from studios.services.secrets import SecretBox
from studios.settings import Settings

log = logging.getLogger("studios")


class _Links:
    """Deployment hosts and display URLs (replaced by the proxy's signed links)."""

    def __init__(self, public_url: str) -> None:
        self.public_url = public_url

    def host_for(self, deployment_id: int) -> str:
        return f"d-{deployment_id}.localhost"

    def display_url(self, deployment_id: int, user_id: int) -> str:
        return f"{self.public_url}/_d/{deployment_id}/"


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
        hasher=KeyHasher(settings.secret_keys[0]),
        box=SecretBox(settings.secret_keys),
        links=_Links(settings.effective_public_url),
    )


def create_app(settings: Settings | None = None, ctx: Context | None = None) -> FastAPI:
    ctx = ctx or build_context(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if ctx.deployments is None:
            runtimes, default, why = build_runtimes(ctx.settings)
            log.warning("studios: runtime %s", why)
            ctx.deployments = Engine(ctx, runtimes, default)
        await ctx.deployments.begin()
        try:
            yield
        finally:
            await ctx.deployments.close()
            ctx.deployments = None
            ctx.engine.dispose()

    api = FastAPI(title="Studios", version="1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.ctx = ctx
    errors.install(api)
    for router in (studios.router, deployments.router, shares.router, credentials.router, users.router, platform.router, discovery.router):
        api.include_router(router)
    api.add_middleware(NormalizePath)
    return api
