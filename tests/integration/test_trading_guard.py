"""The guard against real-shaped exits from the sandbox: every exit goes through a LaserSell Router whose id
nobody outside the sandbox knows (a new one each run) and loads accounts from lookup tables; such an exit lands,
while a hostile one is still refused before anything is signed. The real bot, the sandbox stream and chain."""

from __future__ import annotations

import base64
from typing import Any

from solders.message import MessageV0
from solders.transaction import VersionedTransaction

from tests.e2e.harness import Harness, Trader, holding, pump, sends

STRATEGY = "tp 20 sl 90 deadline 0"


async def hostile(h: Harness, trader: Trader, mint: Any, kind: str, **build: Any) -> dict[str, Any]:
    """The stream hands over a harmful transaction dressed as a stop-loss exit; returns its message."""
    position = h.services.stream.find_position(trader.api_key, mint=str(mint))
    assert position is not None
    tx = h.services.chain.build_hostile_tx(kind, position.wallet, position.mint, **build)
    h.services.stream.send_hostile(trader.api_key, position, base64.b64encode(bytes(tx)).decode(), "stop_loss")
    return await trader.chat.wait_text(r"Stop loss hit")


async def test_an_exit_through_the_unknown_router_with_lookup_tables_lands(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, strategy=STRATEGY)
    h.services.chain.market_move(mint, 40)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached")
    services = h.runner.services
    assert services is not None
    stored = await services.inbox.signals.for_user(trader.chat.user_id, ("pending",))
    tx = VersionedTransaction.from_bytes(base64.b64decode(stored[0].unsigned_tx_b64))
    assert isinstance(tx.message, MessageV0) and tx.message.address_table_lookups  # what the guard used to refuse
    router = h.services.chain.router_program_id
    assert router in tx.message.account_keys

    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    assert "Refused" not in trader.chat.transcript()


async def test_a_top_level_transfer_of_the_position_to_a_stranger_is_refused(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, strategy=STRATEGY)
    held = h.services.chain.token_balance(trader.wallet, mint)
    signal = await hostile(h, trader, mint, "steal_position")

    await trader.chat.press("Sell", message=signal)
    refused = await trader.chat.wait_text(r"Refused to sign")
    assert "Nothing was signed" in refused["text"]  # (the stranger's token account is what it trips on first)
    assert sends(h) == 0
    assert h.services.chain.token_balance(trader.wallet, mint) == held


async def test_the_sol_out_cap_is_the_users_tip_for_their_send_mode(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, strategy=STRATEGY)
    sol_before = h.services.chain.balance(trader.wallet)
    # a genuine router sell, but with twice the user's 0.001 SOL Helius Sender tip built in
    signal = await hostile(h, trader, mint, "tip_over_cap", tip_lamports=2_000_000)

    await trader.chat.press("Sell", message=signal)
    refused = await trader.chat.wait_text(r"Refused to sign")
    assert "more than your 0.001 SOL tip" in refused["text"]
    assert sends(h) == 0 and h.services.chain.balance(trader.wallet) == sol_before
