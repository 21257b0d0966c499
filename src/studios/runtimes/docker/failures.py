"""What a Docker engine's client raises when the engine did not do what was asked.

The docker SDK turns an engine's error answers into `docker.errors.DockerException`s
(`APIError`, `NotFound`...), but lets the transport's own failures through as they are: once the
client has spoken to the engine, an engine that died since raises
`requests.exceptions.ConnectionError` ("Connection aborted", "Connection refused") and one that
stalls `requests.exceptions.ReadTimeout`, neither of them a `DockerException`. Code that means
"the engine (or the swarm manager) could not be reached or refused" catches `ENGINE_ERRORS`.

A stream the SDK reads from the socket itself (a container's log, the events) can also break
with urllib3's or the socket's own error: `STREAM_ERRORS`. `why` says an engine's failure in one
line a user can read; `answering` turns a method's transport errors into `EngineUnreachable`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import docker.errors
import requests.exceptions
import urllib3.exceptions

from studios.runtimes.base import EngineUnreachable

P = ParamSpec("P")
T = TypeVar("T")

ENGINE_ERRORS: tuple[type[Exception], ...] = (docker.errors.DockerException, requests.exceptions.RequestException)
STREAM_ERRORS: tuple[type[Exception], ...] = (*ENGINE_ERRORS, urllib3.exceptions.HTTPError, OSError)


def answering(engine: str) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """For a runtime's method: the transport's errors (the engine does not answer) become
    `EngineUnreachable`, naming `engine` ("the swarm manager") and why; the engine's own error
    answers pass as they are."""

    def wrap(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(method)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await method(*args, **kwargs)
            except requests.exceptions.RequestException as error:
                raise EngineUnreachable(f"{engine} does not answer: {why(error)}") from None

        return run

    return wrap


def why(error: BaseException) -> str:
    """One line a user can read for an engine's failure: the engine's own explanation of an
    error answer, or what the transport met ("connection refused", not the SDK's nested
    `ConnectionError(ProtocolError('Connection aborted.', ...))`)."""
    if isinstance(error, docker.errors.APIError):
        return str(error.explanation or error).strip()
    if isinstance(error, requests.exceptions.Timeout):
        return "it did not answer in time"
    if isinstance(error, requests.exceptions.ConnectionError):
        cause = _os_error(error)
        if isinstance(cause, FileNotFoundError):
            return "nothing listens at its socket (no such file)"
        if cause is not None and cause.strerror:
            return cause.strerror.lower()
    return str(error).strip() or type(error).__name__


def _os_error(error: BaseException) -> OSError | None:
    """The socket's own error inside the SDK's and urllib3's wrappers (their args and chain)."""
    todo: list[BaseException] = [error]
    visited: set[int] = set()
    while todo:
        current = todo.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current
        todo += [a for a in current.args if isinstance(a, BaseException)]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None
