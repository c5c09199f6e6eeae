"""The stream client against a small fake LaserSell server on 127.0.0.1 (one script per connection)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import pytest
from lasersell_sdk.stream.proto import server_message_from_obj
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bot.stream.client import (
    CONNECTED,
    NEEDS_ATTENTION,
    RECONNECTING,
    STOPPED,
    StreamClient,
    StreamConfig,
    StreamUnavailable,
)
from bot.stream.events import MalformedMessage, StreamEvent, parse_event

API_KEY = "test-key-not-a-secret"
WALLET = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
STRATEGY = {"target_profit_pct": 50.0, "stop_loss_pct": 10.0}
HELLO = {
    "type": "hello_ok",
    "session_id": 42,
    "server_time_ms": 1_700_000_000_000,
    "limits": {"hi_capacity": 256, "pnl_flush_ms": 100, "max_positions_per_session": 50},
}


def pnl(position_id: int, profit: int) -> dict[str, Any]:
    return {
        "type": "pnl_update",
        "position_id": position_id,
        "profit_units": profit,
        "proceeds_units": 1_000_000 + profit,
        "server_time_ms": 1_700_000_000_000 + profit,
    }


def exit_signal(position_id: int, market_context: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "exit_signal_with_tx",
        "session_id": 42,
        "position_id": position_id,
        "wallet_pubkey": WALLET,
        "mint": "So11111111111111111111111111111111111111112",
        "position_tokens": 1000,
        "profit_units": 5000,
        "reason": "target_profit",
        "triggered_at_ms": 1_700_000_000_123,
        "unsigned_tx_b64": "AQID",
    }
    if market_context is not None:
        msg["market_context"] = market_context
    return msg


class Conn:
    """One accepted connection: what the client sent, and helpers for the script."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self.closed = asyncio.Event()

    async def recv(self) -> dict[str, Any]:
        msg = json.loads(await self.ws.recv())
        self.received.append(msg)
        self._arrived.set()
        return msg

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def record_until_closed(self) -> None:
        try:
            while True:
                await self.recv()
        except ConnectionClosed:
            pass

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.received):
                self._arrived.clear()
                await self._arrived.wait()


Script = Callable[[Conn], Awaitable[None]]


async def configure_then_hello(conn: Conn) -> None:
    await conn.recv()
    await conn.send(HELLO)
    await conn.record_until_closed()


class FakeStream:
    """A fake stream server. `plan[i]` drives attempt i (the last entry repeats): a script, or an
    HTTP status to refuse the upgrade with."""

    def __init__(self, *plan: Script | int) -> None:
        self.plan = list(plan) or [configure_then_hello]
        self.attempts = 0
        self.attempt_times: list[float] = []  # monotonic time of each upgrade request
        self.api_keys: list[str | None] = []
        self.conns: list[Conn] = []
        self._new_conn = asyncio.Event()

    def _step(self, index: int) -> Script | int:
        return self.plan[min(index, len(self.plan) - 1)]

    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        index = self.attempts
        self.attempts += 1
        self.attempt_times.append(time.monotonic())
        self.api_keys.append(request.headers.get("x-api-key"))
        step = self._step(index)
        if isinstance(step, int):
            return connection.respond(HTTPStatus(step), "refused\n")
        connection.plan_index = index  # type: ignore[attr-defined]
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        self.conns.append(conn)
        self._new_conn.set()
        try:
            await self._step(ws.plan_index)(conn)  # type: ignore[attr-defined, operator]
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()

    async def conn(self, index: int, timeout: float = 5) -> Conn:
        async with asyncio.timeout(timeout):
            while len(self.conns) <= index:
                self._new_conn.clear()
                await self._new_conn.wait()
        return self.conns[index]

    async def __aenter__(self) -> FakeStream:
        self.server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


class Trader:
    """The caller's current configuration, read by the client on every connect."""

    def __init__(self) -> None:
        self.strategy: dict[str, Any] = dict(STRATEGY)
        self.wallets = [WALLET]
        self.asked = 0

    async def config(self) -> StreamConfig:
        self.asked += 1
        return StreamConfig(
            wallet_pubkeys=list(self.wallets),
            strategy=dict(self.strategy),
            send_mode="helius_sender",
            tip_lamports=1000,
        )


