"""Copy trading through the chat on the sandbox: /copy, a watched wallet's buy copied on a tap or by itself,
the bot's own limits, the server's limits, the guard, and the loss breaker."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import httpx
import pytest
from solders.keypair import Keypair

from sandbox.control import write_mint_risk
from tests.e2e.harness import Harness, Trader, setup_trader, until
from tests.e2e.harness import pump as pump_rounds

STRATEGY = "tp 500 sl 90 deadline 0"  # nothing sells on its own unless a test moves the price that far
SOL = 1_000_000_000


pump = partial(pump_rounds, slots=8)  # 3.2 s of stream time a round: one liquidity snapshot


def new_mint(h: Harness, symbol: str, risk: list[str] | None = None) -> Any:
    """A launchpad-like mint: both authorities revoked, unless `risk` names the flags it keeps."""

    mint = h.services.chain.create_mint(symbol, 6, 30.0, 1_000_000_000.0, name=symbol.title(),
                                        token_2022=bool(risk and "permanent_delegate" in risk))
    write_mint_risk(h.services.chain, mint, risk or [])
    return mint


def watched_on_stream(h: Harness, trader: Trader, address: str) -> bool:
    book = h.services.stream.books.get(trader.api_key)
    return book is not None and any(w.get("pubkey") == address for w in book.watch_wallets)


def amount_on_stream(h: Harness, trader: Trader, address: str) -> int | None:
    book = h.services.stream.books.get(trader.api_key)
    entry = next((w for w in book.watch_wallets if w.get("pubkey") == address), None) if book else None
    return None if entry is None else entry["auto_buy"]["amount_quote_units"]


def results(h: Harness, trader: Trader) -> list[bool]:
    return [r["success"] for r in h.services.stream.mirror_results if r["api_key"] == trader.api_key]


def events(h: Harness, trader: Trader, kind: str) -> list[dict[str, Any]]:
    return [m for m in h.services.stream.mirror_sent if m["api_key"] == trader.api_key and m["type"] == kind]


async def watching(h: Harness, trader: Trader, nickname: str = "alice") -> str:
    address = str(Keypair().pubkey())
    await trader.chat.send(f"/copy add {address} {nickname}", expect=rf"Watching .*{nickname}")
    await until(lambda: watched_on_stream(h, trader, address), "the watch wallet on the stream")
    return address


async def copy_limit(h: Harness, trader: Trader, name: str, value: int) -> None:
    """Set one of the server's copy limits by chat; returns once the stream has it."""
    await trader.chat.send(f"/copy limit {name} {value}", expect=rf"is now {value}")
    await until(lambda: h.services.stream.books[trader.api_key].mirror_config.get(name) == value,
                "the new limit on the stream")


async def alice_buys(h: Harness, trader: Trader, alice: str, symbol: str, risk: list[str] | None = None) -> tuple[Any, int]:
    """The watched wallet buys a new token for 0.5 SOL; returns (the mint, the trader's SOL just before)."""
    mint = new_mint(h, symbol, risk)
    before = h.services.chain.balance(trader.wallet)
    h.services.chain.outside_buy(alice, mint, 0.5)
    await pump(h)
    return mint, before


async def nothing_copied(h: Harness, trader: Trader, mint: Any, before: int) -> None:
    """The stream heard the copy failed (mirror_buy_result false), and the wallet spent and holds nothing."""
    await until(lambda: results(h, trader) == [False], "mirror_buy_result false")
    assert h.services.chain.balance(trader.wallet) == before and h.services.chain.token_balance(trader.wallet, mint) == 0


