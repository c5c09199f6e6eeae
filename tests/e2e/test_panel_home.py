"""The trader's panel through the sandbox: the home screen's numbers, a pasted token, preset buys from a
chosen wallet, and typed buy amounts."""

from __future__ import annotations

import asyncio
import re

import base58
from solders.keypair import Keypair

from bot.notify import render
from tests.e2e.harness import Harness, Trader, setup_trader
from tests.e2e.test_trade import STRATEGY, holding, open_position, pump


async def add_wallet(h: Harness, trader: Trader, sol: float) -> Keypair:
    """A second wallet, imported by chat like a trader would."""
    keypair = Keypair()
    h.services.chain.fund(keypair.pubkey(), sol)
    listing = await trader.chat.send("/wallets", expect=r"Your wallets")
    await trader.chat.press("Import a wallet", message=listing, expect=r"Send the wallet's secret")
    await trader.chat.send(base58.b58encode(bytes(keypair)).decode(), expect=r"Wallet .* added")
    return keypair


async def test_home_shows_the_wallets_sol_and_the_open_position_as_on_chain(harness: Harness) -> None:
    h = harness
    trader, _mint = await holding(h)
    position = await open_position(h, trader)
    home = await trader.chat.send("/home", expect=r"Home")
    text = home["text"]
    assert render.sol(h.services.chain.balance(trader.wallet)) in text
    assert f"PEPE</b> #{position.position_id}" in text or f"PEPE #{position.position_id}" in text
    assert "in tokens" in text and "Stream: 🟢 connected" in text
    assert {"📊 Positions", "🛒 Buy", "⚙️ Settings", "📜 History"} <= set(trader.chat.buttons(home))

    # Refresh edits the same message with the chain's new balance
    h.services.chain.fund(trader.keypair.pubkey(), 2.0)
    refreshed = await trader.chat.press("Refresh", message=home, expect=re.escape(
        render.sol(h.services.chain.balance(trader.wallet))))
    assert refreshed is not None and refreshed["message_id"] == home["message_id"]

    # /start for a set-up trader is the home panel, not the onboarding again
    again = await trader.chat.send("/start", expect=r"Home")
    assert "1/3" not in again["text"]


async def test_pasting_a_pump_fun_link_opens_that_token_with_buy_buttons(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    mint = h.services.chain.create_mint("DOGE", 6, 30.0, 1_000_000_000.0, name="Doge")
    panel = await trader.chat.send(f"look at this https://pump.fun/coin/{mint}", expect=r"🪙")
    assert str(mint) in panel["text"] and "6 decimals" in panel["text"]
    assert ["Buy 0.1 SOL", "Buy 0.5 SOL", "Buy 1 SOL"] == trader.chat.buttons(panel)[:3]

    bare = await trader.chat.send(str(mint), expect=r"🪙")
    assert str(mint) in bare["text"]

    wallet_address = await trader.chat.send(str(Keypair().pubkey()), expect=r"not a token mint")
    assert "Buy" not in " ".join(trader.chat.buttons(wallet_address))
    hello = await trader.chat.send("hello there", expect=r"did not find a token")
    assert "pump.fun" in hello["text"] and "I only understand commands" not in hello["text"]


async def test_a_preset_buy_spends_from_the_wallet_chosen_on_the_panel(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    second = await add_wallet(h, trader, 1.0)
    mint = chain.create_mint("DOGE", 6, 30.0, 1_000_000_000.0, name="Doge")
    panel = await trader.chat.send(f"https://dexscreener.com/solana/{mint}", expect=r"🪙")
    labels = trader.chat.buttons(panel)
    other = next(label for label in labels if label.startswith("Wallet") and not label.startswith("✅"))
    chosen = await trader.chat.press(re.escape(other), message=panel, expect=rf"Buy from {re.escape(other)}")
    assert chosen is not None and chosen["message_id"] == panel["message_id"]
    assert f"✅ {other}" in trader.chat.buttons(chosen)

    before_first, before_second = chain.balance(trader.wallet), chain.balance(second.pubkey())
    quote = await trader.chat.press(r"Buy 0\.1 SOL", message=chosen, expect=r"Tap Buy within a minute")
    assert quote is not None and render.short(str(second.pubkey())) in quote["text"]
    await trader.chat.press("✅ Buy", message=quote, expect=r"✅ Bought", timeout=15)
    assert chain.token_balance(second.pubkey(), mint) > 0
    assert chain.token_balance(trader.wallet, mint) == 0 and chain.balance(trader.wallet) == before_first
    await pump(h)
    await trader.chat.wait_text(r"New position: DOGE")

    # the card counts the buy's fees and rent: PnL from what the wallet actually paid
    spent = before_second - chain.balance(second.pubkey())
    chain.market_move(mint, 5)
    await pump(h)
    # the live numbers are stored in batches: ask again until the move shows (bounded)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        card = await trader.chat.send("/positions", expect=r"DOGE #\d+ · ")
        if re.search(r"DOGE #\d+ · [+-]", card["text"]) or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert re.search(r"DOGE #\d+ · [+-]", card["text"]), card["text"]
    opened = await trader.chat.press("DOGE", message=card, expect=r"After the")
    assert opened is not None and f"After the {render.sol(spent)} your buy paid, fees and rent included" in opened["text"]


async def test_typed_buy_amounts_are_checked_then_shown_on_the_buttons(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    mint = h.services.chain.create_mint("DOGE", 6, 30.0, 1_000_000_000.0)
    panel = await trader.chat.send(str(mint), expect=r"🪙")
    await trader.chat.press("Buy amounts", message=panel, expect=r"Send up to 4 new amounts")
    refused = await trader.chat.send("0.2 lots", expect=r"Not changed")
    assert "'lots' is not an amount of SOL" in refused["text"]
    await trader.chat.send("0.2 0.7", expect=r"Buy amounts saved: 0\.2 SOL, 0\.7 SOL")
    again = await trader.chat.send(str(mint), expect=r"🪙")
    assert trader.chat.buttons(again)[:2] == ["Buy 0.2 SOL", "Buy 0.7 SOL"]
    await trader.chat.send("/presets 1 2 3 4 5", expect=r"at most 4 amounts")
