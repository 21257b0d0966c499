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

    def __post_init__(self) -> None:
        if not self.secret_keys:
            raise ValueError("ProxyConfig needs at least one secret key")
        if self.mode not in ("host", "path"):
            raise ValueError(f"mode must be 'host' or 'path', not {self.mode!r}")

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
        `STUDIOS_PROXY_TOKEN_MAX_AGE`, `STUDIOS_PROXY_COOKIE_MAX_AGE` and
        `STUDIOS_PROXY_FALLBACK` (host:port)."""
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
        )
