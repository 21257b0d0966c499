"""Builds the service: the only place that wires settings, database, events, runtimes, the
lifecycle engine (under its lease), API routers and the proxy together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from studios import metrics as service_metrics
from studios.api import credentials, deployments, discovery, errors, metrics, platform, ratelimit, shares, streams, studios, users
from studios.api.paths import NormalizePath
from studios.context import Context, build_context, proxy_config
from studios.metrics.http import RequestTimer
from studios.proxy import ProxyServer
from studios.runtimes import registry
from studios.runtimes.base import Runtime, RuntimeEnv, RuntimeSettings
from studios.services.activity import Activity
from studios.services.engine import Engine, EngineSettings, Kit
from studios.services.events import Event
from studios.services.keys import flush_seen
from studios.services.lease import Lease
from studios.services.log_sink import LogSink
from studios.services.looplag import LoopLag
from studios.services.proxy_backend import DatabaseProxyBackend, sleeps_at
from studios.services.relay import PgRelay
from studios.settings import Settings
from studios.ui import routes as ui

log = logging.getLogger("studios")
SEEN_FLUSH_SECONDS = 5.0


def engine_holder() -> str:
    """This server's name in leases and claims."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


async def _every(seconds: float, job: Callable[[], Any], what: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            log.exception("%s failed", what)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def serve_app() -> FastAPI:
    """The app of one `studios serve` worker process (uvicorn's factory); the parent process
    has migrated the database already."""
    return create_app(ctx=build_context(Settings(), migrate=False))


def create_app(
    settings: Settings | None = None,
    ctx: Context | None = None,
    *,
    serve_proxy: bool = True,
    runtime_classes: dict[str, type[Runtime]] | None = None,
    runtime_settings: dict[str, RuntimeSettings] | None = None,
) -> FastAPI:
    """The ASGI app of one server. `runtime_classes` / `runtime_settings` replace the installed
    runtimes and their environment-read settings (tests)."""
    ctx = ctx or build_context(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        settings = ctx.settings
        db, bus = ctx.db, ctx.bus
        bus.attach(asyncio.get_running_loop())
        relay = PgRelay(db.url, bus) if db.postgresql else None
        if relay is not None:
            await relay.start()
        instance = registry.instance_id(db.url, settings.instance)

        def env_for(name: str) -> RuntimeEnv:
            return RuntimeEnv(settings.data_dir / "runtimes" / name, instance, settings.effective_public_url)

        def settings_for(cls: type[Runtime]) -> RuntimeSettings:
            given = (runtime_settings or {}).get(cls.name)
            return given if given is not None else cls.settings_model()

        try:
            runtimes = registry.build(settings.runtime, ctx.partitions, env_for, classes=runtime_classes, settings_for=settings_for)
        except registry.RuntimeUnavailable as error:
            raise SystemExit(f"studios: {error}") from None
        log.warning("studios: runtime %s", runtimes.reason)
        ctx.runtimes = runtimes
        idle = settings.idle_sleep_seconds
        activity = Activity(db, flush_every=min(5.0, idle / 4) if idle > 0 else 5.0)
        ctx.sleeps_at = sleeps_at(activity, idle)
        backend = DatabaseProxyBackend(db, bus, runtimes, activity, idle)
        bus.listen("keys", lambda event: ctx.hasher.forget(list(event.data.get("hashes") or [])))
        bus.listen("resync", lambda _: ctx.hasher.forget_all())
        kit = Kit(
            db=db,
            runtimes=runtimes,
            sink=LogSink(db, settings.log_line_cap),
            settings=EngineSettings(
                start_timeout=settings.start_timeout_seconds,
                stop_grace=settings.stop_grace_seconds,
                idle_sleep=idle,
                reconcile_interval=settings.reconcile_interval_seconds,
                public_url=settings.effective_public_url,
                allow_local_git_repos=settings.allow_local_git_repos,
            ),
            links=ctx.links,
            hasher=ctx.hasher,
            box=ctx.box,
            holder=engine_holder(),
        )
        engine = Engine(kit, bus)
        ctx.prepare_launch = engine.prepare
        lease = Lease(db, "engine", kit.holder, ttl=settings.engine_lease_seconds)
        looplag = LoopLag()
        app.state.engine, app.state.lease, app.state.looplag = engine, lease, looplag
        background = [
            asyncio.create_task(looplag.run(), name="loop-lag"),
            asyncio.create_task(lease.run(engine.run), name="engine-lease"),
            asyncio.create_task(_every(activity.flush_every, activity.flush, "writing activity"), name="activity"),
            asyncio.create_task(_every(SEEN_FLUSH_SECONDS, lambda: db.write(lambda s: flush_seen(s, ctx.hasher)), "writing last-seen times"), name="seen"),
        ]
        if settings.loop_lag_log_seconds > 0:
            background.append(asyncio.create_task(looplag.log_every(settings.loop_lag_log_seconds), name="loop-lag-log"))
        proxy = ProxyServer(proxy_config(settings), backend, ctx.links)  # type: ignore[arg-type]
        kit.sink.counted = app.state.metrics.log_lines
        background += service_metrics.start(app.state.metrics, db=db, bus=bus, holds_engine=lambda: lease.held, proxy=proxy)
        if serve_proxy:
            # Several workers on one machine each listen on the proxy's port (the kernel
            # spreads connections among them).
            shared = _reuse_port_socket(settings.host, settings.effective_proxy_port) if settings.workers > 1 else None
            host, port = await proxy.start(settings.host, settings.effective_proxy_port, sock=shared)
            log.warning("studios: display-URL proxy on http://%s:%s (public %s, %s mode)", host, port, settings.effective_proxy_url, settings.proxy_mode)
        # Everything built so far lives as long as the service: keep the cyclic garbage
        # collector from rescanning it on every full collection (shorter pauses).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await proxy.close()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(Exception):
                await activity.flush()
            with contextlib.suppress(Exception):  # last-seen times and re-hashed keys noted since the last flush
                await db.write(lambda s: flush_seen(s, ctx.hasher))
            await runtimes.close()
            if relay is not None:
                await relay.close()
            ctx.runtimes = None
            ctx.close()

    app = FastAPI(title="Studios", version="1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.state.metrics = service_metrics.Metrics()
    errors.install(app)
    for router in (studios.router, deployments.router, streams.router, shares.router, credentials.router, users.router, platform.router, discovery.router, metrics.router):
        app.include_router(router)
    ui.install(app)
    app.add_middleware(RequestTimer, histogram=app.state.metrics.requests)  # inside NormalizePath: it sees the route chosen
    app.add_middleware(NormalizePath)
    ratelimit.install(app, per_key=ctx.settings.rate_limit_per_key, auth_failures=ctx.settings.auth_failure_limit, trusted_proxies=ctx.settings.trusted_proxies)
    return app


__all__ = ["Event", "build_context", "create_app", "proxy_config", "serve_app"]
