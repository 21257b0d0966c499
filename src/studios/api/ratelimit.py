"""Request limits of the API, as one ASGI middleware: failed authentications per client
address, and requests per API key, counted in fixed windows in this process's memory.

- An address that has had `auth_failure_limit` answers of 401 in the current window gets a 429
  with `Retry-After` for every request until the window ends, before its key is looked at. A 401
  counts when the request presented a credential (an `Authorization` header, well-formed or not,
  or the web UI's session cookie): a guess. A request that presents none guesses nothing, and counting it would let
  a signed-out page asking "am I signed in?" (`GET /ui/session`) from a few browsers behind one
  address lock that address out.
- Every request that carries a key counts against that key's `rate_limit_per_key`; its answer
  carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix time, in
  seconds, when the window ends), and past the limit it is a 429 with `Retry-After`.

The limits are written as the `limits` library reads them ("20/minute", "10000 per hour") and
parsed by it; the counting is `FixedWindows` below, not `limits`' in-memory storage, which
expires keys from a timer thread it restarts every 10 ms under load, behind a lock per key:
with it the whole app spent +67 us CPU on a ~420 us GET (+16%), with this dict read and swept on
the event loop +15 us (+3.6%) (bench/ratelimit_bench.py, paired rounds). The client address is the connection's peer, or, when that peer is
one of `trusted_proxies`, the address its `X-Forwarded-For` names (uvicorn's
`ProxyHeadersMiddleware`, wired here too). Keys are counted by a hash, never kept in plain
text. This module knows nothing of whether a key is valid (a 401 from the routes says so), of
the database or of the routes. Several server processes each count on their own
(docs/security.md).
"""

from __future__ import annotations

import hashlib
import math
import time

from fastapi import FastAPI
from limits import RateLimitItem, parse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from studios.api.errors import civis_error
from studios.api.session_cookie import COOKIE
from studios.errors import Unauthorized
from studios.services.keys import key_from_header


def parse_limit(text: str | None) -> RateLimitItem | None:
    """`"20/minute"`, `"10000 per 1 hour"`...; None when empty or a zero amount (no limit).
    Raises ValueError for anything `limits` cannot read."""
    if not text or not text.strip() or text.strip() == "0":
        return None
    item = parse(text)
    return item if item.amount > 0 else None


class FixedWindows:
    """Counts per identifier in fixed windows of `seconds`: a window opens with an identifier's
    first hit and closes `seconds` later. Used only from the event loop (no locks). Closed
    windows are dropped when their identifier comes back, and swept whenever the table has
    doubled since the last sweep, so it holds about the identifiers seen in one window."""

    def __init__(self, amount: int, seconds: float) -> None:
        self.amount, self.seconds = amount, seconds
        self._windows: dict[str, list[float]] = {}  # identifier -> [closes at (monotonic), count]
        self._sweep_at = 1024

    def hit(self, identifier: str, now: float) -> tuple[int, float]:
        """Count one more; the count in the window (this one included) and when it closes."""
        window = self._windows.get(identifier)
        if window is None or window[0] <= now:
            if len(self._windows) >= self._sweep_at:
                self._sweep(now)
            window = self._windows[identifier] = [now + self.seconds, 0]
        window[1] += 1
        return int(window[1]), window[0]

    def over(self, identifier: str, now: float) -> float | None:
        """When the identifier's window closes, if its count has reached `amount`; else None."""
        window = self._windows.get(identifier)
        if window is None or window[0] <= now or window[1] < self.amount:
            return None
        return window[0]

    def _sweep(self, now: float) -> None:
        self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
        self._sweep_at = max(1024, 2 * len(self._windows))


class RateLimit:
    """The ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, *, per_key: str | None, auth_failures: str | None) -> None:
        self.app = app
        per_key_item, failures_item = parse_limit(per_key), parse_limit(auth_failures)
        self.per_key = FixedWindows(per_key_item.amount, per_key_item.get_expiry()) if per_key_item else None
        self.per_key_limit = str(per_key_item.amount).encode() if per_key_item else b""
        self.per_key_window = _window(per_key_item) if per_key_item else ""
        self.failures = FixedWindows(failures_item.amount, failures_item.get_expiry()) if failures_item else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        address = client[0] if client else "unknown"
        failures, per_key = self.failures, self.per_key
        now = time.monotonic()
        if failures is not None:
            closes = failures.over(address, now)
            if closes is not None:
                wait = max(1, math.ceil(closes - now))
                description = f"Too many failed authentications from {address}: try again in {wait} s."
                return await civis_error(429, "too_many_requests", description, {"Retry-After": str(wait)})(scope, receive, send)
        extra: list[tuple[bytes, bytes]] = []
        if per_key is not None:
            key_id = _key_id(scope)
            if key_id is not None:
                count, closes = per_key.hit(key_id, now)
                reset = math.ceil(time.time() + closes - now)
                extra = [(b"x-ratelimit-limit", self.per_key_limit), (b"x-ratelimit-remaining", str(max(0, per_key.amount - count)).encode()), (b"x-ratelimit-reset", str(reset).encode())]
                if count > per_key.amount:
                    wait = max(1, math.ceil(closes - now))
                    headers = {k.decode(): v.decode() for k, v in extra} | {"Retry-After": str(wait)}
                    description = f"This API key made more than {per_key.amount} requests in {self.per_key_window}: try again in {wait} s."
                    return await civis_error(429, "too_many_requests", description, headers)(scope, receive, send)

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    if failures is not None and _presents_credential(scope):
                        failures.hit(address, time.monotonic())
                elif extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_counted)


_SESSION_COOKIE = f"{COOKIE}=".encode()


def _presents_credential(scope: Scope) -> bool:
    """Whether the request carries an API key (any `Authorization` header) or a web UI session
    cookie; other cookies (a display URL's viewer cookie, `studios_session`) are no credential here."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return True
        if name == b"cookie" and any(part.strip().startswith(_SESSION_COOKIE) for part in value.split(b";")):
            return True
    return False


def _key_id(scope: Scope) -> str | None:
    """A hash of the request's API key (Basic or Bearer), or None when it carries none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            try:
                key = key_from_header(value.decode("latin-1"))
            except Unauthorized:
                return None
            return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
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
