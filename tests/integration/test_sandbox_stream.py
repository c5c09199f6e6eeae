"""The sandbox LaserSell stream against the real sandbox chain, over a real websocket."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from lasersell_sdk.stream.proto import server_message_from_obj
from lasersell_sdk.tx import sign_unsigned_tx
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sandbox.accounts import Accounts
from sandbox.chain import Chain, RouterOrder, decode_router_data, routing_fee
from sandbox.control import ControlApi
from sandbox.stream import StreamServer

WAIT_S = 5.0


class StreamProbe:
    """A raw websocket client that keeps every message and checks each with the SDK parser."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.unparsed: list[dict[str, Any]] = []  # messages the SDK parser refused (faults only)
        self._seen = 0
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                try:
                    server_message_from_obj(message)
                except ValueError:
                    self.unparsed.append(message)
                self.messages.append(message)
                self._arrived.set()
        except ConnectionClosed:
            pass
        self._arrived.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def next(
        self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda m: True
    ) -> dict[str, Any]:
        """The next not-yet-taken message of this type (and matching `where`)."""

        async def find() -> dict[str, Any]:
            while True:
                for index in range(self._seen, len(self.messages)):
                    message = self.messages[index]
                    if message["type"] == kind and where(message):
                        self._seen = index + 1
                        return message
                if self._reader.done():
                    raise AssertionError(f"connection closed before {kind}; got {self.types()}")
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(find(), WAIT_S)

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]

    def taken_since(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages[self._seen :] if m["type"] == kind]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


class World:
    """One chain, one pool, one registered and funded trader, one stream."""

    def __init__(self, seed: int = 1, tier: str = "professional", **stream_options: Any) -> None:
        self.chain = Chain(seed=seed)
        self.accounts = Accounts(seed=seed)
        self.stream = StreamServer(self.chain, self.accounts, **stream_options)
        self.key = self.accounts.issue(tier).key
        self.trader = self.chain.keypair("trader")
        self.wallet = str(self.trader.pubkey())
        self.accounts.register_wallet(self.key, self.wallet)
        self.chain.fund(self.wallet, 50)
        self.mint = str(self.chain.create_mint("PEPE", 6, 100, 1_000_000_000))
        self.probes: list[StreamProbe] = []

    async def connect(self, key: str | None = None) -> StreamProbe:
        ws = await connect(self.stream.url, additional_headers={"x-api-key": key or self.key})
        probe = StreamProbe(ws)
        self.probes.append(probe)
        return probe

    async def session(self, strategy: dict[str, Any], **configure: Any) -> StreamProbe:
        probe = await self.connect()
        await probe.send(
            {"type": "configure", "wallet_pubkeys": [self.wallet], "strategy": strategy, **configure}
        )
        await probe.next("hello_ok")
        return probe

    async def position(self, probe: StreamProbe, sol: float = 1.0) -> dict[str, Any]:
        self.chain.outside_buy(self.wallet, self.mint, sol)
        self.stream.flush()
        return await probe.next("position_opened")

    def move(self, pct: float) -> None:
        self.chain.market_move(self.mint, pct)
        self.stream.flush()

    def land(self, signal: dict[str, Any]) -> None:
        tx = sign_unsigned_tx(signal["unsigned_tx_b64"], self.trader)
        self.chain.send_transaction(tx)
        self.stream.flush()

    async def close(self, allow_unparsed: bool = False) -> None:
        for probe in self.probes:
            await probe.close()
        await self.stream.stop()
        if not allow_unparsed:
            assert [m for p in self.probes for m in p.unparsed] == [], "the SDK parser refused a message"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    await w.stream.start()
    yield w
    await w.close()


def router_order_of(unsigned_tx_b64: str) -> RouterOrder:
    """The router order (amount, min_out, fee) inside an exit transaction."""
    tx = VersionedTransaction.from_bytes(base64.b64decode(unsigned_tx_b64))
    for ix in tx.message.instructions:
        order = decode_router_data(bytes(ix.data))
        if order is not None:
            return order
    raise AssertionError("no router instruction in the exit transaction")


