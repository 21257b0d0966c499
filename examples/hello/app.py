"""The example app: serves index.html (next to this file) on $PORT with Python's http.server
and logs each request on stdout, which Studios keeps as the deployment's log. Standard library
only, so any Python 3 runs it."""

import http.server
import os
import sys
from pathlib import Path

PAGE = (Path(__file__).resolve().parent / "index.html").read_bytes()


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/", "/index.html"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


if __name__ == "__main__":
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8080"))
    server = http.server.ThreadingHTTPServer((host, port), Hello)
    print(f"hello: serving {Path(__file__).parent / 'index.html'} on http://{host}:{port} "
          f"(deployment {os.environ.get('STUDIOS_DEPLOYMENT_ID', '?')})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
