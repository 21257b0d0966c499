"""The proxy's settings: one frozen dataclass, buildable from `STUDIOS_PROXY_*` variables.

The service builds a `ProxyConfig` from its own settings; the standalone proxy process
(`python -m studios.proxy`) uses `ProxyConfig.from_env()`. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import urlsplit

Mode = Literal["host", "path"]


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    secret_keys: Sequence[str | bytes]
    """Signing keys, oldest first: tokens and cookies are signed with the last one and verified
    against all, so adding a key (and later dropping the oldest) rotates without logging anyone
    out. Must be shared by every process that signs or verifies."""
    public_url: str = "http://localhost:8001"
    """Where browsers reach the proxy. Host mode: the base domain, deployments live at
    `d-<id>.<host of this URL>` (same scheme and port). Path mode: deployments live at
    `<public_url>/_d/<id>/`."""
    mode: Mode = "host"
    token_max_age: int = 3600
    """Seconds a displayUrl token can be exchanged for a cookie."""
    cookie_max_age: int = 86400
    """Seconds a viewer's cookie stays valid (can_view is still asked on every request)."""
    fallback: tuple[str, int] | None = None
    """Single-port setups: forward requests that are not for a deployment (neither a
    deployment host nor `/_d/`) to this address (the API server), without any access check."""
    websocket_touch_interval: float = 30.0
    """Seconds between `touch` calls for a deployment with open WebSockets but no traffic."""
    connect_timeout: float = 10.0
    pool_size: int = 64
    """Idle keep-alive connections kept per upstream address."""
    strip_prefix: bool = False
    """Path mode: False (default) forwards the whole path, `/_d/<id>/...`, so the app sees and
    serves under its `STUDIOS_BASE_PATH`; True strips the prefix (the app sees `/...` and gets
    `X-Forwarded-Prefix`). A deployment can choose with `Target.strip_prefix`."""
    auth_attempts_per_minute: int = 30
    """Token exchanges (`/_studios/auth`) one client address may make per minute, in bursts of
    up to that many; past it the proxy answers 429 with Retry-After. 0: no limit."""
    max_head_bytes: int = 65536
    """A request head (request line and headers) larger than this gets a 431 and the
    connection is closed."""

    def __post_init__(self) -> None:
        if not self.secret_keys:
            raise ValueError("ProxyConfig needs at least one secret key")
        if self.mode not in ("host", "path"):
            raise ValueError(f"mode must be 'host' or 'path', not {self.mode!r}")
        if self.auth_attempts_per_minute < 0:
            raise ValueError("auth_attempts_per_minute must be 0 (no limit) or more")

    @property
    def scheme(self) -> str:
        return urlsplit(self.public_url).scheme or "http"

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def public_host(self) -> str:
        """`host[:port]` of `public_url`, lower-case, as browsers send it in `Host`."""
        return urlsplit(self.public_url).netloc.lower()

    @property
    def base_path(self) -> str:
        """Path of `public_url` without the trailing slash ("" for the root)."""
        return urlsplit(self.public_url).path.rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        """Read `STUDIOS_PROXY_SECRET_KEYS` (comma-separated, oldest first; required),
        `STUDIOS_PROXY_PUBLIC_URL`, `STUDIOS_PROXY_MODE` (host|path),
        `STUDIOS_PROXY_TOKEN_MAX_AGE`, `STUDIOS_PROXY_COOKIE_MAX_AGE`,
        `STUDIOS_PROXY_FALLBACK` (host:port), `STUDIOS_PROXY_PATH_PREFIX` (forward|strip) and
        `STUDIOS_PROXY_AUTH_ATTEMPTS_PER_MINUTE`."""
        env = os.environ if env is None else env
        keys = [k for k in env.get("STUDIOS_PROXY_SECRET_KEYS", "").split(",") if k]
        fallback = None
        if env.get("STUDIOS_PROXY_FALLBACK"):
            host, _, port = env["STUDIOS_PROXY_FALLBACK"].rpartition(":")
            fallback = (host or "127.0.0.1", int(port))
        return cls(
            secret_keys=keys,
            public_url=env.get("STUDIOS_PROXY_PUBLIC_URL", cls.public_url),
            mode=env.get("STUDIOS_PROXY_MODE", "host"),  # type: ignore[arg-type]
            token_max_age=int(env.get("STUDIOS_PROXY_TOKEN_MAX_AGE", cls.token_max_age)),
            cookie_max_age=int(env.get("STUDIOS_PROXY_COOKIE_MAX_AGE", cls.cookie_max_age)),
            fallback=fallback,
            strip_prefix=env.get("STUDIOS_PROXY_PATH_PREFIX", "forward") == "strip",
            auth_attempts_per_minute=int(env.get("STUDIOS_PROXY_AUTH_ATTEMPTS_PER_MINUTE", cls.auth_attempts_per_minute)),
        )


PATH_PREFIX_PARAM = "STUDIOS_PATH_PREFIX"
"""A studio param with this name and the value `strip` or `forward` chooses, for its
deployments, what path-mode requests look like to the app (`ProxyConfig.strip_prefix`)."""


def strip_prefix_choice(params: Sequence[Mapping[str, object]] | None) -> bool | None:
    """The `STUDIOS_PATH_PREFIX` param's choice (True: strip, False: forward), or None when the
    studio does not choose (the server's `ProxyConfig.strip_prefix` then applies)."""
    for param in params or ():
        if param.get("name") == PATH_PREFIX_PARAM:
            value = str(param.get("value") or "").strip().lower()
            if value in ("strip", "forward"):
                return value == "strip"
    return None
