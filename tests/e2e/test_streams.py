"""One stream per user: positions, live cards, liquidity alerts, reconnects, terminal errors, Telegram errors."""

import asyncio

from tests.e2e.harness import Harness, setup_trader


async def pump(h: Harness, rounds: int = 3, slots: int = 8) -> None:
    """Advance sandbox time (8 slots = 3.2 s: one liquidity snapshot) and let the stream flush."""
    for _ in range(rounds):
        h.services.chain.advance_slots(slots)
        h.services.stream.flush()
        await asyncio.sleep(0.05)


async def open_position(h: Harness, trader, symbol: str = "PEPE", sol: float = 0.5) -> str:
    chain = h.services.chain
    mint = str(chain.create_mint(symbol, 6, 30.0, 1_000_000_000.0))
    chain.outside_buy(trader.wallet, mint, sol)
    await pump(h, 1)
    await trader.chat.wait_text(rf"New position: {symbol}")
    return mint


async def test_price_moves_edit_the_position_card(harness: Harness) -> None:
    h = harness
    h.runner.services.alerts.card_interval_s = 0.2
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    mint = await open_position(h, trader)
    card = await trader.chat.wait_text(r"New position: PEPE")
    h.services.chain.market_move(mint, 25)
    await pump(h)
    edited = await trader.chat.wait_text(r"PnL \+0\.\d+ SOL \(\+2\d\.\d%\)")
    assert edited["message_id"] == card["message_id"] and edited["edits"] >= 1
    assert trader.chat.buttons(edited) == ["Sell now", "Stop tracking"]
    # nothing new on the stream: no more edits
    edits = edited["edits"]
    await pump(h)
    await asyncio.sleep(0.4)
    now = next(m for m in trader.chat.messages() if m["message_id"] == card["message_id"])
    assert now["edits"] == edits


