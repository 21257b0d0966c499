"""The proxy's settings: one frozen dataclass, built from the service's `Settings`.

`studios serve` and the standalone proxy process (`python -m studios.proxy`) both build it with
`ProxyConfig.from_settings(Settings())`, so the two read the same `STUDIOS_*` variables in the
same way (README, "Configuration"). Tests and benchmarks may build one directly. Nothing here
does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from studios.settings import Settings

Mode = Literal["host", "path"]


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    secret_keys: Sequence[str | bytes]
    """Signing keys, newest first (the order of `STUDIOS_SECRET_KEY`): tokens and cookies are
    signed with the first and verified against all, so adding a key in front (and later dropping
    the oldest) rotates without logging anyone out. Must be shared by every process that signs
    or verifies."""
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
    def from_settings(cls, settings: Settings) -> ProxyConfig:
        """The proxy's part of the service's settings: `STUDIOS_SECRET_KEY`,
        `STUDIOS_PROXY_PUBLIC_URL` (default from `STUDIOS_PROXY_PORT`), `STUDIOS_PROXY_MODE`,
        `STUDIOS_PROXY_FALLBACK`, `STUDIOS_PROXY_PATH_PREFIX`, `STUDIOS_PROXY_AUTH_ATTEMPTS_PER_MINUTE`,
        `STUDIOS_DISPLAY_TOKEN_SECONDS`, `STUDIOS_DISPLAY_COOKIE_SECONDS`."""
        return cls(
            secret_keys=list(settings.secret_keys),
            public_url=settings.effective_proxy_url,
            mode=settings.proxy_mode,
            token_max_age=settings.display_token_seconds,
            cookie_max_age=settings.display_cookie_seconds,
            fallback=settings.proxy_fallback_address,
            strip_prefix=settings.proxy_path_prefix == "strip",
            auth_attempts_per_minute=settings.proxy_auth_attempts_per_minute,
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
