"""A chatty app for the load benchmarks (stdlib only, run as `python -I -S chatty_app.py RATE`):
answers every HTTP request on $PORT with a small 200 (keep-alive), and prints numbered lines,
`chatty <deployment id> <n>` with n = 1, 2, 3, ..., RATE a second to stdout (every tenth to
stderr), so a reader of its stored log can tell a lost or doubled line by the numbers. On
SIGTERM it prints `chatty <deployment id> end <n>` (n: the last number printed) and exits."""

import http.server
import os
import signal
import sys
import threading
import time

RATE = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
NAME = os.environ.get("STUDIOS_DEPLOYMENT_ID", "?")
BODY = b"chatty app says hello\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


printed = 0
lock = threading.Lock()


def end(*_: object) -> None:
    with lock:
        sys.stdout.write(f"chatty {NAME} end {printed}\n")
        sys.stdout.flush()
        os._exit(0)


def chatter() -> None:
    global printed
    start = time.monotonic()
    while True:
        with lock:
            n = printed + 1
            stream = sys.stderr if n % 10 == 0 else sys.stdout
            stream.write(f"chatty {NAME} {n}\n")
            stream.flush()
            printed = n
        time.sleep(max(0.0, start + n / RATE - time.monotonic()))


signal.signal(signal.SIGTERM, end)


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
threading.Thread(target=chatter, daemon=True).start()
server.serve_forever()
