"""The position charts as images: size, a drawn plot area, the colours that carry meaning; the sample files;
and the bounded value history they are drawn from."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.notify import charts
from bot.notify.charts import (
    Band,
    ChartError,
    bands_from,
    render_liquidity_chart,
    render_pnl_chart,
    write_samples,
)
from storage.db import Database
from storage.history import Mark, PnlHistory, Sample

SIZE = (960, 540)


def _image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _count_near(image: Image.Image, colour: str, box: tuple[int, int, int, int], tolerance: int = 40) -> int:
    pixels = np.asarray(image.crop(box), dtype=np.int32)
    distance = np.abs(pixels - np.array(_hex(colour), dtype=np.int32)).sum(axis=2)
    return int((distance <= tolerance).sum())


PLOT_AREA = (110, 80, 900, 470)  # inside the axes, away from titles and tick labels


def _samples(count: int = 40, *, start: int = 1_700_000_000_000, rising: bool = True) -> list[Sample]:
    out = []
    for i in range(count):
        basis = 500_000_000
        proceeds = basis + (1 if rising else -1) * i * 4_000_000
        out.append(Sample(start + i * 3_000, proceeds, proceeds - basis))
    return out


def test_pnl_chart_is_a_phone_sized_picture_with_a_drawn_value_line() -> None:
    image = _image(render_pnl_chart(_samples(), [Mark(1_700_000_000_000 + 60_000, "signal", "take_profit")],
                                    title="PEPE · PnL"))
    assert image.size == SIZE
    assert _count_near(image, charts.VALUE, PLOT_AREA) > 500  # the value line
    assert _count_near(image, charts.MARK_COLOURS["signal"], PLOT_AREA) > 30  # the exit mark
    colours = np.unique(np.asarray(image.crop(PLOT_AREA)).reshape(-1, 3), axis=0)
    assert len(colours) > 20  # not an empty panel


def test_profit_is_filled_green_and_loss_red() -> None:
    up = _image(render_pnl_chart(_samples(rising=True)))
    down = _image(render_pnl_chart(_samples(rising=False)))
    green_up, red_up = (_count_near(up, c, PLOT_AREA, 60) for c in ("#1f5a4a", "#5a2a38"))
    green_down, red_down = (_count_near(down, c, PLOT_AREA, 60) for c in ("#1f5a4a", "#5a2a38"))
    assert green_up > red_up and red_down > green_down


def test_a_chart_needs_data() -> None:
    with pytest.raises(ChartError):
        render_pnl_chart(_samples(1))
    with pytest.raises(ChartError):
        render_liquidity_chart([])


def test_liquidity_chart_draws_one_bar_per_band() -> None:
    bands = bands_from([
        {"slippage_bps": 500, "max_tokens": 10, "coverage_pct": 100.0},
        {"slippage_bps": 100, "max_tokens": 2, "coverage_pct": 20.0},
        {"slippage_bps": "bad"},
        {"slippage_bps": 300, "max_tokens": 6, "coverage_pct": 60.0},
    ])
    assert [b.slippage_bps for b in bands] == [100, 300, 500]
    image = _image(render_liquidity_chart(bands, title="PEPE", your_slippage_bps=400, trend="draining"))
    assert image.size == SIZE
    assert _count_near(image, charts.PROFIT, PLOT_AREA, 30) > 2_000  # the full band
    assert _count_near(image, charts.LOSS, PLOT_AREA, 30) > 500  # the thin band
    assert _count_near(image, "#ffb020", PLOT_AREA, 30) > 1_000  # the middle band


def test_write_samples_makes_both_pictures(tmp_path: Path) -> None:
    pnl, liquidity = write_samples(tmp_path)
    for path in (pnl, liquidity):
        assert path.parent == tmp_path and _image(path.read_bytes()).size == SIZE
    assert pnl.name == "pnl-chart.png" and liquidity.name == "liquidity-chart.png"


def test_the_committed_samples_exist() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    for name in ("pnl-chart.png", "liquidity-chart.png"):
        assert _image((docs / name).read_bytes()).size == SIZE


# --- the history behind the PnL chart ----------------------------------------------------------------------------
@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "bot.db")
    await database.execute(
        "INSERT INTO users (telegram_id, chat_id, first_name, created_at, last_seen_at) VALUES (1, 1, 'Ann', 0, 0)"
    )
    try:
        yield database
    finally:
        await database.close()


def _update(t_ms: int, proceeds: int = 600, profit: int = 100) -> dict[str, int]:
    return {"position_id": 7, "server_time_ms": t_ms, "proceeds_units": proceeds, "profit_units": profit}


async def test_at_most_one_sample_per_interval(db: Database) -> None:
    history = PnlHistory(db, min_interval_ms=3_000)
    stored = [await history.sample(1, _update(t)) for t in range(0, 12_000, 100)]  # 10 updates a second
    assert sum(stored) == 4
    assert [s.t_ms for s in await history.samples(1, 7)] == [0, 3_000, 6_000, 9_000]
    # a fresh instance (a restart) does not store a second sample in the same interval
    again = PnlHistory(db, min_interval_ms=3_000)
    assert not await again.sample(1, _update(9_500))
    assert await again.sample(1, _update(12_000))


async def test_history_is_bounded_and_keeps_its_first_and_latest_samples(db: Database) -> None:
    history = PnlHistory(db, min_interval_ms=1_000, max_samples=100)
    for i in range(1_000):
        await history.sample(1, _update(i * 1_000, proceeds=i))
    samples = await history.samples(1, 7)
    assert 50 <= len(samples) <= 100
    assert samples[0].t_ms == 0 and samples[-1].t_ms == 999_000
    gaps = [b.t_ms - a.t_ms for a, b in zip(samples, samples[1:], strict=False)]
    assert gaps[-1] <= gaps[0]  # recent history stays denser than old


async def test_stream_messages_become_samples_and_marks(db: Database) -> None:
    history = PnlHistory(db)
    await history.observe(1, "pnl_update", _update(1_000))
    await history.observe(1, "exit_signal_with_tx", {"position_id": 7, "reason": "take_profit", "triggered_at_ms": 2_000,
                                                     "position_tokens": 100, "sell_tokens": 25})
    await history.observe(1, "position_closed", {"position_id": 7, "reason": "sold"})
    await history.observe(1, "pnl_update", {"position_id": 7})  # malformed: ignored, never raised
    assert [s.t_ms for s in await history.samples(1, 7)] == [1_000]
    marks = await history.marks(1, 7)
    assert [(m.kind, m.label) for m in marks] == [("signal", "take_profit 25%"), ("closed", "sold")]
    assert marks[0].t_ms == 2_000
    assert PnlHistory.for_db(db) is PnlHistory.for_db(db)


def test_band_rows_keep_their_numbers() -> None:
    assert bands_from([{"slippage_bps": 100, "max_tokens": 5, "coverage_pct": 12.5}]) == [Band(100, 5, 12.5)]
