"""The whole story: set up by chat, buy, the price rises to take profit, tap Sell, the exit lands on chain."""


from tests.e2e.harness import Harness, pump, setup_trader


async def test_take_profit_signal_is_sold_by_a_tap(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    chain = h.services.chain
    mint = chain.create_mint("PEPE", 6, 30.0, 1_000_000_000.0, name="Pepe")
    chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    opened = await trader.chat.wait_text(r"New position: PEPE")
    assert "Sell now" in trader.chat.buttons(opened)
    tokens_before = chain.token_balance(trader.wallet, mint)
    sol_before = chain.balance(trader.wallet)
    assert tokens_before > 0

    chain.market_move(mint, 40)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached")
    assert trader.chat.buttons(signal)[:2] == ["✅ Sell", "Skip"]

    await trader.chat.press("Sell", message=signal)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert "PnL +" in done["text"]
    assert chain.token_balance(trader.wallet, mint) == 0
    assert chain.balance(trader.wallet) > sol_before
    await trader.chat.wait_for(lambda ms: any(m.get("photo") for m in ms), what="the PnL card")
    # The position's card says it closed; the sale already has its own message, so no third one repeats it
    # (the separate message would go out at a higher priority than the card's edit, so it would be here).
    await trader.chat.wait_for(
        lambda ms: any(m["message_id"] == opened["message_id"] and "closed: sold" in (m.get("text") or "") for m in ms),
        what="the card marked closed",
    )
    closed_messages = [m for m in trader.chat.bot_messages() if "closed: sold" in (m.get("text") or "")]
    assert [m["message_id"] for m in closed_messages] == [opened["message_id"]]