def profit_pct(world: World, position: dict[str, Any]) -> float:
    tokens = world.chain.token_balance(world.wallet, world.mint)
    return (world.chain.quote_sell(world.mint, tokens) / position["entry_quote_units"] - 1) * 100


# -- the strategy engine ------------------------------------------------------------------------


async def test_take_profit_fires_once_at_target(world: World) -> None:
    probe = await world.session({"target_profit_pct": 20, "stop_loss_pct": 0})
    opened = await world.position(probe)
    assert opened["entry_quote_units"] == 1_000_000_000
    assert opened["market_context"] == {"market_type": "pump_fun", "pumpfun": {}}
    world.move(10)
    await probe.next("pnl_update", lambda m: m["profit_units"] > 0)
    assert not probe.taken_since("exit_signal_with_tx") and "exit_signal_with_tx" not in probe.types()
    world.move(15)
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "take_profit"
    assert profit_pct(world, opened) >= 20
    assert signal["profit_units"] > 200_000_000
    assert signal["position_tokens"] == opened["tokens"]
    world.move(5)  # still above target: no second signal for the same trigger
    await probe.next("pnl_update", lambda m: m["profit_units"] > signal["profit_units"])
    assert [m["reason"] for m in probe.messages if m["type"] == "exit_signal_with_tx"] == ["take_profit"]
    world.land(signal)
    closed = await probe.next("position_closed")
    assert closed["reason"] == "sold" and world.chain.token_balance(world.wallet, world.mint) == 0


async def test_stop_loss_fires_below_threshold(world: World) -> None:
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 10})
    opened = await world.position(probe)
    world.move(-5)
    await probe.next("pnl_update", lambda m: m["profit_units"] < 0)
    assert "exit_signal_with_tx" not in probe.types()
    world.move(-6)
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "stop_loss"
    assert profit_pct(world, opened) <= -10


async def test_trailing_stop_measures_from_the_peak(world: World) -> None:
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 0, "trailing_stop_pct": 10})
    await world.position(probe)
    world.move(30)
    world.move(-5)  # about 6.5 points off the peak profit of 30 %
    await probe.next("pnl_update", lambda m: m["profit_units"] > 0)
    assert "exit_signal_with_tx" not in probe.types()
    world.move(-5)  # about 12.7 points off: past the 10 % trail
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "trailing_stop"
    assert signal["profit_units"] > 0  # the trail locked in profit


async def test_breakeven_trail_exits_when_profit_falls_the_trail_below_breakeven(world: World) -> None:
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 10, "breakeven_trail_pct": 5})
    opened = await world.position(probe)
    world.move(10)  # in profit: the trail is armed at breakeven
    world.move(-12)  # about -3 %: less than 5 % below breakeven
    await probe.next("pnl_update", lambda m: m["profit_units"] < 0)
    assert "exit_signal_with_tx" not in probe.types()
    world.move(-3)  # about -6 %
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "breakeven_trail"
    assert -10 < profit_pct(world, opened) <= -5


async def test_three_level_ladder_sells_shares_of_what_remains(world: World) -> None:
    levels = [
        {"profit_pct": 10, "sell_pct": 25, "trailing_stop_pct": 0},
        {"profit_pct": 25, "sell_pct": 50, "trailing_stop_pct": 0},
        {"profit_pct": 50, "sell_pct": 100, "trailing_stop_pct": 0},
    ]
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 90, "take_profit_levels": levels})
    opened = await world.position(probe)
    original = opened["tokens"]
    world.move(12)
    first = await probe.next("exit_signal_with_tx")
    assert (first["reason"], first["level_index"], first["sell_tokens"]) == ("take_profit", 0, original // 4)
    world.land(first)
    balance = await probe.next("balance_update")
    left = original - original // 4
    assert balance["tokens"] == left
    world.move(14)
    second = await probe.next("exit_signal_with_tx")
    assert (second["level_index"], second["sell_tokens"]) == (1, left // 2)  # half of the rest
    assert second["position_tokens"] == left
    world.land(second)
    await probe.next("balance_update")
    world.move(25)
    third = await probe.next("exit_signal_with_tx")
    remaining = world.chain.token_balance(world.wallet, world.mint)
    assert (third["level_index"], third["sell_tokens"]) == (2, remaining)
    world.land(third)
    assert (await probe.next("position_closed"))["reason"] == "sold"
    assert sorted(m["level_index"] for m in probe.messages if m["type"] == "exit_signal_with_tx") == [0, 1, 2]


async def test_sell_on_graduation(world: World) -> None:
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 50, "sell_on_graduation": True})
    await world.position(probe)
    world.move(3)
    world.chain.graduate(world.mint)
    world.stream.flush()
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "graduation"
    pool = str(world.chain.pool(world.mint).address)
    assert signal["market_context"] == {"market_type": "pump_swap", "pumpswap": {"pool": pool}}


