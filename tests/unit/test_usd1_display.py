"""A position in a USD1-quoted market reads in USD1 everywhere the trader looks: the new-position message, the
card, the exit signal, the PnL card picture, the PnL chart and /history. Quote units there are USD1 base units
(6 decimals), not lamports."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import bot.notify.pnl_card as pnl_card
from bot.notify import render
from bot.notify.charts import render_pnl_chart
from bot.notify.pnl_card import PnlCard, format_quote, render_pnl_card, sample_card
from handlers.positions import history_command
from storage.db import Database
from storage.history import Sample
from storage.positions import ExitSignals, Position, Positions
from storage.users import Users

USER = 7
WALLET = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USD1_CONTEXT = {
    "market_type": "raydium_cpmm",
    "raydium_cpmm": {"pool": MINT, "config": MINT, "quote_mint": render.USD1_MINT, "user_quote_account": WALLET},
}


def usd1(position: Position) -> Position:
    """The position as the store gives it for a USD1 market (the stored row carries its quote)."""
    if "quote" in {f.name for f in dataclasses.fields(position)}:
        return dataclasses.replace(position, quote="USD1")  # type: ignore[call-arg]
    object.__setattr__(position, "quote", "USD1")
    return position


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "bot.db")
    await Users(database).seen(USER, USER, "Ann")
    try:
        yield database
    finally:
        await database.close()


async def opened(db: Database, **changes: Any) -> Position:
    msg = {
        "type": "position_opened", "position_id": 1, "wallet_pubkey": WALLET, "mint": MINT, "token_account": None,
        "tokens": 5_000_000_000, "entry_quote_units": 25_000_000,  # 25 USD1
        "market_context": USD1_CONTEXT, "slot": 1, "token_symbol": "DOLL", "token_decimals": 6,
    }
    msg.update(changes)
    position, _new = await Positions(db).opened(USER, msg)
    await Positions(db).update(USER, 1, profit_units=5_000_000, proceeds_units=30_000_000)
    stored = await Positions(db).get(USER, 1)
    assert stored is not None
    return usd1(stored)


def test_the_quote_comes_from_the_market_context() -> None:
    assert render.quote_from_context(USD1_CONTEXT) == "USD1"
    assert render.quote_from_context({"market_type": "pumpfun", "pumpfun": {}}) == "SOL"
    assert render.quote_from_context(None) == "SOL"


async def test_a_usd1_position_reads_usd1_in_its_messages_and_card(db: Database) -> None:
    position = await opened(db)
    opened_text = render.position_opened(position)
    card_text = render.position_card(position)
    assert "25.00 USD1" in opened_text and "SOL" not in opened_text
    assert "+5.00 USD1" in card_text and "value 30.00 USD1" in card_text and "SOL" not in card_text
    msg = {"position_id": 1, "wallet_pubkey": WALLET, "mint": MINT, "position_tokens": 5_000_000_000,
           "profit_units": 5_000_000, "reason": "target_profit", "triggered_at_ms": 1, "unsigned_tx_b64": "AA==",
           "market_context": USD1_CONTEXT}
    signal = await ExitSignals(db).store(USER, msg, 1)
    signal_text = render.exit_signal(signal, position)
    assert "PnL +5.00 USD1" in signal_text and "SOL" not in signal_text


def test_a_usd1_pnl_card_picture_writes_usd1(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    original = pnl_card.fit_text

    def recording(text: str, *args: Any, **kwargs: Any) -> str:
        drawn.append(text)
        return original(text, *args, **kwargs)

    monkeypatch.setattr(pnl_card, "fit_text", recording)
    card: PnlCard = dataclasses.replace(sample_card(), entry_sol=25.0, exit_sol=30.0, pnl_sol=5.0, pnl_pct=20.0,
                                        quote="USD1")
    render_pnl_card(card)
    amounts = [t for t in drawn if "USD1" in t]
    assert {"+5.00 USD1", "25.00 USD1", "30.00 USD1"} <= set(amounts)
    assert not [t for t in drawn if "SOL" in t]
    assert format_quote(-0.5, "USD1", signed=True) == "-0.50 USD1"


def test_a_usd1_pnl_chart_is_labelled_usd1(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    fig_text, set_ylabel = Figure.text, Axes.set_ylabel
    monkeypatch.setattr(Figure, "text", lambda self, x, y, s, *a, **k: (written.append(s), fig_text(self, x, y, s, *a, **k))[1])
    monkeypatch.setattr(Axes, "set_ylabel", lambda self, s, *a, **k: (written.append(s), set_ylabel(self, s, *a, **k))[1])
    # 25 USD1 in, worth 30 USD1 at the end: six-decimal units
    samples = [Sample(1_700_000_000_000 + i * 5_000, 25_000_000 + i * 1_000_000, i * 1_000_000) for i in range(6)]
    render_pnl_chart(samples, title="DOLL · PnL", quote="USD1")
    assert "USD1" in written
    assert any(text.startswith("PnL +5.00 USD1") for text in written)
    assert not [t for t in written if "SOL" in t]


class _Message:
    def __init__(self) -> None:
        self.replies: list[str] = []

    async def reply_text(self, text: str, **_kwargs: Any) -> None:
        self.replies.append(text)


async def test_history_shows_a_usd1_exit_in_usd1(db: Database) -> None:
    await opened(db)
    signals = ExitSignals(db)
    msg = {"position_id": 1, "wallet_pubkey": WALLET, "mint": MINT, "position_tokens": 5_000_000_000,
           "profit_units": 5_000_000, "reason": "target_profit", "triggered_at_ms": 1, "unsigned_tx_b64": "AA==",
           "market_context": USD1_CONTEXT}
    signal = await signals.store(USER, msg, 1)
    await signals.set(signal.id, state="landed", outcome={"sol_received": 29_400_000, "tokens_sold": 5_000_000_000,
                                                          "basis": 25_000_000, "pnl": 4_400_000, "quote": "USD1"})
    services = SimpleNamespace(inbox=SimpleNamespace(signals=signals), streams=SimpleNamespace(positions=Positions(db)))
    message = _Message()
    update = SimpleNamespace(effective_user=SimpleNamespace(id=USER), effective_message=message)
    context = SimpleNamespace(services=services)
    await history_command(update, context)  # type: ignore[arg-type]
    (text,) = message.replies
    assert "29.40 USD1" in text and "PnL +4.40 USD1" in text
    assert "SOL" not in text
