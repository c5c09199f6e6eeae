"""The database: SQLite (one connection, WAL, foreign keys) or PostgreSQL (storage/pg.py), numbered migrations.

`Database.open(target)` takes a file path or a URL: `sqlite:///path/to/bot.db` or `postgresql://...`.
The repositories write their SQL once, in SQLite's dialect with `?` placeholders; the PostgreSQL backend
translates it (see storage/pg.py). SQLite stays the embedded default and its hot path is untouched.

Migrations are the files `migrations/NNNN_name.sql`, applied in order, each in one transaction together
with the bump of `schema_version`. The code refuses a database newer than it knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import logging
import os
import re
import sqlite3
import stat
import weakref
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


_USER_WRITES: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()


def user_written(db: object, telegram_id: int) -> None:
    """What a sell of the user's depends on was just written through this process (`user_writes`)."""
    counts = _USER_WRITES.setdefault(db, {})
    counts[telegram_id] = counts.get(telegram_id, 0) + 1


def user_writes(db: object, telegram_id: int) -> int:
    """How many times this process wrote what a sell of the user's is built and checked on: their settings
    (`SettingsStore.update`) and their positions' identity, status and amount (`Positions`), not the live PnL
    columns nor a card's id. The same count later means none of that changed meanwhile, as far as this process
    can tell: on SQLite it is the only writer."""
    return _USER_WRITES.get(db, {}).get(telegram_id, 0)


# the Database whose transaction the current task is inside, if any
_IN_TRANSACTION: contextvars.ContextVar[Database | None] = contextvars.ContextVar("in_transaction", default=None)


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


def is_postgres(target: Path | str) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def sqlite_path(target: Path | str) -> Path:
    """The file of a SQLite target: a path, or `sqlite:///relative/path` / `sqlite:////absolute/path`."""
    if isinstance(target, str) and target.startswith("sqlite://"):
        rest = target[len("sqlite://"):]
        if rest.startswith("/"):
            rest = rest[1:]
        return Path(rest or ":memory:")
    return Path(target)


def describe(target: Path | str) -> str:
    """The target for messages: a PostgreSQL URL without its password."""
    if is_postgres(target):
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", str(target))
    return str(sqlite_path(target))