async def test_liquidity_snapshots_show_bands_and_a_draining_trend(world: World) -> None:
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 10})
    await world.position(probe, sol=3.0)
    first = await probe.next("liquidity_snapshot")
    assert first["liquidity_trend"] == "stable"
    coverage = {band["slippage_bps"]: band["coverage_pct"] for band in first["bands"]}
    assert coverage[500] == 100 and 0 < coverage[100] < 100  # 3 SOL is about 3 % of the pool
    world.chain.drain(world.mint, 80)
    world.chain.advance_slots(10)  # 4 s of sandbox time: the next snapshot is due
    world.stream.flush()
    snapshot = await probe.next("liquidity_snapshot")
    band = {b["slippage_bps"]: b for b in snapshot["bands"]}
    assert snapshot["liquidity_trend"] == "draining"
    assert band[500]["coverage_pct"] < 50
    assert band[100]["max_tokens"] < band[500]["max_tokens"] < band[2000]["max_tokens"]


# -- client requests ----------------------------------------------------------------------------


async def test_request_exit_signal_slippage_sets_min_out(world: World) -> None:
    probe = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50})
    opened = await world.position(probe)
    await probe.send(
        {"type": "request_exit_signal", "position_id": opened["position_id"], "slippage_bps": 1234}
    )
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "manual"
    gross = world.chain.quote_sell(world.mint, opened["tokens"])
    net = gross - routing_fee("professional", "SOL", gross)  # the key's tier pays its routing fee
    order = router_order_of(signal["unsigned_tx_b64"])
    assert (order.amount_in, order.min_out) == (opened["tokens"], net * (10_000 - 1234) // 10_000)
    await probe.send({"type": "sell_now", "token_account": opened["token_account"]})
    default = await probe.next("exit_signal_with_tx")
    assert default["reason"] == "sell_now"
    assert router_order_of(default["unsigned_tx_b64"]).min_out == net * (10_000 - 500) // 10_000


async def test_close_position_and_overrides(world: World) -> None:
    probe = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50})
    opened = await world.position(probe)
    pid = opened["position_id"]
    await probe.send(
        {
            "type": "update_position_strategy",
            "position_id": pid,
            "strategy": {"target_profit_pct": 5, "stop_loss_pct": 0},
        }
    )
    await probe.send({"type": "ping", "client_time_ms": 1})
    await probe.next("pong")
    world.move(8)
    assert (await probe.next("exit_signal_with_tx"))["reason"] == "take_profit"
    await probe.send({"type": "close_position", "position_id": pid})
    closed = await probe.next("position_closed")
    assert closed["reason"] == "closed_by_user"
    assert world.chain.token_balance(world.wallet, world.mint) == opened["tokens"]  # no sell
    await probe.send({"type": "request_exit_signal", "position_id": pid})
    assert (await probe.next("error"))["code"] == "unknown_position"
    await probe.close()
    again = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50})
    await again.send({"type": "ping", "client_time_ms": 4})
    await again.next("pong")
    assert "position_opened" not in again.types()  # closed by the trader: not tracked again
    world.chain.outside_buy(world.wallet, world.mint, 0.5)
    world.stream.flush()
    fresh = await again.next("position_opened")  # buying more starts a new position
    assert fresh["position_id"] != pid and fresh["tokens"] > opened["tokens"]


