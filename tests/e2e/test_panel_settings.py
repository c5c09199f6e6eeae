"""Settings a trader types after tapping them, checked with the one-line form's rules; +/- steps that fit."""

from __future__ import annotations

from tests.e2e.harness import Harness, setup_trader


async def stored(h: Harness, user_id: int):  # type: ignore[no-untyped-def]
    services = h.runner.services
    assert services is not None
    return await services.accounts.store.get(user_id)


async def test_a_typed_tip_is_refused_under_the_floor_then_saved(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    chat = trader.chat
    panel = await chat.send("/settings", expect=r"Settings")
    await chat.press(r"^Tip 0\.001 SOL$", message=panel, expect=r"Send the tip in SOL.*Helius Sender needs a tip of at "
                     r"least 0\.0002 SOL")
    await chat.send("0.0001", expect=r"❌ Not changed: a tip of 0\.0001 SOL is under the floor")
    await chat.send("lots", expect=r"Not changed: tip 'lots' is not a number")
    assert (await stored(h, chat.user_id)).tip_lamports == 1_000_000
    await chat.send("0.003", expect=r"✅ Tip set to 0\.003 SOL")
    assert (await stored(h, chat.user_id)).tip_lamports == 3_000_000

    panel = await chat.send("/settings", expect=r"Settings")
    await chat.press(r"^Slippage \d", message=panel, expect=r"Send your slippage")
    await chat.send("70", expect=r"slippage '70' is out of range: use 0\.1 to 50")
    await chat.send("7.5", expect=r"✅ Slippage set to 7\.5%")
    assert (await stored(h, chat.user_id)).slippage_bps == 750


async def test_plus_and_minus_move_by_steps_that_fit_the_value(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    chat = trader.chat
    panel = await chat.send("/settings", expect=r"Settings")
    await chat.press(r"^Tip \+$", message=panel, expect=r"Tip: 0\.002 SOL")
    await chat.press(r"^Tip −$", message=panel, expect=r"Tip: 0\.001 SOL")
    await chat.press(r"^Tip −$", message=panel, expect=r"Tip: 0\.0005 SOL")

    # the strategy editor: take profit 6 % goes to 7 %, not 11 %
    await chat.send("/strategy tp 6", expect=r"Saved")
    editor = await chat.send("/strategy", expect=r"Your exit strategy")
    await chat.press(r"^Edit$", message=editor, expect=r"Editing your strategy")
    await chat.press(r"^\+$", expect=r"Take profit: \+7%")
