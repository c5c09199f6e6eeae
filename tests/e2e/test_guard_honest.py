"""Honest exits still pass the guard that judges by simulated effect, each sold end to end through the chat:
a router exit paying the routing fee and a tip with a lookup table, a USD1-quoted exit and a Token-2022
position. (Partial sells, ladder levels and /buy run through the same executor in test_trade.py and
test_sell_paths.py.)"""

from __future__ import annotations

import base64
from typing import Any

from solders.message import MessageV0
from solders.transaction import VersionedTransaction

from tests.e2e.harness import Harness, Trader, take_profit
from tests.e2e.harness import holding as hold

STRATEGY = "tp 20 sl 90 deadline 0"


async def holding(h: Harness, symbol: str, **mint: Any) -> tuple[Trader, Any]:
    sol = 20.0 if mint.get("quote") == "USD1" else 0.4  # quote units: USD1 pools take dollars
    return await hold(h, "Ann", symbol, strategy=STRATEGY, sol=sol, **mint)


async def test_a_router_exit_with_fee_tip_and_lookup_table_is_sold(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader, mint = await holding(h, "PEPE")
    signal = await take_profit(h, trader, mint)
    services = h.runner.services
    assert services is not None
    pending = await services.inbox.signals.for_user(trader.chat.user_id, ("pending",))
    tx = VersionedTransaction.from_bytes(base64.b64decode(pending[0].unsigned_tx_b64))
    assert isinstance(tx.message, MessageV0) and tx.message.address_table_lookups
    fees_before = chain.balance(chain.fee_collector)
    tips_before = sum(chain.balance(t) for t in chain.tip_accounts)

    await trader.chat.press("Sell", message=signal)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert "Refused" not in done["text"]
    assert chain.token_balance(trader.wallet, mint) == 0
    assert chain.balance(chain.fee_collector) > fees_before  # the routing fee was paid
    assert sum(chain.balance(t) for t in chain.tip_accounts) - tips_before == 1_000_000  # the 0.001 SOL tip
    assert h.services.rpc.calls["simulateTransaction"] >= 1  # judged by its effect


async def test_a_usd1_exit_is_sold(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader, mint = await holding(h, "BONK", quote="USD1")
    usd1_before = chain.usd1_balance(trader.wallet)
    signal = await take_profit(h, trader, mint)

    await trader.chat.press("Sell", message=signal)
    done = await trader.chat.wait_text(r"Sold .* BONK for", timeout=15)
    assert "USD1" in done["text"]
    assert chain.token_balance(trader.wallet, mint) == 0
    assert chain.usd1_balance(trader.wallet) > usd1_before


async def test_a_token_2022_position_is_sold(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader, mint = await holding(h, "NEWT", token_2022=True)
    signal = await take_profit(h, trader, mint)

    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* NEWT for", timeout=15)
    assert chain.token_balance(trader.wallet, mint) == 0
    assert "Refused" not in trader.chat.transcript()
