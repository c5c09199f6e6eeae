"""One stream per user: positions, live cards, liquidity alerts, reconnects, terminal errors, Telegram errors."""

import asyncio
from functools import partial

from tests.e2e.harness import Harness, buys, setup_trader
from tests.e2e.harness import pump as pump_rounds

pump = partial(pump_rounds, slots=8)  # 3.2 s of stream time a round: one liquidity snapshot


def edit_calls_of(h: Harness) -> int:
    """editMessageText calls that reached the sandbox Telegram, refused ones (an identical edit) included."""
    return int(h.services.telegram.stats()["calls"].get("editMessageText", 0))


async def taken_in(h: Harness, trader, slots: int = 8) -> None:
    """One stream round; returns once the bot's stream client has received its frames and handed them all out."""
    client = h.runner.services.streams.workers[trader.chat.user_id].client
    received = client.messages_received
    h.services.chain.advance_slots(slots)
    h.services.stream.flush()
    await trader.chat.wait_for(lambda _: client.messages_received > received and client.pending_count() == 0,
                               what="the round's frames handed to the bot")


async def test_price_moves_edit_the_position_card(harness: Harness) -> None:
    h = harness
    h.runner.services.alerts.card_interval_s = 0.2
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    mint = await buys(h, trader)
    card = await trader.chat.wait_text(r"New position: PEPE")
    # counted together: the card may already have had an edit (its first PnL) by now
    edit_calls = edit_calls_of(h)
    edits_before = next(m for m in trader.chat.messages() if m["message_id"] == card["message_id"]).get("edits", 0)
    h.services.chain.market_move(mint, 25)
    await pump(h)
    edited = await trader.chat.wait_text(r"PnL \+0\.\d+ SOL \(\+2\d\.\d%\)")
    assert edited["message_id"] == card["message_id"] and edited["edits"] >= 1
    assert trader.chat.buttons(edited) == ["Sell now", "Stop tracking"]
    # rounds with nothing new on the stream, taken in by the bot...
    for _ in range(3):
        await taken_in(h, trader)
    # ...then a real move: once its edit shows, any edit the quiet rounds caused would have been made
    h.services.chain.market_move(mint, 10)
    await pump(h)
    later = await trader.chat.wait_text(r"PnL \+0\.\d+ SOL \(\+3\d\.\d%\)")
    assert later["message_id"] == card["message_id"]
    # every editMessageText the bot made changed the card (an identical edit is refused, but counted)
    made = edit_calls_of(h) - edit_calls
    assert made == later["edits"] - edits_before, (made, later["edits"], edits_before)


async def test_a_draining_pool_raises_one_liquidity_alert(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 95 deadline 0")
    mint = await buys(h, trader, sol=2.0)
    for _ in range(6):  # six snapshots while the pool keeps draining
        h.services.chain.drain(mint, 15)
        await pump(h, 1, slots=10)
    alert = await trader.chat.wait_text(r"Liquidity draining on PEPE")
    assert "sellable" in alert["text"] and "Sell now" in trader.chat.buttons(alert)
    for _ in range(3):  # it keeps draining: no news
        h.services.chain.drain(mint, 15)
        await taken_in(h, trader, slots=10)
    # a new position is announced after those snapshots (alerts go out in order): a second alert would be before it
    await buys(h, trader, "WIF")
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
    # another trader's stream is refused three times and comes back after three backoff rounds: by then a
    # client that retried a refused key would have tried again too
    bob = await setup_trader(h, "Bob", strategy="tp 25 sl 10 deadline 0")
    bobs = stream.session_for(bob.api_key)
    stream.refuse_sessions(3, "session_limit")
    await stream.drop_connections()
    await bob.chat.wait_for(lambda _: stream.session_for(bob.api_key) not in (None, bobs), what="Bob's stream back")
    assert stream.connection_attempts[bob.api_key] >= 4
    assert stream.connection_attempts[trader.api_key] - before == 1
    notices = [m for m in trader.chat.bot_messages() if "stream stopped" in (m.get("text") or "")]
    assert len(notices) == 1


async def test_a_429_delays_but_the_exit_signal_arrives(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    mint = await buys(h, trader)
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
    mint = await buys(h, trader)
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
    await buys(h, trader)
    signal = await trader.chat.wait_text(r"Deadline reached", timeout=10)
    assert "✅ Sell" in trader.chat.buttons(signal)
    received = [m["type"] for m in h.services.stream.session_for(trader.api_key).received]
    assert received.count("request_exit_signal") == 1


async def test_an_unknown_market_type_still_brings_the_exit_signal(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    mint = await buys(h, trader)
    h.services.stream.use_unknown_market_type("moonshot_v9")
    h.services.chain.market_move(mint, 40)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached")
    assert "moonshot_v9" in signal["text"] and "✅ Sell" in trader.chat.buttons(signal)


async def test_an_exit_asked_for_while_disconnected_arrives_after_the_reconnect(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    await buys(h, trader)
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
