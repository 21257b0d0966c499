"""A Docker Engine API on a unix socket that answers `/version` and `/info` until it goes away,
for tests of what the runtimes do when their engine (or swarm manager) dies after the client
was made: the real docker SDK then raises the transport's `ConnectionError`.

    with engine_that_goes_away(tmp_path) as (url, go_away):
        ...                                   # the client is made, the engine answers
        go_away()                             # its socket is gone
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ANSWERS = {
    "version": {"ApiVersion": "1.41", "Version": "20.10.24"},
    "info": {"CgroupVersion": "1", "CgroupDriver": "cgroupfs", "Driver": "overlay2", "Swarm": {"LocalNodeState": "active", "ControlAvailable": True}},
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        answer = ANSWERS.get(self.path.rsplit("/", 1)[-1])
        body = json.dumps(answer if answer is not None else {"message": "not in this engine"}).encode()
        self.send_response(200 if answer is not None else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextlib.contextmanager
def engine_that_goes_away(directory: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """(its URL, a function that makes it go away for good)."""
    path = directory / "engine.sock"
    server = _Server(str(path), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gone = threading.Event()

    def go_away() -> None:
        if not gone.is_set():
            gone.set()
            server.shutdown()
            server.server_close()
            path.unlink()

    try:
        yield f"unix://{path}", go_away
    finally:
        go_away()
