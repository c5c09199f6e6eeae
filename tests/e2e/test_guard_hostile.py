"""A spoofed or compromised stream sends exits that would harm the wallet; through the chat, the tap (or
auto-sell) is refused, nothing is signed, the wallet's balances stay as they were, and the message names
what the transaction tried. Every hostile kind the sandbox's control API can send."""

from __future__ import annotations

from typing import Any

import pytest

from bot.exits.sell import AUTO_SIGN_PER_MINUTE
from tests.e2e.harness import Harness, Trader, pump, sends, setup_trader

STRATEGY = "tp 20 sl 90 deadline 0"

# kind -> what the refusal must say the transaction tried
HOSTILE = {
    "steal_position": r"hand [\d,]+ token units straight to",
    "steal_sol": r"send [\d.]+ SOL out of your wallet, more than your 0\.001 SOL tip",
    "steal_other_token": r"move tokens out of .*not the account of this position",
    "set_authority": r"change who controls one of your token accounts",
    "approve": r"let someone else spend your tokens",
    "cpi_drain": r"take [\d,]+ units of PEPE to .* and pay nothing back",
    "tip_over_cap": r"more than your 0\.001 SOL tip",
    "cpi_sol": r"send [\d.]+ SOL of your SOL to other accounts",
    "router_approve": r"let \S+ spend your PEPE",
    "router_set_authority": r"make \S+ the owner of your PEPE account",
    "second_signer": r"also needs the signature of",
    "lookup_table_destination": r"hand [\d,]+ token units straight to",
}


async def holding(h: Harness, *, other_token: bool = False) -> tuple[Trader, Any]:
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    chain = h.services.chain
    mint = chain.create_mint("PEPE", 6, 30.0, 1_000_000_000.0, name="Pepe")
    chain.outside_buy(trader.wallet, mint, 0.3)
    if other_token:
        chain.outside_buy(trader.wallet, chain.create_mint("WIF", 6, 30.0, 1_000_000_000.0, name="Wif"), 0.2)
    await pump(h)
    await trader.chat.wait_text(r"New position: PEPE")
    return trader, mint


def balances(h: Harness, trader: Trader) -> tuple[int, dict[Any, int]]:
    chain = h.services.chain
    return chain.balance(trader.wallet), dict(chain.token_balances(trader.wallet))


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_a_hostile_exit_is_refused_at_the_tap_and_nothing_moves(harness: Harness, kind: str) -> None:
    h = harness
    trader, mint = await holding(h, other_token=kind == "steal_other_token")
    before = balances(h, trader)
    h.services.control_api.hostile(kind, api_key=trader.api_key, mint=str(mint))
    signal = await trader.chat.wait_text(r"Stop loss hit")

    await trader.chat.press("Sell", message=signal)
    refused = await trader.chat.wait_text(r"Refused to sign")
    assert "Nothing was signed" in refused["text"]
    assert refused["message_id"] == signal["message_id"]
    assert __import__("re").search(HOSTILE[kind], refused["text"]), refused["text"]
    assert sends(h) == 0
    assert balances(h, trader) == before


async def test_a_hostile_exit_under_auto_sell_is_refused_and_auto_sell_is_switched_off(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    await trader.chat.send("/settings auto on", expect=r"Auto-sell: on|saved")
    before = balances(h, trader)

    h.services.control_api.hostile("cpi_sol", api_key=trader.api_key, mint=str(mint))
    off = await trader.chat.wait_text(r"Auto-sell is now off")
    assert "SOL of your SOL to other accounts" in off["text"]
    await trader.chat.wait_text(r"Refused to sign")
    assert sends(h) == 0
    assert balances(h, trader) == before
    services = h.runner.services
    assert services is not None
    assert not (await services.accounts.store.get(trader.chat.user_id)).auto_sell


async def test_a_repeated_signal_burst_under_auto_sell_signs_one_sell(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    await trader.chat.send("/settings auto on", expect=r"Auto-sell: on|saved")
    sol_before = h.services.chain.balance(trader.wallet)

    h.services.control_api.hostile("burst", api_key=trader.api_key, mint=str(mint), count=20)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    held_back = await trader.chat.wait_for(
        lambda ms: [m for m in ms if "Auto-sell held this one back" in (m.get("text") or "")], what="held back signals"
    )
    assert held_back
    # every other copy was held back or refused (the position is gone); none was signed
    await trader.chat.wait_for(
        lambda ms: sum(1 for m in ms if "Stop loss hit" in (m.get("text") or "")
                       and ("held this one back" in m["text"] or "Refused" in m["text"] or "Sold" in m["text"])) >= 1,
        what="settled copies",
    )
    assert sends(h) == 1
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert h.services.chain.balance(trader.wallet) > sol_before  # one sale's proceeds, no tips to anyone else


async def test_auto_sell_signs_at_most_its_cap_a_minute_and_holds_the_rest_for_a_tap(harness: Harness) -> None:

    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, "Ann", strategy=STRATEGY, sol=2.0)
    count = AUTO_SIGN_PER_MINUTE + 1
    mints = [chain.create_mint(f"TOK{i}", 6, 30.0, 1_000_000_000.0, name=f"Token {i}") for i in range(count)]
    for mint in mints:
        chain.outside_buy(trader.wallet, mint, 0.1)
    await pump(h)
    await trader.chat.wait_for(lambda ms: sum("New position" in (m.get("text") or "") for m in ms) >= count,
                               what="every position announced")
    await trader.chat.send("/settings auto on", expect=r"Auto-sell: on|saved")

    for mint in mints:
        chain.market_move(mint, 40)
    await pump(h)
    held = await trader.chat.wait_text(rf"signed {AUTO_SIGN_PER_MINUTE} sells in the last minute", timeout=20)
    assert any("Sell" in b for b in trader.chat.buttons(held))  # the trader can still sell it with a tap
    await trader.chat.wait_for(
        lambda ms: sum(1 for m in ms if "Sold by auto-sell" in (m.get("text") or "")) >= AUTO_SIGN_PER_MINUTE,
        timeout=20, what="the capped auto-sells",
    )
    assert sends(h) == AUTO_SIGN_PER_MINUTE
    assert sum(1 for mint in mints if chain.token_balance(trader.wallet, mint) > 0) == 1
