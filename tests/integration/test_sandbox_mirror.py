"""The sandbox stream's copy trading over a real websocket, every frame checked with the official SDK parser:
watch wallets and mirror_config as documented, mirror_buy_signal / _failed / _wallet_auto_disabled,
mirror_source on the resulting position, and mirror_buy_result recorded."""

from __future__ import annotations

from sandbox.chain import RouterOrder
from tests.integration import test_sandbox_stream
from tests.integration.test_sandbox_stream import World, router_order_of

world = test_sandbox_stream.world  # the stream tests' fixture: a chain, a key and a running stream

STRATEGY = {"target_profit_pct": 500.0, "stop_loss_pct": 90.0}
AMOUNT = 100_000_000


def watch(world: World, **auto: object) -> list[dict[str, object]]:
    return [{"pubkey": str(world.chain.keypair("whale").pubkey()),
             "auto_buy": {"wallet_pubkey": world.wallet, "amount_quote_units": AMOUNT, **auto}}]


async def test_a_watched_buy_becomes_an_unsigned_buy_of_the_configured_amount(world: World) -> None:
    whale = str(world.chain.keypair("whale").pubkey())
    probe = await world.session(STRATEGY, watch_wallets=watch(world), send_mode="rpc")
    world.chain.outside_buy(whale, world.mint, 2.0)
    world.stream.flush()
    signal = await probe.next("mirror_buy_signal")
    assert signal["watched_wallet"] == whale and signal["user_wallet"] == world.wallet
    assert signal["amount_quote_units"] == AMOUNT and signal["input"] == "SOL" and signal["slippage_bps"] == 2500
    order: RouterOrder = router_order_of(signal["unsigned_tx_b64"])
    assert order.amount_in == AMOUNT
    world.land(signal)
    opened = await probe.next("position_opened")
    assert opened["mirror_source"] == whale
    await probe.send({"type": "mirror_buy_result", "mint": world.mint, "success": True})
    await probe.send({"type": "ping", "client_time_ms": 1})
    await probe.next("pong")
    assert world.stream.mirror_results[-1] == {"api_key": world.key, "mint": world.mint, "success": True}


async def test_cooldown_and_max_positions_skip_with_the_documented_reasons(world: World) -> None:
    whale = str(world.chain.keypair("whale").pubkey())
    probe = await world.session(STRATEGY, watch_wallets=watch(world), mirror_config={"max_positions_per_wallet": 5})
    world.chain.outside_buy(whale, world.mint, 1.0)
    world.stream.flush()
    await probe.next("mirror_buy_signal")
    world.chain.outside_buy(whale, world.mint, 1.0)
    world.stream.flush()
    failed = await probe.next("mirror_buy_failed")
    assert failed["reason"] == "cooldown_active" and failed["watched_wallet"] == whale

    # the first signal was never signed: reported, it frees its slot (pending buys count towards the cap)
    await probe.send({"type": "mirror_buy_result", "mint": world.mint, "success": False})
    await probe.send({"type": "ping", "client_time_ms": 1})
    await probe.next("pong")
    await probe.close()
    second = await world.session(STRATEGY, watch_wallets=watch(world))  # defaults: 1 position, 30 s cooldown
    world.chain.advance_slots(100)  # the cooldown is the key's, across sessions: wait it out
    world.chain.outside_buy(whale, world.mint, 1.0)
    world.stream.flush()
    signal = await second.next("mirror_buy_signal")
    world.land(signal)
    await second.next("position_opened")
    await second.send({"type": "mirror_buy_result", "mint": world.mint, "success": True})
    world.chain.advance_slots(200)  # past the cooldown
    other = str(world.chain.create_mint("TWO", 6, 100, 1_000_000_000))
    world.chain.outside_buy(whale, other, 1.0)
    world.stream.flush()
    assert (await second.next("mirror_buy_failed"))["reason"] == "max_positions_reached"


async def test_more_watch_wallets_than_the_tier_allows_is_refused() -> None:
    w = World(tier="free")
    await w.stream.start()
    try:
        probe = await w.connect()
        wallets = [{"pubkey": str(w.chain.keypair(f"w{i}").pubkey())} for i in range(3)]
        await probe.send({"type": "configure", "wallet_pubkeys": [w.wallet], "strategy": STRATEGY,
                          "watch_wallets": wallets})
        error = await probe.next("error")
        assert error["code"] == "capacity_exceeded" and "allows 2" in error["message"]
    finally:
        await w.close()


async def test_a_losing_mirrored_position_trips_the_breaker(world: World) -> None:
    whale = str(world.chain.keypair("whale").pubkey())
    probe = await world.session(STRATEGY, watch_wallets=watch(world), mirror_config={"max_consecutive_losses": 1},
                                send_mode="rpc")
    world.chain.outside_buy(whale, world.mint, 1.0)
    world.stream.flush()
    world.land(await probe.next("mirror_buy_signal"))
    opened = await probe.next("position_opened")
    world.move(-50)
    await probe.send({"type": "request_exit_signal", "position_id": opened["position_id"]})
    world.land(await probe.next("exit_signal_with_tx"))
    closed = await probe.next("position_closed")
    assert closed["mirror_source"] == whale
    disabled = await probe.next("mirror_wallet_auto_disabled")
    assert disabled["watched_wallet"] == whale and disabled["loss_count"] == 1


async def test_max_active_sol_and_min_liquidity_skip_buys(world: World) -> None:
    whale = str(world.chain.keypair("whale").pubkey())
    config = {"cooldown_sec": 0, "max_positions_per_wallet": 0, "max_active_sol": 0.15, "min_liquidity_sol": 50.0}
    probe = await world.session(STRATEGY, watch_wallets=watch(world), mirror_config=config, send_mode="rpc")
    world.chain.outside_buy(whale, world.mint, 1.0)
    world.stream.flush()
    world.land(await probe.next("mirror_buy_signal"))
    await probe.next("position_opened")
    await probe.send({"type": "mirror_buy_result", "mint": world.mint, "success": True})
    second = str(world.chain.create_mint("TWO", 6, 100, 1_000_000_000))
    world.chain.outside_buy(whale, second, 1.0)
    world.stream.flush()
    assert (await probe.next("mirror_buy_failed"))["reason"] == "max_exposure_reached"
    # a new configure with no exposure cap (0 = unlimited): now the pool's liquidity is what stops a buy
    await probe.close()
    probe = await world.session(STRATEGY, watch_wallets=watch(world), mirror_config={**config, "max_active_sol": 0.0})
    thin = str(world.chain.create_mint("THIN", 6, 10, 1_000_000_000))
    world.chain.outside_buy(whale, thin, 1.0)
    world.stream.flush()
    assert (await probe.next("mirror_buy_failed"))["reason"] == "below_min_liquidity"
