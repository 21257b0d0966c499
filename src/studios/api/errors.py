"""The one mapping from failures to the Civis error body `{"error", "errorDescription",
"code"}`: domain errors, request validation (always naming the field), unknown routes, and
anything unexpected (a 500 that says so without leaking internals)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from studios.errors import StudiosError

log = logging.getLogger("studios.api")

HTTP_ERRORS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 429: "too_many_requests", 503: "service_unavailable"}


def civis_error(code: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if code == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Basic realm="studios", Bearer'}
    return JSONResponse({"error": error, "errorDescription": description, "code": code}, status_code=code, headers=headers)


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def describe_validation(exc: RequestValidationError) -> str:
    messages = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            detail = err.get("ctx", {}).get("error", "")
            messages.append(f"The request body is not valid JSON ({detail}).".replace(" ()", ""))
            continue
        where = _where(tuple(err.get("loc", ())))
        msg = err.get("msg", "is invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") == "extra_forbidden":
            msg = "is not a known field"
        elif err.get("type") == "missing":
            msg = "is required"
        messages.append(f"{where or 'request body'}: {msg}")
    return "; ".join(messages) or "The request is invalid."


def install(app: FastAPI) -> None:
    @app.exception_handler(StudiosError)
    async def _domain(_: Request, exc: StudiosError) -> JSONResponse:
        return civis_error(exc.code, exc.error, exc.description)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return civis_error(400, "bad_request", describe_validation(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            description = f"No such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            description = f"{request.method} is not allowed on {request.url.path}"
        else:
            description = str(exc.detail)
        return civis_error(exc.status_code, HTTP_ERRORS.get(exc.status_code, "error"), description, dict(exc.headers or {}))

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        # A lock wait past STUDIOS_DB_LOCK_TIMEOUT_SECONDS, or the database unreachable: the
        # request changed nothing; the civis client retries on 503 with Retry-After.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, str(exc.orig).strip()[:200])
        return civis_error(503, "service_unavailable", "The database is busy or unreachable; nothing was changed. Retry shortly.", {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return civis_error(500, "internal_error", "The server failed to handle this request; the error is in its log.")
