"""Browser tests: the real bot and the sandbox, the dashboard opened in Debian's Chromium through the sandbox
Telegram client's Mini App host, driven by Playwright for Python (no browser download: `executable_path`).

One browser for the whole session; each test gets its own bot, sandbox and browser context. Screenshots of each
page are taken on every run; with UPDATE_SCREENSHOTS=1 they replace the ones in docs/ (the README shows them)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sandbox.webapp_host import WebAppHost
from tests.e2e.harness import Harness, start_harness, stop_harness

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DOCS = Path(__file__).resolve().parents[2] / "docs"
DELAY_S = 86400

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # the test extra is not installed
    async_playwright = None  # type: ignore[assignment]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if async_playwright is None:
        reason = "Playwright for Python is not installed (pip install -e '.[test]')"
    elif not Path(CHROMIUM).exists() and not os.environ.get("CI"):  # CI installs it: there a missing one fails
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if reason:
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=reason))


class Clock:
    """The bot's dashboard clock and the host's, moved together (initData freshness, security delays)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Dashboard:
    h: Harness
    host: WebAppHost
    clock: Clock
    page: Page
    shots: Path

    @property
    def frame(self) -> Any:
        return self.page.frame_locator("#miniapp")

    async def open(self, user_id: int, name: str, page: str | None = None) -> None:
        await self.page.goto(self.host.page_url(user_id, name, page))

    async def screenshot(self, name: str, show: str | None = None) -> None:
        """docs/miniapp-<name>.png of the client's window, scrolled so the element `show` is in view."""
        if show is not None:
            await self.frame.locator(show).evaluate("el => el.scrollIntoView({block: 'start'})")
        await self.page.screenshot(path=str(self.shots / f"miniapp-{name}.png"))


@pytest_asyncio.fixture(loop_scope="session")
async def dash(tmp_path: Path, browser: Browser) -> AsyncIterator[Dashboard]:
    h = await start_harness(tmp_path, settings_env={"MINIAPP_LISTEN": "127.0.0.1:0", "MINIAPP_PIN_ATTEMPTS": "3"})
    clock = Clock()
    server = h.runner.services.dashboard
    assert server is not None
    server.clock = clock
    host = WebAppHost(h.runner.settings.telegram_bot_token or "", server.url, clock=clock)
    await host.start()
    context = await browser.new_context(viewport={"width": 420, "height": 860}, device_scale_factor=1)
    page = await context.new_page()
    try:
        shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
        yield Dashboard(h, host, clock, page, shots)
    finally:
        await context.close()
        await host.stop()
        await stop_harness(h)
