"""The PostgreSQL backend: the same `Database` interface over an asyncpg pool, for several instances.

The repositories write SQL once, in the SQLite dialect they always used, with `?` placeholders; this
module translates each statement once (cached) into PostgreSQL's:

- `?` -> `$1, $2, ...` (outside string literals);
- `INSERT OR IGNORE` -> `... ON CONFLICT DO NOTHING`; `INSERT OR REPLACE` -> an upsert on the primary key;
- scalar `MIN(a, b)` / `MAX(a, b)` -> `LEAST` / `GREATEST`; `IFNULL` -> `COALESCE`;
- an INSERT into a table with an `id` key returns it (SQLite's lastrowid);
- `PRAGMA ...` is a no-op.

Migrations are the same files: `INTEGER` becomes `BIGINT` (Telegram ids and unix ms exceed 32 bits),
`id INTEGER PRIMARY KEY` an identity column, `BLOB` `BYTEA`, and `WITHOUT ROWID` goes.

Values: SQLite is loose about types and PostgreSQL is not; an argument of the wrong Python type for its
column (an int for a TEXT column, a numeric string for a BIGINT) is converted to the column's type and
the statement retried. NUMERIC results (SUM of BIGINT) come back as int, as SQLite gives them.

Explicit transactions take one transaction-level advisory lock, so they run one at a time across all
instances, as SQLite's BEGIN IMMEDIATE does; single statements run concurrently and stay atomic.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from storage.db import Database, DatabaseBusy, _split_sql, describe, migrations

log = logging.getLogger(__name__)

# advisory lock keys (pg_advisory_*): one namespace per purpose
TRANSACTION_LOCK = 0x4C53_0001
MIGRATION_LOCK = 0x4C53_0002
ROTATION_LOCK = 0x4C53_0003

_TX: contextvars.ContextVar[tuple[PostgresDatabase, asyncpg.Connection] | None] = contextvars.ContextVar(
    "pg_transaction", default=None
)


def _placeholders(sql: str) -> str:
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


_MINMAX = re.compile(r"\b(MIN|MAX)\s*\(", re.IGNORECASE)


def _scalar_minmax(sql: str) -> str:
    """SQLite's two-argument MIN/MAX are PostgreSQL's LEAST/GREATEST (the one-argument ones are aggregates)."""
    pos = 0
    while True:
        match = _MINMAX.search(sql, pos)
        if match is None:
            return sql
        depth, quote, comma = 0, None, False
        i = match.end() - 1
        while i < len(sql):
            ch = sql[i]
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    break
            elif ch == "," and depth == 1:
                comma = True
            i += 1
        if comma:
            name = "LEAST" if match.group(1).upper() == "MIN" else "GREATEST"
            sql = sql[: match.start()] + name + sql[match.start() + 3:]
        pos = match.start() + 3


_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_OR_REPLACE = re.compile(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


class Schema:
    """What the translation needs to know of the tables: primary keys and which have an `id` identity."""

    def __init__(self, primary_keys: dict[str, list[str]], with_id: set[str]) -> None:
        self.primary_keys = primary_keys
        self.with_id = with_id


@functools.lru_cache(maxsize=4096)
def translate(sql: str, schema: Schema) -> tuple[str, bool]:
    """(PostgreSQL text, whether it returns the new row's id)."""
    stripped = sql.strip()
    if re.match(r"^PRAGMA\b", stripped, re.IGNORECASE):
        return "", False
    returns_id = False
    suffix = ""
    replace = _OR_REPLACE.match(stripped)
    if replace:
        table, cols = replace.group(1), [c.strip() for c in replace.group(2).split(",")]
        keys = schema.primary_keys.get(table.lower(), [])
        rest = [c for c in cols if c not in keys]
        stripped = re.sub(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO", "INSERT INTO", stripped, flags=re.IGNORECASE)
        if keys:
            action = ", ".join(f"{c}=excluded.{c}" for c in rest) if rest else ""
            suffix = f" ON CONFLICT ({', '.join(keys)}) " + (f"DO UPDATE SET {action}" if action else "DO NOTHING")
    elif _OR_IGNORE.match(stripped):
        stripped = _OR_IGNORE.sub("INSERT INTO", stripped)
        suffix = " ON CONFLICT DO NOTHING"
    insert = _INSERT_INTO.match(stripped)
    if insert and insert.group(1).lower() in schema.with_id and not re.search(r"\bRETURNING\b", stripped, re.I):
        suffix += " RETURNING id"
        returns_id = True
    text = re.sub(r"\bIFNULL\s*\(", "COALESCE(", stripped, flags=re.IGNORECASE)
    text = _scalar_minmax(text)
    text = _placeholders(text.rstrip().rstrip(";") + suffix)
    return text, returns_id


def translate_migration(sql: str) -> str:
    sql = re.sub(r"\bid\s+INTEGER\s+PRIMARY\s+KEY\b", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", sql)
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    sql = re.sub(r"\bBLOB\b", "BYTEA", sql)
    sql = re.sub(r"\)\s*WITHOUT\s+ROWID", ")", sql)
    return sql


_INT_TYPES = {"int2", "int4", "int8"}
_TEXT_TYPES = {"text", "varchar", "bpchar", "name"}


def _coerce(args: Sequence[Any], types: Sequence[str]) -> list[Any]:
    out = list(args)
    for i, (value, kind) in enumerate(zip(out, types, strict=False)):
        if value is None:
            continue
        if kind in _INT_TYPES:
            if isinstance(value, bool):
                out[i] = int(value)
            elif isinstance(value, str):
                out[i] = int(value)
            elif isinstance(value, float) and value.is_integer():
                out[i] = int(value)
        elif kind in _TEXT_TYPES and not isinstance(value, str):
            out[i] = value.decode() if isinstance(value, bytes | bytearray) else str(value)
        elif kind == "bool" and not isinstance(value, bool):
            out[i] = bool(value)
        elif kind in ("float4", "float8", "numeric") and isinstance(value, str):
            out[i] = float(value)
        elif kind == "bytea" and isinstance(value, memoryview):
            out[i] = bytes(value)
        elif kind == "bytea" and isinstance(value, str):
            out[i] = value.encode()
    return out


def _count(status: str) -> int:
    # "UPDATE 3", "DELETE 0", "INSERT 0 1", "SELECT 2"
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PgCursor:
    """What a transaction's `conn.execute` returns: rows, rowcount and lastrowid, like sqlite3's cursor."""

    def __init__(self, rows: list[asyncpg.Record], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchone(self) -> asyncpg.Record | None:
        return self._rows.pop(0) if self._rows else None

    async def fetchall(self) -> list[asyncpg.Record]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []

    async def __aenter__(self) -> PgCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class PgConnection:
    """The connection a transaction hands its block (the SQLite one's `execute` / `executemany`)."""

    def __init__(self, db: PostgresDatabase, conn: asyncpg.Connection) -> None:
        self.db = db
        self.conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> PgCursor:
        return await self.db._run(self.conn, sql, tuple(params))

    async def executemany(self, sql: str, seq: Iterable[Iterable[Any]]) -> None:
        text, _ = translate(sql, self.db.schema)
        if not text:
            return
        rows = [tuple(p) for p in seq]
        if not rows:
            return
        try:
            await self.conn.executemany(text, rows)
        except (asyncpg.DataError, TypeError):
            types = await self.db._param_types(self.conn, text)
            await self.conn.executemany(text, [_coerce(r, types) for r in rows])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # SUM(bigint) is NUMERIC in PostgreSQL: hand back ints (and floats for fractions), as SQLite does
    await conn.set_type_codec(
        "numeric", schema="pg_catalog", format="text",
        encoder=str, decoder=lambda s: int(s) if s.lstrip("-").isdigit() else float(s),
    )


class PostgresDatabase(Database):
    """`Database` on PostgreSQL: a pool of connections shared by the tasks, any number of instances."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:  # noqa: D107 - no SQLite state here
        self.pool = pool
        self.url = url
        self.path = Path(url.split("?", 1)[0].rsplit("/", 1)[-1] or "postgres")
        self.schema = Schema({}, set())
        self._types: dict[str, list[str]] = {}
        self._transactions = 0

    @property
    def backend(self) -> str:
        return "postgresql"

    @classmethod
    async def connect(
        cls, url: str, *, migrate: bool = True, check: bool = True, max_size: int = 10
    ) -> PostgresDatabase:
        pool = await asyncpg.create_pool(_dsn(url), min_size=1, max_size=max_size, init=_init_connection)
        db = cls(pool, url)
        try:
            if migrate:
                await db.migrate()
            if check:
                await db.check_schema()
            await db.reload_schema()
        except BaseException:
            await pool.close()
            raise
        return db

    async def reload_schema(self) -> None:
        async with self.pool.acquire() as conn:
            self.schema = await load_schema(conn)

    async def close(self) -> None:
        await self.pool.close()

    async def schema_version(self) -> int:
        async with self.pool.acquire() as conn:
            return await _version(conn)

    async def set_schema_version(self, version: int) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(_VERSION_TABLE)
            await conn.execute("DELETE FROM schema_version")
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def migrate(self) -> list[int]:
        """Apply every migration newer than the database, one instance at a time (advisory lock)."""
        applied = []
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(_VERSION_TABLE)
                current = await _version(conn)
                for version, name, sql in migrations():
                    if version <= current:
                        continue
                    async with conn.transaction():
                        for statement in _split_sql(translate_migration(sql)):
                            await conn.execute(statement)
                        await conn.execute("DELETE FROM schema_version")
                        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
                    log.info("applied migration %s", name)
                    applied.append(version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        if applied:
            await self.reload_schema()
        return applied

    async def ensure_tables(self, statements: Iterable[str]) -> None:
        """`CREATE ... IF NOT EXISTS` is not safe against itself on PostgreSQL: two instances starting together
        can both find the table missing and one fails on the catalog's unique index. Run under the migration
        lock, one instance at a time."""
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                for sql in statements:
                    text, _ = translate(sql, self.schema)
                    if text:
                        await conn.execute(text)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def _param_types(self, conn: asyncpg.Connection, text: str) -> list[str]:
        types = self._types.get(text)
        if types is None:
            stmt = await conn.prepare(text)
            types = [t.name for t in stmt.get_parameters()]
            if len(self._types) > 4096:
                self._types.clear()
            self._types[text] = types
        return types

    async def _run(self, conn: asyncpg.Connection, sql: str, params: tuple[Any, ...]) -> PgCursor:
        text, returns_id = translate(sql, self.schema)
        if not text:
            return PgCursor([], 0, None)
        try:
            rows, status = await _fetch_with_status(conn, text, params)
        except (asyncpg.DataError, TypeError):
            types = await self._param_types(conn, text)
            rows, status = await _fetch_with_status(conn, text, tuple(_coerce(params, types)))
        if returns_id:
            return PgCursor([], len(rows), int(rows[0][0]) if rows else None)
        return PgCursor(rows, _count(status) if status else len(rows), None)

    def _tx_conn(self) -> asyncpg.Connection | None:
        current = _TX.get()
        return current[1] if current is not None and current[0] is self else None

    async def _statement(self, sql: str, params: Iterable[Any]) -> PgCursor:
        conn = self._tx_conn()
        if conn is not None:
            return await self._run(conn, sql, tuple(params))
        async with self.pool.acquire() as conn:
            return await self._run(conn, sql, tuple(params))

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return (await self._statement(sql, params)).rowcount

    async def write(self, sql: str, params: Iterable[Any] = ()) -> int:
        # PostgreSQL takes concurrent writers: no group commit to build here
        return (await self._statement(sql, params)).rowcount

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        return int((await self._statement(sql, params)).lastrowid or 0)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await (await self._statement(sql, params)).fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await (await self._statement(sql, params)).fetchall()

    def transaction(self) -> Any:
        return _PgTransaction(self)


class _PgTransaction:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self._conn: asyncpg.Connection | None = None
        self._tx: Any = None
        self._token: contextvars.Token[tuple[PostgresDatabase, asyncpg.Connection] | None] | None = None

    async def __aenter__(self) -> PgConnection:
        if self.db._tx_conn() is not None:
            raise RuntimeError("a transaction is already open in this task")
        conn = await self.db.pool.acquire()
        try:
            self._tx = conn.transaction()
            await self._tx.start()
            # one explicit transaction at a time, as SQLite's BEGIN IMMEDIATE: read-then-write stays safe
            await conn.execute("SELECT pg_advisory_xact_lock($1)", TRANSACTION_LOCK)
        except BaseException:
            await self.db.pool.release(conn)
            raise
        self._conn = conn
        self.db._transactions += 1
        self._token = _TX.set((self.db, conn))
        return PgConnection(self.db, conn)

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._conn is not None
        try:
            if exc_type:
                await self._tx.rollback()
            else:
                await self._tx.commit()
        finally:
            self.db._transactions -= 1
            if self._token is not None:
                _TX.reset(self._token)
            await self.db.pool.release(self._conn)


_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)"


async def _version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    value = await conn.fetchval("SELECT MAX(version) FROM schema_version")
    return int(value or 0)


def _dsn(url: str) -> str:
    """asyncpg takes postgresql:// and postgres://; SQLAlchemy-style +asyncpg is accepted too."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW)\b|\bRETURNING\b", re.IGNORECASE)


async def _fetch_with_status(conn: asyncpg.Connection, text: str, params: tuple[Any, ...]) -> tuple[list[Any], str]:
    """Rows (for a query) or the command status ("UPDATE 3") of one statement."""
    if _ROWS.search(text):
        return list(await conn.fetch(text, *params)), ""
    return [], await conn.execute(text, *params)


async def load_schema(conn: asyncpg.Connection) -> Schema:
    rows = await conn.fetch(
        """SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc
           JOIN information_schema.key_column_usage kcu
             ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
           WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()
           ORDER BY tc.table_name, kcu.ordinal_position"""
    )
    keys: dict[str, list[str]] = {}
    for row in rows:
        keys.setdefault(row[0], []).append(row[1])
    with_id = {t for t, cols in keys.items() if cols == ["id"]}
    ident = await conn.fetch(
        """SELECT table_name FROM information_schema.columns
           WHERE table_schema = current_schema() AND column_name = 'id'
             AND (is_identity = 'YES' OR column_default LIKE 'nextval%')"""
    )
    with_id &= {r[0] for r in ident}
    return Schema(keys, with_id)


class PgProcessLock:
    """ProcessLock's meaning on PostgreSQL: running instances share it, a key rotation takes it alone.

    A session-level advisory lock on a connection of its own, held until `release` (or the process dies).
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn: asyncpg.Connection | None = conn

    @classmethod
    async def acquire(cls, url: str, purpose: str, *, shared: bool) -> PgProcessLock:

        conn = await asyncpg.connect(_dsn(url))
        try:
            fn = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            if not await conn.fetchval(f"SELECT {fn}($1)", ROTATION_LOCK):
                holder = "running bot instances" if not shared else "a master key rotation"
                raise DatabaseBusy(f"{describe(url)} is in use by {holder} (wanted for {purpose})")
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()  # closing the session drops its advisory locks
