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


async def test_writes_from_other_tasks_wait_for_an_open_transaction(tmp_path: Path) -> None:
    import asyncio

    db = await Database.open(tmp_path / "bot.db")
    try:
        users = Users(db)
        await users.seen(1, 1, "A")
        inside = asyncio.Event()
        release = asyncio.Event()

        async def rolled_back() -> None:
            try:
                async with db.transaction() as conn:
                    await conn.execute("UPDATE users SET first_name='X' WHERE telegram_id=1")
                    inside.set()
                    await release.wait()
                    raise RuntimeError("crash inside the transaction")
            except RuntimeError:
                pass

        task = asyncio.create_task(rolled_back())
        await inside.wait()
        # another task writes meanwhile: it must not land inside (and be rolled back with) that transaction
        other = asyncio.create_task(db.write("UPDATE users SET last_name='kept' WHERE telegram_id=1"))
        await asyncio.sleep(0.05)
        assert (await users.get(1)).first_name == "A"  # readers see only what is committed
        release.set()
        await task
        assert await other == 1
        user = await users.get(1)
        assert user.first_name == "A" and user.last_name == "kept"
    finally:
        await db.close()