class Sleeps:
    """Injected backoff sleep: records delays; optionally held shut until the test opens it."""

    def __init__(self, held: bool = False) -> None:
        self.delays: list[float] = []
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()
        self.sleeping = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.sleeping.set()
        await self.gate.wait()
        self.sleeping.clear()


async def until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    """Wait for a condition driven by the event loop (yields; does not wait out a duration)."""
    # Only for counters that have no event to wait on; it yields rather than waiting out a duration.
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def make_client(server: FakeStream, trader: Trader, **kwargs: Any) -> StreamClient:
    kwargs.setdefault("sleep", Sleeps())
    return StreamClient(API_KEY, trader.config, url=server.url, **kwargs)


# ---------------------------------------------------------------- handshake


async def test_configure_is_sent_first_then_hello_accepted() -> None:
    trader = Trader()
    async with FakeStream() as server:
        states: list[tuple[str, str | None]] = []
        client = make_client(server, trader, on_state_change=lambda s, r: states.append((s, r)))
        await client.start()
        assert await client.wait_connected(5)
        conn = await server.conn(0)
        first = conn.received[0]
        assert first == {
            "type": "configure",
            "wallet_pubkeys": [WALLET],
            "strategy": STRATEGY,
            "send_mode": "helius_sender",
            "tip_lamports": 1000,
        }
        assert server.api_keys == [API_KEY]
        assert client.session_id == 42
        assert client.limits["hi_capacity"] == 256
        assert client.connected_since is not None and client.last_message_at is not None
        hello = await client.next_event()
        assert hello.type == "hello_ok" and hello.server_time_ms == 1_700_000_000_000
        await client.stop()
        assert client.state == STOPPED
        assert [s for s, _ in states] == ["connecting", "connected", "stopped"]


async def test_hello_before_configure_is_accepted() -> None:
    async def hello_first(conn: Conn) -> None:
        await conn.send(HELLO)
        await conn.recv()
        await conn.record_until_closed()

    async with FakeStream(hello_first) as server:
        client = make_client(server, Trader())
        await client.start()
        assert await client.wait_connected(5)
        conn = await server.conn(0)
        await conn.wait_for(lambda msgs: len(msgs) >= 1)
        assert conn.received[0]["type"] == "configure"
        await client.stop()


async def test_hello_timeout_counts_as_failed_connect_and_reconnects() -> None:
    async def silent(conn: Conn) -> None:
        await conn.record_until_closed()  # reads configure, never says hello

    sleeps = Sleeps()
    async with FakeStream(silent, configure_then_hello) as server:
        client = make_client(server, Trader(), hello_timeout=0.2, sleep=sleeps)
        await client.start()
        assert await client.wait_connected(5)
        assert server.attempts == 2
        assert client.reconnect_count == 1
        assert len(sleeps.delays) == 1
        assert server.conns[0].received[0]["type"] == "configure"
        await client.stop()


# ---------------------------------------------------------------- reconnect with current state


