from pathlib import Path

import pytest

from storage.db import LATEST_VERSION, Database, SchemaError
from storage.users import Users


async def test_migrations_apply_once_and_set_the_version(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        assert await db.schema_version() == LATEST_VERSION
        assert await db.migrate() == []
        async with db.conn.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with db.conn.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1
    finally:
        await db.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    await db.execute(f"PRAGMA user_version={LATEST_VERSION + 1}")
    await db.close()
    with pytest.raises(SchemaError, match="upgrade"):
        await Database.open(tmp_path / "bot.db")


async def test_an_old_database_without_migrate_asks_for_it(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="lasersell-bot migrate"):
        await Database.open(tmp_path / "bot.db", migrate=False)


async def test_users_are_recorded_and_blocked(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        users = Users(db)
        first = await users.seen(42, 42, "Ann", None, "ann")
        assert first.first_name == "Ann" and not first.blocked
        await users.set_blocked(42)
        assert (await users.get(42)).blocked
        assert await users.all_reachable() == []
        again = await users.seen(42, 42, "Annie")
        assert again.first_name == "Annie" and not again.blocked and again.created_at == first.created_at
        assert await users.count() == 1
    finally:
        await db.close()


async def test_reads_see_every_committed_write_and_a_transaction_its_own(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        users = Users(db)
        await users.seen(1, 1, "A")
        assert (await users.get(1)).first_name == "A"  # through the reader, right after the write
        async with db.transaction() as conn:
            await conn.execute("UPDATE users SET first_name='B' WHERE telegram_id=1")
            row = await db.fetchone("SELECT first_name FROM users WHERE telegram_id=1")
            assert row[0] == "B"  # inside the transaction: its own write
        assert (await users.get(1)).first_name == "B"
    finally:
        await db.close()


async def test_a_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        users = Users(db)
        await users.seen(1, 1, "A")
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute("UPDATE users SET first_name='B' WHERE telegram_id=1")
                raise RuntimeError("crash halfway")
        assert (await users.get(1)).first_name == "A"
    finally:
        await db.close()
