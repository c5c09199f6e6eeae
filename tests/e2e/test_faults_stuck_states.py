"""States a trader could be stuck in, or surprised by: what would be lost is their control over a sell."""

from __future__ import annotations

import re

from tests.e2e.harness import Harness, setup_trader
from tests.e2e.test_sell_paths import holding, pump, sends, signal_id, stored, take_profit


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

    mint = h.services.chain.create_mint("PEPE", 6, 30.0, 1_000_000_000.0, name="Pepe")
    h.services.chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    await trader.chat.wait_text(r"New position: PEPE", timeout=15)
    assert "not registered" not in trader.chat.transcript()


async def test_a_registration_lost_by_lasersell_is_made_again_on_reconnect(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann")
    h.services.accounts.unregister_wallet(trader.api_key, trader.wallet)

    await h.services.stream.drop_connections()
    await trader.chat.wait_for(lambda ms: h.services.accounts.is_registered(trader.api_key, trader.wallet),
                               timeout=15, what="the wallet registered again")
    mint = h.services.chain.create_mint("PEPE", 6, 30.0, 1_000_000_000.0, name="Pepe")
    h.services.chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    await trader.chat.wait_text(r"New position: PEPE", timeout=15)
    assert "not registered" not in trader.chat.transcript()


async def test_a_refreshed_sell_keeps_its_reason_in_the_message_and_history(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    sid = signal_id(signal)
    services = h.runner.services
    assert services is not None
    old = await stored(h, sid)
    await services.inbox.signals.set(sid, received_at_ms=old.received_at_ms - 11 * 60 * 1000)

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
    old = await stored(h, sid)
    h.services.chain.advance_slots(200)  # past the blockhash's life
    await services.inbox.signals.set(sid, received_at_ms=old.received_at_ms - 60_000)

    await trader.chat.press("Sell", message=signal, expect=r"Refreshing")
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert "You asked to sell" not in (done.get("text") or "")
    history = await trader.chat.send("/history", expect=r"Last exits")
    assert "Take profit reached" in history["text"] and "You asked to sell" not in history["text"]


async def test_a_sell_older_than_a_partial_sell_is_refreshed_and_sells_what_is_left(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    listing = await trader.chat.send("/positions", expect=r"Open positions")
    card = await trader.chat.press("PEPE", message=listing, expect=r"Holding .* tokens")
    quarter = await trader.chat.press("Sell 25%", message=card, expect=r"You asked to sell")
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
