"""A test app (stdlib only) that serves under $STUDIOS_BASE_PATH whatever the proxy mode: a page
that downloads a 50 MB file and collects a server-sent-events stream.

Routes, below the base path: `/` the page, `/big.bin` 50 MB (bytes 0..255 repeated, with a
Content-Length), `/events` 100 events `data: <n>` then `data: end`."""

import http.server
import os
import time

BASE = os.environ.get("STUDIOS_BASE_PATH", "/")
SIZE = 50 * 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB
EVENTS = 100
PAGE = b"""<!doctype html><meta charset="utf-8"><title>stream app</title>
<a id="download" href="big.bin" download="big.bin">download</a>
<p id="events">waiting</p>
<script>
const source = new EventSource("events"), got = [];
source.onmessage = (e) => {
  got.push(e.data);
  if (e.data === "end") { source.close(); document.getElementById("events").textContent = got.join(","); }
};
</script>"""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.partition("?")[0]
        if path.startswith(BASE):  # forwarded prefix (path mode): serve under it
            path = "/" + path[len(BASE):]
        if path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
        elif path == "/big.bin":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(SIZE))
            self.end_headers()
            for _ in range(SIZE // len(BLOCK)):
                self.wfile.write(BLOCK)
        elif path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            for n in range(EVENTS):
                self.wfile.write(b"data: %d\n\n" % n)
                self.wfile.flush()
                time.sleep(0.005)  # a stream, not one write
            self.wfile.write(b"data: end\n\n")
            self.close_connection = True
        else:
            self.send_error(404)


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
