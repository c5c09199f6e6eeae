"""The buttons a sell leaves behind, tapped through the chat: Retry after a failed sell, Refresh after a sell
that could not be paid for, and a signal left too long (its Sell stops working, says why and leaves
Refresh)."""

from __future__ import annotations

from tests.e2e.harness import (
    Harness,
    age,
    answers,
    exit_requests,
    holding,
    sends,
    signal_id,
    stored,
    take_profit,
)


async def test_retry_after_a_failed_sell_sells_at_the_next_slippage(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    await trader.chat.send("/settings retries 0", expect=r"Saved")  # no automatic retry: the button is the way
    signal = await take_profit(h, trader, mint)
    # the price slips 8% after the signal: its 5% minimum out can no longer be met
    h.services.chain.market_move(mint, -8)

    await trader.chat.press("Sell", message=signal)
    failed = await trader.chat.wait_text(r"Not sold.*slippage", timeout=15)
    assert failed["message_id"] == signal["message_id"]
    assert trader.chat.buttons(failed) == ["🔁 Retry at 5.2% slippage"]
    assert sends(h) == 0 and exit_requests(h, trader) == []  # nothing sent, nothing asked again on its own
    assert h.services.chain.token_balance(trader.wallet, mint) > 0

    await trader.chat.press("Retry", message=failed)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert done["message_id"] == signal["message_id"]
    assert "Retrying with 5.2% slippage…" in answers(trader)
    assert [r.get("slippage_bps") for r in exit_requests(h, trader)] == [520]
    assert sends(h) == 1
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    services = h.runner.services
    assert services is not None
    [landed] = await services.inbox.signals.for_user(trader.chat.user_id, ("landed",))
    assert landed.slippage_bps == 520 and landed.reason == "take_profit"
    assert trader.chat.buttons(done) == []  # nothing left to tap


async def test_refresh_after_a_sell_the_wallet_could_not_pay_for_brings_a_fresh_exit_that_sells(
    harness: Harness,
) -> None:
    h = harness
    chain = h.services.chain
    trader, mint = await holding(h)
    signal = await take_profit(h, trader, mint)
    lamports = chain.balance(trader.wallet)
    chain.fund_lamports(trader.wallet, -lamports)  # every lamport gone: no fee, no tip

    await trader.chat.press("Sell", message=signal)
    failed = await trader.chat.wait_text(r"Not sold.*not enough SOL.*fee", timeout=15)
    assert trader.chat.buttons(failed) == ["🔄 Refresh"]
    assert sends(h) == 0

    chain.fund_lamports(trader.wallet, lamports)  # the trader tops the wallet up, then taps Refresh
    await trader.chat.press("Refresh", message=failed)
    fresh = await trader.chat.wait_text(r"Take profit reached", after=signal["message_id"])
    assert "Asked LaserSell for a fresh exit; it arrives as a new message." in answers(trader)
    assert "✅ Sell" in trader.chat.buttons(fresh)
    assert len(exit_requests(h, trader)) == 1
    await trader.chat.press("Sell", message=fresh)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert sends(h) == 1
    assert chain.token_balance(trader.wallet, mint) == 0
    assert (await stored(h, signal_id(signal))).state == "failed"
    assert (await stored(h, signal_id(fresh))).state == "landed"


async def test_an_expired_signal_stops_selling_says_why_and_refresh_brings_a_fresh_one(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    signal = await take_profit(h, trader, mint)
    sid = signal_id(signal)
    services = h.runner.services
    assert services is not None
    # the trader comes back after eleven minutes: past a signal's ten
    await age(h, sid, 11 * 60 * 1000)
    tokens = h.services.chain.token_balance(trader.wallet, mint)

    expired = await trader.chat.press("Sell", message=signal, expect=r"This signal expired")
    assert expired is not None and expired["message_id"] == signal["message_id"]
    assert trader.chat.buttons(expired) == ["🔄 Refresh"]
    await trader.chat.wait_for(lambda _: "Expired: tap Refresh." in answers(trader), what="the tap's answer")
    assert sends(h) == 0 and exit_requests(h, trader) == []
    assert h.services.chain.token_balance(trader.wallet, mint) == tokens
    assert (await stored(h, sid)).state == "expired"

    await trader.chat.press("Refresh", message=expired)
    fresh = await trader.chat.wait_text(r"Take profit reached", after=signal["message_id"])
    await trader.chat.press("Sell", message=fresh)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert sends(h) == 1 and h.services.chain.token_balance(trader.wallet, mint) == 0