async def test_positions_survive_a_reconnect(world: World) -> None:
    probe = await world.session({"target_profit_pct": 50, "stop_loss_pct": 0})
    opened = await world.position(probe)
    await probe.close()
    again = await world.session({"target_profit_pct": 50, "stop_loss_pct": 0})
    balance = await again.next("balance_update")
    reopened = await again.next("position_opened")
    assert balance["tokens"] == opened["tokens"]
    assert reopened["token_account"] == opened["token_account"]


# -- the session ----------------------------------------------------------------------------------


async def test_bad_api_key_is_refused(world: World) -> None:
    probe = await world.connect("ls_not_a_key")
    error = await probe.next("error")
    assert error["code"] == "invalid_api_key"
    await asyncio.wait_for(probe._reader, WAIT_S)
    assert probe.ws.close_code is not None


async def test_second_session_for_a_key_is_refused(world: World) -> None:
    first = await world.session({"target_profit_pct": 10, "stop_loss_pct": 0})
    second = await world.connect()
    assert (await second.next("error"))["code"] == "session_limit"
    await first.send({"type": "ping", "client_time_ms": 2})
    assert (await first.next("pong"))["server_time_ms"] == world.chain.now_ms()


async def test_too_many_wallets_keeps_the_session() -> None:
    w = World(tier="free")
    await w.stream.start()
    try:
        other = str(Keypair().pubkey())
        w.accounts.register_wallet(w.key, other)
        probe = await w.connect()
        strategy = {"target_profit_pct": 10, "stop_loss_pct": 0}
        await probe.send({"type": "configure", "wallet_pubkeys": [w.wallet, other], "strategy": strategy})
        assert (await probe.next("error"))["code"] == "capacity_exceeded"
        await probe.send({"type": "configure", "wallet_pubkeys": [w.wallet], "strategy": strategy})
        hello = await probe.next("hello_ok")
        assert hello["limits"]["max_wallets_per_session"] == 1
        await probe.send({"type": "update_wallets", "wallet_pubkeys": [w.wallet, other]})
        assert (await probe.next("error"))["code"] == "capacity_exceeded"
        await probe.send(
            {"type": "configure", "wallet_pubkeys": [str(Keypair().pubkey())], "strategy": strategy}
        )
        assert (await probe.next("error"))["code"] == "wallet_not_registered"
    finally:
        await w.close()


async def test_invalid_strategy_and_messages_keep_the_session(world: World) -> None:
    probe = await world.connect()
    await probe.send(
        {
            "type": "configure",
            "wallet_pubkeys": [world.wallet],
            "strategy": {"target_profit_pct": 0, "stop_loss_pct": 0},
        }
    )
    assert (await probe.next("error"))["code"] == "invalid_strategy"
    await probe.send(
        {
            "type": "configure",
            "wallet_pubkeys": [world.wallet],
            "strategy": {"target_profit_pct": 10, "stop_loss_pct": 0},
        }
    )
    await probe.next("hello_ok")
    await probe.send({"type": "update_strategy", "strategy": {"target_profit_pct": -1, "stop_loss_pct": 5}})
    assert (await probe.next("error"))["code"] == "invalid_strategy"
    levels = [{"profit_pct": 10, "sell_pct": 0}, {"profit_pct": 20, "sell_pct": 40}]
    await probe.send(
        {
            "type": "update_strategy",
            "strategy": {"target_profit_pct": 0, "stop_loss_pct": 0, "take_profit_levels": levels},
        }
    )
    assert (await probe.next("error"))["code"] == "invalid_strategy"
    await probe.ws.send("{not json")
    assert (await probe.next("error"))["code"] == "invalid_message"
    await probe.send({"type": "fly_to_the_moon"})
    assert (await probe.next("error"))["code"] == "invalid_message"
    await probe.send({"type": "ping", "client_time_ms": 3})
    await probe.next("pong")
    session = world.stream.session_for(world.key)
    assert session is not None and session.last_configure["strategy"]["target_profit_pct"] == 10


