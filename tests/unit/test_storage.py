from pathlib import Path

import pytest

from storage.db import LATEST_VERSION, Database, SchemaError
from storage.users import Users


async def test_migrations_apply_once_and_set_the_version(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        assert await db.schema_version() == LATEST_VERSION
        assert await db.migrate() == []
        row = await db.fetchone("PRAGMA journal_mode")
        assert row[0] == "wal"
        row = await db.fetchone("PRAGMA foreign_keys")
        assert row[0] == 1
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
