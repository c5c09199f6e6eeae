"""Names chosen by others reach the chat literally: a token's symbol and name are picked by whoever minted it,
a wallet's label by whoever typed it. Each goes through the one escaping function, so `<`, `&` and a link
tag show as typed in every message that carries them, and no message fails to parse ("Stop tracking" on a
token named `A<B` once did)."""

from __future__ import annotations

import asyncio
import re

from tests.e2e.harness import Harness, setup_trader

SYMBOL = "A<B&C"  # the minter's symbol: a bare '<' and '&'
NAME = '<a href="x">y</a>'  # the minter's name: a link tag
WALLET = '<a href="x">w</a> & <b>'  # the trader's wallet label
STRATEGY = "tp 500 sl 90 deadline 0"  # nothing fires on its own: every sell here is asked for


async def pump(h: Harness, rounds: int = 3, slots: int = 8) -> None:
    """Advance sandbox time and let the stream flush."""
    for _ in range(rounds):
        h.services.chain.advance_slots(slots)
        h.services.stream.flush()
        await asyncio.sleep(0.05)


async def test_token_names_and_wallet_labels_show_literally_in_every_message(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    chat = trader.chat
    symbol = re.escape(SYMBOL)

    # a wallet label typed by chat: the rename answer and the wallets list
    listing = await chat.send("/wallets", expect="Your wallets")
    await chat.press("Wallet 1", message=listing, expect=r"^Wallet 1")
    await chat.press("Rename", expect="Send the new name")
    renamed = await chat.send(WALLET, expect="Renamed to")
    assert WALLET in renamed["text"]
    listing = await chat.send("/wallets", expect="Your wallets")
    assert WALLET in listing["text"]

    # a token minted with a hostile symbol and name, bought from outside the bot: the position alert
    chain = h.services.chain
    mint = chain.create_mint(SYMBOL, 6, 30.0, 1_000_000_000.0, name=NAME)
    chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    alert = await chat.wait_text(rf"New position: {symbol}")
    assert f"New position: {SYMBOL} ({NAME})" in alert["text"]
    chain.market_move(mint, 5)  # a price: PnL on the card and in the lists
    await pump(h)

    # the positions list and the card
    positions = await chat.send("/positions", expect=r"Open positions")
    assert SYMBOL in positions["text"]
    card = await chat.press(symbol, message=positions, expect=r"Holding .* tokens")
    assert f"{SYMBOL} ({NAME})" in card["text"]

    # the home panel: the wallet and the position
    home = await chat.send("/home", expect=r"Home")
    assert WALLET in home["text"] and SYMBOL in home["text"]

    # a sell from the card: the signal, the outcome, the history
    signal = await chat.press("Sell 50%", message=card, expect=r"You asked to sell")
    assert SYMBOL in signal["text"]
    await chat.press("Sell", message=signal)
    sold = await chat.wait_text(rf"Sold .* {symbol} for", timeout=15)
    assert SYMBOL in sold["text"]
    history = await chat.send("/history", expect=r"Last exits")
    assert SYMBOL in history["text"]

    # Stop tracking from the position alert: the question, Cancel, then Yes
    ask = await chat.press("Stop tracking", message=alert, expect=rf"Stop tracking {symbol}\?")
    assert f"Stop tracking {SYMBOL}?" in ask["text"]
    kept = await chat.press("Cancel", message=ask, expect=r"Still tracking")
    assert kept["text"] == f"Still tracking {SYMBOL}."
    ask = await chat.press("Stop tracking", message=alert, expect=rf"Stop tracking {symbol}\?")
    stopped = await chat.press("Yes, stop tracking", message=ask, expect=r"^Stopped tracking")
    assert stopped["text"].startswith(f"Stopped tracking {SYMBOL}.")
    assert "went wrong" not in chat.transcript()  # no message failed to parse on the way
