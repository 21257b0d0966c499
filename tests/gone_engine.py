"""A Docker Engine API on a unix socket that answers what it is given, and can go away and come
back: for tests of what the runtimes do when their engine (or swarm manager) dies after the
client was made (the real docker SDK then raises the transport's `ConnectionError`) or restarts.

    with engine_that_goes_away(tmp_path) as engine:
        engine.answers["/containers/abc/json"] = {...}    # beside /version and /info
        engine.answers["/containers/abc/logs"] = lambda query: b"..."   # bytes: a stream
        ...                                              # the client is made, the engine answers
        engine.go_away()                                 # its socket is gone
        engine.come_back()                               # answering again at the same path
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import socketserver
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Engine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"unix://{path}"
        self.answers: dict[str, Any] = {
            "/version": {"ApiVersion": "1.41", "Version": "20.10.24"},
            "/info": {"CgroupVersion": "1", "CgroupDriver": "cgroupfs", "Driver": "overlay2", "Swarm": {"LocalNodeState": "active", "ControlAvailable": True}},
        }
        self._server: _Server | None = None
        self.come_back()

    def come_back(self) -> None:
        """Answer (again) at the same socket path."""
        answers = self.answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                path = re.sub(r"^/v[0-9.]+", "", path)
                answer = answers.get(path)
                if callable(answer):
                    answer = answer(urllib.parse.parse_qs(query))
                if isinstance(answer, bytes):  # a stream (a log): sent, then the connection ends
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                body = json.dumps(answer if answer is not None else {"message": f"{path} is not in this engine"}).encode()
                self.send_response(200 if answer is not None else 500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = _Server(str(self.path), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def go_away(self) -> None:
        """Stop answering: the socket is gone, as when the engine's daemon died."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self.path.unlink()


@contextlib.contextmanager
def engine_that_goes_away(directory: Path) -> Iterator[Engine]:
    """An `Engine` answering at `directory`/engine.sock; gone after the block."""
    engine = Engine(directory / "engine.sock")
    try:
        yield engine
    finally:
        engine.go_away()
