"""Opening the engine's streamed endpoints (task logs, container stats) so that another thread
can abort a read blocked on them: closing a `requests` response does not wake a `recv` that
waits for data which may never come (an idle app's log), shutting its socket down does."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import docker


def open_stream(api: docker.APIClient, path: str, ident: str, params: dict[str, Any], *, multiplexed: bool) -> tuple[Iterator[Any], Callable[[], None]]:
    """GET `path` (formatted with `ident`) streamed: (its items, an abort callable).
    Multiplexed: the payload of each stdout/stderr frame (bytes); else decoded JSON objects.
    Raises the SDK's `NotFound`/`APIError` for an error status."""
    response = api._get(api._url(path, ident), params=params, stream=True)
    api._raise_for_status(response)

    def abort() -> None:
        with contextlib.suppress(Exception):
            sock = api._get_raw_response_socket(response)
            if isinstance(sock, socket.socket):
                sock.shutdown(socket.SHUT_RDWR)
            elif hasattr(sock, "_sock"):
                sock._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()

    if multiplexed:
        items: Iterator[Any] = api._multiplexed_response_stream_helper(response)
    else:
        items = api._stream_helper(response, decode=True)
    return items, abort
