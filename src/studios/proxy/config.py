"""The proxy's settings: one frozen dataclass, built from the service's `Settings`.

`studios serve` and the standalone proxy process (`python -m studios.proxy`) both build it with
`ProxyConfig.from_settings(Settings())`, so the two read the same `STUDIOS_*` variables in the
same way (README, "Configuration"). Tests and benchmarks may build one directly. Nothing here
does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
    def from_settings(cls, settings: Settings) -> ProxyConfig:
        """The proxy's part of the service's settings: `STUDIOS_SECRET_KEY`,
        `STUDIOS_PROXY_PUBLIC_URL` (default from `STUDIOS_PROXY_PORT`), `STUDIOS_PROXY_MODE`,
        `STUDIOS_PROXY_FALLBACK`, `STUDIOS_DISPLAY_TOKEN_SECONDS`, `STUDIOS_DISPLAY_COOKIE_SECONDS`."""
        return cls(
            secret_keys=list(settings.secret_keys),
            public_url=settings.effective_proxy_url,
            mode=settings.proxy_mode,
            token_max_age=settings.display_token_seconds,
            cookie_max_age=settings.display_cookie_seconds,
            fallback=settings.proxy_fallback_address,
        )
