"""States a trader could be stuck in, or surprised by: what would be lost is their control over a sell."""

from __future__ import annotations

import re

from tests.e2e.harness import (
    Harness,
    age,
    buys,
    holding,
    sell_part,
    sends,
    setup_trader,
    signal_id,
    stored,
    take_profit,
)


async def test_stop_tracking_voids_an_older_sell_button(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    held = h.services.chain.token_balance(trader.wallet, mint)
    with_stop = next(m for m in reversed(trader.chat.bot_messages())
                     if any(re.search("Stop tracking", b) for b in trader.chat.buttons(m)))

    await trader.chat.press("Stop tracking", message=with_stop, expect=r"Stop tracking")
    await trader.chat.press("Yes, stop tracking", expect=r"Stopped tracking")
    await trader.chat.wait_text(r"stopped tracking PEPE: this exit will not be sold")

    shown = next(m for m in trader.chat.messages() if m["message_id"] == signal["message_id"])
    assert not any("Sell" in b for b in trader.chat.buttons(shown))
    # a tap from a client still showing the old buttons (another device, a slow edit) sells nothing
    services = h.runner.services
    assert services is not None
    words = await services.seller.tap(trader.chat.user_id, signal_id(signal), "sell")
    assert "stopped tracking" in words

    assert sends(h) == 0
    assert h.services.chain.token_balance(trader.wallet, mint) == held
    assert (await stored(h, signal_id(signal))).state == "skipped"
    history = await trader.chat.send("/history", expect=r"Last exits")
    assert "you stopped tracking it" in history["text"]


async def test_a_sell_tapped_after_its_wallet_was_removed_says_so_in_words(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    held = h.services.chain.token_balance(trader.wallet, mint)
    listing = await trader.chat.send("/wallets", expect=r"Your wallets")
    await trader.chat.press("Wallet 1", message=listing, expect=trader.wallet)
    await trader.chat.press("^Remove$", expect=r"Remove")
    await trader.chat.press("Yes, remove it", expect=r"Your wallets")

    await trader.chat.press("Sell", message=signal)
    failed = await trader.chat.wait_text(r"not in your wallets any more .*removed.*/import", timeout=15)

    assert "AccountError" not in (failed.get("text") or "")
    assert "on my side" not in (failed.get("text") or "")
    assert sends(h) == 0
    assert h.services.chain.token_balance(trader.wallet, mint) == held


async def test_a_new_lasersell_key_keeps_every_wallet_streaming(harness: Harness) -> None:
    """Free -> professional: the wallets were registered under the old key; the new one must know them."""
    h = harness
    trader = await setup_trader(h, "Ann", tier="free")
    new_key = h.services.accounts.issue("professional").key
    await trader.chat.send(f"/apikey {new_key}", expect=r"LaserSell key saved")
    assert h.services.accounts.is_registered(new_key, trader.wallet)

    await buys(h, trader)
    assert "not registered" not in trader.chat.transcript()


async def test_a_registration_lost_by_lasersell_is_made_again_on_reconnect(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann")
    h.services.accounts.unregister_wallet(trader.api_key, trader.wallet)

    await h.services.stream.drop_connections()
    await trader.chat.wait_for(lambda ms: h.services.accounts.is_registered(trader.api_key, trader.wallet),
                               timeout=15, what="the wallet registered again")
    await buys(h, trader)
    assert "not registered" not in trader.chat.transcript()


async def test_a_refreshed_sell_keeps_its_reason_in_the_message_and_history(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    sid = signal_id(signal)
    await age(h, sid, 11 * 60 * 1000)

    await trader.chat.press("Sell", message=signal, expect=r"expired")
    await trader.chat.press("Refresh", message=signal)
    fresh = await trader.chat.wait_text(r"Take profit reached", after=signal["message_id"])
    assert "You asked to sell" not in (fresh.get("text") or "")
    await trader.chat.press("Sell", message=fresh)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)

    history = await trader.chat.send("/history", expect=r"Last exits")
    assert "Take profit reached" in history["text"] and "You asked to sell" not in history["text"]


async def test_a_stale_sell_refreshed_on_tap_keeps_its_reason_in_history(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    sid = signal_id(signal)
    services = h.runner.services
    assert services is not None
    h.services.chain.advance_slots(200)  # past the blockhash's life
    await age(h, sid, 60_000)

    await trader.chat.press("Sell", message=signal, expect=r"Refreshing")
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert "You asked to sell" not in (done.get("text") or "")
    history = await trader.chat.send("/history", expect=r"Last exits")
    assert "Take profit reached" in history["text"] and "You asked to sell" not in history["text"]


async def test_a_sell_older_than_a_partial_sell_is_refreshed_and_sells_what_is_left(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    quarter = await sell_part(trader)
    await trader.chat.press("Sell", message=quarter)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    left = h.services.chain.token_balance(trader.wallet, mint)
    assert left > 0
    sent = sends(h)

    await trader.chat.press("Sell", message=signal, expect=r"Refreshing")
    done = await trader.chat.wait_for(
        lambda ms: next((m for m in ms if m["message_id"] == signal["message_id"] and "Sold" in (m.get("text") or "")),
                        None), timeout=20, what="the old signal's message saying Sold")

    assert "error code" not in (done.get("text") or "")
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert sends(h) == sent + 1  # the old transaction was never sent


async def test_a_position_strategy_the_server_would_refuse_is_not_saved(harness: Harness) -> None:
    """`trail 150` on one position would be sent and stop the stream on LaserSell's refusal."""
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    services = h.runner.services
    assert services is not None
    [position] = await services.streams.positions.open_for(trader.chat.user_id)
    for bad in ("trail 150", "sl 100", "trail 100"):
        reply = await trader.chat.send(f"/pstrategy {position.position_id} {bad}", expect=r"Not changed")
        assert "below 100" in reply["text"]
    stored_position = await services.streams.positions.get(trader.chat.user_id, position.position_id)
    assert stored_position is not None and stored_position.strategy_json is None
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None
    assert not [m for m in session.received if m.get("type") == "update_position_strategy"]


async def test_a_stored_strategy_an_older_version_saved_is_checked_on_start_and_never_sent(harness: Harness) -> None:
    """`trail 150` saved before the editor refused it: on start the trader is told, plainly and once, and the
    stream is not configured with it (LaserSell would refuse it and stop the stream); a fix by chat streams."""
    h = harness
    stream = h.services.stream
    trader = await setup_trader(h, "Ann", strategy="tp 25 sl 10 deadline 0")
    services = h.runner.services
    assert services is not None
    await services.accounts.store.update(
        trader.chat.user_id, strategy_json='{"take_profit_pct":25,"stop_loss_pct":10,"trailing_stop_pct":150}'
    )
    attempts = stream.connection_attempts[trader.api_key]

    await h.restart_bot()
    notice = await trader.chat.wait_text(r"Your saved strategy is not valid any more")
    assert "trailing stop (trail) 150" in notice["text"] and "below 100" in notice["text"]
    assert "I did not send it to LaserSell" in notice["text"] and "/strategy" in notice["text"]
    # the notice is written where the stream would have been started: it was not
    assert stream.connection_attempts[trader.api_key] == attempts

    await trader.chat.send("/strategy trail 15", expect=r"Saved")

    def configured() -> dict | None:
        session = stream.session_for(trader.api_key)
        sent = [m for m in (session.received if session else []) if m.get("type") == "configure"]
        return sent[-1] if sent and stream.connection_attempts[trader.api_key] > attempts else None

    configure = await trader.chat.wait_for(lambda _: configured(), what="the stream configured again")
    assert configure["strategy"]["trailing_stop_pct"] == 15
    assert all(m.get("strategy", {}).get("trailing_stop_pct") != 150
               for s in [stream.session_for(trader.api_key)] if s for m in s.received)
    notices = [m for m in trader.chat.bot_messages() if "not valid any more" in (m.get("text") or "")]
    assert len(notices) == 1
