"""The strategy as a trader sets it by chat, through the real bot and the sandbox Telegram."""

from __future__ import annotations

from tests.e2e.harness import Harness


async def test_strategy_the_readme_ladder_is_saved_and_told_as_shares_of_what_is_left(harness: Harness) -> None:
    chat = await harness.user("Ann")
    await chat.send("/start", expect=r"1/3")
    reply = await chat.send("/ladder 25:30 50:50 100:100", expect=r"Saved")
    text = reply["text"]
    assert "each level sells a share of what is left" in text
    assert "at +25% sell 30% of what's left (30% of the position sold by then)" in text
    assert "at +50% sell 50% of what's left (65% of the position sold by then)" in text
    assert "at +100% sell the rest (100% of the position sold by then)" in text
    # the default take profit (+6 %) would have sold everything before the first level
    assert "take profit (+6%) is now off" in text


async def test_strategy_a_bad_ladder_and_a_guard_only_strategy_are_refused_with_the_rule(harness: Harness) -> None:
    chat = await harness.user("Ann")
    await chat.send("/start", expect=r"1/3")
    refused = await chat.send("/ladder 25:100 50:50", expect=r"Nothing was changed")
    assert "only the last level may sell 100%" in refused["text"] and "/ladder 25:30 50:50 100:100" in refused["text"]
    guard_only = await chat.send("/strategy tp 0 sl 0 trail 0 deadline 0 guard on", expect=r"Nothing was changed")
    assert "at least one of take profit (tp), stop loss (sl), trailing stop (trail) or a deadline" in guard_only["text"]
    assert "the liquidity guard alone do not count" in guard_only["text"]
    shown = await chat.send("/strategy", expect=r"Your exit strategy")
    assert "Liquidity guard: off" in shown["text"] and "not an exit" in shown["text"]


async def test_strategy_the_editor_refuses_a_strategy_with_no_exit_and_says_why(harness: Harness) -> None:
    chat = await harness.user("Ann")
    await chat.send("/start", expect=r"1/3")
    await chat.send("/strategy", expect=r"Your exit strategy")
    await chat.press(r"^Edit$", expect=r"Editing your strategy")
    await chat.press(r"^Take profit: 6%", expect=r"Take profit: off")
    await chat.press(r"^Stop loss: 10%", expect=r"Stop loss: off")
    guard = await chat.press(r"^Liquidity guard", expect=r"Liquidity guard: on")
    assert guard is not None and "Liquidity guard (check the pool before an exit): on" in chat.buttons(guard)
    refused = await chat.press(r"Done", expect=r"Not saved")
    assert refused is not None
    assert "at least one of take profit (tp), stop loss (sl), trailing stop (trail) or a deadline" in refused["text"]
    shown = await chat.send("/strategy", expect=r"Your exit strategy")
    assert "Take profit: +6%" in shown["text"]  # nothing was saved