class Database:
    """The application's single SQLite connection (SQLite allows one writer; WAL lets readers in)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        # Reads go to a second, read-only connection on the event loop's own thread: a point read takes
        # microseconds there, while the writer's thread hop (and its queue behind other writes) takes far
        # longer; in WAL mode readers never wait for the writer and see every committed write.
        self.reader: sqlite3.Connection | None = None
        self._transactions = 0
        # One writer connection: a transaction holds it from BEGIN to COMMIT, and every other write waits,
        # so nobody's statement lands inside (or is rolled back with) somebody else's transaction.
        self._writer_lock = asyncio.Lock()
        self._batch: list[tuple[str, tuple[Any, ...], asyncio.Future[int]]] = []
        self._batch_running = False

    def _open_reader(self) -> None:
        if str(self.path) == ":memory:":
            return
        reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
        reader.row_factory = sqlite3.Row
        reader.execute("PRAGMA secure_delete=ON")
        reader.execute("PRAGMA busy_timeout=5000")
        reader.execute("PRAGMA query_only=1")
        self.reader = reader

    def _reader(self) -> sqlite3.Connection | None:
        # inside its own transaction a task reads through the writer, which sees the transaction's writes
        return None if _IN_TRANSACTION.get() is self else self.reader

    @property
    def backend(self) -> str:
        return "sqlite"

    @classmethod
    async def open(cls, path: Path | str, *, migrate: bool = True, check: bool = True) -> Database:
        """Open (and by default migrate) the database at a file path or a `sqlite://` / `postgresql://` URL."""
        if is_postgres(path):
            # only when PostgreSQL is asked for (asyncpg and its driver stay unloaded); storage.pg imports this module
            from storage.pg import PostgresDatabase  # noqa: PLC0415

            return await PostgresDatabase.connect(str(path), migrate=migrate, check=check)
        path = sqlite_path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            private_files(path)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        # Freed pages are overwritten: a forgotten user's sealed keys do not linger in the file.
        await conn.execute("PRAGMA secure_delete=ON")
        await conn.execute("PRAGMA journal_mode=WAL")
        if str(path) != ":memory:":
            private_files(path)  # the WAL and shm files exist now
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        db = cls(conn, path)
        try:
            if migrate:
                await db.migrate()
            if check:  # `lasersell-bot migrate` opens without: it is there to bring an old schema up
                await db.check_schema()
            db._open_reader()
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        await self.conn.close()

    async def schema_version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def set_schema_version(self, version: int) -> None:
        await self.execute(f"PRAGMA user_version={int(version)}")

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

    async def ensure_tables(self, statements: Iterable[str]) -> None:
        """Create operational tables and indexes (`CREATE ... IF NOT EXISTS`) outside the migrations."""
        for sql in statements:
            await self.execute(sql)

    # Small helpers so repositories read well.
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement (autocommit); return the number of rows it changed."""
        if _IN_TRANSACTION.get() is self:
            return await self._execute_now(sql, params)
        async with self._writer_lock:
            return await self._execute_now(sql, params)

    async def _execute_now(self, sql: str, params: Iterable[Any]) -> int:
        cur = await self.conn.execute(sql, tuple(params))
        count = cur.rowcount
        await cur.close()
        return count

    async def write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One autocommit write, committed together with the other writes issued meanwhile (group commit).

        A burst of writes (a hundred Sell taps at once) then costs one trip to the writer thread and one
        commit per batch instead of one each. Each statement keeps its own atomicity (`UPDATE ... WHERE
        state='pending'` still lets exactly one caller win) and its own rowcount; one that fails fails
        alone. Returns the rowcount.
        """
        if _IN_TRANSACTION.get() is self:
            return await self._execute_now(sql, params)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._batch.append((sql, tuple(params), future))
        if not self._batch_running:
            self._batch_running = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._run_batches()))
        return await future

    async def _run_batches(self) -> None:
        try:
            while self._batch:
                async with self._writer_lock:
                    batch, self._batch = self._batch, []
                    try:
                        outcomes = await self.conn._execute(
                            _apply_batch, self.conn._conn, [(q, p) for q, p, _ in batch]
                        )
                    except BaseException as exc:  # the writer is gone: every caller hears it
                        outcomes = [exc] * len(batch)
                for (_q, _p, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._batch_running = False

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        if _IN_TRANSACTION.get() is not self:
            async with self._writer_lock:
                return await self._insert_now(sql, params)
        return await self._insert_now(sql, params)

    async def _insert_now(self, sql: str, params: Iterable[Any]) -> int:
        cur = await self.conn.execute(sql, tuple(params))
        rowid = cur.lastrowid
        await cur.close()
        return int(rowid or 0)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        reader = self._reader()
        if reader is not None:
            return reader.execute(sql, tuple(params)).fetchone()
        async with self.conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        reader = self._reader()
        if reader is not None:
            return reader.execute(sql, tuple(params)).fetchall()
        async with self.conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    def transaction(self) -> _Transaction:
        """`async with db.transaction():` runs the block in one BEGIN IMMEDIATE ... COMMIT."""
        return _Transaction(self)


class _Transaction:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._token: contextvars.Token[Database | None] | None = None

    async def __aenter__(self) -> aiosqlite.Connection:
        if _IN_TRANSACTION.get() is self.db:
            raise RuntimeError("a transaction is already open in this task")
        await self.db._writer_lock.acquire()
        try:
            await self.db.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.db._writer_lock.release()
            raise
        self.db._transactions += 1
        self._token = _IN_TRANSACTION.set(self.db)
        return self.db.conn

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            await self.db.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db._transactions -= 1
            if self._token is not None:
                _IN_TRANSACTION.reset(self._token)
            self.db._writer_lock.release()


SIDE_FILES = ("", "-wal", "-shm", "-journal")


def private_files(path: Path) -> None:
    """The database and its WAL/shm/journal: created 0600, and tightened to 0600 if they exist wider.

    SQLite gives its side files the database file's mode, so creating the database 0600 first covers
    them; files from an older install are narrowed here.
    """
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    for suffix in SIDE_FILES:
        side = Path(f"{path}{suffix}")
        try:
            mode = stat.S_IMODE(os.stat(side).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(side, 0o600)
            log.warning("%s was readable by other users (mode %04o); set it to 0600", side, mode)


class DatabaseBusy(Exception):
    """Another process holds the database for work that must not overlap (the bot, a key rotation)."""


class ProcessLock:
    """An exclusive advisory lock on `<database>.lock`, held by the running bot and by a key rotation.

    The running bot keeps the master key in memory: rotating under it would leave it unable to open any
    key. So each takes this lock for its whole run, and neither starts while the other holds it.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, database: Path | str, purpose: str) -> ProcessLock:
        """Take the lock or raise DatabaseBusy saying who holds it (pid and purpose)."""
        path = Path(f"{database}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise DatabaseBusy(f"{database} is in use by {holder}") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{purpose} (pid {os.getpid()})".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _apply_batch(conn: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int | BaseException]:
    """Runs in the writer's thread: the statements in one transaction, each with its own outcome."""
    outcomes: list[int | BaseException] = []
    if conn.in_transaction:  # another caller's transaction is open on this connection: write within it
        for sql, params in statements:
            try:
                outcomes.append(conn.execute(sql, params).rowcount)
            except sqlite3.Error as exc:
                outcomes.append(exc)
        return outcomes
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            try:
                outcomes.append(conn.execute(sql, params).rowcount)
            except sqlite3.Error as exc:  # this statement changed nothing; the others stand
                outcomes.append(exc)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return outcomes


def _split_sql(sql: str) -> list[str]:
    """Split a migration into statements (our migrations have no `;` or `--` inside strings or triggers)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
