import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.stream.events import quote_of
from storage.db import LATEST_VERSION, Database, SchemaError, migrations
from storage.positions import Positions
from storage.users import Users


async def test_migrations_apply_once_and_set_the_version(db_target: Path | str) -> None:
    db = await Database.open(db_target)
    try:
        assert await db.schema_version() == LATEST_VERSION
        assert await db.migrate() == []
    finally:
        await db.close()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        async with db.conn.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with db.conn.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1
    finally:
        await db.close()


async def test_a_newer_database_is_refused(db_target: Path | str) -> None:
    db = await Database.open(db_target)
    await db.set_schema_version(LATEST_VERSION + 1)
    await db.close()
    with pytest.raises(SchemaError, match="upgrade"):
        await Database.open(db_target)


async def test_an_old_database_without_migrate_asks_for_it(db_target: Path | str) -> None:
    with pytest.raises(SchemaError, match="lasersell-bot migrate"):
        await Database.open(db_target, migrate=False)


async def test_users_are_recorded_and_blocked(db_target: Path | str) -> None:
    db = await Database.open(db_target)
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


async def test_reads_see_every_committed_write_and_a_transaction_its_own(db_target: Path | str) -> None:
    db = await Database.open(db_target)
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


async def test_a_failed_transaction_changes_nothing(db_target: Path | str) -> None:
    db = await Database.open(db_target)
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


async def test_writes_from_other_tasks_wait_for_an_open_transaction(db_target: Path | str) -> None:

    db = await Database.open(db_target)
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


# ---------------------------------------------------------------- positions across stream sessions

USD1 = "USD1ttGY1N17NEEHLmELoaybftRBUSErhqYiQzvEmuB"


def opened_msg(stream_id: int, account: str, **extra: object) -> dict[str, object]:
    return {
        "type": "position_opened", "position_id": stream_id, "wallet_pubkey": "Wallet1", "mint": "Mint" + account,
        "token_account": account, "tokens": 1000, "entry_quote_units": 50_000, "slot": 1, **extra,
    }


async def test_a_position_announced_again_with_a_new_stream_id_keeps_its_number(db_target: Path | str) -> None:

    db = await Database.open(db_target)
    try:
        await Users(db).seen(7, 7, "Ann")
        positions = Positions(db)
        a, new_a = await positions.opened(7, opened_msg(1, "AtaA"))
        b, new_b = await positions.opened(7, opened_msg(2, "AtaB"))
        assert (a.position_id, new_a, b.position_id, new_b) == (1, True, 2, True)
        await positions.update(7, a.position_id, strategy_json='{"x":1}', card_message_id=55)
        # a reconnect: a new session numbers them the other way round
        again_b, new = await positions.opened(7, opened_msg(1, "AtaB", tokens=900))
        assert not new and again_b.position_id == 2 and again_b.stream_position_id == 1 and again_b.tokens == 900
        again_a, new = await positions.opened(7, opened_msg(2, "AtaA"))
        assert not new and again_a.position_id == 1 and again_a.stream_position_id == 2
        assert again_a.strategy_json == '{"x":1}' and again_a.card_message_id == 55
        # a new position whose stream id is a number the bot already uses gets the next free number
        c, new = await positions.opened(7, opened_msg(1, "AtaC"))
        assert new and c.position_id == 3 and c.stream_position_id == 1
        assert [p.position_id for p in await positions.open_for(7)] == [1, 2, 3]
    finally:
        await db.close()


async def test_the_quote_comes_from_the_market_contexts_quote_mint(db_target: Path | str) -> None:

    db = await Database.open(db_target)
    try:
        await Users(db).seen(7, 7, "Ann")
        positions = Positions(db)
        usd1_context = {"market_type": "raydium_cpmm", "raydium_cpmm": {
            "pool": "P", "config": "C", "quote_mint": USD1, "user_quote_account": "Q"}}
        sol_context = {"market_type": "meteora_dbc", "meteora_dbc": {
            "pool": "P", "config": "C", "quote_mint": "So11111111111111111111111111111111111111112"}}
        usd1, _ = await positions.opened(7, opened_msg(1, "AtaA", market_context=usd1_context), quote_of(usd1_context))
        sol, _ = await positions.opened(7, opened_msg(2, "AtaB", market_context=sol_context), quote_of(sol_context))
        bare, _ = await positions.opened(7, opened_msg(3, "AtaC"))
        assert (usd1.quote, sol.quote, bare.quote) == ("USD1", "SOL", "SOL")
        assert quote_of({"market_type": "pump_fun", "pumpfun": {}}) == "SOL"
        assert quote_of({"market_type": "brand_new_amm", "brand_new_amm": {"quote_mint": USD1}}) == "USD1"
    finally:
        await db.close()


async def test_the_upgrade_keeps_positions_and_merges_copies_a_reconnect_left(tmp_path: Path) -> None:


    path = tmp_path / "bot.db"
    raw = sqlite3.connect(path)
    for version, _name, sql in migrations():
        if version <= 5:
            raw.executescript(sql)
    raw.execute("PRAGMA user_version=5")
    raw.execute("INSERT INTO users (telegram_id, chat_id, created_at, last_seen_at) VALUES (7, 7, 0, 0)")
    row = ("INSERT INTO positions (telegram_id, position_id, wallet, mint, token_account, tokens, entry_quote_units, "
           "first_seen_ms, status, strategy_json, card_message_id, updated_at) VALUES (7,?,?,?,?,1000,5,?,?,?,?,?)")
    raw.execute(row, (1, "W", "MA", "AtaA", 100, "open", None, 11, 100))
    raw.execute(row, (4, "W", "MA", "AtaA", 200, "open", '{"o":1}', None, 300))  # the copy a reconnect filed
    raw.execute(row, (2, "W", "MB", "AtaB", 150, "open", None, 12, 150))
    raw.execute(row, (3, "W", "MC", "AtaC", 50, "closed", None, None, 60))
    raw.commit()
    raw.close()

    db = await Database.open(path)
    try:
        positions = Positions(db)
        open_now = await positions.open_for(7)
        assert [(p.position_id, p.token_account) for p in open_now] == [(1, "AtaA"), (2, "AtaB")]
        kept = open_now[0]
        assert kept.card_message_id == 11 and kept.strategy_json == '{"o":1}' and kept.quote == "SOL"
        assert kept.stream_position_id == 1
        copy = await positions.get(7, 4)
        assert copy is not None and copy.status == "closed"
        # from now on one open row per token account
        again, new = await positions.opened(7, opened_msg(9, "AtaA"))
        assert not new and again.position_id == 1
    finally:
        await db.close()
