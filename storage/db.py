"""The SQLite database: one connection, WAL, foreign keys, numbered migrations.

Migrations are the files `migrations/NNNN_name.sql`, applied in order, each in one transaction together
with the bump of `schema_version`. The code refuses a database newer than it knows.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaError(Exception):
    """The database's schema is not the one this code was built for."""


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        match = _MIGRATION_RE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise SchemaError(f"migration numbers must run 1..N without gaps, found {versions}")
    return found


LATEST_VERSION = len(migrations())


class Database:
    """The application's single SQLite connection (SQLite allows one writer; WAL lets readers in)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    async def open(cls, path: Path | str, *, migrate: bool = True) -> Database:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        db = cls(conn, path)
        try:
            if migrate:
                await db.migrate()
            await db.check_schema()
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        await self.conn.close()

    async def schema_version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def check_schema(self) -> None:
        version = await self.schema_version()
        if version > LATEST_VERSION:
            raise SchemaError(
                f"the database is at schema version {version} but this code knows only up to {LATEST_VERSION}: "
                "upgrade lasersell-bot"
            )
        if version < LATEST_VERSION:
            raise SchemaError(
                f"the database is at schema version {version}, {LATEST_VERSION} is needed: run `lasersell-bot migrate`"
            )

    async def migrate(self) -> list[int]:
        """Apply every migration newer than the database; return the versions applied."""
        current = await self.schema_version()
        applied = []
        for version, name, sql in migrations():
            if version <= current:
                continue
            # executescript would commit on its own; run the statements inside one explicit transaction.
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    await self.conn.execute(statement)
                await self.conn.execute(f"PRAGMA user_version={version}")
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            log.info("applied migration %s", name)
            applied.append(version)
        return applied

    # Small helpers so repositories read well.
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement (autocommit); return the number of rows it changed."""
        cur = await self.conn.execute(sql, tuple(params))
        count = cur.rowcount
        await cur.close()
        return count

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        cur = await self.conn.execute(sql, tuple(params))
        rowid = cur.lastrowid
        await cur.close()
        return int(rowid or 0)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    def transaction(self) -> _Transaction:
        """`async with db.transaction():` runs the block in one BEGIN IMMEDIATE ... COMMIT."""
        return _Transaction(self.conn)


class _Transaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> aiosqlite.Connection:
        await self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _split_sql(sql: str) -> list[str]:
    """Split a migration into statements (our migrations have no `;` or `--` inside strings or triggers)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
