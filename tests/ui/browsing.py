"""What the browser tests share: Debian's chromium, a page with its errors collected, signing
in, screenshots (into the directory conftest.py's `screenshots` fixture chose), and the greeter
app they deploy."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from chromium import ARGS, CHROMIUM, NO_CHROMIUM  # noqa: F401 (the browser tests import them from here)
from contract.server import StudiosServer

PY = sys.executable
WAIT_MS = 30_000

# Prints its greeting at start and a line for every request; shows the greeting as HTML.
APP = """
import http.server, os
greeting = os.environ.get("GREETING", "")
print("hello", greeting, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("served", self.path, flush=True)
        body = f"<!doctype html><title>app</title><h1 id=app>{greeting}</h1>".encode()
        self.send_response(200); self.send_header("Content-Type", "text/html"); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

SHOTS: list[Path] = []
"""The screenshots' directory of the running module (set by conftest.py's `screenshots`)."""


def shot(page: Any, name: str, *, full_page: bool = False) -> None:
    path = SHOTS[-1] / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    assert path.stat().st_size > 1000, f"screenshot {name} is empty"


def new_page(browser: Any, **options: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, **options)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # Shown with a failed test's output (pytest captures it): which requests of the page failed.
    page.on("response", lambda r: r.status >= 400 and print(f"browser got HTTP {r.status} for {r.request.method} {r.url}"))
    return context, page, problems


def sign_in(page: Any, server: StudiosServer, user: str) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#api-key")
    assert page.url.endswith("/ui/signin")
    page.fill("#api-key", server.keys[user])  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # the keyboard is enough
    # Signed in once the studios list shows: its heading is exactly "Studios" (the sign-in
    # page's own heading, "Sign in to Studios", contains the word and must not count).
    page.wait_for_selector("h1:text-is('Studios')")
