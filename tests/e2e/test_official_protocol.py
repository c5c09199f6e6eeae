"""The official protocol, end to end through the chat on the sandbox: what a trader notices when exits go
through the LaserSell Router (routing fee, tip, lookup table), in USD1 markets, up a ladder whose levels sell
shares of what remains, through a failed partial sell, a refused session and a reconnect that renumbers
positions. Each test reads the chat and the stand-ins (chain balances, landed transactions, calls)."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import httpx
from solders.message import MessageV0

from tests.e2e.harness import Harness, Trader, sell_part, sends, setup_trader, until
from tests.e2e.harness import pump as pump_rounds

QUIET = "tp 500 sl 90 deadline 0"  # nothing fires on its own unless a test says so
# The docs' fee table (pricing/fee-structure.mdx), written out here so the test does not read it
# from the code it checks: professional pays 0.9 %, at least 0.01 SOL on SOL trades, no minimum on USD1.
PROFESSIONAL_BPS = 90
SOL_MINIMUM_FEE = 10_000_000
ONE_TOKEN = 10**6  # every mint here has 6 decimals


pump = partial(pump_rounds, slots=8)  # 3.2 s of stream time a round: one liquidity snapshot


async def control(h: Harness, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A call to the sandbox's control API over HTTP, as an operator would make it."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(h.services.urls["control"].rstrip("/") + path, json=body)
    response.raise_for_status()
    return response.json()


async def buy(h: Harness, trader: Trader, symbol: str, *, quote: str = "SOL", reserve: float = 30.0,
              spend: float = 0.5) -> str:
    """A market made through the control API and a buy landing in the trader's wallet; the chat announces it."""
    made = await control(h, "/sim/mints", {"symbol": symbol, "decimals": 6, "sol_reserve": reserve,
                                          "token_reserve": 1_000_000_000, "name": symbol.title(), "quote": quote})
    mint = made["mint"]
    await control(h, "/sim/buy", {"wallet": trader.wallet, "mint": mint, "sol": spend})
    await pump(h, 1)
    await trader.chat.wait_text(rf"New position: {symbol}")
    return mint


def curve_proceeds(h: Harness, mint: str, tokens: int) -> int:
    """What the pool pays for `tokens` right now, from its reserves (constant product, no pool fee)."""
    pool = h.services.chain.pool(mint)
    return pool.sol_reserve * tokens // (pool.token_reserve + tokens)


def session_messages(h: Harness, trader: Trader, kind: str) -> list[dict[str, Any]]:
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None
    return [m for m in session.received if m.get("type") == kind]


def amounts_in(text: str) -> list[str]:
    """Every `<number> <asset>` the text shows (`0.7 SOL`, `+1.25 USD1`)."""
    return re.findall(r"[-+]?\d[\d,]*(?:\.\d+)? (SOL|USD1)\b", text)


async def sold(trader: Trader, symbol: str, *, after: int = 0, timeout: float = 20) -> dict[str, Any]:
    return await trader.chat.wait_text(rf"Sold .* {symbol}\b.* for", timeout, after=after)


def said(trader: Trader, pattern: str) -> list[dict[str, Any]]:
    """The bot's messages whose text matches `pattern`."""
    return [m for m in trader.chat.bot_messages() if re.search(pattern, m.get("text") or "")]


