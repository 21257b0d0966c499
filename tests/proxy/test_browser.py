"""A real browser (Debian's chromium, driven by Playwright) opens a display URL and sees the
app; the same link with a tampered token shows the 403 page; a sleeping studio shows the
starting page, which reloads into the app once it is running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chromium import ARGS, CHROMIUM, NO_CHROMIUM
from studios.proxy.backend import Target

from .conftest import DEPLOYMENT, USER, make_stack

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.browser,
    pytest.mark.skipif(NO_CHROMIUM,
                       reason="Debian chromium is not installed (apt-get install -y chromium)"),
]


@pytest.fixture
async def browser():
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


def shot(page_name: str) -> str | None:
    """Where to save a screenshot, when STUDIOS_SCREENSHOTS names a folder."""
    folder = os.environ.get("STUDIOS_SCREENSHOTS")
    return str(Path(folder) / f"{page_name}.png") if folder else None


@pytest.mark.parametrize("mode", ["host", "path"])
async def test_display_url_opens_the_app_and_tampered_link_is_403(browser, mode):
    async with make_stack(mode) as s:
        url = s.links.display_url(DEPLOYMENT, USER)
        context = await browser.new_context()
        page = await context.new_page()
        response = await page.goto(url)
        assert response.status == 200
        assert page.url == s.links.app_url(DEPLOYMENT)  # redirected to the app root
        assert (await page.text_content("#app")) == f"hello {s.prefix()}/"  # path mode forwards /_d/1/
        if path := shot(f"app-{mode}"):
            await page.screenshot(path=path)
        cookies = await context.cookies()
        assert [c["name"] for c in cookies] == ["studios_session"]
        assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax"

        fresh = await browser.new_context()  # no cookie yet
        tampered = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
        page2 = await fresh.new_page()
        response = await page2.goto(tampered)
        assert response.status == 403
        assert await page2.is_visible("#studios-forbidden")
        assert "Access denied" in await page2.text_content("h1")
        if path := shot(f"forbidden-{mode}"):
            await page2.screenshot(path=path)
        await fresh.close()
        await context.close()


async def test_sleeping_studio_wakes_and_the_page_reloads_into_the_app(browser):
    async with make_stack("host") as s:
        s.backend.put(Target(DEPLOYMENT, 10, "sleeping", "Idle for 30 minutes"))
        real_wake = s.backend.wake

        async def wake(deployment_id: int) -> None:  # the service would start it; we finish at once
            await real_wake(deployment_id)
            s.backend.put(Target(DEPLOYMENT, 10, "running", "", s.upstream))

        s.backend.wake = wake  # type: ignore[method-assign]
        context = await browser.new_context()
        page = await context.new_page()
        response = await page.goto(s.links.display_url(DEPLOYMENT, USER))
        # The starting page was served (read from the response: the page itself may already have
        # reloaded into the app, since its first poll comes 0.5 s after it loads)...
        assert response.status == 503 and 'id="studios-starting"' in await response.text()
        # ...and it polls /_studios/status, sees "running" and reloads into the app
        await page.wait_for_selector("#app", timeout=30_000)
        assert (await page.text_content("#app")) == "hello /"
        assert s.backend.wakes == [DEPLOYMENT]
        await context.close()
