"""A real `git http-backend` (smart HTTP) behind a tiny threaded HTTP server that requires
Basic auth, for tests that clone over http:// with credentials.

    with git_http_server(root, "alice", "s3cret", seen_auth=seen) as base:
        url = f"{base}/origin"                     # serves the repo at root/origin

`seen_auth`, when given, gets every request's Authorization header ("" when absent).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class _GitHTTP(http.server.BaseHTTPRequestHandler):
    """`git http-backend` (smart HTTP) for one project root, behind Basic auth."""

    root: Path
    user: str
    password: str
    seen_auth: list[str] | None

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        auth = self.headers.get("Authorization")
        if self.seen_auth is not None:
            self.seen_auth.append(auth or "")
        if auth != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
            "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": self.user,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }  # fmt: skip
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=30).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        self.send_response(status)
        for key, value in headers:
            if key.lower() != "status":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve


@contextlib.contextmanager
def git_http_server(root: Path, user: str, password: str, seen_auth: list[str] | None = None) -> Iterator[str]:
    """Serves the repos under `root` at http://127.0.0.1:<port>/<name>, Basic auth required."""
    handler = type("Handler", (_GitHTTP,), {"root": root, "user": user, "password": password, "seen_auth": seen_auth})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
