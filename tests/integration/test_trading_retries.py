"""Retries keep what the trader asked for: a failed partial sell is asked again for the same amount (through
`POST /v1/sell` with `amount_tokens`, since `request_exit_signal` sells the whole position), and retries step
the slippage the way the official CLI does. Runs the real bot against the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Harness, Trader, setup_trader, start_harness, stop_harness

STRATEGY = "tp 500 sl 90 deadline 0"  # nothing fires on its own: every sell here is asked for


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path)
    try:
        yield h
    finally:
        await stop_harness(h)


async def pump(h: Harness, rounds: int = 3, slots: int = 8) -> None:
    for _ in range(rounds):
        h.services.chain.advance_slots(slots)
        h.services.stream.flush()
        await asyncio.sleep(0.05)


async def holding(h: Harness) -> tuple[Trader, Any]:
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    mint = h.services.chain.create_mint("PEPE", 6, 30.0, 1_000_000_000.0, name="Pepe")
    h.services.chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    await trader.chat.wait_text(r"New position: PEPE")
    h.services.chain.market_move(mint, 5)
    await pump(h)
    return trader, mint


def exit_requests(h: Harness, trader: Trader) -> list[dict[str, Any]]:
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None
    return [m for m in session.received if m.get("type") in ("request_exit_signal", "sell_now")]


async def test_a_failed_partial_sell_is_retried_for_the_same_amount(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader, mint = await holding(h)
    before = chain.token_balance(trader.wallet, mint)
    listing = await trader.chat.send("/positions", expect=r"Open positions")
    card = await trader.chat.press("PEPE", message=listing, expect=r"Holding .* tokens")
    signal = await trader.chat.press("Sell 25%", message=card, expect=r"You asked to sell")
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
    listing = await trader.chat.send("/positions", expect=r"Open positions")
    card = await trader.chat.press("PEPE", message=listing, expect=r"Holding .* tokens")
    signal = await trader.chat.press("Sell 25%", message=card, expect=r"You asked to sell")
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
