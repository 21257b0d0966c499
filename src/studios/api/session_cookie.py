"""Web sessions: the signed cookie the web UI gets in exchange for an API key, and the one
function the API's dependencies call to turn a request into a caller (an `Authorization`
header first, else that cookie).

The cookie (`studios_ui`, HttpOnly, SameSite=Strict, Secure behind https) holds the keyed
hash of the API key it was made from, never the key, and a random CSRF token, signed with
itsdangerous under the service's secret keys (the newest signs, all verify) and dated: it
expires after `STUDIOS_UI_SESSION_SECONDS`, and revoking the key ends the session. A cookie
authenticates reads alone; every other method must also carry the session's CSRF token in
the `X-CSRF-Token` header, which only the UI's own scripts can read (`GET /ui/session`).
Owns nothing else: no routes, no storage."""

from __future__ import annotations

import dataclasses
import functools
import hmac
import secrets

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from studios.context import Context
from studios.errors import Forbidden, Unauthorized
from studios.services.keys import Caller, authenticate, authenticate_hash

COOKIE = "studios_ui"
CSRF_HEADER = "X-CSRF-Token"
SALT = "studios.ui-session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclasses.dataclass(frozen=True)
class WebSession:
    key_hash: str
    csrf: str


@functools.lru_cache(maxsize=8)
def _serializer(secret_keys: tuple[str, ...]) -> URLSafeTimedSerializer:
    # Settings list the newest key first; itsdangerous signs with the last one.
    return URLSafeTimedSerializer(list(reversed(secret_keys)), salt=SALT)


def _signer(ctx: Context) -> URLSafeTimedSerializer:
    return _serializer(tuple(ctx.settings.secret_keys))


def read(ctx: Context, request: Request) -> WebSession | None:
    """The request's web session, if its cookie is present, authentic and not expired."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _signer(ctx).loads(raw, max_age=int(ctx.settings.ui_session_seconds))
    except BadSignature:  # also SignatureExpired
        return None
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(v, str) for v in data)):
        return None
    return WebSession(data[0], data[1])


def new(key_hash: str) -> WebSession:
    """A new session for the key with this hash, with a fresh CSRF token."""
    return WebSession(key_hash, secrets.token_urlsafe(32))


def start(ctx: Context, response: Response, web: WebSession) -> None:
    """Set the session's cookie on `response`."""
    response.set_cookie(
        COOKIE,
        _signer(ctx).dumps([web.key_hash, web.csrf]),
        max_age=int(ctx.settings.ui_session_seconds),
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.settings.effective_public_url.startswith("https://"),
    )


def end(ctx: Context, response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=ctx.settings.effective_public_url.startswith("https://"))


def csrf_ok(web: WebSession, request: Request) -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent.encode(), web.csrf.encode())


def authenticate_request(session: Session, ctx: Context, request: Request) -> Caller:
    """The caller of an API request: its `Authorization` header when it has one, else its web
    session cookie (with the CSRF header on anything but a read); Unauthorized otherwise."""
    header = request.headers.get("authorization")
    if header is None and COOKIE in request.cookies:
        web = read(ctx, request)
        if web is None:
            raise Unauthorized("Your web session has expired or is not valid: sign in again.")
        if request.method not in SAFE_METHODS and not csrf_ok(web, request):
            raise Forbidden(f"This change needs the session's {CSRF_HEADER} header (cross-site requests are refused).")
        return authenticate_hash(session, ctx.hasher, [web.key_hash])
    return authenticate(session, ctx.hasher, header)