async def test_reconnect_sends_the_current_strategy_and_wallets_and_no_stale_request() -> None:
    trader = Trader()
    sleeps = Sleeps(held=True)

    async with FakeStream() as server:
        client = make_client(server, trader, sleep=sleeps)
        await client.start()
        assert await client.wait_connected(5)
        conn1 = await server.conn(0)

        new_strategy = {"target_profit_pct": 80.0, "stop_loss_pct": 5.0, "trailing_stop_pct": 3.0}
        trader.strategy = new_strategy
        assert await client.update_strategy(new_strategy) is True
        await conn1.wait_for(lambda msgs: len(msgs) >= 2)
        assert conn1.received[1] == {"type": "update_strategy", "strategy": new_strategy}

        await conn1.ws.close()
        await sleeps.sleeping.wait()
        assert client.state == RECONNECTING
        # While down: the wallet change lands in the next configure; a one-shot request is refused
        # (False) rather than replayed into a session where it may name another position.
        trader.wallets = [WALLET, "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"]
        assert await client.update_wallets(trader.wallets) is False
        assert await client.request_exit_signal(9, slippage_bps=300) is False
        assert await client.close_position(9) is False
        with pytest.raises(StreamUnavailable):
            await client.send({"type": "ping", "client_time_ms": 1})
        sleeps.gate.set()

        assert await client.wait_connected(5)
        conn2 = await server.conn(1)
        assert await client.ping() is True
        await conn2.wait_for(lambda msgs: len(msgs) >= 2)
        configure, *after = conn2.received
        assert configure["strategy"] == new_strategy
        assert configure["wallet_pubkeys"] == trader.wallets
        assert [m["type"] for m in after] == ["ping"]
        assert trader.asked == 2
        assert client.reconnect_count == 1
        await client.stop()


def opened(position_id: int, token_account: str) -> dict[str, Any]:
    return {
        "type": "position_opened",
        "position_id": position_id,
        "wallet_pubkey": WALLET,
        "mint": "Mint" + token_account,
        "token_account": token_account,
        "tokens": 1000,
        "entry_quote_units": 10_000,
        "slot": 1,
    }


