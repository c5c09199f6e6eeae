"""An exit signal behind a flood of PnL: the trader's Sell message goes before any card edit.

The real stream client, user streams, event router, alerts and outbox, on a real database, talking to the sandbox
Telegram. A small stream server scripted here announces one position (its card is sent), then writes
50,000 `pnl_update` frames for that position and an exit signal behind them to the socket in one go.
The outbox is watched through its public `submit`: the order calls reach it is the order the bot
decided on, before pacing or priorities reorder anything.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from bot.notify.alerts import Alerts
from bot.notify.outbox import Outbox, OutboxCall
from bot.strategy import Strategy
from bot.stream.events import StreamEvent
from bot.stream.pnl import PnlBatcher
from bot.stream.streams import UserStreams
from sandbox.telegram import SandboxTelegram
from storage.accounts import SettingsStore
from storage.db import Database
from storage.history import PnlHistory
from storage.positions import ExitSignals, Positions
from storage.users import Users

pytestmark = pytest.mark.timeout(90)

WALLET = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
ACCOUNT = "ataFlood"
STREAM_ID = 4
BACKLOG = 50_000


def now_ms() -> int:
    return int(time.time() * 1000)


def pnl(profit: int) -> dict[str, Any]:
    return {"type": "pnl_update", "position_id": STREAM_ID, "profit_units": profit,
            "proceeds_units": 100_000_000 + profit, "server_time_ms": now_ms()}


def text_frame(message: dict[str, Any]) -> bytes:
    return Frame(Opcode.TEXT, json.dumps(message, separators=(",", ":")).encode()).serialize(mask=False)


class RecordingOutbox(Outbox):
    """The real outbox; every call is noted in the order it reaches the outbox."""

    def __init__(self, bot: Any, **options: Any) -> None:
        super().__init__(bot, **options)
        self.calls: list[OutboxCall] = []
        self.arrived = asyncio.Event()

    def submit(self, call: OutboxCall) -> asyncio.Future[Any]:
        self.calls.append(call)
        self.arrived.set()
        return super().submit(call)

    async def wait_for(self, predicate: Any, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()


class FloodingStream:
    """Announces the position, then on `fire` writes the backlog and the exit signal in one write."""

    def __init__(self) -> None:
        self.fire = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        try:
            await ws.recv()  # configure
            await ws.send(json.dumps({"type": "hello_ok", "session_id": 1, "server_time_ms": now_ms(), "limits": {}}))
            await ws.send(json.dumps({
                "type": "position_opened", "position_id": STREAM_ID, "wallet_pubkey": WALLET, "mint": "MintFlood",
                "token_account": ACCOUNT, "tokens": 1_000_000, "entry_quote_units": 100_000_000, "slot": 1,
                "token_symbol": "FLOOD", "opened_at_ms": now_ms(),
            }))
            await self.fire.wait()
            burst = [text_frame(pnl(i)) for i in range(BACKLOG)]
            burst.append(text_frame({
                "type": "exit_signal_with_tx", "session_id": 1, "position_id": STREAM_ID, "wallet_pubkey": WALLET,
                "mint": "MintFlood", "token_account": ACCOUNT, "position_tokens": 1_000_000, "profit_units": -25_000_000,
                "reason": "stop_loss", "triggered_at_ms": now_ms(), "unsigned_tx_b64": "AQID",
            }))
            ws.transport.write(b"".join(burst))
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[SandboxTelegram, Bot]]:
    tg = SandboxTelegram()
    await tg.start()
    bot = Bot(tg.token, base_url=f"{tg.url}/bot", request=HTTPXRequest(connection_pool_size=8))
    try:
        async with bot:
            yield tg, bot
    finally:
        await tg.stop()


async def test_an_exit_signal_behind_50000_pnl_frames_reaches_the_outbox_before_any_card_edit(
    tmp_path: Path, telegram: tuple[SandboxTelegram, Bot]
) -> None:
    tg, bot = telegram
    user_id, chat_id = tg.add_user("Ann", "ann")
    db = await Database.open(tmp_path / "bot.db")
    await Users(db).seen(user_id, chat_id, "Ann")
    outbox = RecordingOutbox(bot, per_chat_burst=100, per_chat_rate=100.0, global_rate=100.0)
    await outbox.start()
    positions = Positions(db)
    # cards edited as soon as their numbers change: any PnL handled before the exit would show here first
    pnl = PnlBatcher(positions, PnlHistory.for_db(db))
    alerts = Alerts(outbox, positions, SettingsStore(db), card_interval_s=0.0, load_position=pnl.position)
    strategy = Strategy(take_profit_pct=50, stop_loss_pct=20, deadline_s=0)
    settings = SimpleNamespace(strategy_json=strategy.to_json(), paused=False, send_mode="helius_sender",
                               tip_lamports=1_000_000)

    async def wallets(_user: int) -> list[Any]:
        return [SimpleNamespace(address=WALLET, registered_at=1)]

    async def stored_settings(_user: int) -> Any:
        return settings

    async def api_key(_user: int) -> tuple[str, None]:
        return "key-made-by-this-test", None

    accounts = SimpleNamespace(store=SimpleNamespace(get=stored_settings), wallets=SimpleNamespace(list=wallets),
                               api_key=api_key)
    signals = ExitSignals(db)

    async def on_exit(user: int, event: StreamEvent) -> None:
        # as the exit desk does: stored first, then the Sell message
        signal = await signals.store(user, event.data, now_ms())
        await alerts.exit_signal(user, chat_id, signal, await positions.get(user, signal.position_id))

    stream = FloodingStream()
    server = await serve(stream.handler, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    streams = UserStreams(
        users=Users(db), accounts=accounts, alerts=alerts, positions=positions, history=PnlHistory.for_db(db),
        pnl=pnl, stream_url=url, on_exit_signal=on_exit, start_jitter_s=0,
    )
    try:
        await streams.refresh(user_id)
        await outbox.wait_for(lambda: outbox.calls)  # the position's card
        await outbox.wait_idle(timeout=30)
        # the card's message id is stored just after Telegram answers: wait for it, bounded
        for _ in range(500):
            (position,) = await positions.open_for(user_id)
            if position.card_message_id is not None:
                break
            await asyncio.sleep(0.01)
        assert position.card_message_id is not None

        stream.fire.set()

        def card_edits() -> list[OutboxCall]:
            return [c for c in outbox.calls
                    if c.method == "edit_message_text" and c.kwargs["message_id"] == position.card_message_id]

        def exit_messages() -> list[int]:
            return [i for i, c in enumerate(outbox.calls)
                    if c.method == "send_message" and "x:sell:" in str(c.kwargs.get("reply_markup"))]

        await outbox.wait_for(lambda: exit_messages() and card_edits())
        first_exit = exit_messages()[0]
        first_edit = outbox.calls.index(card_edits()[0])
        assert first_exit < first_edit, "a PnL-driven card edit reached the outbox before the exit signal"
        # the exit is in the chat, with its Sell button
        await outbox.wait_idle(timeout=30)
        sell = [m for m in tg.bot_messages(chat_id) if "Sell" in json.dumps(m["buttons"]) and "Skip" in json.dumps(m["buttons"])]
        assert len(sell) == 1, "the trader should see the exit signal with its Sell button once"
        # PnL still flows after the exit: the position's numbers become the flood's newest
        async with asyncio.timeout(30):
            while (await streams.position(user_id, position.position_id)).profit_units != BACKLOG - 1:
                outbox.arrived.clear()
                await outbox.arrived.wait()
    finally:
        stream.fire.set()  # a handler still waiting to flood ends with its connection
        await streams.stop_all(timeout=5)
        await alerts.close()
        await outbox.stop(drain_timeout=0)
        server.close()
        async with asyncio.timeout(10):
            await server.wait_closed()
        await db.close()