async def test_ask_me_copy_buys_the_configured_amount_and_take_profit_sells_it(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, strategy="tp 20 sl 90 deadline 0")
    alice = await watching(h, trader)
    overview = await trader.chat.send("/copy", expect=r"1 of 10 watch-wallet slots")
    assert "alice" in overview["text"] and "ask me" in overview["text"] and "cooldown_sec" in overview["text"]
    await trader.chat.send("/copy amount alice 0.2", expect=r"buys for 0\.2 SOL")
    await until(lambda: amount_on_stream(h, trader, alice) == 2 * SOL // 10, "the new amount on the stream")
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None and "update_watch_wallets" in [m.get("type") for m in session.received]

    mint, before = await alice_buys(h, trader, alice, "PEPE")
    signal = await trader.chat.wait_text(r"alice.*bought.*Tap Copy")
    assert "0.2 SOL" in signal["text"]
    assert chain.token_balance(trader.wallet, mint) == 0  # nothing bought before the tap
    await trader.chat.press("Copy", message=signal, expect=r"Copied")
    await pump(h)
    await trader.chat.wait_text(r"New position")
    await trader.chat.wait_text(r"copies alice")
    spent = before - chain.balance(trader.wallet)
    assert chain.token_balance(trader.wallet, mint) > 0
    assert 0.2 * SOL <= spent <= 0.2 * SOL + 0.01 * SOL  # the amount, plus fees, tip and rent
    assert results(h, trader) == [True]
    positions = [p for p in h.services.stream.positions(trader.api_key) if p.mint == str(mint)]
    assert positions and positions[0].mirror_source == alice

    listing = await trader.chat.send("/positions", expect=r"Open positions")
    assert "🪞 alice" in listing["text"]
    await trader.chat.press("PEPE", message=listing, expect=r"Copied from alice")

    # the exit strategy manages the copy like any position: take profit, a tap, sold on chain
    sol_before = chain.balance(trader.wallet)
    chain.market_move(mint, 40)
    await pump(h)
    exit_signal = await trader.chat.wait_text(r"Take profit reached")
    await trader.chat.press("Sell", message=exit_signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert chain.token_balance(trader.wallet, mint) == 0
    assert chain.balance(trader.wallet) > sol_before
    history = await trader.chat.send("/history", expect=r"Last exits")
    assert "PEPE (🪞 alice)" in history["text"]


async def test_skip_buys_nothing_and_tells_the_stream(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    mint, before = await alice_buys(h, trader, alice, "PEPE")
    signal = await trader.chat.wait_text(r"alice.*bought.*Tap Copy")
    await trader.chat.press("Skip", message=signal, expect=r"Skipped")
    await nothing_copied(h, trader, mint, before)


async def test_auto_mode_buys_without_a_tap_until_the_daily_budget_is_spent(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, strategy=STRATEGY, sol=2.0)
    alice = await watching(h, trader)
    await trader.chat.send("/copy mode alice auto", expect=r"Auto-copy alice\?")
    await trader.chat.press("Yes, auto-copy", expect=r"Auto-copy of alice is on")
    await trader.chat.send("/copy limit daily_budget_sol 0.15", expect=r"daily_budget_sol is now 0\.15")
    await trader.chat.send("/copy limit cooldown_sec 0", expect=r"is now 0")
    await trader.chat.send("/copy limit max_positions_per_wallet 5", expect=r"is now 5")
    await until(lambda: (h.services.stream.books[trader.api_key].mirror_config.get("cooldown_sec") == 0
                         and h.services.stream.books[trader.api_key].mirror_config.get("max_positions_per_wallet") == 5),
                "the new limits on the stream")
    first, _ = await alice_buys(h, trader, alice, "ONE")
    await trader.chat.wait_text(r"Copied")
    assert chain.token_balance(trader.wallet, first) > 0
    second, _ = await alice_buys(h, trader, alice, "TWO")
    await trader.chat.wait_text(r"Not copied.*daily copy budget")
    assert chain.token_balance(trader.wallet, second) == 0
    assert results(h, trader) == [True, False]


async def test_a_second_buy_inside_the_cooldown_is_skipped_and_told_once(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    await copy_limit(h, trader, "max_positions_per_wallet", 5)
    first = new_mint(h, "ONE")
    chain.outside_buy(alice, first, 0.5)
    await pump(h, rounds=1, slots=1)
    await trader.chat.wait_text(r"alice.*bought.*Tap Copy")
    for symbol in ("TWO", "THREE"):
        mint = new_mint(h, symbol)
        chain.outside_buy(alice, mint, 0.5)
        await pump(h, rounds=1, slots=1)
    await until(lambda: len(events(h, trader, "mirror_buy_failed")) == 2, "two skips from the stream")
    told = await trader.chat.wait_text(r"Not copied.*cooldown")
    await trader.chat.send("/copy", expect=r"watch-wallet slots")  # a later reply: the skip notices are all in
    assert sum(bool(re.search(r"Not copied.*cooldown", m.get("text") or "", re.S))
               for m in trader.chat.bot_messages()) == 1, told
    assert len(events(h, trader, "mirror_buy_signal")) == 1


@pytest.mark.parametrize(
    ("limits", "why"),
    [
        ({"max_positions_per_wallet": 1}, r"as many copies of this wallet as allowed"),
        ({"max_positions_per_wallet": 5, "max_active_sol": 0.15}, r"over your SOL exposure cap"),
    ],
    ids=["max-positions", "max-exposure"],
)
async def test_max_positions_and_max_exposure_hold_and_say_why(
    harness: Harness, limits: dict[str, float], why: str
) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    await trader.chat.send("/copy amount alice 0.1", expect=r"0\.1 SOL")
    await until(lambda: amount_on_stream(h, trader, alice) == SOL // 10, "the amount on the stream")
    for name, value in {"cooldown_sec": 0, **limits}.items():
        await trader.chat.send(f"/copy limit {name} {value:g}", expect=r"is now")
        await until(lambda n=name, v=value: h.services.stream.books[trader.api_key].mirror_config.get(n) == v,
                    f"{name} on the stream")
    first, _ = await alice_buys(h, trader, alice, "ONE")
    signal = await trader.chat.wait_text(r"alice.*bought.*Tap Copy")
    await trader.chat.press("Copy", message=signal, expect=r"Copied")
    await pump(h)
    await trader.chat.wait_text(r"New position")
    assert chain.token_balance(trader.wallet, first) > 0
    # the second buy would pass the limit: the stream skips it, and the trader is told why
    second, before = await alice_buys(h, trader, alice, "TWO")
    await trader.chat.wait_text(rf"Not copied[\s\S]*{why}")
    assert chain.token_balance(trader.wallet, second) == 0
    assert len(events(h, trader, "mirror_buy_signal")) == 1


@pytest.mark.parametrize("hostile", ["overspend", "steal_sol"])
async def test_a_hostile_mirror_buy_is_refused_by_the_guard_and_reported(harness: Harness, hostile: str) -> None:
    h = harness
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    await trader.chat.send("/copy amount alice 0.1", expect=r"0\.1 SOL")
    await until(lambda: amount_on_stream(h, trader, alice) == SOL // 10, "the amount on the stream")
    async with httpx.AsyncClient() as client:
        reply = await client.post(h.services.urls["control"] + "/sim/faults", json={"mirror_hostile": hostile})
        assert reply.status_code == 200
    mint, before = await alice_buys(h, trader, alice, "PEPE")
    signal = await trader.chat.wait_text(r"alice.*bought.*Tap Copy")
    refused = await trader.chat.press("Copy", message=signal, expect=r"Not copied")
    assert refused is not None and "🛡" in refused["text"] and "Nothing was signed" in refused["text"]
    await nothing_copied(h, trader, mint, before)
    assert h.services.rpc.calls["sendTransaction"] == 0


async def test_slots_are_shown_and_one_past_the_plan_is_refused(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, strategy=STRATEGY, tier="free")
    for name in ("alice", "bob"):
        await trader.chat.send(f"/copy add {Keypair().pubkey()} {name}", expect=rf"Watching .*{name}")
    await trader.chat.send(f"/copy add {Keypair().pubkey()} carol", expect=r"free plan has 2 watch-wallet slots")
    await trader.chat.send("/copy", expect=r"2 of 2 watch-wallet slots")
    for bad, words in {
        "/copy add nonsense dave": r"not a Solana wallet address",
        "/copy amount alice lots": r"not an amount",
        "/copy amount zed 0.1": r"no wallet called 'zed'",
        "/copy limit cooldown_sec -3": r"number of 0 or more",
        "/copy limit speed 3": r"no limit called 'speed'",
        "/copy mode alice sometimes": r"ask.*or.*auto",
        "/copy frobnicate": r"does not know",
        "/copy wallet alice Savings": r"no wallet called 'Savings'; yours: Wallet 1",
        # what the user typed comes back escaped, so the reply is sent and not refused for its HTML
        "/copy amount a<b 0.1": r"no wallet called 'a<b'",
        "/copy amount alice 1<2": r"'1<2' is not an amount",
        "/copy limit a&b 3": r"no limit called 'a&b'",
        "/copy add <i>x</i> dave": r"'<i>x</i>' is not a Solana wallet address",
        "/copy x<y": r"does not know 'x<y'",
    }.items():
        await trader.chat.send(bad, expect=words)
    await trader.chat.send("/copy wallet alice Wallet 1", expect=r"copies of alice buy with Wallet 1")
    await trader.chat.send("/copy", expect=r"alice .* buys with Wallet 1")
    await trader.chat.send("/copy remove bob", expect=r"Removed bob")
    await trader.chat.send("/copy", expect=r"1 of 2 watch-wallet slots")


async def test_auto_disable_after_losses_is_told_and_shown_in_copy(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    await copy_limit(h, trader, "max_consecutive_losses", 1)
    mint, _ = await alice_buys(h, trader, alice, "PEPE")
    signal = await trader.chat.wait_text(r"alice.*bought.*Tap Copy")
    await trader.chat.press("Copy", message=signal, expect=r"Copied")
    await pump(h)
    await trader.chat.wait_text(r"New position")
    # the position is sold at a loss through the normal exit path: price down, Sell now from the card
    chain.market_move(mint, -40)
    await pump(h)
    listing = await trader.chat.send("/positions", expect=r"Open positions")
    card = await trader.chat.press("PEPE", message=listing, expect=r"Holding")
    signal = await trader.chat.press("Sell 100%", message=card, expect=r"You asked to sell")
    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    await pump(h)
    await trader.chat.wait_text(r"Copy trading of alice turned off after 1 losing")
    overview = await trader.chat.send("/copy", expect=r"alice.*disabled")
    assert "1 copies · win rate 0%" in overview["text"]  # per watched wallet, like the desktop app
    await until(lambda: not watched_on_stream(h, trader, alice), "alice off the watch list")
    # turned back on by hand, its buys are copied again
    await trader.chat.send("/copy on alice", expect=r"alice is on")
    await until(lambda: watched_on_stream(h, trader, alice), "alice back on the watch list")
    again = new_mint(h, "TWO")
    h.services.chain.advance_slots(100)  # past the cooldown
    chain.outside_buy(alice, again, 0.5)
    await pump(h)
    await trader.chat.wait_text(r"alice.*bought.*Tap Copy", after=signal["message_id"])


async def test_a_mint_with_a_permanent_delegate_is_flagged_and_not_auto_bought(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    await trader.chat.send("/copy mode alice auto", expect=r"Auto-copy alice\?")
    await trader.chat.press("Yes, auto-copy", expect=r"is on")
    mint, before = await alice_buys(h, trader, alice, "RUG", ["permanent_delegate"])
    signal = await trader.chat.wait_text(r"alice.*bought.*Token risks")
    assert "permanent delegate" in signal["text"] and "never copied automatically" in signal["text"]
    assert trader.chat.buttons(signal) == ["✅ Copy", "Skip"]
    await trader.chat.press("Skip", message=signal, expect=r"Skipped")
    await nothing_copied(h, trader, mint, before)
    assert h.services.rpc.calls["sendTransaction"] == 0


async def test_a_copy_that_would_break_the_fee_reserve_is_refused_with_the_reason(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, strategy=STRATEGY, sol=0.2)
    alice = await watching(h, trader)
    await trader.chat.send("/copy limit fee_reserve_sol 0.1", expect=r"fee_reserve_sol is now 0\.1")
    mint, before = await alice_buys(h, trader, alice, "PEPE")
    refused = await trader.chat.wait_text(r"Not copied.*kept for exit fees")
    assert "Top it up or lower the amount" in refused["text"]
    await nothing_copied(h, trader, mint, before)


async def test_an_ask_me_signal_not_tapped_in_time_expires_and_buys_nothing(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, strategy=STRATEGY)
    services = h.runner.services
    assert services is not None
    services.copier.signal_ttl_ms = 300  # a signal's life, short here so the test does not wait a minute
    alice = await watching(h, trader)
    mint, before = await alice_buys(h, trader, alice, "PEPE")
    expired = await trader.chat.wait_text(r"Expired: not copied")
    assert trader.chat.buttons(expired) == []  # no Copy left to tap late
    await nothing_copied(h, trader, mint, before)


async def test_a_signal_waiting_for_a_tap_when_the_bot_restarts_expires_unsigned(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    mint, before = await alice_buys(h, trader, alice, "PEPE")
    signal = await trader.chat.wait_text(r"alice.*bought.*Tap Copy")
    await h.restart_bot()
    expired = await trader.chat.wait_text(r"Expired: not copied")
    assert expired["message_id"] == signal["message_id"] and trader.chat.buttons(expired) == []
    assert chain.balance(trader.wallet) == before and chain.token_balance(trader.wallet, mint) == 0


async def test_a_flagged_token_copied_by_choice_shows_its_flag_on_the_new_position(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, strategy=STRATEGY)
    alice = await watching(h, trader)
    mint, _ = await alice_buys(h, trader, alice, "ICE", ["freeze_authority"])
    signal = await trader.chat.wait_text(r"alice.*bought.*Token risks.*Tap Copy")
    assert "freeze authority kept" in signal["text"]
    await trader.chat.press("Copy", message=signal, expect=r"Copied")
    await pump(h)
    position = await trader.chat.wait_text(r"copies alice")
    assert "freeze authority kept" in position["text"]
    assert chain.token_balance(trader.wallet, mint) > 0