async def test_a_draining_pool_raises_one_liquidity_alert(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 95 deadline 0")
    mint = await open_position(h, trader, sol=2.0)
    for _ in range(6):  # six snapshots while the pool keeps draining
        h.services.chain.drain(mint, 15)
        await pump(h, 1, slots=10)
    alert = await trader.chat.wait_text(r"Liquidity draining on PEPE")
    assert "sellable" in alert["text"] and "Sell now" in trader.chat.buttons(alert)
    await pump(h, 3, slots=10)
    await asyncio.sleep(0.3)
    alerts = [m for m in trader.chat.bot_messages() if "Liquidity draining" in (m.get("text") or "")]
    assert len(alerts) == 1


async def test_reconnect_is_fast_and_sends_the_current_strategy(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 25 sl 10 deadline 0")
    stream = h.services.stream
    assert stream.session_for(trader.api_key).last_configure["strategy"]["target_profit_pct"] == 25
    # the sandbox goes away for a moment; meanwhile the trader changes the strategy by chat
    stream.refuse_connections_for(0.5)
    await stream.drop_connections()
    await trader.chat.send("/strategy tp 33", expect="Saved")
    loop = asyncio.get_running_loop()
    dropped_at = loop.time()
    while stream.session_for(trader.api_key) is None or stream.session_for(trader.api_key).last_configure is None:
        assert loop.time() - dropped_at < 2.0, "the stream was not back within 2 s"
        await asyncio.sleep(0.02)
    assert stream.session_for(trader.api_key).last_configure["strategy"]["target_profit_pct"] == 33


async def test_every_stream_is_back_after_all_connections_drop(harness: Harness) -> None:
    h = harness
    traders = [await setup_trader(h, name, strategy="tp 25 sl 10 deadline 0") for name in ("Ann", "Bob", "Cy")]
    stream = h.services.stream
    await stream.drop_connections()
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not all(stream.session_for(t.api_key) is not None for t in traders):
        assert loop.time() - start < 2.0, "not every stream was back within 2 s"
        await asyncio.sleep(0.02)


async def test_a_bad_key_is_told_once_and_not_retried(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 25 sl 10 deadline 0")
    stream = h.services.stream
    h.services.accounts.revoke(trader.api_key)
    before = stream.connection_attempts[trader.api_key]
    await stream.drop_connections()
    notice = await trader.chat.wait_text(r"stream stopped")
    assert "API key" in notice["text"] and "/apikey" in notice["text"]
    await asyncio.sleep(1.0)  # long enough for several backoff rounds if it were retrying
    assert stream.connection_attempts[trader.api_key] - before == 1
    notices = [m for m in trader.chat.bot_messages() if "stream stopped" in (m.get("text") or "")]
    assert len(notices) == 1


async def test_a_429_delays_but_the_exit_signal_arrives(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    mint = await open_position(h, trader)
    h.services.telegram.inject_fault("sendMessage", status=429, retry_after=1, count=1)
    h.services.chain.market_move(mint, 40)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached", timeout=15)
    assert "✅ Sell" in trader.chat.buttons(signal)
    assert h.services.telegram.stats()["http_429"] >= 1


async def test_a_403_stops_the_stream_and_keeps_the_signal(harness: Harness) -> None:
    h = harness
    services = h.runner.services
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    mint = await open_position(h, trader)
    h.services.telegram.block(trader.chat.user_id)
    h.services.chain.market_move(mint, 40)
    await pump(h)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while trader.chat.user_id in services.streams.workers:
        assert loop.time() - start < 10, "the stream of a user who blocked the bot kept running"
        await asyncio.sleep(0.05)
    user = await services.users.get(trader.chat.user_id)
    assert user is not None and user.blocked
    pending = await services.inbox.signals.for_user(trader.chat.user_id, ("pending",))
    assert len(pending) == 1 and pending[0].reason == "take_profit"
    # the trader comes back: the signal is still there to act on
    h.services.telegram.unblock(trader.chat.user_id)
    status = await trader.chat.send("/status", expect=r"Exit signals waiting: 1")
    assert "Take profit reached" in status["text"]
    assert trader.chat.user_id in services.streams.workers  # and their stream runs again


async def test_the_deadline_asks_for_an_exit_and_says_why(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 1")
    await open_position(h, trader)
    signal = await trader.chat.wait_text(r"Deadline reached", timeout=10)
    assert "✅ Sell" in trader.chat.buttons(signal)
    received = [m["type"] for m in h.services.stream.session_for(trader.api_key).received]
    assert received.count("request_exit_signal") == 1


async def test_an_unknown_market_type_still_brings_the_exit_signal(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    mint = await open_position(h, trader)
    h.services.stream.use_unknown_market_type("moonshot_v9")
    h.services.chain.market_move(mint, 40)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached")
    assert "moonshot_v9" in signal["text"] and "✅ Sell" in trader.chat.buttons(signal)


async def test_an_exit_asked_for_while_disconnected_arrives_after_the_reconnect(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    await open_position(h, trader)
    stream = h.services.stream
    stream.refuse_connections_for(0.5)
    await stream.drop_connections()
    opened = await trader.chat.wait_text(r"New position: PEPE")
    await trader.chat.press("Sell now", message=opened)
    signal = await trader.chat.wait_text(r"You asked to sell", timeout=10)
    assert "✅ Sell" in trader.chat.buttons(signal)


async def test_a_strategy_change_reaches_the_live_stream_at_once(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 25 sl 10 deadline 0")
    session = h.services.stream.session_for(trader.api_key)
    await trader.chat.send("/strategy tp 40 trail 5", expect="Saved")

    def pushed() -> bool:
        updates = [m for m in session.received if m["type"] == "update_strategy"]
        return bool(updates) and updates[-1]["strategy"]["target_profit_pct"] == 40

    await trader.chat.wait_for(lambda _: pushed(), what="update_strategy on the stream")
    assert h.services.stream.session_for(trader.api_key) is session  # no reconnect was needed
    update = [m for m in session.received if m["type"] == "update_strategy"][-1]
    assert update["strategy"]["trailing_stop_pct"] == 5
