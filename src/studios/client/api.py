"""A small HTTP client of the Civis /studios API for the CLI: the endpoint and key from
`CIVIS_API_ENDPOINT` / `CIVIS_API_KEY`, Civis error bodies turned into `ApiError` messages,
pagination through the `X-Pagination-*` headers, and retries when the server says to come
back later (429, 503 with `Retry-After`). Knows nothing of studios beyond paths."""

from __future__ import annotations

import contextlib
import email.utils
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

DEFAULT_ENDPOINT = "https://api.civisanalytics.com/"
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")


class ApiError(Exception):
    """A request that did not succeed: the server's Civis error, or why it could not be reached."""

    def __init__(self, description: str, status: int | None = None, error: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.error = error


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else datetime.now(UTC).timestamp()))


def _describe(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errorDescription"), str):
        message = body["errorDescription"]
        error = body.get("error") if isinstance(body.get("error"), str) else None
    else:
        text = " ".join(response.text.split())[:200]
        message = f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")
        error = None
    if response.status_code == 401:
        message += " (check CIVIS_API_KEY)"
    return ApiError(message, response.status_code, error)


class ApiClient:
    """Blocking calls to one server with one key. `max_retries` bounds the retries of one
    request and `max_wait` each wait, so a server that keeps answering 429 ends in an
    `ApiError` instead of a hang."""

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.endpoint,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": "studios-cli"},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **kwargs: Any) -> ApiClient:
        env = os.environ if environ is None else environ
        key = env.get("CIVIS_API_KEY", "").strip()
        if not key:
            raise ApiError("CIVIS_API_KEY is not set: export an API key of the server (and CIVIS_API_ENDPOINT, its URL).")
        return cls(env.get("CIVIS_API_ENDPOINT") or DEFAULT_ENDPOINT, key, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> httpx.Response:
        """One call, retried while the server asks to wait; ApiError unless it succeeds."""
        backoff = 1.0
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(method, path, params=params, json=json)
            except httpx.TransportError as exc:
                raise ApiError(f"cannot reach {self.endpoint} ({exc.__class__.__name__}: {exc}); check CIVIS_API_ENDPOINT") from None
            if response.status_code in (429, 503) and attempt < self.max_retries:
                wait = retry_after(response.headers.get("retry-after"))
                # Without Retry-After, only a request that is safe to repeat is repeated.
                if wait is not None or method in IDEMPOTENT or response.status_code == 429:
                    self._sleep(min(wait if wait is not None else backoff, self.max_wait))
                    backoff *= 2
                    continue
            if response.is_success:
                return response
            raise _describe(response)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def stream(self, path: str, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None, read_timeout: float | None = None) -> Iterator[httpx.Response]:
        """GET `path` as a stream (server-sent events): the open response, whatever its status
        (the caller reads it or turns it into an error with `error_of`)."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout, write=self._http.timeout.write, pool=self._http.timeout.pool)
        request = self._http.build_request("GET", path, params=params, headers={"Accept": "text/event-stream", "Cache-Control": "no-store", **(headers or {})}, timeout=timeout)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach {self.endpoint} ({exc.__class__.__name__}: {exc}); check CIVIS_API_ENDPOINT") from None
        try:
            yield response
        finally:
            response.close()

    @staticmethod
    def error_of(response: httpx.Response) -> ApiError:
        """The Civis error of a response that did not succeed (its body read)."""
        response.read()
        return _describe(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def post(self, path: str, body: Any = None) -> Any:
        response = self.request("POST", path, json=body if body is not None else {})
        return response.json() if response.content else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def pages(self, path: str, *, per_page: int = 50, max_pages: int = 10_000, **params: Any) -> Iterator[Any]:
        """Every item of a paginated list, page after page, until the last page (by the
        `X-Pagination-Total-Pages` header when the server sends it, else an empty page)."""
        for page in range(1, max_pages + 1):
            response = self.request("GET", path, params={**{k: v for k, v in params.items() if v is not None}, "limit": per_page, "page_num": page})
            items = response.json()
            yield from items
            total = response.headers.get("x-pagination-total-pages")
            if not items or (total is not None and total.isdigit() and page >= int(total)):
                return
