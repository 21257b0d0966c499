"""Display URLs, the signed tokens they carry, and the viewer cookies those tokens buy.

A displayUrl token is an itsdangerous `URLSafeTimedSerializer` signature over
`[deployment_id, user_id, nonce]` (salt `studios.display-token`), valid for `token_max_age` seconds
and exchangeable once: the proxy's `/_studios/auth` endpoint trades it for a cookie signed the
same way under another salt (`studios.display-cookie`), so a token is never accepted as a
cookie or the other way round. The backend remembers it as spent until it expires
(`spent_key`, `ProxyBackend.spend`): with the database backend, on every server.
Both are signed with the newest key and verified against all configured keys.

This module owns the URL shapes (`d-<id>.<base domain>` or `<public url>/_d/<id>/`) and the
cookie attributes; it does no I/O and knows nothing of the backend.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer

from .config import ProxyConfig

COOKIE_NAME = "studios_session"
HOST_PREFIX = "d-"
PATH_PREFIX = "/_d/"
AUTH_PATH = "/_studios/auth"
STATUS_PATH = "/_studios/status"

_CACHE_LIMIT = 10_000
_CLOCK_MARGIN = 300.0
"""Seconds a spent token is remembered past its expiry: servers' clocks may differ by that much."""


class DisplayLinks:
    """Signs and verifies tokens and cookies for one `ProxyConfig`; builds URLs and hosts.

    The service creates one (with the same config as the proxy) and calls `display_url` and
    `host_for` when it renders a deployment.
    """

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        # itsdangerous signs with the last key of its list: ours are newest first.
        keys = [key.encode() if isinstance(key, str) else key for key in reversed(config.secret_keys)]
        self._tokens = URLSafeTimedSerializer(keys, salt="studios.display-token")
        self._cookies = URLSafeTimedSerializer(keys, salt="studios.display-cookie")
        host = config.public_host
        self._base_host = host
        self._host_re = re.compile(
            r"^" + re.escape(HOST_PREFIX) + r"([0-9]{1,18})\." + re.escape(host) + r"$"
        )
        self._path_prefix = config.base_path + PATH_PREFIX
        # verified cookie value -> (deployment_id, user_id, expires_at); saves the HMAC and
        # JSON decoding on every request of a keep-alive session.
        self._cookie_cache: dict[str, tuple[int, int, float]] = {}

    # -- URLs -----------------------------------------------------------------------------
    def host_for(self, deployment_id: int) -> str:
        """The deployment's `host` (`host[:port]` as a browser sends it). In path mode every
        deployment shares the public host."""
        if self.config.mode == "path":
            return self._base_host
        return f"{HOST_PREFIX}{int(deployment_id)}.{self._base_host}"

    def prefix_for(self, deployment_id: int) -> str:
        """The path prefix the app is served under: "" in host mode, `/_d/<id>` in path mode.
        The service passes it to the app as `STUDIOS_BASE_PATH`."""
        if self.config.mode == "path":
            return f"{self._path_prefix}{int(deployment_id)}"
        return ""

    def app_url(self, deployment_id: int) -> str:
        """The app's root URL for this deployment (without a token)."""
        return f"{self.config.scheme}://{self.host_for(deployment_id)}{self.prefix_for(deployment_id)}/"

    def display_url(self, deployment_id: int, user_id: int) -> str:
        """The signed link for `user_id` to open `deployment_id` (the API's `displayUrl`)."""
        token = self.make_token(deployment_id, user_id)
        return (
            f"{self.config.scheme}://{self.host_for(deployment_id)}"
            f"{self.prefix_for(deployment_id)}{AUTH_PATH}?token={quote(token)}"
        )

    def deployment_for_host(self, host: str) -> int | None:
        """The deployment id named by a `Host` header in host mode, or None."""
        match = self._host_re.match(host.lower())
        return int(match.group(1)) if match else None

    def split_path(self, path: str) -> tuple[int, str] | None:
        """(deployment id, rest of the path starting with "/") for `/_d/<id>/...`, else None.
        `/_d/<id>` without a trailing slash gives rest "" (the proxy redirects it)."""
        if not path.startswith(self._path_prefix):
            return None
        tail = path[len(self._path_prefix):]
        ident, slash, rest = tail.partition("/")
        if not ident.isdigit() or len(ident) > 18:
            return None
        return int(ident), (slash + rest)

    # -- tokens ---------------------------------------------------------------------------
    def make_token(self, deployment_id: int, user_id: int) -> str:
        # A random nonce makes every token distinct, so two links made in the same second
        # (signatures carry whole seconds) are spent separately.
        return self._tokens.dumps([int(deployment_id), int(user_id), secrets.token_urlsafe(6)])

    def verify_token(self, token: str) -> tuple[int, int] | None:
        """(deployment id, user id) of a valid, unexpired token, else None. Says nothing of
        whether it was spent: `ProxyBackend.spend` does."""
        try:
            value = self._tokens.loads(token, max_age=self.config.token_max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        if isinstance(value, list) and len(value) == 3 and isinstance(value[2], str):
            value = value[:2]  # the nonce
        return _pair(value)

    def spent_key(self, token: str) -> tuple[str, float] | None:
        """What records `token` as exchanged (`ProxyBackend.spend`): the SHA-256 of what was
        signed and when (so two spellings of one token are one key, and the record holds no
        token), and the unix time after which no server accepts the token anyway (its lifetime
        plus a margin for servers' clocks). None for a token that does not verify."""
        try:
            value, signed_at = self._tokens.loads(token, max_age=self.config.token_max_age, return_timestamp=True)
        except (BadSignature, ValueError, TypeError):
            return None
        key = hashlib.sha256(f"{value}@{signed_at.timestamp()}".encode()).hexdigest()
        return key, signed_at.timestamp() + self.config.token_max_age + _CLOCK_MARGIN

    # -- cookies --------------------------------------------------------------------------
    def make_cookie(self, deployment_id: int, user_id: int) -> str:
        return self._cookies.dumps([int(deployment_id), int(user_id)])

    def verify_cookie(self, value: str) -> tuple[int, int] | None:
        """(deployment id, user id) of a valid, unexpired cookie value, else None."""
        now = time.time()
        cached = self._cookie_cache.get(value)
        if cached is not None:
            if cached[2] > now:
                return cached[0], cached[1]
            del self._cookie_cache[value]
            return None
        try:
            payload, signed_at = self._cookies.loads(
                value, max_age=self.config.cookie_max_age, return_timestamp=True
            )
        except (BadSignature, ValueError, TypeError):
            return None
        pair = _pair(payload)
        if pair is None:
            return None
        if len(self._cookie_cache) >= _CACHE_LIMIT:
            self._cookie_cache.clear()
        self._cookie_cache[value] = (pair[0], pair[1], signed_at.timestamp() + self.config.cookie_max_age)
        return pair

    def set_cookie(self, deployment_id: int, user_id: int) -> str:
        """The `Set-Cookie` header value for a viewer of `deployment_id`: host-only (no
        Domain), HttpOnly, SameSite=Lax, Secure on https, Path=/_d/<id>/ in path mode."""
        path = self.prefix_for(deployment_id) + "/"
        parts = [
            f"{COOKIE_NAME}={self.make_cookie(deployment_id, user_id)}",
            f"Path={path}",
            f"Max-Age={self.config.cookie_max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.config.secure:
            parts.append("Secure")
        return "; ".join(parts)


def _pair(value: object) -> tuple[int, int] | None:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(type(v) is int for v in value)
    ):
        return value[0], value[1]
    return None


def cookie_value(header: str) -> list[str]:
    """Every value of our cookie in a `Cookie` header (a browser may send several when paths
    overlap); the caller accepts the first that verifies for the deployment."""
    out = []
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name == COOKIE_NAME:
            out.append(value.strip().strip('"'))
    return out


def strip_cookie(header: str) -> str:
    """The `Cookie` header without our cookie, so the app never sees the viewer credential."""
    return "; ".join(
        p.strip() for p in header.split(";") if p.strip() and p.strip().partition("=")[0] != COOKIE_NAME
    )
