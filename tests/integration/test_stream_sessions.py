"""The per-user stream across reconnects, against a small LaserSell stream server this test controls.

A reconnect is a new stream session: the server numbers positions anew, and only a refused key is a
reason to stop reconnecting. Here the server gives the same positions different ids after a
reconnect, refuses a key that is "in use", and the test reads what reached the server and the chat.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bot.strategy import Strategy
from bot.stream.events import StreamEvent
from bot.stream.streams import UserStreams
from storage.db import Database
from storage.history import PnlHistory
from storage.positions import Positions
from storage.users import Users

USER = 7001
WALLET = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
API_KEY = "key-made-by-this-test"


def now_ms() -> int:
    return int(time.time() * 1000)


def hello(session_id: int) -> dict[str, Any]:
    return {"type": "hello_ok", "session_id": session_id, "server_time_ms": now_ms(),
            "limits": {"hi_capacity": 256, "pnl_flush_ms": 100, "max_positions_per_session": 50}}


def opened(stream_id: int, account: str, opened_at_ms: int) -> dict[str, Any]:
    return {"type": "position_opened", "position_id": stream_id, "wallet_pubkey": WALLET, "mint": "Mint" + account,
            "token_account": account, "tokens": 1_000_000, "entry_quote_units": 100_000_000, "slot": 1,
            "token_symbol": account.upper(), "opened_at_ms": opened_at_ms}


def exit_signal(stream_id: int, account: str, reason: str) -> dict[str, Any]:
    return {"type": "exit_signal_with_tx", "session_id": 2, "position_id": stream_id, "wallet_pubkey": WALLET,
            "mint": "Mint" + account, "token_account": account, "position_tokens": 1_000_000, "profit_units": 5,
            "reason": reason, "triggered_at_ms": now_ms(), "unsigned_tx_b64": "AQID"}


class Session:
    """One accepted connection: what the client sent; `send` speaks for the server."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == kind]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


Greeting = Callable[[Session, int], Awaitable[None]]


