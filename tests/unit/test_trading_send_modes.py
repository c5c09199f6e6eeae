"""Send modes and tips follow the official CLI: new users send through Helius Sender with a 0.001 SOL tip; each
mode has a floor (Helius Sender 0.0002 SOL, Astralane 0.00001 SOL, plain RPC no tip at all) that /settings
shows and enforces with the reason; stored rows from before are read the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from handlers.settings import SettingsError, describe, parse_changes
from storage.accounts import SettingsStore, UserSettings
from storage.db import Database
from storage.users import Users

USER = 5


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SettingsStore]:
    db = await Database.open(tmp_path / "bot.db")
    await Users(db).seen(USER, USER, "Ann")
    try:
        yield SettingsStore(db)
    finally:
        await db.close()


async def test_a_new_user_sends_through_helius_sender_with_the_clis_tip(store: SettingsStore) -> None:
    settings = await store.get(USER)
    assert (settings.send_mode, settings.tip_lamports) == ("helius_sender", 1_000_000)
    text = describe(settings, None)
    assert "Tip: 0.001 SOL (Helius Sender needs a tip of at least 0.0002 SOL)" in text


async def test_a_tip_under_the_floor_is_refused_with_the_reason(store: SettingsStore) -> None:
    current = await store.get(USER)
    with pytest.raises(SettingsError, match=r"0\.0001 SOL is under the floor: Helius Sender needs a tip of at least 0\.0002 SOL"):
        parse_changes(current, ["tip", "0.0001"])
    with pytest.raises(SettingsError, match=r"0\.000001 SOL is under the floor: Astralane needs a tip of at least 0\.00001 SOL"):
        parse_changes(current, ["mode", "astralane", "tip", "0.000001"])
    with pytest.raises(SettingsError, match="plain RPC mode sends no tip"):
        parse_changes(current, ["mode", "rpc", "tip", "0.001"])
    assert parse_changes(current, ["tip", "0.0002"]) == {"tip_lamports": 200_000}


async def test_changing_the_mode_keeps_the_tip_valid(store: SettingsStore) -> None:
    current = await store.get(USER)
    assert parse_changes(current, ["mode", "rpc"]) == {"send_mode": "rpc", "tip_lamports": 0}
    on_rpc: UserSettings = replace(current, send_mode="rpc", tip_lamports=0)
    assert parse_changes(on_rpc, ["mode", "helius_sender"]) == {"send_mode": "helius_sender", "tip_lamports": 1_000_000}
    assert "plain RPC sends no tip (tip 0)" in describe(on_rpc, None)


async def test_rows_stored_before_are_read_with_a_valid_tip(store: SettingsStore) -> None:
    await store.get(USER)
    # the old defaults were rpc with no tip: kept as chosen
    await store.db.execute("UPDATE user_settings SET send_mode='rpc', tip_lamports=0 WHERE telegram_id=?", (USER,))
    assert ((s := await store.get(USER)).send_mode, s.tip_lamports) == ("rpc", 0)
    # rpc with a tip: plain RPC carries none, so none may leave the wallet
    await store.db.execute("UPDATE user_settings SET tip_lamports=500000 WHERE telegram_id=?", (USER,))
    assert (await store.get(USER)).tip_lamports == 0
    # Helius Sender under its floor (the old code filled in 0.0002 SOL for a 0 tip): raised to the floor
    await store.db.execute("UPDATE user_settings SET send_mode='helius_sender', tip_lamports=0 WHERE telegram_id=?",
                           (USER,))
    assert (await store.get(USER)).tip_lamports == 200_000
