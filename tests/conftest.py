"""Fixtures shared by the suites: the real bot against the sandbox services (the end-to-end and integration tests
that drive it by chat), process-wide logging put back after a test that sets it up, and the database backends
the storage layer serves (SQLite, and PostgreSQL when a server answers)."""

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from bot import logs, runtime
from tests.e2e.harness import Harness, start_harness, stop_harness


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Every asynchronous test runs on the loop the bot runs on (bot/runtime.py: uvloop where installed)."""
    factory = runtime.loop_factory()
    return {"uvloop": factory} if factory is not None else {"asyncio": asyncio.new_event_loop}


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


# CI (.ci/run) starts PostgreSQL 15 here (trust auth, database `test`); TEST_DATABASE_URL points elsewhere.
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_admin() -> object | None:
    try:

        return await asyncpg.connect(PG_URL, timeout=3)
    except (OSError, ImportError, Exception):  # no server answers: the PostgreSQL cases are skipped
        return None


async def fresh_pg_schema() -> tuple[str, object]:
    """A new, empty schema in the test database; (URL selecting it, admin connection to drop it)."""
    conn = await _pg_admin()
    if conn is None:
        pytest.skip(f"no PostgreSQL server answers at {PG_URL} (CI starts one: .ci/run)")
    name = f"t_{uuid.uuid4().hex[:12]}"
    await conn.execute(f"CREATE SCHEMA {name}")  # type: ignore[attr-defined]
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}search_path={name}", conn


async def drop_pg_schema(url: str, conn: object) -> None:
    name = url.rsplit("search_path=", 1)[1]
    await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")  # type: ignore[attr-defined]
    await conn.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | Path]:
    """What `Database.open` takes, once per backend: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield tmp_path / "bot.db"
        return
    url, conn = await fresh_pg_schema()
    try:
        yield url
    finally:
        await drop_pg_schema(url, conn)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema (skipped when no server answers)."""
    url, conn = await fresh_pg_schema()
    try:
        yield url
    finally:
        await drop_pg_schema(url, conn)