class Peer:
    """The LaserSell stream as this test scripts it: `greet(session, n)` runs after the n-th configure
    (0-based); while `in_use` is set, a connection is refused the way a key already streaming is."""

    def __init__(self, greet: Greeting) -> None:
        self.greet = greet
        self.in_use = False
        self.hang_up_after_hello = False  # accept, greet, then refuse the configure and hang up
        self.sessions: list[Session] = []
        self.attempts = 0
        self.attempted = asyncio.Event()
        self.new_session = asyncio.Event()

    async def _handler(self, ws: ServerConnection) -> None:
        self.attempts += 1
        self.attempted.set()
        if self.in_use:
            await ws.recv()
            await ws.send(json.dumps({"type": "error", "code": "session_limit", "message": "this key is in use"}))
            await ws.close(1008, "session_limit")
            return
        if self.hang_up_after_hello:
            await ws.send(json.dumps(hello(0)))
            await ws.recv()
            await ws.send(json.dumps({"type": "error", "code": "wallet_not_registered", "message": "register it"}))
            await ws.close()
            return
        session = Session(ws)
        try:
            session.received.append(json.loads(await ws.recv()))
            index = len(self.sessions)
            self.sessions.append(session)
            self.new_session.set()
            await self.greet(session, index)
            async for frame in ws:
                session.received.append(json.loads(frame))
                session.changed.set()
        except ConnectionClosed:
            pass

    async def wait_attempts(self, count: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while self.attempts < count:
                self.attempted.clear()
                await self.attempted.wait()

    async def session(self, index: int, timeout: float = 10) -> Session:
        async with asyncio.timeout(timeout):
            while len(self.sessions) <= index:
                self.new_session.clear()
                await self.new_session.wait()
        return self.sessions[index]

    async def __aenter__(self) -> Peer:
        self.server = await serve(self._handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


class Chat:
    """What the trader reads: the texts the streams hand to the alerts."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.changed = asyncio.Event()

    def text(self, chat_id: int, text: str, priority: Any = None, **_: Any) -> None:
        self.texts.append(text)
        self.changed.set()

    async def position_opened(self, user_id: int, chat_id: int, position: Any) -> None:
        self.text(chat_id, f"New position: {position.label} #{position.position_id}")

    async def position_closed(self, *args: Any) -> None:
        pass

    async def liquidity(self, *args: Any) -> None:
        pass

    def card_changed(self, *args: Any) -> None:
        pass

    def track_card(self, *args: Any) -> None:
        pass

    def matching(self, words: str) -> list[str]:
        return [t for t in self.texts if words in t]

    async def wait_text(self, words: str, timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            while not self.matching(words):
                self.changed.clear()
                await self.changed.wait()
        return self.matching(words)[0]


@dataclass
class Settings:
    strategy_json: str
    paused: bool = False
    send_mode: str = "helius_sender"
    tip_lamports: int = 1_000_000


class Accounts:
    """The trader's key, one registered wallet and a strategy, as the streams read them."""

    def __init__(self, strategy: Strategy) -> None:
        self.settings = Settings(strategy.to_json())
        self.store = SimpleNamespace(get=self._settings)
        self.wallets = SimpleNamespace(list=self._wallets)

    async def _settings(self, user_id: int) -> Settings:
        return self.settings

    async def _wallets(self, user_id: int) -> list[Any]:
        return [SimpleNamespace(address=WALLET, registered_at=1)]

    async def api_key(self, user_id: int) -> tuple[str, None]:
        return API_KEY, None


@dataclass
class Bot:
    streams: UserStreams
    chat: Chat
    exits: list[StreamEvent]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "bot.db")
    await Users(database).seen(USER, USER, "Ann")
    try:
        yield database
    finally:
        await database.close()


async def start_bot(db: Database, peer: Peer, strategy: Strategy, **options: Any) -> Bot:
    chat = Chat()
    exits: list[StreamEvent] = []

    async def on_exit(user_id: int, event: StreamEvent) -> None:
        exits.append(event)
        chat.text(USER, f"exit signal for #{event.data['position_id']}: {event.data['reason']}")

    streams = UserStreams(
        users=Users(db), accounts=Accounts(strategy), alerts=chat, positions=Positions(db),
        history=PnlHistory.for_db(db), stream_url=peer.url, on_exit_signal=on_exit, start_jitter_s=0, **options,
    )
    await streams.refresh(USER)
    return Bot(streams, chat, exits)


async def test_stream_override_and_deadline_follow_the_position_when_a_reconnect_renumbers_it(db: Database) -> None:
    start = now_ms()

    async def greet(session: Session, index: int) -> None:
        await session.send(hello(index + 1))
        if index == 0:
            await session.send(opened(1, "ataA", start))  # A's deadline runs out 3 s after this
            await session.send(opened(2, "ataB", start + 600_000))
        else:  # the new session gives them each other's ids
            await session.send(opened(1, "ataB", start + 600_000))
            await session.send(opened(2, "ataA", start))

    async with Peer(greet) as peer:
        bot = await start_bot(db, peer, Strategy(take_profit_pct=50, stop_loss_pct=20, deadline_s=3))
        try:
            await bot.chat.wait_text("New position: ATAB #2")
            override = Strategy(take_profit_pct=200, stop_loss_pct=5, deadline_s=3)
            assert await bot.streams.set_position_strategy(USER, 1, override) is True
            first = await peer.session(0)
            await first.wait_for(lambda: first.of_type("update_position_strategy"))
            assert first.of_type("update_position_strategy")[0]["position_id"] == 1

            await first.ws.close()  # the connection drops; the next session renumbers the positions
            second = await peer.session(1)
            await second.wait_for(lambda: second.of_type("update_position_strategy"))
            # the override goes to A under the id this session gave it, and to nobody else
            assert second.of_type("update_position_strategy") == [
                {"type": "update_position_strategy", "position_id": 2, "strategy": override.to_wire()}
            ]
            # A's deadline still runs out and asks for A's exit, named by its token account
            await second.wait_for(lambda: second.of_type("request_exit_signal"))
            assert second.of_type("request_exit_signal") == [{"type": "request_exit_signal", "token_account": "ataA"}]
            await second.send(exit_signal(2, "ataA", "manual"))
            said = await bot.chat.wait_text("exit signal for")
            assert said == "exit signal for #1: deadline_timeout"  # A is still #1 to the trader
            assert len(bot.chat.matching("New position")) == 2  # no second card for a re-announced position
            positions = await bot.streams.positions.open_for(USER)
            assert [(p.position_id, p.token_account, p.stream_position_id) for p in positions] == [
                (1, "ataA", 2), (2, "ataB", 1)
            ]
        finally:
            await bot.streams.stop_all(timeout=2)


async def test_stream_an_exit_asked_before_a_drop_is_asked_again_when_the_new_session_announces_it(
    db: Database,
) -> None:
    async def greet(session: Session, index: int) -> None:
        await session.send(hello(index + 1))
        await session.send(opened(1 if index == 0 else 5, "ataA", now_ms()))

    async with Peer(greet) as peer:
        # only the re-announcement may bring the re-ask (the later catch-all is set far away)
        bot = await start_bot(db, peer, Strategy(take_profit_pct=50, stop_loss_pct=20, deadline_s=0), reask_after_s=60)
        try:
            await bot.chat.wait_text("New position: ATAA #1")
            assert await bot.streams.request_exit(USER, 1) is True
            first = await peer.session(0)
            await first.wait_for(lambda: first.of_type("request_exit_signal"))
            await first.ws.close()  # the answer is lost with the connection

            second = await peer.session(1)
            await second.wait_for(lambda: second.of_type("request_exit_signal"))
            await second.send(exit_signal(5, "ataA", "manual"))
            assert await bot.chat.wait_text("exit signal for") == "exit signal for #1: manual"
            assert second.of_type("request_exit_signal") == [{"type": "request_exit_signal", "token_account": "ataA"}]
        finally:
            await bot.streams.stop_all(timeout=2)


async def test_stream_a_key_in_use_is_retried_and_the_trader_is_told_once_it_is_down_long_and_when_back(
    db: Database,
) -> None:
    async def greet(session: Session, index: int) -> None:
        await session.send(hello(index + 1))

    async with Peer(greet) as peer:
        peer.in_use = True
        # a minute in production; a fraction of a second here
        bot = await start_bot(db, peer, Strategy(), down_notice_after_s=0.8)
        try:
            notice = await bot.chat.wait_text("down for over")
            assert "one session per key" in notice and "keep reconnecting" in notice
            attempts = peer.attempts
            # it keeps trying at the backoff's pace (at most 2 s apart), without telling the trader again
            await peer.wait_attempts(attempts + 3)
            peer.in_use = False  # the other session let go of the key
            await peer.session(0)
            await bot.chat.wait_text("stream is back</b>")
            assert len(bot.chat.matching("down for over")) == 1
            assert len(bot.chat.matching("stream is back</b>")) == 1
            assert not bot.chat.matching("stream stopped")
        finally:
            await bot.streams.stop_all(timeout=2)


async def test_stream_a_short_blip_is_not_told_to_the_trader(db: Database) -> None:
    async def greet(session: Session, index: int) -> None:
        await session.send(hello(index + 1))
        await session.send(opened(index + 1, "ataA", now_ms()))

    async with Peer(greet) as peer:
        bot = await start_bot(db, peer, Strategy(), down_notice_after_s=5)
        try:
            await bot.chat.wait_text("New position")
            await (await peer.session(0)).ws.close()
            await peer.session(1)
            worker = bot.streams.workers[USER]
            assert await worker.client.wait_connected(5)
            # the next thing the trader would read after the blip: a sell they ask for goes out at once
            assert await bot.streams.request_exit(USER, 1) is True
            assert not bot.chat.matching("down for over") and not bot.chat.matching("stream is back")
        finally:
            await bot.streams.stop_all(timeout=2)


async def test_stream_a_server_that_hangs_up_right_after_hello_counts_as_down_and_is_told_once(
    db: Database,
) -> None:
    async def greet(session: Session, index: int) -> None:
        await session.send(hello(index + 1))

    async with Peer(greet) as peer:
        peer.hang_up_after_hello = True
        bot = await start_bot(db, peer, Strategy(), down_notice_after_s=0.8)
        try:
            notice = await bot.chat.wait_text("down for over")
            assert "not registered" in notice  # what LaserSell said, with what to do
            await peer.wait_attempts(peer.attempts + 3)
            peer.hang_up_after_hello = False
            await bot.chat.wait_text("stream is back</b>")
            assert len(bot.chat.matching("down for over")) == 1
            assert len(bot.chat.matching("stream is back</b>")) == 1
            # LaserSell's own words arrived with each short session: shown once, not on every retry
            assert len(bot.chat.matching("not registered with LaserSell")) == 2  # the notice and one error
        finally:
            await bot.streams.stop_all(timeout=2)
