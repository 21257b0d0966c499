"""Debian's chromium, as every browser test launches it (one place for its path and flags)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
NO_CHROMIUM = not Path(CHROMIUM).exists()
"""Skip reason check: Debian's chromium is not installed (apt-get install -y chromium)."""


@contextlib.contextmanager
def launched() -> Iterator[Any]:
    """A headless chromium (Playwright's sync API), closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
