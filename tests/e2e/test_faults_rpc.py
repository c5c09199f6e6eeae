"""Faults of the Solana RPC during a sell: garbage, HTTP errors. What would be lost is the sell's result
(a landed sell left on "Waiting…" forever); each test asserts the trader is told it sold."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Harness, holding, sends, signal_id, stored, take_profit


@pytest.mark.parametrize("kind", ["garbage", "http500", "http429"])
async def test_a_landed_sell_is_reported_sold_when_a_status_answer_is_broken(harness: Harness, kind: str) -> None:
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    h.services.rpc.fault("getSignatureStatuses", kind, times=2)
    asked = h.services.rpc.calls["getSignatureStatuses"]

    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=20)

    assert h.services.rpc.calls["getSignatureStatuses"] - asked >= 3  # the broken answers, then a good one
    assert sends(h) == 1
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert (await stored(h, signal_id(signal))).state == "landed"


SELL_METHODS = ["getTokenAccountsByOwner", "getMultipleAccounts", "simulateTransaction", "isBlockhashValid",
                "getBalance", "sendTransaction", "getSignatureStatuses", "getTransaction", "getAccountInfo"]


@pytest.mark.parametrize("kind", ["garbage", "http500", "http429"])
@pytest.mark.parametrize("method", SELL_METHODS)
async def test_one_broken_answer_on_any_method_never_strands_a_sell(harness: Harness, method: str, kind: str) -> None:
    """Whatever method breaks once, the sell ends sold, or failed with a button that helps; never silent,
    never "on my side", never sent twice."""
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    h.services.rpc.fault(method, kind, times=1)

    await trader.chat.press("Sell", message=signal)
    end = await trader.chat.wait_for(
        lambda ms: next((m for m in ms if m["message_id"] == signal["message_id"]
                         and any(word in (m.get("text") or "") for word in ("Sold", "Not signed", "❌", "🛡", "⌛"))),
                        None), timeout=30, what="the sell's end")

    text = end.get("text") or ""
    assert "on my side" not in text
    assert len(set(h.services.rpc.sent)) <= 1  # one transaction at most reached the chain
    if "Sold" not in text:
        assert any(b for b in trader.chat.buttons(end) if "Retry" in b or "Refresh" in b), text
        assert h.services.chain.token_balance(trader.wallet, mint) > 0
    else:
        assert h.services.chain.token_balance(trader.wallet, mint) == 0


@pytest.mark.parametrize("method", ["sendTransaction", "getSignatureStatuses"])
async def test_a_sell_whose_request_times_out_is_still_sold_once(harness: Harness, method: str) -> None:
    """No answer at all (the bot's 10 s timeout runs out): the same bytes are sent again, or the status asked
    again; the sell lands once and the trader is told."""
    h = harness
    trader, mint = await holding(h, "Ann", "PEPE")
    signal = await take_profit(h, trader, mint)
    h.services.rpc.hang_s = 12.0
    h.services.rpc.fault(method, "hang", times=1)

    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=45)

    assert h.services.rpc.hangs[method] == 1
    assert len(set(h.services.rpc.sent)) == 1
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
