"""Request limits of the API, as one ASGI middleware: failed authentications per client
address, and requests per API key, counted in fixed windows by the `limits` library in this
process's memory.

- An address that has had `auth_failure_limit` answers of 401 in the current window gets a 429
  with `Retry-After` for every request until the window ends, before its key is looked at.
- Every request that carries a key counts against that key's `rate_limit_per_key`; its answer
  carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix time, in
  seconds, when the window ends), and past the limit it is a 429 with `Retry-After`.

The client address is the connection's peer, or, when that peer is one of `trusted_proxies`,
the address its `X-Forwarded-For` names (uvicorn's `ProxyHeadersMiddleware`, wired here too).
Keys are identified by a hash of the key, never kept in plain text. This module knows nothing
of whether a key is valid (a 401 from the routes says so), of the database or of the routes.
Several server processes each count on their own (docs/security.md).
"""

from __future__ import annotations

import hashlib
import math
import time

from fastapi import FastAPI
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from studios.api.errors import civis_error
from studios.errors import Unauthorized
from studios.services.keys import key_from_header


def parse_limit(text: str | None) -> RateLimitItem | None:
    """`"20/minute"`, `"10000 per 1 hour"`...; None when empty or a zero amount (no limit).
    Raises ValueError for anything `limits` cannot read."""
    if not text or not text.strip() or text.strip() == "0":
        return None
    item = parse(text)
    return item if item.amount > 0 else None


class RateLimit:
    """The ASGI middleware; see the module docstring.

    Fixed windows on `limits`' in-memory storage (its counters, expiry and locks), called
    directly: `FixedWindowRateLimiter` does the same (`incr(key) <= amount`) but rebuilds each
    key string through `RateLimitItem.key_for` on every call, which cost more than the rest of
    this middleware together (bench/ratelimit_bench.py)."""

    def __init__(self, app: ASGIApp, *, per_key: str | None, auth_failures: str | None) -> None:
        self.app = app
        self.storage = MemoryStorage()
        self.per_key = parse_limit(per_key)
        self.failures = parse_limit(auth_failures)
        self.per_key_limit = str(self.per_key.amount).encode() if self.per_key else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        address = client[0] if client else "unknown"
        storage, failures, per_key = self.storage, self.failures, self.per_key
        failure_key = "f/" + address
        if failures is not None and storage.get(failure_key) >= failures.amount:
            wait = max(1, math.ceil(storage.get_expiry(failure_key) - time.time()))
            description = f"Too many failed authentications from {address}: try again in {wait} s."
            return await civis_error(429, "too_many_requests", description, {"Retry-After": str(wait)})(scope, receive, send)
        extra: list[tuple[bytes, bytes]] = []
        if per_key is not None:
            key_id = _key_id(scope)
            if key_id is not None:
                count = storage.incr(key_id, per_key.get_expiry())
                reset = storage.get_expiry(key_id)
                remaining = max(0, per_key.amount - count)
                extra = [(b"x-ratelimit-limit", self.per_key_limit), (b"x-ratelimit-remaining", str(remaining).encode()), (b"x-ratelimit-reset", str(math.ceil(reset)).encode())]
                if count > per_key.amount:
                    wait = max(1, math.ceil(reset - time.time()))
                    headers = {k.decode(): v.decode() for k, v in extra} | {"Retry-After": str(wait)}
                    description = f"This API key made more than {per_key.amount} requests in {_window(per_key)}: try again in {wait} s."
                    return await civis_error(429, "too_many_requests", description, headers)(scope, receive, send)

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    if failures is not None:
                        storage.incr(failure_key, failures.get_expiry())
                elif extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_counted)


def _key_id(scope: Scope) -> str | None:
    """A hash of the request's API key (Basic or Bearer), or None when it carries none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            try:
                key = key_from_header(value.decode("latin-1"))
            except Unauthorized:
                return None
            return "k/" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return None


def _window(item: RateLimitItem) -> str:
    return f"{item.multiples} {item.GRANULARITY.name}" + ("s" if item.multiples != 1 else "")


def install(app: FastAPI, *, per_key: str | None, auth_failures: str | None, trusted_proxies: str) -> None:
    """Wire the limits (and, with trusted proxies, the forwarded client address) into `app`,
    outside every other middleware. Call after the app's own `add_middleware` calls. With both
    limits off, nothing is added (the request path is as without this module)."""
    if parse_limit(per_key) is not None or parse_limit(auth_failures) is not None:
        app.add_middleware(RateLimit, per_key=per_key, auth_failures=auth_failures)
    if trusted_proxies.strip():
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies)
