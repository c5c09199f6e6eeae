"""Trading from chat through the sandbox: /positions, the card's sells (part, max, all), Sell now, a
per-position strategy that survives a dropped connection, Stop tracking, charts, and /buy."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from solders.pubkey import Pubkey

from handlers.trade import current_position, held_tokens
from storage.history import PnlHistory
from storage.positions import Position
from tests.e2e.harness import Harness, Trader, sends, setup_trader
from tests.e2e.harness import pump as pump_rounds

STRATEGY = "tp 500 sl 90 deadline 0"  # nothing fires on its own: every sell here is asked for


pump = partial(pump_rounds, slots=8)  # 3.2 s of stream time a round: one liquidity snapshot


async def holding(h: Harness, name: str = "Ann", symbol: str = "PEPE", sol: float = 0.5) -> tuple[Trader, Any]:
    trader = await setup_trader(h, name, strategy=STRATEGY)
    mint = h.services.chain.create_mint(symbol, 6, 30.0, 1_000_000_000.0, name=symbol.title())
    h.services.chain.outside_buy(trader.wallet, mint, sol)
    await pump(h)
    await trader.chat.wait_text(rf"New position: {symbol}")
    h.services.chain.market_move(mint, 5)  # a first price move: PnL and a liquidity snapshot on the card
    await pump(h)
    services = h.runner.services
    assert services is not None

    async def priced() -> bool:
        stored = await services.streams.positions.open_for(trader.chat.user_id)
        current = await current_position(services, trader.chat.user_id, stored[0].position_id) if stored else None
        return current is not None and current.profit_units is not None and bool(current.bands)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not await priced():
        assert loop.time() < deadline, "no PnL or liquidity for the position"
        await asyncio.sleep(0.02)
    return trader, mint


async def open_position(h: Harness, trader: Trader) -> Position:
    services = h.runner.services
    assert services is not None

    positions = await services.streams.positions.open_for(trader.chat.user_id)
    assert len(positions) == 1
    current = await current_position(services, trader.chat.user_id, positions[0].position_id)
    assert current is not None
    return current


async def open_card(trader: Trader, symbol: str = "PEPE") -> dict[str, Any]:
    listing = await trader.chat.send("/positions", expect=r"Open positions")
    assert symbol in listing["text"]
    return await trader.chat.press(symbol, message=listing, expect=r"Holding .* tokens")


async def test_partial_sell_from_the_card_leaves_the_rest_tracked(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    chain = h.services.chain
    card = await open_card(trader)
    for label in ("Sell 25%", "Sell 50%", "Sell 100%", "Sell now", "Edit strategy", "PnL chart", "Liquidity chart",
                  "Refresh", "Stop tracking"):
        assert any(label in b for b in trader.chat.buttons(card)), label
    assert "PnL" in card["text"] and "Liquidity" in card["text"] and "age" in card["text"]
    before = chain.token_balance(trader.wallet, mint)

    signal = await trader.chat.press("Sell 50%", message=card, expect=r"You asked to sell")
    assert "50% of the position" in signal["text"]
    assert trader.chat.buttons(signal)[:2] == ["✅ Sell", "Skip"]
    assert chain.token_balance(trader.wallet, mint) == before  # nothing happens before the tap
    await trader.chat.press("Sell", message=signal)
    done = await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert "the rest of the position stays tracked" in done["text"]
    left = chain.token_balance(trader.wallet, mint)
    assert left == before - before // 2

    await pump(h)
    position = await open_position(h, trader)
    assert position.status == "open"
    assert [p.tokens for p in h.services.stream.positions(trader.api_key)] == [left]
    refreshed = await trader.chat.press("Refresh", message=card, expect=r"Holding")
    assert refreshed["message_id"] == card["message_id"]
    services = h.runner.services
    assert services is not None

    assert await held_tokens(services, position) == left


async def test_sell_max_within_slippage_and_all_with_auto_sell(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h, sol=2.0)  # big enough that 5% slippage cannot sell it all
    h.services.chain.fund(trader.wallet, 0.1)  # the buy took every lamport: fees for the sells
    services = h.runner.services
    assert services is not None
    await pump(h, 2)  # a liquidity snapshot
    card = await open_card(trader)
    assert "Sellable within your 5% slippage" in card["text"] and "100% of the position" not in card["text"]
    label = next(b for b in trader.chat.buttons(card) if b.startswith("Sell max within 5%"))
    position = await open_position(h, trader)
    band = max((b for b in position.bands if b["slippage_bps"] <= 500), key=lambda b: b["slippage_bps"])
    expected = min(band["max_tokens"], h.services.chain.token_balance(trader.wallet, mint))
    signal = await trader.chat.press(label, message=card, expect=r"You asked to sell")
    stored = (await services.inbox.signals.for_user(trader.chat.user_id, ("pending",)))[0]
    assert stored.sell_tokens == expected and stored.reason == "manual"
    await trader.chat.press("Skip", message=signal, expect=r"Skipped")

    # with auto-sell on, Sell 100% goes straight through: no tap, and the position closes
    await services.accounts.store.update(trader.chat.user_id, auto_sell=True)
    await trader.chat.press("Sell 100%", message=card)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)
    assert h.services.chain.token_balance(trader.wallet, mint) == 0
    await pump(h)
    await trader.chat.wait_text(r"PEPE closed")


async def test_sell_now_and_stop_tracking(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    card = await open_card(trader)
    signal = await trader.chat.press("Sell now", message=card, expect=r"You asked to sell")
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None and any(m["type"] in ("request_exit_signal", "sell_now") for m in session.received)
    await trader.chat.press("Skip", message=signal, expect=r"Skipped")

    ask = await trader.chat.press("Stop tracking", message=card, expect=r"Stop tracking .*does not.* sell")
    sent_before = sends(h)
    await trader.chat.press("Yes, stop tracking", message=ask, expect=r"Stopped tracking PEPE")
    await pump(h, 1)
    position = await open_position_or_none(h, trader)
    assert position is None
    assert h.services.stream.positions(trader.api_key) == []
    assert h.services.chain.token_balance(trader.wallet, mint) > 0 and sends(h) == sent_before
    await trader.chat.press("Refresh", message=card, expect=None)
    answers = [a["text"] or "" for a in trader.chat.tg.callback_answers(trader.chat.chat_id)]
    await trader.chat.wait_for(lambda _: any("closed or not yours" in (a["text"] or "")
                                             for a in trader.chat.tg.callback_answers(trader.chat.chat_id)),
                               what="the closed-position answer")
    assert answers  # earlier taps were answered too


async def open_position_or_none(h: Harness, trader: Trader) -> Position | None:
    services = h.runner.services
    assert services is not None
    positions = await services.streams.positions.open_for(trader.chat.user_id)
    return positions[0] if positions else None


async def test_position_strategy_survives_a_dropped_connection(harness: Harness) -> None:
    h = harness
    trader, _mint = await holding(h)
    position = await open_position(h, trader)
    pid = position.position_id
    card = await open_card(trader)
    form = await trader.chat.press("Edit strategy", message=card, expect=r"/pstrategy")
    assert f"/pstrategy {pid}" in form["text"]
    await trader.chat.send(f"/pstrategy {pid} tp abc", expect=r"Not changed: tp 'abc' is not a number")
    await trader.chat.send(f"/pstrategy {pid} deadline 30", expect=r"deadline runs for all positions")
    await trader.chat.send(f"/pstrategy {pid} tp 40 sl 15", expect=r"Saved for this position")
    stream = h.services.stream

    supervisor = h.runner.services.streams
    wire_id = position.stream_position_id

    def overrides(session: Any) -> list[dict[str, Any]]:
        # the stream's id for the position: a reconnect's new session numbers positions afresh
        return [m for m in session.received if m.get("type") == "update_position_strategy" and m["position_id"] == wire_id]

    first = stream.session_for(trader.api_key)
    assert first is not None
    sent = overrides(first)
    assert sent and sent[-1]["strategy"]["target_profit_pct"] == 40 and sent[-1]["strategy"]["stop_loss_pct"] == 15

    await stream.drop_connections()
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        session = stream.session_for(trader.api_key)
        wire_id = (await supervisor.positions.get(trader.chat.user_id, pid)).stream_position_id
        if session is not None and session is not first and overrides(session):
            break
        assert loop.time() - start < 5, "the per-position strategy was not re-sent after the reconnect"
        await asyncio.sleep(0.02)
    assert overrides(session)[-1]["strategy"]["target_profit_pct"] == 40
    # and it acts: +45% fires this position's take profit although the account's is 500%
    h.services.chain.market_move(_mint, 45)
    await pump(h)
    await trader.chat.wait_text(r"Take profit reached")
    await trader.chat.send(f"/pstrategy {pid} reset", expect=r"Back on your account's strategy")
    services = h.runner.services
    assert services is not None
    assert (await services.streams.positions.get(trader.chat.user_id, pid)).strategy_json is None


async def test_charts_from_the_card(harness: Harness) -> None:
    h = harness
    trader, mint = await holding(h)
    card = await open_card(trader)
    services = h.runner.services
    assert services is not None

    history = PnlHistory.for_db(services.db)
    position = await open_position(h, trader)
    loop = asyncio.get_running_loop()
    for move in (10, -5, 20, 8):
        before = len(await history.samples(trader.chat.user_id, position.position_id))
        h.services.chain.market_move(mint, move)
        # PnL is handed out at most every half second a position and its samples are written in batches:
        # wait for this move's sample (bounded) so the chart has one point per move
        deadline = loop.time() + 10
        while len(await history.samples(trader.chat.user_id, position.position_id)) <= before:
            assert loop.time() < deadline, f"no PnL sample stored after a {move}% move"
            await pump(h, 1)
    for label, caption in (("PnL chart", r"value over time"), ("Liquidity chart", r"sells within each slippage")):
        photo = await trader.chat.press(label, message=card, expect=caption)
        assert photo.get("photo")
    samples = await history.samples(trader.chat.user_id, position.position_id)
    assert len(samples) >= 4 and samples == sorted(samples, key=lambda s: s.t_ms)


async def test_buy_shows_up_as_a_new_position(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    chain = h.services.chain
    mint = chain.create_mint("DOGE", 6, 30.0, 1_000_000_000.0, name="Doge")
    services = h.runner.services
    assert services is not None
    before_sends, before_sol = sends(h), chain.balance(trader.wallet)

    bad = {
        "/buy nonsense 0.1": r"not a token mint address",
        f"/buy {mint} lots": r"not an amount of SOL",
        f"/buy {mint} -1": r"more than 0 SOL",
        f"/buy {mint} 0": r"more than 0 SOL",
        f"/buy {mint} 5": r"not enough",
        f"/buy {Pubkey.new_unique()} 0.1": r"knows no market",
        "/buy": r"Usage",
    }
    for command, reply in bad.items():
        await trader.chat.send(command, expect=reply)
    rows = await services.db.fetchall("SELECT id FROM buy_orders")
    assert rows == [] and sends(h) == before_sends and chain.balance(trader.wallet) == before_sol

    quote = await trader.chat.send(f"/buy {mint} 0.1", expect=r"Buy .* for 0\.1 SOL")
    assert "About" in quote["text"] and trader.chat.buttons(quote) == ["✅ Buy", "Cancel"]
    assert chain.token_balance(trader.wallet, mint) == 0
    # two taps at once (a double tap, or two devices): one buy
    data = next(b["data"] for row in quote["buttons"] for b in row if b["text"] == "✅ Buy")
    answered = len(trader.chat.tg.callback_answers(trader.chat.chat_id))
    for _ in range(2):
        trader.chat.tg.press(trader.chat.user_id, quote["message_id"], data)
    done = await trader.chat.wait_text(r"✅ Bought", timeout=15)
    assert done["message_id"] == quote["message_id"]
    await trader.chat.wait_for(lambda _: len(trader.chat.tg.callback_answers(trader.chat.chat_id)) >= answered + 2,
                               what="both taps answered")
    words = sorted(a["text"] or "" for a in trader.chat.tg.callback_answers(trader.chat.chat_id)[answered:])
    assert words[0].startswith("Already") and words[1] == "Buying…"
    assert sends(h) == before_sends + 1
    assert chain.token_balance(trader.wallet, mint) > 0
    spent = before_sol - chain.balance(trader.wallet)
    assert 100_000_000 <= spent < 100_000_000 + 5_000_000
    await pump(h)
    await trader.chat.wait_text(r"New position: DOGE")

    # a cancelled quote is never signed
    again = await trader.chat.send(f"/buy {mint} 0.05", expect=r"Buy .* for 0\.05 SOL")
    await trader.chat.press("Cancel", message=again, expect=r"Buy cancelled")
    assert sends(h) == before_sends + 1


async def test_no_buy_while_the_stream_is_down(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy=STRATEGY)
    mint = h.services.chain.create_mint("DOGE", 6, 30.0, 1_000_000_000.0)
    services = h.runner.services
    assert services is not None
    await services.streams.stop_user(trader.chat.user_id)
    await trader.chat.send(f"/buy {mint} 0.1", expect=r"stream is not connected")
    assert await services.db.fetchall("SELECT id FROM buy_orders") == []
