"""States a trader could be stuck in, or surprised by: what would be lost is their control over a sell."""

from __future__ import annotations

import re

from tests.e2e.harness import Harness
from tests.e2e.test_sell_paths import holding, sends, signal_id, stored, take_profit


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
