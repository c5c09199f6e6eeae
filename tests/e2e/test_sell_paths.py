"""Every path of the sell, end to end through the sandbox: double taps, foreign taps, stale blockhashes,
slippage retries, guard refusals, empty wallets, auto-sell, ladders and /history. A crash mid-sell is a real
kill -9 (test_faults_kill9.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.exits import sell as sell_module
from tests.e2e.harness import (
    Harness,
    age,
    answers,
    exit_requests,
    holding,
    pump,
    sends,
    signal_id,
    stored,
    take_profit,
)


async def test_twenty_concurrent_taps_submit_once(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    data = f"x:sell:{signal_id(signal)}"
    before = sends(h)

    await asyncio.gather(*(asyncio.to_thread(trader.chat.tg.press, trader.chat.user_id, signal["message_id"], data)
                           for _ in range(20)))
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    await trader.chat.wait_for(lambda ms: len(answers(trader)) >= 20, what="20 answers")

    assert sends(h) - before == 1
    texts = answers(trader)
    assert texts.count("Selling…") == 1
    assert sum("Already" in t for t in texts) == 19, texts
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert (await stored(h, signal_id(signal))).state == "landed"


async def checked_while_shown(h: Harness) -> tuple[Any, Any, dict[str, Any], int]:
    """Ann holds PEPE and gets a take-profit signal, whose transaction the guard simulates while it is shown.
    Returns (trader, mint, the signal message, simulations before the signal)."""
    rpc = h.services.rpc
    trader, mint = await holding(h, "Ann", "PEPE")
    simulated_before = rpc.calls["simulateTransaction"]
    signal = await take_profit(h, trader, mint)
    await trader.chat.wait_for(lambda ms: rpc.calls["simulateTransaction"] > simulated_before,
                               what="the signal's transaction simulated while it is shown")
    return trader, mint, signal, simulated_before


async def test_a_signal_is_checked_while_shown_and_a_tap_on_an_unchanged_market_sells_on_that_check(
    harness: Harness,
) -> None:
    """The guard simulates the shown signal's transaction before anyone taps; the tap reads its accounts again
    and, finding them as they were, signs and sends on that simulation: one simulation for the whole sell.
    (A market that moved in between is simulated again: test_a_slippage_failure_is_retried_...)"""
    h = harness
    rpc = h.services.rpc
    trader, mint, signal, simulated_before = await checked_while_shown(h)
    reads_before = rpc.calls["getMultipleAccounts"]

    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)

    assert rpc.calls["simulateTransaction"] == simulated_before + 1
    assert rpc.calls["getMultipleAccounts"] > reads_before  # its accounts were read again at the tap
    assert sends(h) == 1
    assert h.services.chain.token_balance(trader.wallet, mint) == 0


async def test_a_tip_lowered_while_the_signal_is_shown_is_the_one_the_tap_is_checked_against(harness: Harness) -> None:
    """The check ahead read the trader's settings (a 0.001 SOL tip cap) and the tap would sign on it; the trader
    lowers the tip to 0.0005 SOL first. The tap reads the settings again: the transaction's 0.001 SOL tip is over
    the new cap, so the guard refuses and nothing is signed."""
    h = harness
    trader, mint, signal, _ = await checked_while_shown(h)
    panel = await trader.chat.send("/settings", expect=r"Settings")
    await trader.chat.press(r"^Tip 0\.001 SOL$", message=panel, expect=r"Send the tip in SOL")
    await trader.chat.send("0.0005", expect=r"✅ Tip set to 0\.0005 SOL")

    await trader.chat.press("Sell", message=signal)
    refused = await trader.chat.wait_text(r"more than your 0\.0005 SOL tip", timeout=15)

    assert refused["message_id"] == signal["message_id"] and "Nothing was signed" in refused["text"]
    assert sends(h) == 0
    assert (await stored(h, signal_id(signal))).state == "failed"
    assert h.services.chain.token_balance(trader.wallet, mint) > 0


async def test_a_foreign_tap_is_refused_and_changes_nothing(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    sid = signal_id(signal)
    mallory = await h.user("Mallory")
    services = h.runner.services
    assert services is not None

    assert await services.seller.tap(mallory.user_id, sid, "sell") == "This signal is not yours."
    for action in ("retry", "refresh"):
        assert await services.seller.tap(mallory.user_id, sid, action) == "This signal is not yours."
    ok, words = await services.inbox.skip(mallory.user_id, sid)
    assert not ok and "not yours" in words
    assert (await stored(h, sid)).state == "pending"
    assert sends(h) == 0
    assert h.services.chain.token_balance(trader.wallet, mint) > 0

    # the owner can still sell it
    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)


async def test_a_stale_blockhash_is_refreshed_and_lands(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    sid = signal_id(signal)
    # the trader read the message for a while: the chain moved on past the blockhash's 150 slots
    h.services.chain.advance_slots(200)
    await age(h, sid, 60_000)

    await trader.chat.press("Sell", message=signal, expect=r"Refreshing")
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert done["message_id"] == signal["message_id"]  # the fresh transaction took over the same message
    assert len(exit_requests(h, trader)) == 1
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert (await stored(h, sid)).state == "superseded"
    assert sends(h) == 1  # the stale one was never sent


async def test_a_slippage_failure_is_retried_with_more_slippage_and_lands(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    # the price slips 8% after the signal: its 5% minimum out can no longer be met
    h.services.chain.market_move(mint, -8)

    await trader.chat.press("Sell", message=signal)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert done["message_id"] == signal["message_id"]
    requests = exit_requests(h, trader)
    assert [r.get("slippage_bps") for r in requests] == [520]
    assert sends(h) == 1  # the first one failed its simulation, so it was never signed nor sent
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    first = await stored(h, signal_id(signal))
    assert first.state == "failed" and first.error and first.error.startswith("slippage")
    services = h.runner.services
    assert services is not None
    landed = [s for s in await services.inbox.signals.for_user(trader.chat.user_id, ("landed",))]
    assert len(landed) == 1 and landed[0].slippage_bps == 520 and landed[0].attempt == 1


async def test_a_hostile_transaction_is_refused_and_nothing_is_sent(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    chain = h.services.chain
    # a spoofed stream slips a 0.1 SOL "tip" into an otherwise genuine router sell (the control API's fault)
    h.services.control_api.hostile("tip_over_cap", api_key=trader.api_key, mint=str(mint))
    signal = await trader.chat.wait_text(r"Stop loss hit")
    sol_before = chain.balance(trader.wallet)
    tokens_before = chain.token_balance(trader.wallet, mint)

    await trader.chat.press("Sell", message=signal, expect=r"Refused to sign")
    text = (await trader.chat.wait_text(r"Refused to sign"))["text"]
    assert "Nothing was signed" in text
    assert sends(h) == 0
    assert chain.balance(trader.wallet) == sol_before
    assert chain.token_balance(trader.wallet, mint) == tokens_before
    assert (await stored(h, signal_id(signal))).error == "guard:sol_transfer_too_large"


async def test_a_wallet_without_sol_for_fees_is_told_so(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    chain = h.services.chain
    signal = await take_profit(h, trader, mint)
    chain.fund_lamports(trader.wallet, -chain.balance(trader.wallet))  # every lamport gone
    assert chain.balance(trader.wallet) == 0

    await trader.chat.press("Sell", message=signal)
    failed = await trader.chat.wait_text(r"Not sold.*not enough SOL.*fee", timeout=15)
    assert any("Refresh" in b for b in trader.chat.buttons(failed))
    assert sends(h) == 0
    assert chain.token_balance(trader.wallet, mint) > 0
    assert (await stored(h, signal_id(signal))).state == "failed"


async def test_auto_sell_sells_without_a_tap(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    await trader.chat.send("/settings auto on", expect=r"Auto-sell: on|saved")

    h.services.chain.market_move(mint, 40)
    await pump(h)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert "auto-sell" in done["text"].lower()
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert sends(h) == 1
    assert not any(a for a in answers(trader))  # nobody tapped


async def test_a_ladder_level_sells_part_and_keeps_the_position(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE", strategy="sl 50 deadline 0")
    await trader.chat.send("/ladder 20:50 60:50", expect=r"ladder|saved")
    chain = h.services.chain
    held = chain.token_balance(trader.wallet, mint)

    chain.market_move(mint, 30)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached")
    assert "50% of the position, ladder level 1" in signal["text"]
    await trader.chat.press("Sell", message=signal)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert "Partial sell, ladder level 1" in done["text"]
    assert chain.token_balance(trader.wallet, mint) == held - held // 2
    services = h.runner.services
    assert services is not None
    position = (await services.streams.positions.open_for(trader.chat.user_id))[0]
    assert position.status == "open"


async def test_history_lists_exits_with_their_outcome(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    await trader.chat.press("Skip", message=signal, expect=r"Skipped")
    await trader.chat.press("Sell now")
    fresh = await trader.chat.wait_for(
        lambda ms: next((m for m in reversed(ms) if m.get("from") == "bot" and m["message_id"] > signal["message_id"]
                         and any(b.startswith("✅ Sell") for b in trader.chat.buttons(m))), None),
        what="a fresh exit signal",
    )
    await trader.chat.press("Sell", message=fresh)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)

    reply = await trader.chat.send("/history", expect=r"Last exits")
    lines = reply["text"].splitlines()
    assert any("✅ sold" in line and "PEPE" in line and "SOL" in line and "PnL" in line for line in lines), lines
    assert any("⏭ skipped" in line and "PEPE" in line for line in lines), lines


def test_next_slippage_steps_up_to_the_cap() -> None:
    # the official CLI's steps: +20 bps on the first retry, then +40 bps on each one after
    steps, current = [], 500
    for attempt in range(4):
        current = sell_module.next_slippage(current, attempt, 1500)
        steps.append(current)
    assert steps == [520, 560, 600, 640]
    assert sell_module.next_slippage(1490, 0, 1500) == 1500
    assert sell_module.next_slippage(1480, 3, 1500) == 1500
