"""Retries keep what the trader asked for: a failed partial sell is asked again for the same amount (through
`POST /v1/sell` with `amount_tokens`, since `request_exit_signal` sells the whole position), and retries step
the slippage the way the official CLI does. Runs the real bot against the sandbox."""

from __future__ import annotations

from functools import partial
from typing import Any

from tests.e2e.harness import Harness, Trader, exit_requests, sell_part
from tests.e2e.harness import holding as hold
from tests.e2e.harness import pump as pump_rounds

STRATEGY = "tp 500 sl 90 deadline 0"  # nothing fires on its own: every sell here is asked for


pump = partial(pump_rounds, slots=8)  # 3.2 s of stream time a round: one liquidity snapshot


async def holding(h: Harness) -> tuple[Trader, Any]:
    """A trader holding PEPE, a little up (numbers on the card)."""
    trader, mint = await hold(h, strategy=STRATEGY)
    h.services.chain.market_move(mint, 5)
    await pump(h)
    return trader, mint


async def test_a_failed_partial_sell_is_retried_for_the_same_amount(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader, mint = await holding(h)
    before = chain.token_balance(trader.wallet, mint)
    signal = await sell_part(trader)
    assert "25% of the position" in signal["text"]
    sells_built = h.services.api.calls["/v1/sell"]
    # the price slips 8% after the transaction was built: its 5% minimum out can no longer be met
    chain.market_move(mint, -8)

    await trader.chat.press("Sell", message=signal)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=20)
    assert done["message_id"] == signal["message_id"]
    assert "the rest of the position stays tracked" in done["text"]
    # a quarter sold, three quarters still held: the retry did not sell the whole position
    assert chain.token_balance(trader.wallet, mint) == before - before // 4
    assert h.services.api.calls["/v1/sell"] >= sells_built + 1  # asked again through the REST API...
    assert exit_requests(h, trader) == []  # ...never through request_exit_signal
    services = h.runner.services
    assert services is not None
    landed = await services.inbox.signals.for_user(trader.chat.user_id, ("landed",))
    assert len(landed) == 1 and landed[0].sell_tokens == before // 4 and landed[0].attempt >= 1
    assert landed[0].slippage_bps == 520  # the CLI's first step: +20 bps


async def test_a_stale_partial_sell_is_refreshed_for_the_same_amount(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader, mint = await holding(h)
    before = chain.token_balance(trader.wallet, mint)
    signal = await sell_part(trader)
    services = h.runner.services
    assert services is not None
    (pending,) = await services.inbox.signals.for_user(trader.chat.user_id, ("pending",))
    # the trader read the message for a while: the chain moved past the transaction's blockhash
    chain.advance_slots(200)
    await services.inbox.signals.set(pending.id, received_at_ms=pending.received_at_ms - 60_000)

    await trader.chat.press("Sell", message=signal, expect=r"Refreshing")
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=20)
    assert done["message_id"] == signal["message_id"]
    assert chain.token_balance(trader.wallet, mint) == before - before // 4
    assert exit_requests(h, trader) == []
    assert (await services.inbox.signals.get(pending.id)).state == "superseded"  # type: ignore[union-attr]
