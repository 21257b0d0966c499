"""The HTML pages the proxy answers with itself, rendered into complete HTTP responses.

Templates live in `pages/*.html` (`string.Template` placeholders, every value HTML-escaped).
Each function returns the full response bytes (status line, headers, body) ready to write.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from string import Template

from .backend import Target

_REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 431: "Request Header Fields Too Large", 502: "Bad Gateway",
            503: "Service Unavailable"}


@cache
def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath("pages", name).read_text("utf-8"))


def response(
    status: int,
    body: bytes,
    content_type: str = "text/html; charset=utf-8",
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    keep_alive: bool = True,
) -> bytes:
    """A complete HTTP/1.1 response with a Content-Length body."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
    ]
    lines += [f"{k}: {v}" for k, v in headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _render(name: str, raw: dict[str, str] | None = None, **values: str) -> bytes:
    """Fill a template: `values` are HTML-escaped, `raw` (our own markup) is not."""
    safe = {k: html.escape(v, quote=True) for k, v in values.items()}
    safe.update(raw or {})
    return _template(name).safe_substitute(safe).encode("utf-8")


def forbidden(reason: str, keep_alive: bool = True) -> bytes:
    """403: forged, expired or other-deployment token or cookie, or no permission."""
    return response(403, _render("forbidden.html", reason=reason), keep_alive=keep_alive)


def not_found(deployment_id: int, keep_alive: bool = True) -> bytes:
    body = _render("not_running.html", raw={"refresh": ""}, state="not found",
                   message=f"There is no deployment {deployment_id}.")
    return response(404, body, keep_alive=keep_alive)


def not_running(target: Target, keep_alive: bool = True, retry: bool = False) -> bytes:
    """503 page that names the state and its message (terminated, failed, or an app that is
    `running` but does not answer yet: then `retry` makes the page reload itself)."""
    refresh = '<meta http-equiv="refresh" content="2">' if retry else ""
    body = _render("not_running.html", raw={"refresh": refresh}, state=target.state,
                   message=target.state_message)
    headers = [("Retry-After", "2")] if retry else []
    return response(503, body, headers=headers, keep_alive=keep_alive)


def starting(target: Target, status_url: str, keep_alive: bool = True) -> bytes:
    """503 page for pending/sleeping deployments; it polls `status_url` and reloads when the
    deployment is running."""
    body = _render(
        "starting.html",
        state=target.state,
        message=target.state_message,
        progress="\n".join(target.progress),
        status_url=status_url,
    )
    return response(503, body, headers=[("Retry-After", "2")], keep_alive=keep_alive)


def status(target: Target, keep_alive: bool = True) -> bytes:
    """200 JSON for the starting page: state, stateMessage, progress, sleepsAt."""
    body = json.dumps({
        "deploymentId": target.deployment_id,
        "state": target.state,
        "stateMessage": target.state_message,
        "progress": list(target.progress),
        "sleepsAt": target.sleeps_at,
    }).encode()
    return response(200, body, content_type="application/json", keep_alive=keep_alive)


def redirect(location: str, set_cookie: str | None = None, keep_alive: bool = True) -> bytes:
    headers = [("Location", location)]
    if set_cookie:
        headers.append(("Set-Cookie", set_cookie))
    return response(303, b"", headers=headers, keep_alive=keep_alive)


def bad_request(status: int = 400, keep_alive: bool = False) -> bytes:
    """400 (a request we will not forward as sent) or 431 (its head is too large)."""
    body = b"Request header fields too large\n" if status == 431 else b"Bad request\n"
    return response(status, body, content_type="text/plain; charset=utf-8", keep_alive=keep_alive)


def too_many(retry_after: int, keep_alive: bool = True) -> bytes:
    """429 for a client address that used up its budget of token exchanges."""
    body = (b"<!doctype html><title>Too many attempts</title><h1>Too many sign-in attempts</h1>"
            b"<p>Too many links were opened from your address. Wait %d s and open the link again.</p>" % retry_after)
    return response(429, body, headers=[("Retry-After", str(retry_after))], keep_alive=keep_alive)
