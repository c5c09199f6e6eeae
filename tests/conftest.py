"""The real bot against the sandbox services, for the end-to-end and integration tests that drive it by chat."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import Harness, start_harness, stop_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path)
    try:
        yield h
    finally:
        await stop_harness(h)