async def test_a_router_exit_with_a_helius_tip_and_a_lookup_table_sells_on_one_tap_for_the_proceeds_less_fee_and_tip(
    harness: Harness,
) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    tip = 2_000_000  # 0.002 SOL: the trader's own choice, above Helius Sender's floor
    await trader.chat.send("/settings mode helius_sender tip 0.002", expect=r"Saved")

    def configured_for_helius() -> bool:
        session = h.services.stream.session_for(trader.api_key)
        return session is not None and session.effective_send_mode() == "helius_sender" and session.effective_tip() == tip

    await until(configured_for_helius, "the stream configured for Helius Sender with the trader's tip")
    mint = await buy(h, trader, "PEPE")
    chain.market_move(mint, 40)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached\W+PEPE")

    # what the sell should pay, worked out from the pool before it: curve - routing fee - tip - network fee
    tokens = chain.token_balance(trader.wallet, mint)
    gross = curve_proceeds(h, mint, tokens)
    routing_fee = max(gross * PROFESSIONAL_BPS // 10_000, SOL_MINIMUM_FEE)
    lamports_before = chain.balance(trader.wallet)
    tips_before = {account: chain.balance(account) for account in chain.tip_accounts}
    collected_before = chain.balance(chain.fee_collector)

    await trader.chat.press("Sell", message=signal)  # one tap
    done = await sold(trader, "PEPE")
    assert done["message_id"] == signal["message_id"]

    assert sends(h) == 1
    (signature,) = h.services.rpc.sent
    landed = chain.get_transaction(signature)
    assert landed is not None and landed.err is None
    message = landed.transaction.message
    assert isinstance(message, MessageV0)  # a v0 transaction...
    (lookup,) = message.address_table_lookups  # ...loading accounts from the pool's lookup table
    assert lookup.account_key == chain.pool(mint).lookup_table and landed.loaded_writable
    assert chain.router_program_id in landed.account_keys
    assert chain.token_balance(trader.wallet, mint) == 0
    assert chain.balance(trader.wallet) - lamports_before == gross - routing_fee - tip - landed.fee
    assert chain.balance(chain.fee_collector) - collected_before == routing_fee
    tipped = {a: chain.balance(a) - before for a, before in tips_before.items() if chain.balance(a) != before}
    assert list(tipped.values()) == [tip]  # one tip account got exactly the tip
    # the chat shows what the wallet received for the tokens (before the network fee)
    shown = re.search(r"for ([\d.]+) SOL", done["text"])
    assert shown is not None, done["text"]
    assert abs(float(shown.group(1)) - (gross - routing_fee - tip) / 1e9) < 0.0001


async def test_a_usd1_position_is_shown_in_usd1_everywhere_and_its_sale_pays_usd1(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    services = h.runner.services
    assert services is not None
    services.alerts.card_interval_s = 0.2  # the live card follows each price without the usual pacing
    trader = await setup_trader(h, "Ann", strategy="tp 20 sl 50 deadline 0")
    mint = await buy(h, trader, "BUCK", quote="USD1", reserve=500_000, spend=200)

    opened = await trader.chat.wait_text(r"New position: BUCK")
    assert re.search(r"for 200(\.00)? USD1", opened["text"]), opened["text"]
    assert set(amounts_in(opened["text"])) == {"USD1"}, opened["text"]
    chain.market_move(mint, 5)
    await pump(h)
    # the announcement becomes the live card: its PnL and value are USD1 too
    live = await trader.chat.wait_text(r"New position: BUCK.*PnL")
    assert live["message_id"] == opened["message_id"]
    assert set(amounts_in(live["text"])) == {"USD1"}, live["text"]
    listing = await trader.chat.send("/positions", expect=r"Open positions")
    assert "BUCK" in listing["text"] and "SOL" not in set(amounts_in(listing["text"])), listing["text"]
    card = await trader.chat.press("BUCK", message=listing, expect=r"Holding .* tokens")
    assert "USD1" in amounts_in(card["text"]) and "SOL" not in amounts_in(card["text"]), card["text"]

    chain.market_move(mint, 40)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached\W+BUCK")
    assert amounts_in(signal["text"]) and set(amounts_in(signal["text"])) == {"USD1"}, signal["text"]

    tokens = chain.token_balance(trader.wallet, mint)
    gross = curve_proceeds(h, mint, tokens)
    expected = gross - gross * PROFESSIONAL_BPS // 10_000  # USD1 trades: the percentage only
    usd1_before = chain.usd1_balance(trader.wallet)
    await trader.chat.press("Sell", message=signal)
    done = await sold(trader, "BUCK")
    assert set(amounts_in(done["text"])) == {"USD1"}, done["text"]
    assert chain.token_balance(trader.wallet, mint) == 0
    assert chain.usd1_balance(trader.wallet) - usd1_before == expected  # paid into the wallet's USD1 account
    shown = re.search(r"for ([\d,.]+) USD1", done["text"])
    assert shown is not None and abs(float(shown.group(1).replace(",", "")) - expected / 1e6) < 0.01

    photo = await trader.chat.wait_for(
        lambda ms: next((m for m in ms if m.get("from") == "bot" and "BUCK" in (m.get("caption") or "")), None),
        what="the PnL card of the sale")
    assert set(amounts_in(photo["caption"])) == {"USD1"}, photo["caption"]

    history = await trader.chat.send("/history", expect=r"Last exits")
    lines = [line for line in history["text"].splitlines() if "BUCK" in line]
    assert lines and all(set(amounts_in(line)) == {"USD1"} for line in lines), history["text"]


async def test_the_readme_ladder_sells_thirty_percent_then_half_the_rest_then_the_rest(harness: Harness) -> None:
    # profit%:sell%, each sell a share of what remains: 30 % of the position, half the rest, the rest
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, "Ann", strategy="sl 50 deadline 0")
    await trader.chat.send("/ladder 25:30 50:50 100:100", expect=r"Saved")
    mint = await buy(h, trader, "PEPE")
    original = chain.token_balance(trader.wallet, mint)
    last = 0

    for level, move, share_left in ((1, 35, 0.70), (2, 25, 0.35), (3, 50, 0.0)):
        chain.market_move(mint, move)
        await pump(h)
        signal = await trader.chat.wait_text(rf"Take profit reached\W+PEPE.*ladder level {level}\)", after=last)
        assert f"ladder level {level + 1}" not in signal["text"]
        await trader.chat.press("Sell", message=signal)
        done = await sold(trader, "PEPE", after=last)
        assert done["message_id"] == signal["message_id"]
        last = signal["message_id"]
        held = chain.token_balance(trader.wallet, mint)
        assert abs(held - original * share_left) <= ONE_TOKEN, (level, held, original)
        if share_left:
            assert "the rest of the position stays tracked" in done["text"]
        await pump(h, 1)

    assert sends(h) == 3
    await trader.chat.wait_text(r"PEPE closed")
    assert len(said(trader, r"Take profit reached")) == 3  # one signal per level, none twice


async def test_a_failed_sell_25_percent_is_retried_for_25_percent_and_three_quarters_stay(harness: Harness) -> None:
    h = harness
    chain = h.services.chain
    trader = await setup_trader(h, "Ann", strategy=QUIET)
    mint = await buy(h, trader, "PEPE")
    chain.market_move(mint, 5)
    await pump(h)
    before = chain.token_balance(trader.wallet, mint)
    signal = await sell_part(trader)
    assert "25% of the position" in signal["text"]
    built = h.services.api.calls["/v1/sell"]
    # the market moves between the quote and the landing: the transaction's minimum out is no longer met
    await control(h, "/sim/market", {"mint": mint, "pct": -8})

    await trader.chat.press("Sell", message=signal)
    done = await sold(trader, "PEPE")
    assert done["message_id"] == signal["message_id"]
    assert "the rest of the position stays tracked" in done["text"]
    assert chain.token_balance(trader.wallet, mint) == before - before // 4  # 75 % left
    # the first try fails on slippage in the guard's simulation, so it is never signed or sent; the retry lands
    assert sends(h) == 1
    failed = [s for s in h.services.rpc.sent if chain.signature_status(s) and chain.signature_status(s)["err"]]
    assert failed == []
    assert h.services.api.calls["/v1/sell"] == built + 1  # the retry asked for the same 25 % again
    assert session_messages(h, trader, "request_exit_signal") == []  # never for the whole position


async def test_a_session_in_use_refusal_during_a_reconnect_is_retried_and_new_positions_are_announced(
    harness: Harness,
) -> None:
    h = harness
    stream = h.services.stream
    trader = await setup_trader(h, "Ann", strategy=QUIET)
    first = stream.session_for(trader.api_key)
    attempts = stream.connection_attempts[trader.api_key]
    quiet_from = max(m["message_id"] for m in trader.chat.messages())
    # the old session still holds the key for a moment: three connections are refused, then one is let in
    await control(h, "/sim/faults", {"refuse_sessions": {"count": 3, "code": "session_limit"}})
    dropped = await control(h, "/sim/faults", {"drop_connections": True})
    assert dropped["applied"]["drop_connections"]

    await until(lambda: stream.session_for(trader.api_key) not in (None, first), "a new session")
    assert stream.connection_attempts[trader.api_key] - attempts == 4  # three refusals, then the session
    mint = await buy(h, trader, "WIF")
    opened = await trader.chat.wait_text(r"New position: WIF")
    assert h.services.chain.token_balance(trader.wallet, mint) > 0
    # a short blip bothers nobody: the one message since the drop is the new position
    since = [m for m in trader.chat.bot_messages() if m["message_id"] > quiet_from]
    assert [m["message_id"] for m in since] == [opened["message_id"]], trader.chat.transcript()


async def test_after_a_reconnect_renumbers_positions_the_override_and_the_deadline_hit_the_right_position(
    harness: Harness,
) -> None:
    h = harness
    chain = h.services.chain
    stream = h.services.stream
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 10")
    services = h.runner.services
    assert services is not None
    pepe = await buy(h, trader, "PEPE", spend=0.3)  # SOL left in the wallet for the fees of a sell
    # WIF opens 100 s of stream time later: its deadline is far off, PEPE's runs out during the test
    await control(h, "/sim/clock", {"advance_slots": 250})
    wif = await buy(h, trader, "WIF", spend=0.3)
    positions = {p.symbol: p for p in await services.streams.positions.open_for(trader.chat.user_id)}
    assert set(positions) == {"PEPE", "WIF"}
    await trader.chat.send(f"/pstrategy {positions['WIF'].position_id} tp 40 sl 15", expect=r"Saved for this position")
    first = stream.session_for(trader.api_key)
    ids_before = {p.token_account: p.position_id for p in stream.positions(trader.api_key)}

    await control(h, "/sim/faults", {"drop_connections": True})

    def renumbered() -> bool:
        session = stream.session_for(trader.api_key)
        return (session not in (None, first) and bool(session.configured)
                and bool([m for m in session.received if m.get("type") == "update_position_strategy"]))

    await until(renumbered, "the override re-sent on the new session")
    ids_after = {p.token_account: p.position_id for p in stream.positions(trader.api_key)}
    assert ids_after != ids_before  # the sandbox renumbered the positions
    second = stream.session_for(trader.api_key)
    wif_account = positions["WIF"].token_account
    (override,) = [m for m in second.received if m.get("type") == "update_position_strategy"]
    assert override["position_id"] == ids_after[wif_account]

    # both prices rise 45 %: only WIF's own take profit (40 %) fires; PEPE's account strategy wants 500 %
    pepe_tokens, wif_tokens = chain.token_balance(trader.wallet, pepe), chain.token_balance(trader.wallet, wif)
    chain.market_move(pepe, 45)
    chain.market_move(wif, 45)
    await pump(h)
    signal = await trader.chat.wait_text(r"Take profit reached\W+WIF")
    await pump(h)
    assert not said(trader, r"Take profit reached\W+PEPE")
    await trader.chat.press("Skip", message=signal, expect=r"Skipped")

    # PEPE's deadline runs out in the new session: asked for PEPE by its token account, and sold on a tap
    deadline = await trader.chat.wait_text(r"Deadline reached\W+PEPE", timeout=20)
    assert [m["token_account"] for m in session_messages(h, trader, "request_exit_signal")] == [
        positions["PEPE"].token_account
    ]
    assert not [m for m in first.received if m.get("type") == "request_exit_signal"]  # it ran out after the drop
    await trader.chat.press("Sell", message=deadline)
    await sold(trader, "PEPE")
    assert chain.token_balance(trader.wallet, pepe) == 0
    assert pepe_tokens > 0 and chain.token_balance(trader.wallet, wif) == wif_tokens  # WIF untouched
    assert not said(trader, r"Deadline reached\W+WIF")
    assert sends(h) == 1