async def test_hello_first_mode() -> None:
    w = World(hello_first=True)
    await w.stream.start()
    try:
        probe = await w.connect()
        hello = await probe.next("hello_ok")  # before the client said anything
        assert hello["limits"]["hi_capacity"] == 256 and hello["limits"]["pnl_flush_ms"] == 100
        await probe.send(
            {
                "type": "configure",
                "wallet_pubkeys": [w.wallet],
                "strategy": {"target_profit_pct": 10, "stop_loss_pct": 0},
            }
        )
        opened = await w.position(probe)
        assert opened["wallet_pubkey"] == w.wallet
        assert probe.types().count("hello_ok") == 1
    finally:
        await w.close()


async def test_faults_through_the_control_api(world: World) -> None:
    control = ControlApi(world.chain, world.accounts, world.stream)
    await control.start()
    try:
        async with httpx.AsyncClient(base_url=control.url) as http:
            probe = await world.session({"target_profit_pct": 10, "stop_loss_pct": 0})
            assert (await http.post("/sim/faults", json={"unknown_market_type": True})).status_code == 200
            buy = await http.post("/sim/buy", json={"wallet": world.wallet, "mint": world.mint, "sol": 1})
            assert buy.status_code == 200 and buy.json()["tokens"] > 0
            opened = await probe.next("position_opened")
            assert opened["market_context"]["market_type"] == "moonshot_v9"
            assert probe.unparsed == [opened]
            probe.unparsed.clear()
            bad = await http.post("/sim/market", json={"mint": world.mint})
            assert bad.status_code == 400 and "pct" in bad.json()["error"]
            state = (await http.get("/sim/state")).json()
            assert state["sessions"][0]["strategy"] == {"target_profit_pct": 10, "stop_loss_pct": 0}
            assert state["positions"][0]["wallet_pubkey"] == world.wallet
            await http.post("/sim/faults", json={"refuse_connections_for_s": 30})
            with pytest.raises(InvalidStatus) as refused:
                await connect(world.stream.url, additional_headers={"x-api-key": world.key})
            assert refused.value.response.status_code == 503
            await http.post("/sim/faults", json={"refuse_connections_for_s": 0})
            dropped = (await http.post("/sim/faults", json={"drop_connections": True})).json()
            assert dropped["applied"]["drop_connections"] == 1
    finally:
        await control.stop()


async def test_same_seed_same_stream() -> None:
    async def run() -> list[dict[str, Any]]:
        w = World(seed=5)
        await w.stream.start()
        try:
            probe = await w.session({"target_profit_pct": 20, "stop_loss_pct": 10})
            await w.position(probe)
            w.chain.advance_slots(3)
            w.move(30)
            signal = await probe.next("exit_signal_with_tx")
            w.land(signal)
            await probe.next("position_closed")
            # The router's program id is random on every chain (it is not published), so the
            # transaction bytes and signatures differ between runs; everything else is the same.
            volatile = ("unsigned_tx_b64", "tx_signature")
            return [{k: v for k, v in m.items() if k not in volatile} for m in probe.messages]
        finally:
            await w.close()

    first, second = await run(), await run()
    assert first == second
    assert any(m["type"] == "exit_signal_with_tx" for m in first)


async def test_free_tier_session_closes_after_inactivity() -> None:
    w = World(tier="free", free_inactivity_timeout_s=0.05)
    await w.stream.start()
    try:
        probe = await w.session({"target_profit_pct": 10, "stop_loss_pct": 0})
        assert (await probe.next("error"))["code"] == "inactivity_timeout"
        await asyncio.wait_for(probe._reader, WAIT_S)
        assert w.stream.session_for(w.key) is None
        again = await w.session({"target_profit_pct": 10, "stop_loss_pct": 0})  # a new session is welcome
        assert again.types()[0] == "hello_ok"
    finally:
        await w.close()


