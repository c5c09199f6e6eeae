"""kill -9 of the bot at each step of a sell. The bot runs as its own process so the kill is real: no
finally, no shutdown hook. What would be lost is the sell (never sent) or its result (sent twice, or
never reported); each test asserts it is sold exactly once and the trader is told."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal as signals
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from storage.db import Database
from storage.positions import ExitSignals
from tests.e2e.harness import Harness, exit_requests, holding, sends, signal_id, stored, take_profit

ROOT = Path(__file__).parents[2]

# the step, the RPC method the bot is stuck in when it is killed, and the state the sell is then stored in
STEPS = [
    ("checking", "simulateTransaction", "approved"),  # tapped, being checked: nothing signed
    ("sending", "sendTransaction", "signing"),  # signed and stored, the send never arrives
    ("confirming", "getSignatureStatuses", "submitted"),  # sent and landed, the result not seen yet
]


def bot_process(h: Harness, log: Path) -> subprocess.Popen[bytes]:
    """The real bot, `python -m bot.cli run`, wired to the sandbox by environment like an operator's."""
    urls = h.services.urls
    env = {
        "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(h.data_dir),
        "TELEGRAM_BOT_TOKEN": h.services.telegram.token, "TELEGRAM_API_BASE_URL": urls["telegram"],
        "LASERSELL_STREAM_URL": urls["stream"], "LASERSELL_API_URL": urls["api"], "SOLANA_RPC_URL": urls["rpc"],
        "HELIUS_SENDER_URL": urls["rpc"], "ASTRALANE_URL": urls["rpc"],
        "BOT_MASTER_KEY_FILE": str(h.data_dir / "master.key"), "DATABASE_PATH": str(h.data_dir / "bot.db"),
        "TELEGRAM_CHAT_RATE": "10",
    }
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], cwd=h.data_dir, env=env,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=out)


async def left_on_disk(h: Harness, sid: str, copy_to: Path) -> tuple[str, str | None]:
    """(state, signature) of the signal as the killed process left it on disk: its database with its exit-signal
    journal written in, on a copy of the files (as the next start does; the real files stay for the restart)."""
    copy_to.mkdir()
    for path in h.data_dir.iterdir():
        if path.name.startswith("bot.db"):
            shutil.copy2(path, copy_to / path.name)
    db = await Database.open(copy_to / "bot.db")
    try:
        await ExitSignals.recover(db, copy_to / "bot.db.signals")
        row = await db.fetchone("SELECT state, signature FROM exit_signals WHERE id=?", (sid,))
        assert row is not None
        await ExitSignals.release(db)
    finally:
        await db.close()
    return str(row[0]), row[1]


async def kill_mid_sell(h: Harness, log: Path, method: str) -> tuple[Any, Any, dict[str, Any]]:
    """A trader taps Sell on a bot process that is then killed -9 while waiting on `method`; the bot is
    started again in this process. Returns (trader, mint, the signal message)."""
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    sid = signal_id(signal)
    await h.runner.stop()  # the same bot, now as a process of its own
    h.services.rpc.hang_s = 60.0
    h.services.rpc.fault(method, "hang", times=1)
    process = bot_process(h, log)
    try:
        trader.chat.tg.press(trader.chat.user_id, signal["message_id"], f"x:sell:{sid}")
        await trader.chat.wait_for(lambda ms: h.services.rpc.hangs[method] >= 1, timeout=30,
                                   what=f"the bot waiting on {method}")
    finally:
        os.kill(process.pid, signals.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
    assert process.returncode == -signals.SIGKILL
    return trader, mint, signal


@pytest.mark.parametrize(("step", "method", "state"), STEPS, ids=[s[0] for s in STEPS])
async def test_a_sell_killed_mid_way_is_sold_once_after_restart(
    harness: Harness, tmp_path: Path, step: str, method: str, state: str
) -> None:
    h = harness
    trader, mint, signal = await kill_mid_sell(h, tmp_path / "bot.log", method)
    sid = signal_id(signal)
    left_state, signature = await left_on_disk(h, sid, tmp_path / "left")  # what the killed process left behind
    assert left_state == state
    assert (signature is not None) == (state != "approved")  # signed bytes are stored before they are sent
    assert sends(h) == (1 if state == "submitted" else 0)

    await h.restart_bot()
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=30)

    assert done["message_id"] == signal["message_id"]
    assert (await stored(h, sid)).state == "landed"
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert sends(h) == 1
    await trader.chat.wait_for(lambda ms: h.services.stream.session_for(trader.api_key) is not None,
                               what="the stream back")
    assert exit_requests(h, trader) == []  # no second sell asked for
    assert sum("Sold" in (m.get("text") or "") for m in trader.chat.bot_messages()) == 1


async def test_a_killed_sell_settles_even_when_the_node_fails_right_after_the_restart(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    trader, mint, signal = await kill_mid_sell(h, tmp_path / "bot.log", "getSignatureStatuses")
    h.services.rpc.fault("getSignatureStatuses", "http500", times=2)  # the first checks after the restart fail

    await h.restart_bot()
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=30)

    assert done["message_id"] == signal["message_id"]
    assert (await stored(h, signal_id(signal))).state == "landed"
    assert sends(h) == 1


async def test_an_exit_signal_goes_out_while_the_database_is_locked_and_survives_a_kill(
    harness: Harness, tmp_path: Path
) -> None:
    """Another process holds the database's write lock when the exit signal arrives. The message still goes
    out (the signal is in its journal, a write nothing else holds up); the bot is then killed -9 before the
    database row could land. After the restart the signal is in the database and its Sell button sells."""
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    await h.runner.stop()
    process = bot_process(h, tmp_path / "bot.log")
    blocker = sqlite3.connect(h.data_dir / "bot.db", isolation_level=None, timeout=30)
    try:
        first = h.services.stream.session_for(trader.api_key)

        def reconnected(_ms: object) -> bool:
            session = h.services.stream.session_for(trader.api_key)
            return session is not None and session is not first and session.configured and not session.closed

        await trader.chat.wait_for(reconnected, timeout=30, what="the bot process's stream")
        blocker.execute("BEGIN IMMEDIATE")  # a long write elsewhere: every write of the bot waits for it
        signal = await take_profit(h, trader, mint)
        sid = signal_id(signal)
        assert blocker.execute("SELECT count(*) FROM exit_signals WHERE id=?", (sid,)).fetchone()[0] == 0
    finally:
        os.kill(process.pid, signals.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
        blocker.close()  # its transaction ends with it
    assert process.returncode == -signals.SIGKILL
    with sqlite3.connect(h.data_dir / "bot.db") as db:  # what the killed process left in the database
        assert db.execute("SELECT count(*) FROM exit_signals WHERE id=?", (sid,)).fetchone()[0] == 0

    await h.restart_bot()
    recovered = await stored(h, sid)
    assert (recovered.state, recovered.message_id) == ("pending", None)  # from the journal; its message id was never stored
    trader.chat.tg.press(trader.chat.user_id, signal["message_id"], f"x:sell:{sid}")
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=30)

    assert (await stored(h, sid)).state == "landed"
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert sends(h) == 1
