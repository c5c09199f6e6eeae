"""The strategy editor: the server's rules shown while typing, and a save that reaches the stream."""

import asyncio

import pytest
from playwright.async_api import expect
from solders.keypair import Keypair

from storage.copy import CopyStore
from tests.browser.conftest import Dashboard
from tests.e2e.harness import setup_trader

pytestmark = pytest.mark.asyncio(loop_scope="session")


def last_strategy(session) -> dict:
    sent = [m for m in session.received if m.get("type") in ("configure", "update_strategy")]
    return sent[-1]["strategy"]


async def test_editing_the_strategy_shows_the_rules_and_reconfigures_the_stream(dash: Dashboard) -> None:
    h = dash.h
    trader = await setup_trader(h, "Ann", strategy="tp 25 sl 10 deadline 0")
    session = h.services.stream.session_for(trader.api_key)
    assert last_strategy(session)["target_profit_pct"] == 25

    await dash.open(trader.chat.user_id, "Ann", page="strategy")
    f = dash.frame
    tp = f.get_by_label("Take profit %", exact=True)
    sl = f.get_by_label("Stop loss %", exact=True)
    save = f.locator("#strategy-save")
    status = f.locator("#strategy-status")
    await expect(tp).to_have_value("25")

    await sl.fill("150")  # out of range: said at once, and Save is off
    await expect(status).to_contain_text("stop loss 150% is out of range")
    await expect(save).to_be_disabled()
    await sl.fill("12")
    await tp.fill("80")
    await f.get_by_role("button", name="+ Add level").click()
    await f.get_by_label("Level 1 profit %").fill("90")  # at or above take profit: the server's ladder rule
    await expect(status).to_contain_text("would sell everything before the ladder")
    await f.get_by_label("Level 1 profit %").fill("40")
    await expect(save).to_be_enabled()
    await expect(status).to_contain_text("80")  # the server's own words for the valid strategy
    await dash.screenshot("strategy")
    await save.click()
    await expect(status).to_contain_text("Saved")

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while last_strategy(h.services.stream.session_for(trader.api_key)).get("target_profit_pct") != 80:
        assert loop.time() < deadline, f"the stream never got the new strategy: {last_strategy(session)}"
        await asyncio.sleep(0.05)
    wire = last_strategy(h.services.stream.session_for(trader.api_key))
    assert wire["stop_loss_pct"] == 12
    assert [lv["profit_pct"] for lv in wire.get("take_profit_levels", [])] == [40]


async def test_copy_trading_settings_and_stats_per_watched_wallet(dash: Dashboard) -> None:
    h = dash.h
    trader = await setup_trader(h, "Ann")
    whale = str(Keypair().pubkey())
    await trader.chat.send(f"/copy add {whale} whale", expect=r"Watching .*whale")
    await dash.open(trader.chat.user_id, "Ann", page="copy")
    f = dash.frame
    card = f.locator("article", has_text="whale")
    await expect(card).to_contain_text("0 copies")
    await card.get_by_label("whale SOL per copy").fill("0.3")
    await card.get_by_label("whale mode").select_option("auto")
    await card.get_by_role("button", name="Save").click()
    await expect(card).to_contain_text("Saved.")
    await dash.screenshot("copy")
    watched = await CopyStore(h.runner.services.db).find(trader.chat.user_id, "whale")
    assert watched is not None and watched.amount_units == 300_000_000 and watched.mode == "auto"
    await trader.chat.send("/copy", expect=r"whale")  # the chat sees the same settings