async def test_positions_are_named_by_token_account_across_sessions() -> None:
    """A reconnect is a new session with new position ids: requests name positions by token account, and an
    override goes out with the id the new session gave the position."""
    accounts = {1: "AtaA", 2: "AtaB"}  # the caller's own ids

    async def first(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        await conn.send(opened(1, "AtaA"))
        await conn.send(opened(2, "AtaB"))
        await conn.send(pnl(1, 5))
        await conn.record_until_closed()

    async def second(conn: Conn) -> None:
        await conn.recv()
        await conn.send(dict(HELLO, session_id=43))
        # the same two positions, announced with each other's old ids
        await conn.send(opened(1, "AtaB"))
        await conn.send(opened(2, "AtaA"))
        await conn.send(pnl(2, 7))
        await conn.record_until_closed()

    async with FakeStream(first, second) as server:
        client = make_client(server, Trader(), position_account=accounts.get)
        await client.start()
        events = [await client.next_event() for _ in range(4)]
        assert [(e.type, e.token_account, e.connection) for e in events] == [
            ("hello_ok", None, 1), ("position_opened", "AtaA", 1), ("position_opened", "AtaB", 1),
            ("pnl_update", "AtaA", 1),
        ]
        conn1 = await server.conn(0)
        assert await client.update_position_strategy(1, STRATEGY) is True
        await conn1.wait_for(lambda msgs: len(msgs) >= 2)
        assert conn1.received[1] == {"type": "update_position_strategy", "position_id": 1, "strategy": STRATEGY}

        await conn1.ws.close()
        events = [await client.next_event() for _ in range(4)]
        assert [(e.type, e.token_account, e.connection) for e in events] == [
            ("hello_ok", None, 2), ("position_opened", "AtaB", 2), ("position_opened", "AtaA", 2),
            ("pnl_update", "AtaA", 2),
        ]
        conn2 = await server.conn(1)
        assert client.wire_position_id("AtaA") == 2
        assert await client.update_position_strategy(1, STRATEGY) is True
        assert await client.request_exit_signal(1, slippage_bps=500) is True
        assert await client.close_position(2) is True
        assert await client.request_exit_signal(99) is False  # a position the caller does not know
        await conn2.wait_for(lambda msgs: len(msgs) >= 4)
        assert conn2.received[1:] == [
            {"type": "update_position_strategy", "position_id": 2, "strategy": STRATEGY},
            {"type": "request_exit_signal", "token_account": "AtaA", "slippage_bps": 500},
            {"type": "close_position", "token_account": "AtaB"},
        ]
        await client.stop()


async def test_an_override_for_a_position_not_yet_announced_in_this_session_is_not_sent() -> None:
    async def quiet(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        await conn.record_until_closed()

    async with FakeStream(quiet) as server:
        client = make_client(server, Trader(), position_account={1: "AtaA"}.get)
        await client.start()
        assert await client.wait_connected(5)
        assert await client.update_position_strategy(1, STRATEGY) is False
        assert await client.ping() is True
        conn = await server.conn(0)
        await conn.wait_for(lambda msgs: len(msgs) >= 2)
        assert [m["type"] for m in conn.received] == ["configure", "ping"]
        await client.stop()


# ---------------------------------------------------------------- backoff


async def test_reconnect_delays_double_from_100_ms_to_2_s_with_jitter_and_reset_after_a_healthy_session() -> None:
    now = [1000.0]
    sleeps = Sleeps()

    clients: list[StreamClient] = []

    async def stay(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        assert await clients[0].wait_connected(5)
        now[0] += 61  # the session stays up past the healthy period
        await conn.ws.close()

    refusals = [503] * 8
    async with FakeStream(*refusals, stay, 503) as server:
        client = make_client(server, Trader(), rng=random.Random(7), sleep=sleeps, clock=lambda: now[0])
        clients.append(client)
        await client.start()
        await until(lambda: len(sleeps.delays) >= 12)
        await client.stop()

    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 0.1, 0.2, 0.4, 0.8]
    for delay, ceiling in zip(sleeps.delays, ceilings, strict=False):
        assert ceiling * 0.8 <= delay <= ceiling
    assert len({round(d / c, 6) for d, c in zip(sleeps.delays, ceilings, strict=False)}) > 3  # jittered
    assert server.attempts >= 12


def test_backoff_is_capped_at_two_seconds() -> None:
    client = StreamClient(API_KEY, Trader().config, rng=random.Random(1))
    delays = [client.backoff_delay(n) for n in range(5, 200)]
    assert max(delays) <= 2.0 and min(delays) >= 1.6


async def test_a_refusing_server_is_retried_at_the_sdk_pace_in_real_time() -> None:
    """Measured on the clock: against a server that refuses every upgrade, attempts come at 100 ms, 200 ms,
    400 ms... apart, not all at once and not with long gaps."""
    async with FakeStream(503) as server:
        client = StreamClient(API_KEY, Trader().config, url=server.url, rng=random.Random(3))
        await client.start()
        await until(lambda: server.attempts >= 5, timeout=10)
        await client.stop()
    times = server.attempt_times
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][:4]
    for gap, ceiling in zip(gaps, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert ceiling * 0.8 - 0.01 <= gap <= ceiling + 0.25


# ---------------------------------------------------------------- errors


async def test_bad_key_error_stops_after_one_attempt() -> None:
    async def refuse(conn: Conn) -> None:
        await conn.recv()
        await conn.send({"type": "error", "code": "invalid_api_key", "message": "unknown key"})
        await conn.ws.close()

    sleeps = Sleeps()
    states: list[tuple[str, str | None]] = []
    async with FakeStream(refuse, configure_then_hello) as server:
        client = make_client(
            server, Trader(), sleep=sleeps, on_state_change=lambda s, r: states.append((s, r))
        )
        await client.start()
        assert await client.wait_connected(5) is False
        assert client.state == NEEDS_ATTENTION
        assert client.reason is not None and "API key" in client.reason
        assert server.attempts == 1
        assert sleeps.delays == []
        assert [s for s, _ in states].count(NEEDS_ATTENTION) == 1
        events = [event async for event in client]  # the reason is the state's; iteration ends
        assert events == []
        await client.stop()
        assert client.state == NEEDS_ATTENTION


async def test_http_401_on_upgrade_is_terminal() -> None:
    sleeps = Sleeps()
    async with FakeStream(401) as server:
        client = make_client(server, Trader(), sleep=sleeps)
        await client.start()
        assert await client.wait_connected(5) is False
        assert client.state == NEEDS_ATTENTION and "401" in (client.reason or "")
        assert server.attempts == 1 and sleeps.delays == []


async def test_a_key_in_use_or_a_refused_configure_is_retried_until_the_stream_comes_back() -> None:
    async def in_use(conn: Conn) -> None:
        await conn.recv()
        await conn.send({"type": "error", "code": "session_limit", "message": "key in use"})
        await conn.ws.close(1008, "session_limit")

    async def rejected_after_hello(conn: Conn) -> None:
        # hello first, then the configure is refused and the server hangs up
        await conn.send(HELLO)
        await conn.recv()
        await conn.send({"type": "error", "code": "wallet_not_registered", "message": "register first"})
        await conn.ws.close()

    for script, words in ((in_use, "one session per key"), (rejected_after_hello, "not registered")):
        sleeps = Sleeps()
        reasons: list[str | None] = []
        async with FakeStream(script, script, configure_then_hello) as server:
            client = make_client(
                server, Trader(), sleep=sleeps,
                on_state_change=lambda s, r, seen=reasons: seen.append(r) if s == RECONNECTING else None,
            )
            await client.start()
            await until(lambda c=client, srv=server: srv.attempts >= 3 and c.state == CONNECTED)
            assert server.attempts == 3 and len(sleeps.delays) == 2
            assert words in (reasons[0] or "")  # the reason the trader is told if it lasts
            kinds = []
            while client.pending_count():
                kinds.append((await client.next_event()).type)
            # a refusal during the handshake is no event (no chat message every retry); a hello-first
            # server's refusal comes after the handshake, as an event of that session
            assert ("error" in kinds) == (script is rejected_after_hello)
            await client.stop()


async def test_error_for_one_request_after_handshake_is_an_event() -> None:
    async def answer_with_error(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        await conn.recv()  # close_position
        await conn.send({"type": "error", "code": "unknown_position", "message": "no such position"})
        await conn.send({"type": "error", "code": "invalid_strategy", "message": "bad override"})
        await conn.record_until_closed()

    async with FakeStream(answer_with_error) as server:
        client = make_client(server, Trader())
        await client.start()
        assert await client.wait_connected(5)
        assert await client.close_position(3) is True
        types = [(await client.next_event()).type for _ in range(3)]
        assert types == ["hello_ok", "error", "error"]
        assert client.state == CONNECTED
        await client.stop()


# ---------------------------------------------------------------- priority and coalescing


async def test_urgent_events_jump_ahead_of_a_pnl_backlog_and_pnl_is_coalesced() -> None:
    backlog = 10_000
    positions = 5

    async def flood(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        for i in range(backlog):
            await conn.send(pnl(i % positions, i))
        for i in range(100):
            await conn.send(
                {
                    "type": "trade_tick",
                    "position_id": 1,
                    "time_ms": i,
                    "side": "buy",
                    "token_amount": 1,
                    "quote_amount": 1,
                    "price_quote": i,
                }
            )
        await conn.send(exit_signal(3))
        await conn.record_until_closed()

    async with FakeStream(flood) as server:
        client = make_client(server, Trader())
        await client.start()
        total = 1 + backlog + 100 + 1
        await until(lambda: client.messages_received >= total, timeout=20)
        # memory stays bounded: one pnl per position, the tick ring, the two urgent events
        assert client.pending_count() == 2 + positions + 64

        first, second = await client.next_event(), await client.next_event()
        assert [first.type, second.type] == ["hello_ok", "exit_signal_with_tx"]
        assert second.urgent and second.data["unsigned_tx_b64"] == "AQID"

        rest = [await client.next_event() for _ in range(positions + 64)]
        pnls = [e for e in rest if e.type == "pnl_update"]
        assert sorted(e.position_id for e in pnls) == list(range(positions))
        for e in pnls:
            last_for_position = max(i for i in range(backlog) if i % positions == e.position_id)
            assert e.data["profit_units"] == last_for_position
        ticks = [e.data["time_ms"] for e in rest if e.type == "trade_tick"]
        assert ticks == list(range(36, 100))  # the newest 64, oldest dropped
        assert client.pending_count() == 0
        await client.stop()


async def test_consumer_waits_without_polling_and_wakes_on_an_event() -> None:
    async def later(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        await conn.recv()  # the test's ping asks for the exit signal
        await conn.send(exit_signal(1))
        await conn.record_until_closed()

    async with FakeStream(later) as server:
        client = make_client(server, Trader())
        await client.start()
        assert (await client.next_event()).type == "hello_ok"
        waiter = asyncio.create_task(client.next_event())
        await asyncio.sleep(0)
        assert not waiter.done()
        assert await client.request_exit_signal(1) is True
        event = await asyncio.wait_for(waiter, 5)
        assert event.is_exit_signal
        await client.stop()


async def test_noise_for_many_positions_stays_bounded() -> None:
    async def many(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        for position_id in range(10):
            await conn.send(pnl(position_id, position_id))
        await conn.record_until_closed()

    async with FakeStream(many) as server:
        client = make_client(server, Trader(), max_tracked_positions=3)
        await client.start()
        await until(lambda: client.messages_received >= 11)
        assert client.pending_count() == 1 + 3
        events = [await client.next_event() for _ in range(4)]
        assert [e.position_id for e in events[1:]] == [7, 8, 9]  # the most recent positions
        await client.stop()


# ---------------------------------------------------------------- odd input


async def test_unknown_market_type_unknown_messages_and_garbage() -> None:
    context = {"market_type": "moonshot_v9", "moonshot_v9": {"pool": "PooL111"}}

    async def odd(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        await conn.send("this is not json{")
        await conn.send(b"\x00\x01binary")
        await conn.send("[1, 2, 3]")
        await conn.send({"type": "exit_signal_with_tx", "position_id": 1})  # fails validation
        await conn.send({"type": "fancy_new_thing", "value": 1, "server_time_ms": 5})
        await conn.send(exit_signal(4, context))
        await conn.send(
            exit_signal(5, {"market_type": "pump_swap", "pumpswap": {"pool": "P", "global_config": "G"}})
        )
        await conn.record_until_closed()

    async with FakeStream(odd) as server:
        client = make_client(server, Trader())
        await client.start()
        events = [await client.next_event() for _ in range(4)]
        assert [e.type for e in events] == [
            "hello_ok",
            "exit_signal_with_tx",
            "exit_signal_with_tx",
            "fancy_new_thing",
        ]
        unknown_market = events[1]
        assert unknown_market.data["unsigned_tx_b64"] == "AQID"
        assert unknown_market.data["market_context"] == context
        assert unknown_market.market_type == "moonshot_v9" and not unknown_market.market_type_known
        assert events[2].data["market_context"]["pumpswap"]["pool"] == "P"  # kept as sent
        assert events[2].market_type_known
        raw = events[3]
        assert not raw.known and raw.data["value"] == 1 and raw.server_time_ms == 5
        assert client.frames_skipped == 4
        assert client.state == CONNECTED
        await client.stop()


def test_pnl_fast_path_agrees_with_the_sdk() -> None:

    good = dict(pnl(1, -5), token_price_quote=3, watched=True)
    event = parse_event(json.dumps(good), 1.0)
    assert event.data == server_message_from_obj(good)
    assert not event.urgent and event.server_time_ms == good["server_time_ms"]
    # an integral float is what the SDK coerces: it goes the SDK way and comes out an int
    coerced = parse_event(json.dumps(dict(good, profit_units=-5.0)), 1.0)
    assert coerced.data["profit_units"] == -5 and type(coerced.data["profit_units"]) is int
    for bad in (dict(good, position_id=True), dict(good, watched="yes"), dict(good, profit_units=1.5)):
        with pytest.raises(MalformedMessage):
            parse_event(json.dumps(bad), 1.0)
    missing = dict(good)
    del missing["proceeds_units"]
    with pytest.raises(MalformedMessage):
        parse_event(json.dumps(missing), 1.0)


def test_stream_event_helpers() -> None:
    event = StreamEvent("position_opened", {"position_id": 3}, 0.0, True)
    assert event.position_id == 3 and event.market_type is None and not event.is_exit_signal


# ---------------------------------------------------------------- stop


async def test_stop_is_bounded_even_when_the_server_never_answers() -> None:
    # A TCP server that accepts and never completes the websocket upgrade.
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    tcp = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        client = StreamClient(API_KEY, Trader().config, url=f"ws://127.0.0.1:{port}", hello_timeout=30)
        await client.start()
        await until(lambda: bool(accepted))
        started = time.monotonic()
        await client.stop(timeout=1.0)
        assert time.monotonic() - started < 1.5
        assert client.state == STOPPED
        with pytest.raises(StopAsyncIteration):
            await client.__aiter__().__anext__()
    finally:
        for writer in accepted:
            writer.close()
        tcp.close()
        await tcp.wait_closed()


async def test_stop_while_connected_ends_iteration() -> None:
    async with FakeStream() as server:
        client = make_client(server, Trader())
        await client.start()
        assert await client.wait_connected(5)
        seen: list[str] = []

        async def consume() -> None:
            async for event in client:
                seen.append(event.type)

        consumer = asyncio.create_task(consume())
        await until(lambda: seen == ["hello_ok"])
        started = time.monotonic()
        await client.stop(timeout=2.0)
        await asyncio.wait_for(consumer, 2)
        assert time.monotonic() - started < 2.5
        assert client.state == STOPPED
        assert await client.ping() is False


async def test_frames_cut_off_the_socket_keep_their_order_and_the_library_keeps_every_other_frame() -> None:
    """Unfragmented text frames are cut from the bytes by the client; a ping, a fragmented message, frames of
    every length encoding and a close still behave as the library makes them, in order."""
    big_tx = "A" * 70_000  # a 64-bit length
    mid_tx = "B" * 300  # a 16-bit length

    async def mixed(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        await conn.send(pnl(1, 1))
        await conn.send({**exit_signal(1), "unsigned_tx_b64": mid_tx})
        pong = await conn.ws.ping(b"are you there")  # answered by the library, whichever path read the rest
        await conn.send({"type": "trade_tick", "position_id": 9, "time_ms": 1, "side": "buy", "token_amount": 1,
                         "quote_amount": 1, "price_quote": 1})
        text = json.dumps({**exit_signal(2), "unsigned_tx_b64": big_tx})
        await conn.ws.send([text[:10], text[10:5000], text[5000:]])  # one message in three fragments
        await conn.send(exit_signal(3))
        await asyncio.wait_for(pong, 5)
        await conn.ws.close(1000, "done")

    async with FakeStream(mixed) as server:
        client = make_client(server, Trader(), ping_interval=None)
        await client.start()
        events = [await client.next_event() for _ in range(6)]
        cut = client._ws.frames_cut if client._ws is not None else -1
        await client.stop()
    urgent = [(e.type, e.data.get("position_id"), len(e.data.get("unsigned_tx_b64", ""))) for e in events if e.urgent]
    assert urgent == [("hello_ok", None, 0), ("exit_signal_with_tx", 1, 300), ("exit_signal_with_tx", 2, 70_000),
                      ("exit_signal_with_tx", 3, 4)]
    assert sorted(e.type for e in events if not e.urgent) == ["pnl_update", "trade_tick"]
    assert cut >= 3  # the cut path was taken (the frames after the handshake that were not fragments)


async def test_a_frame_declared_over_the_size_limit_ends_the_connection_at_its_header() -> None:
    """A text frame announcing a terabyte is refused as soon as its header is read (nothing waits for, or
    keeps, its body); the client reconnects and reads the next session as usual."""

    async def huge(conn: Conn) -> None:
        await conn.recv()
        await conn.send(HELLO)
        await conn.send(pnl(1, 1))
        conn.ws.transport.write(b"\x81\x7f" + (2**40).to_bytes(8, "big") + b"{")
        await conn.record_until_closed()

    async with FakeStream(huge, configure_then_hello) as server:
        client = make_client(server, Trader())
        await client.start()
        first = await server.conn(0)
        await asyncio.wait_for(first.closed.wait(), 5)
        await server.conn(1)
        await until(lambda: client.state == CONNECTED and client.connection == 2)
        assert client.frames_skipped == 0
        await client.stop()
