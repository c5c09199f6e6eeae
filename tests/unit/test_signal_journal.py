"""The exit-signal journal: a signal is on disk before the database has its row, and what a crash left is
written at the next start (storage/signal_journal.py)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

from storage.db import Database
from storage.positions import ExitSignals
from storage.signal_journal import SignalJournal
from storage.users import Users

MSG = {
    "position_id": 7, "wallet_pubkey": "W" * 44, "mint": "M" * 44, "token_account": "T" * 44, "reason": "stop_loss",
    "profit_units": -5, "position_tokens": 1000, "triggered_at_ms": 1, "unsigned_tx_b64": "AQID",
}


async def _db(tmp_path: Path) -> Database:
    db = await Database.open(tmp_path / "bot.db")
    await Users(db).seen(42, 42, "Ann", None, "ann")
    return db


def _rows(base: Path) -> list[dict[str, object]]:
    return [json.loads(line) for p in sorted(base.parent.glob(base.name + ".*")) for line in p.read_text().splitlines()]


async def test_a_signal_is_in_the_journal_at_once_and_in_the_database_when_read(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    base = tmp_path / "bot.db.signals"
    try:
        await ExitSignals.recover(db, base)
        signals = ExitSignals(db)
        signal = await signals.store(42, MSG, 123, 300)
        assert [r["id"] for r in _rows(base)] == [signal.id]  # on disk before the row was waited for
        read = await signals.get(signal.id)
        assert read == signal  # the row as the database holds it is the signal store returned
        assert _rows(base) == []  # every row written: the journal starts afresh
        assert stat.S_IMODE(os.stat(next(tmp_path.glob("bot.db.signals.*"))).st_mode) == 0o600
    finally:
        await ExitSignals.release(db)
        await db.close()


async def test_what_a_crash_left_in_a_journal_is_written_at_the_next_start(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    base = tmp_path / "bot.db.signals"
    try:
        # a crashed run's journals: two slots, the last line of one cut short by the crash
        row = {"id": "crashed-1", "telegram_id": 42, "position_id": 7, "wallet": "W", "mint": "M", "token_account": None,
               "reason": "take_profit", "profit_units": 9, "position_tokens": 10, "sell_tokens": None,
               "level_index": None, "triggered_at_ms": 1, "received_at_ms": 2, "market_type": None,
               "unsigned_tx_b64": "AQID", "slippage_bps": 100, "updated_at": 3}
        Path(f"{base}.0").write_text(json.dumps(row) + "\n" + '{"id": "torn')
        Path(f"{base}.3").write_text(
            json.dumps({**row, "id": "crashed-2"}) + "\n"
            # a signal of a user forgotten before its row was written: refused by the database, dropped, not fatal
            + json.dumps({**row, "id": "forgotten", "telegram_id": 99}) + "\n"
        )
        assert await ExitSignals.recover(db, base) == 2
        signals = ExitSignals(db)
        first, second = await signals.get("crashed-1"), await signals.get("crashed-2")
        assert first is not None and second is not None
        assert (first.state, first.reason, first.slippage_bps) == ("pending", "take_profit", 100)
        assert await signals.get("forgotten") is None
        assert _rows(base) == [] and not Path(f"{base}.3").exists()
        # written once: a second start finds nothing left, and an already written row is not written again
        await ExitSignals.release(db)
        assert await ExitSignals.recover(db, base) == 0
    finally:
        await ExitSignals.release(db)
        await db.close()


def test_a_live_instance_keeps_its_journal_and_another_takes_the_next_slot(tmp_path: Path) -> None:
    base = tmp_path / "bot.db.signals"
    first, _ = SignalJournal.open(base)
    try:
        first.append({"id": "live"})
        second, left = SignalJournal.open(base)
        try:
            assert left == []  # a live instance's rows are its own to write
            assert (first.path.name, second.path.name) == ("bot.db.signals.0", "bot.db.signals.1")
        finally:
            second.close()
    finally:
        first.close()


async def test_a_tap_and_the_signed_bytes_are_journaled_and_decided_on_before_the_database_has_them(
    tmp_path: Path,
) -> None:
    """SQLite, one process: a transition is decided on the state last journaled and written behind; a second
    approve of the same signal loses (a double tap signs once), and the row ends in the last state."""
    db = await _db(tmp_path)
    base = tmp_path / "bot.db.signals"
    released = asyncio.Event()

    async def hold() -> None:  # as the seller holds the writes until its sells are sent
        await released.wait()

    try:
        await ExitSignals.recover(db, base)
        signals = ExitSignals(db)
        signal = await signals.store(42, MSG, 123, 300)
        await signals.get(signal.id)  # the row is in
        ExitSignals.hold_writes(db, hold)
        assert await signals.transition(signal.id, ("pending",), "approved", tapped_at_ms=5)
        assert not await signals.transition(signal.id, ("pending",), "approved", tapped_at_ms=6)
        assert await signals.transition(signal.id, ("approved",), "signing", signed_tx_b64="AQID", signature="SIG")
        ops = [r for r in _rows(base) if r.get("op") == "transition"]
        assert [(o["from"], o["to"]) for o in ops] == [(["pending"], "approved"), (["approved"], "signing")]
        row = await db.fetchone("SELECT state FROM exit_signals WHERE id=?", (signal.id,))
        assert row is not None and row[0] == "pending"  # held: the database has not been written yet
        released.set()
        stored = await signals.get(signal.id)  # waits for the writes behind
        assert stored is not None
        assert (stored.state, stored.tapped_at_ms, stored.signature) == ("signing", 5, "SIG")
        assert _rows(base) == []
    finally:
        ExitSignals.hold_writes(db, None)
        await ExitSignals.release(db)
        await db.close()


async def test_journaled_transitions_a_crash_left_are_written_at_the_next_start(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    base = tmp_path / "bot.db.signals"
    try:
        await ExitSignals.recover(db, base)
        signal = await ExitSignals(db).store(42, MSG, 123, 300)
        await ExitSignals(db).get(signal.id)
        await ExitSignals.release(db)
        # the crashed run journaled the approve and the signed bytes; its database never saw them
        ops = [
            {"op": "transition", "id": signal.id, "from": ["pending"], "to": "approved", "values": {"tapped_at_ms": 7},
             "at": 8},
            {"op": "transition", "id": signal.id, "from": ["approved"], "to": "signing",
             "values": {"signed_tx_b64": "AQID", "signature": "SIG"}, "at": 9},
            {"op": "transition", "id": signal.id, "from": ["pending"], "to": "approved", "values": {}, "at": 10},
        ]
        Path(f"{base}.1").write_text("".join(json.dumps(op) + "\n" for op in ops))
        await ExitSignals.recover(db, base)
        stored = await ExitSignals(db).get(signal.id)
        assert stored is not None
        # replayed in order; the last approve finds the signal signing and changes nothing
        assert (stored.state, stored.tapped_at_ms, stored.signed_tx_b64, stored.signature) == ("signing", 7, "AQID", "SIG")
    finally:
        await ExitSignals.release(db)
        await db.close()
