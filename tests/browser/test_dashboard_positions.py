"""The dashboard's Positions page: live PnL pushed as it changes, and the chat's exit path behind its buttons."""

import re

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Dashboard
from tests.e2e.harness import setup_trader
from tests.e2e.test_exit_story import pump

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_live_pnl_change_arrives_and_sell_goes_through_the_chats_exit_path(dash: Dashboard) -> None:
    h = dash.h
    trader = await setup_trader(h, "Ann", strategy="tp 200 sl 50 deadline 0")
    chain = h.services.chain
    mint = chain.create_mint("PEPE", 6, 30.0, 1_000_000_000.0, name="Pepe")
    chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    await trader.chat.wait_text(r"New position: PEPE")

    await dash.open(trader.chat.user_id, "Ann")
    card = dash.frame.locator("article[data-position]", has_text="PEPE")
    await expect(card).to_be_visible(timeout=10_000)
    pnl = card.locator("[data-pnl]")
    await expect(pnl).not_to_have_text("–", timeout=10_000)
    before = await pnl.inner_text()

    chain.market_move(mint, 40)  # the price rises; nothing is reloaded: the page must be pushed the change
    for _ in range(20):
        await pump(h, 1)
        if await pnl.inner_text() != before:
            break
    await expect(pnl).not_to_have_text(before, timeout=10_000)
    assert (await pnl.inner_text()).startswith("+")
    await dash.screenshot("positions")

    await card.get_by_role("button", name="Chart").click()
    await expect(dash.frame.locator("#position-chart canvas").first).to_be_visible(timeout=10_000)
    await expect(dash.frame.get_by_text("Liquidity bands")).to_be_visible()
    await dash.screenshot("chart")

    # Sell now asks the stream for the exit, as the chat's button does; the signal's Sell is the chat's tap
    tokens = chain.token_balance(trader.wallet, mint)
    assert tokens > 0
    await card.get_by_role("button", name="Sell now").click()
    await pump(h, 3)
    sell = card.get_by_role("button", name=re.compile("✅ Sell"))
    await expect(sell).to_be_visible(timeout=10_000)
    await trader.chat.wait_text(r"PEPE")  # the chat shows the same signal
    await sell.click()
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert chain.token_balance(trader.wallet, mint) == 0

    await dash.frame.locator("#tab-history").click()
    await expect(dash.frame.locator("#history-chart canvas").first).to_be_visible(timeout=10_000)
    await expect(dash.frame.get_by_text(re.compile(r"1 sells"))).to_be_visible()
    await dash.screenshot("history")
