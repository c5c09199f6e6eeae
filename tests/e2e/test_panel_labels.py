"""Wallet names as the trader typed them: shown escaped, never rewritten, cut with a notice, no duplicates."""

from __future__ import annotations

from tests.e2e.harness import Harness, setup_trader
from tests.e2e.test_panel_home import add_wallet


async def test_a_wallet_keeps_the_name_typed_and_twins_are_refused(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    assert "Wallet Wallet" not in trader.chat.transcript()
    await trader.chat.wait_text(r"✅ Wallet 1 added")
    await add_wallet(h, trader, 0.1)

    listing = await trader.chat.send("/wallets", expect="Your wallets")
    await trader.chat.press("Wallet 2", message=listing, expect=r"^Wallet 2")
    await trader.chat.press("Rename", expect=r"Send the new name")
    await trader.chat.send("Wallet 1", expect=r"already have a wallet named “Wallet 1”. Try “Wallet 1 2”")
    await trader.chat.send("<b>x</b> 🚀 bag", expect=r"Renamed to")
    renamed = await trader.chat.wait_text(r"Renamed to")
    assert "<b>x</b> 🚀 bag" in renamed["text"]  # the characters the trader typed, not markup
    listing = await trader.chat.send("/wallets", expect="Your wallets")
    assert "<b>x</b> 🚀 bag" in listing["text"]

    await trader.chat.press(r"🚀 bag", message=listing, expect=r"^<b>x</b> 🚀 bag")
    await trader.chat.press("Rename", expect=r"Send the new name")
    cut = await trader.chat.send("A" * 40, expect=r"Renamed to")
    assert "A" * 32 + "." in cut["text"] and "at most 32 characters" in cut["text"]
