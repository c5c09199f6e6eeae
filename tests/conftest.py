"""Fixtures shared by the suites: the real bot against the sandbox services (the end-to-end and integration tests
that drive it by chat), and process-wide logging put back after a test that sets it up."""

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot import logs
from tests.e2e.harness import Harness, start_harness, stop_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path)
    try:
        yield h
    finally:
        await stop_harness(h)


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """setup_logging changes process-wide state: put it all back after the test."""
    root = logging.getLogger()
    factory = logging.getLogRecordFactory()
    handlers = list(root.handlers)
    level = root.level
    httpx_level = logging.getLogger("httpx").level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        logs._installed_handlers.clear()
        logging.setLogRecordFactory(factory)
        root.setLevel(level)
        logging.getLogger("httpx").setLevel(httpx_level)
        logging.captureWarnings(False)
