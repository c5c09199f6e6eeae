"""The sandbox stream follows the official protocol where our first reading was wrong.

Each test fails if the old reading comes back: ladder shares of the original position, a
liquidity_guard that exits by itself, strategies with no exit condition accepted, position ids kept
across sessions, tips built regardless of the send mode.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.control import ControlApi
from tests.integration import test_sandbox_stream
from tests.integration.test_sandbox_stream import StreamProbe, World, profit_pct

world = test_sandbox_stream.world  # the stream tests' fixture: a chain, a key and a running stream


def held_profit_pct(world: World, opened: dict[str, Any]) -> float:
    """Profit of the tokens still held against their share of the entry."""
    tokens = world.chain.token_balance(world.wallet, world.mint)
    basis = opened["entry_quote_units"] * tokens / opened["tokens"]
    return (world.chain.quote_sell(world.mint, tokens) / basis - 1) * 100


def exits(probe: StreamProbe) -> list[dict[str, Any]]:
    return [m for m in probe.messages if m["type"] == "exit_signal_with_tx"]


async def settle_pnl(world: World, probe: StreamProbe) -> dict[str, Any]:
    """The pnl_update for the price just set: a positive event before checking that nothing else came."""
    tokens = world.chain.token_balance(world.wallet, world.mint)
    proceeds = world.chain.quote_sell(world.mint, tokens)
    return await probe.next("pnl_update", lambda m: m["proceeds_units"] == proceeds)


def tip_accounts(world: World) -> list[str]:
    return [str(a) for a in world.chain.tip_accounts]


def tips_paid(world: World, before: dict[str, int]) -> int:
    return sum(world.chain.balance(a) - before[a] for a in before)


# -- the ladder ------------------------------------------------------------------------------------


async def test_ladder_levels_sell_shares_of_what_remains(world: World) -> None:
    # 25:30 50:50 100:100 (profit:sell): 30 %, then half of the rest, then the rest.
    levels = [
        {"profit_pct": 25, "sell_pct": 30},
        {"profit_pct": 50, "sell_pct": 50},
        {"profit_pct": 100, "sell_pct": 100},
    ]
    # a ladder alone is no exit condition (the docs): a far stop loss makes the strategy valid
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 90, "take_profit_levels": levels})
    opened = await world.position(probe)
    original = opened["tokens"]

    world.move(30)
    first = await probe.next("exit_signal_with_tx")
    assert (first["level_index"], first["sell_tokens"]) == (0, original * 30 // 100)
    world.land(first)
    left = original - original * 30 // 100
    assert (await probe.next("balance_update"))["tokens"] == left

    world.move(20)
    assert 50 <= held_profit_pct(world, opened) < 100
    second = await probe.next("exit_signal_with_tx")
    assert (second["level_index"], second["sell_tokens"]) == (1, left // 2)
    world.land(second)
    left -= left // 2
    assert (await probe.next("balance_update"))["tokens"] == left

    world.move(40)
    third = await probe.next("exit_signal_with_tx")
    assert (third["level_index"], third["sell_tokens"]) == (2, left)
    world.land(third)
    assert (await probe.next("position_closed"))["reason"] == "sold"
    assert world.chain.token_balance(world.wallet, world.mint) == 0


async def test_target_profit_still_caps_a_ladder(world: World) -> None:
    levels = [{"profit_pct": 10, "sell_pct": 25}, {"profit_pct": 80, "sell_pct": 100}]
    probe = await world.session({"target_profit_pct": 40, "stop_loss_pct": 0, "take_profit_levels": levels})
    opened = await world.position(probe)
    world.move(15)
    first = await probe.next("exit_signal_with_tx")
    world.land(first)
    await probe.next("balance_update")
    world.move(40)  # past the 40 % cap, short of the 80 % level: the rest goes
    cap = await probe.next("exit_signal_with_tx")
    assert cap["reason"] == "take_profit" and "level_index" not in cap
    assert cap["position_tokens"] == opened["tokens"] - first["sell_tokens"]


# -- liquidity_guard ---------------------------------------------------------------------------------


async def test_liquidity_guard_never_exits_by_itself(world: World) -> None:
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 50, "liquidity_guard": True})
    await world.position(probe, sol=3.0)
    world.chain.drain(world.mint, 90)
    world.chain.advance_slots(10)
    world.stream.flush()
    snapshot = await probe.next("liquidity_snapshot", lambda m: m["liquidity_trend"] == "draining")
    assert snapshot["bands"][0]["coverage_pct"] < 100
    assert exits(probe) == []


async def test_liquidity_guard_holds_an_exit_until_the_pool_can_take_it() -> None:
    # Exits are built at 1 % slippage here, so a 1.5 SOL position in a 100 SOL pool is too big for it.
    world = World(default_slippage_bps=100)
    await world.stream.start()
    try:
        probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 30, "liquidity_guard": True})
        opened = await world.position(probe, sol=1.5)
        world.move(-35)
        await settle_pnl(world, probe)
        assert profit_pct(world, opened) <= -30  # the stop loss is hit...
        assert exits(probe) == []  # ...and held: the pool cannot take the sell within 1 %
        [held] = world.stream.state()["positions"]
        assert held["exits_held"] == [{"reason": "stop_loss", "sell_tokens": opened["tokens"]}]
        # Sellers deepen the token side of the pool until the whole position fits within 1 %.
        for _ in range(10):
            if world.stream.max_tokens_within(world.mint, 100) >= opened["tokens"]:
                break
            assert exits(probe) == []
            world.move(-15)
            await settle_pnl(world, probe)
        else:
            raise AssertionError("the pool never got deep enough")
        # Sent with the flush that made the pool deep enough, before that flush's pnl_update.
        [signal] = exits(probe)
        assert signal["reason"] == "stop_loss" and signal["position_tokens"] == opened["tokens"]
    finally:
        await world.close()


async def test_liquidity_guard_lets_a_held_exit_go_after_its_timeout() -> None:
    world = World(default_slippage_bps=100, liquidity_guard_timeout_ms=10_000)
    await world.stream.start()
    try:
        probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 30, "liquidity_guard": True})
        await world.position(probe, sol=1.5)
        world.move(-35)
        await settle_pnl(world, probe)
        assert exits(probe) == []
        world.chain.advance_slots(30)  # 12 s of sandbox time
        world.stream.flush()
        signal = await probe.next("exit_signal_with_tx")
        assert signal["reason"] == "stop_loss"
    finally:
        await world.close()


# -- strategy validity -----------------------------------------------------------------------------


async def test_strategy_without_an_exit_condition_is_refused(world: World) -> None:
    probe = await world.connect()
    no_exit = {
        "target_profit_pct": 0,
        "stop_loss_pct": 0,
        "sell_on_graduation": True,
        "liquidity_guard": True,
        "breakeven_trail_pct": 5,
    }
    await probe.send({"type": "configure", "wallet_pubkeys": [world.wallet], "strategy": no_exit})
    error = await probe.next("error")
    assert error["code"] == "invalid_strategy" and "target_profit_pct" in error["message"]
    for bad in ({"stop_loss_pct": 100}, {"trailing_stop_pct": 150}, {"target_profit_pct": -5}):
        strategy = {"target_profit_pct": 10, "stop_loss_pct": 5, **bad}
        await probe.send({"type": "configure", "wallet_pubkeys": [world.wallet], "strategy": strategy})
        assert (await probe.next("error"))["code"] == "invalid_strategy", bad
    # A ladder alone is not an exit condition: the docs list only target, stop loss, trailing stop and
    # the deadline.
    ladder = {
        "target_profit_pct": 0,
        "stop_loss_pct": 0,
        "take_profit_levels": [{"profit_pct": 20, "sell_pct": 50}],
    }
    await probe.send({"type": "configure", "wallet_pubkeys": [world.wallet], "strategy": ladder})
    assert (await probe.next("error"))["code"] == "invalid_strategy"
    # A deadline on configure is an exit condition (the docs).
    await probe.send(
        {
            "type": "configure",
            "wallet_pubkeys": [world.wallet],
            "strategy": no_exit,
            "deadline_timeout_sec": 60,
        }
    )
    await probe.next("hello_ok")
    assert [m["type"] for m in probe.messages].count("error") == 5


async def test_trailing_stop_waits_for_profit(world: World) -> None:
    probe = await world.session({"target_profit_pct": 0, "stop_loss_pct": 0, "trailing_stop_pct": 10})
    opened = await world.position(probe)
    world.move(-20)  # 20 points down from the start, never in profit: not armed
    await settle_pnl(world, probe)
    assert exits(probe) == []
    world.move(60)  # about +28 %: armed
    await settle_pnl(world, probe)
    assert exits(probe) == [] and profit_pct(world, opened) > 10
    world.move(-10)
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "trailing_stop" and signal["profit_units"] > 0


# -- sessions -----------------------------------------------------------------------------------------


async def test_a_reconnect_is_a_new_session_with_new_position_ids(world: World) -> None:
    strategy = {"target_profit_pct": 50, "stop_loss_pct": 0}
    first = await world.session(strategy)
    hello = first.messages[0]
    opened = await world.position(first)
    await first.close()
    again = await world.session(strategy)
    second_hello = (
        await again.next("hello_ok") if again.messages[0]["type"] != "hello_ok" else again.messages[0]
    )
    assert second_hello["session_id"] != hello["session_id"]
    balance = await again.next("balance_update")
    reopened = await again.next("position_opened")
    assert balance["token_account"] == reopened["token_account"] == opened["token_account"]
    assert reopened["position_id"] != opened["position_id"]
    # The new id works; the old one is unknown in this session.
    await again.send({"type": "request_exit_signal", "position_id": opened["position_id"]})
    assert (await again.next("error"))["code"] == "unknown_position"
    await again.send({"type": "request_exit_signal", "position_id": reopened["position_id"]})
    signal = await again.next("exit_signal_with_tx")
    assert (
        signal["session_id"] == second_hello["session_id"]
        and signal["position_id"] == reopened["position_id"]
    )


async def test_refused_sessions_fault_answers_session_limit_then_lets_in(world: World) -> None:
    control = ControlApi(world.chain, world.accounts, world.stream)
    await control.start()
    try:
        async with httpx.AsyncClient(base_url=control.url) as client:
            reply = await client.post("/sim/faults", json={"refuse_sessions": 2})
            assert reply.json()["applied"]["refuse_sessions"] == {"count": 2, "code": "session_limit"}
        for _ in range(2):
            refused = await world.connect()
            assert (await refused.next("error"))["code"] == "session_limit"
        probe = await world.session({"target_profit_pct": 10, "stop_loss_pct": 0})
        assert probe.messages[0]["type"] == "hello_ok"
        assert world.stream.connection_attempts[world.key] == 3
    finally:
        await control.stop()


async def test_free_tier_limits_and_no_liquidity_snapshots() -> None:
    world = World(tier="free")
    await world.stream.start()
    try:
        probe = await world.session({"target_profit_pct": 10, "stop_loss_pct": 0})
        limits = probe.messages[0]["limits"]
        assert (limits["max_positions_per_wallet"], limits["max_positions_per_session"]) == (2, 2)
        await world.position(probe)
        world.move(5)
        await settle_pnl(world, probe)
        assert "liquidity_snapshot" not in probe.types()
    finally:
        await world.close()


async def test_free_tier_tracks_two_positions_and_says_when_full() -> None:
    world = World(tier="free")
    await world.stream.start()
    try:
        probe = await world.session({"target_profit_pct": 50, "stop_loss_pct": 0})
        mints = [str(world.chain.create_mint(f"T{i}", 6, 50, 1_000_000_000)) for i in range(3)]
        for mint in mints[:2]:
            world.chain.outside_buy(world.wallet, mint, 0.1)
            world.stream.flush()
            await probe.next("position_opened", lambda m, mint=mint: m["mint"] == mint)
        world.chain.outside_buy(world.wallet, mints[2], 0.1)
        world.stream.flush()
        error = await probe.next("error")
        assert error["code"] == "capacity_exceeded" and "max_positions_per_wallet" in error["message"]
        world.chain.outside_buy(world.wallet, mints[2], 0.1)  # told once, not on every change
        world.stream.flush()
        await probe.send({"type": "ping", "client_time_ms": 1})
        await probe.next("pong")  # the session stays open
        assert probe.types().count("error") == 1
        assert [m["mint"] for m in probe.messages if m["type"] == "position_opened"] == mints[:2]
    finally:
        await world.close()


# -- send mode and tips ----------------------------------------------------------------------------


@pytest.mark.parametrize(("send_mode", "tip_paid"), [("rpc", 0), ("helius_sender", 300_000)])
async def test_a_tipped_send_mode_adds_the_tip_and_plain_rpc_none(world: World, send_mode: str, tip_paid: int) -> None:
    probe = await world.session(
        {"target_profit_pct": 100, "stop_loss_pct": 50}, send_mode=send_mode, tip_lamports=300_000
    )
    opened = await world.position(probe)
    await probe.send({"type": "request_exit_signal", "position_id": opened["position_id"]})
    signal = await probe.next("exit_signal_with_tx")
    before = {a: world.chain.balance(a) for a in tip_accounts(world)}
    world.land(signal)
    await probe.next("position_closed")
    assert tips_paid(world, before) == tip_paid


async def test_exits_default_to_rpc_and_a_named_sender_tips_1000(world: World) -> None:
    # client-messages.mdx: send_mode defaults to "rpc"; tip_lamports defaults to 1000.
    probe = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50})
    opened = await world.position(probe)
    await probe.send({"type": "request_exit_signal", "position_id": opened["position_id"]})
    plain = await probe.next("exit_signal_with_tx")
    await probe.send(
        {
            "type": "configure",
            "wallet_pubkeys": [world.wallet],
            "strategy": {"target_profit_pct": 100, "stop_loss_pct": 50},
            "send_mode": "helius_sender",
        }
    )
    await probe.next("position_opened")
    before = {a: world.chain.balance(a) for a in tip_accounts(world)}
    world.land(plain)
    await probe.next("position_closed")
    assert tips_paid(world, before) == 0
    world.chain.outside_buy(world.wallet, world.mint, 1.0)
    world.stream.flush()
    again = await probe.next("position_opened")
    await probe.send({"type": "request_exit_signal", "position_id": again["position_id"]})
    tipped = await probe.next("exit_signal_with_tx")
    world.land(tipped)
    await probe.next("position_closed")
    assert tips_paid(world, before) == 1000


async def test_server_side_deadline_exits_an_old_position(world: World) -> None:
    probe = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50}, deadline_timeout_sec=10)
    await world.position(probe)
    world.chain.advance_slots(20)  # 8 s
    world.stream.flush()
    await settle_pnl(world, probe)
    assert exits(probe) == []
    world.chain.advance_slots(10)  # 12 s
    world.stream.flush()
    signal = await probe.next("exit_signal_with_tx")
    assert signal["reason"] == "deadline"


async def test_liquidity_guard_scales_a_ladder_level_down_and_leaves_the_rest_to_the_next() -> None:
    world = World(default_slippage_bps=300)
    await world.stream.start()
    try:
        levels = [
            {"profit_pct": 10, "sell_pct": 100},
            {"profit_pct": 60, "sell_pct": 50},
            {"profit_pct": 500, "sell_pct": 100},
        ]
        strategy = {
            "target_profit_pct": 0,
            "stop_loss_pct": 90,
            "take_profit_levels": levels,
            "liquidity_guard": True,
        }
        probe = await world.session(strategy)
        opened = await world.position(probe, sol=5.0)
        world.move(12)
        first = await probe.next("exit_signal_with_tx")
        room = world.stream.max_tokens_within(world.mint, 300)
        # The pool takes only `room` within 3 %: level 0 sells that much, not the whole position.
        assert first["level_index"] == 0 and first["sell_tokens"] == room < opened["tokens"]
        world.land(first)
        await probe.next("balance_update")
        world.move(80)
        second = await probe.next("exit_signal_with_tx")
        # Level 1 sells half of what level 0 left.
        assert (second["level_index"], second["sell_tokens"]) == (1, (opened["tokens"] - room) // 2)
    finally:
        await world.close()


# -- hostile signals from the control API ------------------------------------------------------------


async def test_burst_sends_the_same_genuine_looking_exit_several_times(world: World) -> None:
    control = ControlApi(world.chain, world.accounts, world.stream)
    await control.start()
    try:
        probe = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50})
        opened = await world.position(probe)
        async with httpx.AsyncClient(base_url=control.url) as client:
            reply = await client.post(
                "/sim/hostile", json={"wallet": world.wallet, "mint": world.mint, "kind": "burst", "count": 3}
            )
            assert reply.status_code == 200 and reply.json()["sent"] == 3
            missing = await client.post("/sim/hostile", json={"wallet": world.wallet, "kind": "burst"})
            assert missing.status_code == 400 and "mint" in missing.json()["error"]
            unknown = await client.post(
                "/sim/hostile", json={"wallet": world.wallet, "mint": world.mint, "kind": "nice"}
            )
            assert unknown.status_code == 400 and "steal_sol" in unknown.json()["error"]
        signals = [await probe.next("exit_signal_with_tx") for _ in range(3)]
        assert {s["unsigned_tx_b64"] for s in signals} == {signals[0]["unsigned_tx_b64"]}
        assert all(s["reason"] == "stop_loss" and s["position_id"] == opened["position_id"] for s in signals)
        world.land(signals[0])
        await probe.next("position_closed")
        assert world.chain.token_balance(world.wallet, world.mint) == 0
    finally:
        await control.stop()


async def test_every_hostile_kind_arrives_as_a_genuine_looking_exit(world: World) -> None:
    control = ControlApi(world.chain, world.accounts, world.stream)
    await control.start()
    try:
        probe = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50})
        opened = await world.position(probe)
        other = str(world.chain.create_mint("OTHER", 6, 50, 1_000_000_000))
        world.chain.outside_buy(world.wallet, other, 0.2)  # for steal_other_token
        world.stream.flush()
        await probe.next("position_opened", lambda m: m["mint"] == other)
        await probe.send({"type": "request_exit_signal", "position_id": opened["position_id"]})
        genuine = await probe.next("exit_signal_with_tx")
        kinds = [
            "steal_position",
            "steal_sol",
            "steal_other_token",
            "set_authority",
            "approve",
            "cpi_drain",
            "tip_over_cap",
        ]
        same = ("unsigned_tx_b64", "reason", "triggered_at_ms")
        async with httpx.AsyncClient(base_url=control.url) as client:
            for kind in kinds:
                body = {"api_key": world.key, "token_account": opened["token_account"], "kind": kind}
                reply = await client.post("/sim/hostile", json=body)
                assert reply.status_code == 200, (kind, reply.text)
                signal = await probe.next("exit_signal_with_tx")
                looks = {k: v for k, v in signal.items() if k not in same}
                assert looks == {k: v for k, v in genuine.items() if k not in same}, kind
                assert signal["reason"] == "stop_loss"
                assert signal["unsigned_tx_b64"] != genuine["unsigned_tx_b64"]
        # Signed and landed, the stolen position leaves the wallet and pays it nothing.
        steal = exits(probe)[1]
        lamports = world.chain.balance(world.wallet)
        world.land(steal)
        assert world.chain.token_balance(world.wallet, world.mint) == 0
        assert world.chain.balance(world.wallet) < lamports
    finally:
        await control.stop()


# -- USD1 markets ------------------------------------------------------------------------------------


async def test_usd1_position_reports_usd1_units_and_its_market(world: World) -> None:
    usd1 = str(world.chain.usd1_mint)
    mint = str(world.chain.create_mint("DOLR", 6, 50_000, 1_000_000_000, quote="USD1"))
    world.chain.fund_usd1(world.wallet, 500)
    probe = await world.session({"target_profit_pct": 100, "stop_loss_pct": 50})
    world.chain.outside_buy(world.wallet, mint, 100)  # 100 USD1
    world.stream.flush()
    opened = await probe.next("position_opened", lambda m: m["mint"] == mint)
    assert opened["entry_quote_units"] == 100_000_000  # USD1 base units, 6 decimals
    # The USD1 the wallet holds is its quote money, not a position.
    assert "error" not in probe.types()
    assert [m["mint"] for m in probe.messages if m["type"] == "position_opened"] == [mint]
    pool = world.chain.pool(mint)
    user_usd1 = str(world.chain.ata(world.wallet, usd1))
    assert opened["market_context"]["market_type"] == "raydium_launchpad"
    context = opened["market_context"]["raydium_launchpad"]
    assert (context["pool"], context["quote_mint"], context["user_quote_account"]) == (
        str(pool.address),
        usd1,
        user_usd1,
    )
    assert context["config"] and context["platform"]
    assert opened["pool_liquidity_quote"] == pool.quote_reserve
    pnl = await probe.next("pnl_update", lambda m: m["position_id"] == opened["position_id"])
    assert 95_000_000 < pnl["proceeds_units"] <= 100_000_000

    world.chain.graduate(mint)
    world.stream.flush()
    await probe.send({"type": "request_exit_signal", "token_account": opened["token_account"]})
    signal = await probe.next("exit_signal_with_tx")
    assert signal["market_context"]["market_type"] == "raydium_cpmm"
    assert signal["market_context"]["raydium_cpmm"]["quote_mint"] == usd1
    gross = world.chain.quote_sell(mint, opened["tokens"])
    before = world.chain.token_balance(world.wallet, usd1)
    world.land(signal)
    await probe.next("position_closed", lambda m: m["mint"] == mint)
    # USD1 trades pay the percentage fee only (0.9 % on professional), out of the USD1 proceeds.
    assert world.chain.token_balance(world.wallet, usd1) - before == gross - gross * 90 // 10_000
