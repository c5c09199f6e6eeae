"""Pictures of a position: its value over its life (with the entry line and exit marks) and its
liquidity bands. Drawn with matplotlib's Agg backend and its bundled fonts, sized for a phone screen.
"""

from __future__ import annotations

import calendar
import datetime as dt
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: render straight to PNG bytes

import matplotlib.dates as mdates  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from storage.history import Mark, Sample  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 120  # 960 x 540 pixels: sharp on a phone, small to send
BACKGROUND = "#12151d"
PANEL = "#1b2030"
TEXT = "#eceff6"
MUTED = "#8a94a6"
GRID = "#2c3345"
PROFIT = "#22d678"
LOSS = "#f44354"
VALUE = "#5aa9ff"
ENTRY = "#c8ced9"
LAMPORTS_PER_SOL = 1_000_000_000
QUOTE_DECIMALS = {"SOL": 9, "USD1": 6}
MARK_COLOURS = {"signal": "#ffb020", "sell": "#ff6ad5", "closed": "#c8ced9"}
REASON_WORDS = {
    "target_profit": "take profit", "take_profit": "take profit", "tp": "take profit", "chained_tp": "TP level",
    "stop_loss": "stop loss", "trailing_stop": "trailing stop", "timeout": "deadline", "deadline_timeout": "deadline",
    "sell_now": "sell now", "manual": "sell now", "graduation": "graduation", "sell_on_graduation": "graduation",
    "sold": "sold out", "card": "you sold", "closed_by_user": "untracked", "balance_zero": "tokens left",
}


class ChartError(ValueError):
    """Not enough data for this chart yet; the message says what is missing."""


@dataclass(frozen=True)
class Band:
    slippage_bps: int
    max_tokens: int
    coverage_pct: float


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor=BACKGROUND)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=11)
    ax.grid(True, color=GRID, linewidth=0.8)
    return fig, ax


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    return out.getvalue()


def _nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values in plain Python. matplotlib's own locator relies on numpy's floor_divide,
    which was seen returning NaN in a process whose floating-point state a native library had changed."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1e-9 if math.isfinite(low) else 1.0
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks: list[float] = []
    value = first
    # the last tick is at or above `high`, so nothing drawn up to `high` falls outside the axes
    while (not ticks or ticks[-1] < high - 1e-12) and len(ticks) < 4 * count:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _value_at(t_ms: int, samples: Sequence[Sample], per_unit: float = LAMPORTS_PER_SOL) -> float:
    """The value line at `t_ms` (linear between samples), in whole quote units."""
    if t_ms <= samples[0].t_ms:
        return samples[0].proceeds_units / per_unit
    for a, b in zip(samples, samples[1:], strict=False):
        if a.t_ms <= t_ms <= b.t_ms:
            span = (b.t_ms - a.t_ms) or 1
            share = (t_ms - a.t_ms) / span
            return (a.proceeds_units + share * (b.proceeds_units - a.proceeds_units)) / per_unit
    return samples[-1].proceeds_units / per_unit


def render_pnl_chart(
    samples: Sequence[Sample], marks: Sequence[Mark] = (), *, title: str = "", quote: str = "SOL"
) -> bytes:
    """Value of the held tokens over time, the entry (what they cost) as a line, exits as marks. Amounts are
    quote units: lamports in SOL markets, USD1 base units (6 decimals) in USD1 markets."""
    samples = sorted(samples, key=lambda s: s.t_ms)
    if len(samples) < 2:
        raise ChartError("not enough price history yet: the chart needs a few price updates")
    per_unit = float(10 ** QUOTE_DECIMALS.get(quote, 9))
    fig, ax = _figure()
    times = [mdates.date2num(_utc(s.t_ms)) for s in samples]
    value = [s.proceeds_units / per_unit for s in samples]
    entry = [s.basis_units / per_unit for s in samples]
    first, last = samples[0].t_ms, samples[-1].t_ms
    sells = sorted(m.t_ms for m in marks if m.kind == "sell")
    # the line breaks at each sell: the held value drops because tokens were sold, not because the price fell
    segments: list[list[int]] = [[]]
    for i, sample in enumerate(samples):
        if segments[-1] and any(samples[i - 1].t_ms < t <= sample.t_ms for t in sells):
            segments.append([])
        segments[-1].append(i)
    for n, segment in enumerate(segments):
        ax.plot([times[i] for i in segment], [value[i] for i in segment], color=VALUE, linewidth=2.4,
                label="value held" if n == 0 else None, zorder=3)
        if n > 0:  # a dotted drop from before the sell to after it, in the sell's colour
            before, after = segment[0] - 1, segment[0]
            ax.plot([times[after], times[after]], [value[before], value[after]], color=MARK_COLOURS["sell"],
                    linewidth=1.4, linestyle=":", zorder=3)
    ax.step(times, entry, where="post", color=ENTRY, linewidth=1.4, linestyle="--", label="entry", zorder=2)
    ax.fill_between(times, value, entry, where=[v >= e for v, e in zip(value, entry, strict=True)],
                    interpolate=True, color=PROFIT, alpha=0.25, linewidth=0)
    ax.fill_between(times, value, entry, where=[v < e for v, e in zip(value, entry, strict=True)],
                    interpolate=True, color=LOSS, alpha=0.25, linewidth=0)
    span_ms = max(1, last - first)
    placed: list[tuple[float, int]] = []  # (x as a share of the width, label row) of labels already drawn
    for mark in sorted(marks, key=lambda m: m.t_ms):
        t = min(max(mark.t_ms, first), last)
        # a sell is drawn where the line was just before it, so the marker sits on the drop's top
        earlier = [x for x in samples if x.t_ms < t]
        y = earlier[-1].proceeds_units / per_unit if mark.kind == "sell" and earlier else _value_at(t, samples, per_unit)
        colour = MARK_COLOURS.get(mark.kind, MUTED)
        ax.scatter([mdates.date2num(_utc(t))], [y], s=90, color=colour, edgecolors=BACKGROUND, linewidths=1.5,
                   zorder=5, marker="v" if mark.kind != "closed" else "X")
        words = REASON_WORDS.get(mark.label.split(" ")[0], mark.label.split(" ")[0]) + (
            " " + mark.label.split(" ", 1)[1] if " " in mark.label else "")
        x_share = (t - first) / span_ms
        # labels closer than about a label's width take the next row up, so they never run into each other
        row = 0
        while any(abs(x_share - x) < 0.16 and r == row for x, r in placed):
            row += 1
        placed.append((x_share, row))
        ha = "left" if x_share < 0.08 else "right" if x_share > 0.92 else "center"
        ax.annotate(words, (mdates.date2num(_utc(t)), y), textcoords="offset points", xytext=(0, 12 + 15 * row),
                    ha=ha, color=colour, fontsize=10, zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": PANEL, "edgecolor": "none", "alpha": 0.85})
    last_sample = samples[-1]
    pnl = last_sample.profit_units / per_unit
    basis = last_sample.basis_units
    pct = f" ({100 * last_sample.profit_units / basis:+.1f}%)" if basis else ""
    colour = PROFIT if pnl >= 0 else LOSS
    ax.set_title(title, color=TEXT, fontsize=16, loc="left", pad=12, fontweight="bold")
    amount = f"{pnl:+,.2f} USD1" if quote == "USD1" else f"{pnl:+.4f} SOL"
    fig.text(0.98, 0.93, f"PnL {amount}{pct}", color=colour, fontsize=14, ha="right", fontweight="bold")
    ax.set_ylabel(quote, color=MUTED, fontsize=12)
    every = value + entry
    spread = (max(every) - min(every)) or max(every) * 0.05 or 0.01
    rows = 1 + max((row for _x, row in placed), default=-1)
    # room above the peak for the marks' labels (about 15 points a row of the plot's ~330)
    top = max(every) + spread * (0.08 + 0.07 * rows)
    ticks = _nice_ticks(min(every) - spread * 0.08, top)
    ax.set_yticks(ticks)
    ax.set_ylim(ticks[0], ticks[-1])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.4g}"))
    span_s = (last - first) / 1000
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if span_s < 3600 else "%H:%M"))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=6))
    legend = ax.legend(loc="upper left", frameon=False, fontsize=11)
    for text in legend.get_texts():
        text.set_color(MUTED)
    fig.text(0.98, 0.02, "times UTC", color=MUTED, fontsize=9, ha="right")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.86, bottom=0.11)
    return _png(fig)


def bands_from(raw: Sequence[dict[str, Any]]) -> list[Band]:
    """Bands as the stream sends them, sorted by slippage; malformed entries are skipped."""
    bands = []
    for item in raw:
        try:
            bands.append(Band(int(item["slippage_bps"]), int(item.get("max_tokens", 0)), float(item["coverage_pct"])))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(bands, key=lambda b: b.slippage_bps)


def render_liquidity_chart(
    bands: Sequence[Band], *, title: str = "", your_slippage_bps: int | None = None, trend: str | None = None
) -> bytes:
    """How much of the position sells within each slippage; the band you sell at stands out."""
    if not bands:
        raise ChartError("no liquidity snapshot yet: LaserSell sends one every few seconds")
    fig, ax = _figure()
    labels = [f"{b.slippage_bps / 100:g}%" for b in bands]
    coverage = [min(100.0, b.coverage_pct) for b in bands]
    yours = max((b.slippage_bps for b in bands if your_slippage_bps is not None and b.slippage_bps <= your_slippage_bps),
                default=None)
    colours = [PROFIT if c >= 100 else ("#ffb020" if c >= 50 else LOSS) for c in coverage]
    edges = [TEXT if b.slippage_bps == yours else PANEL for b in bands]
    bars = ax.bar(labels, coverage, color=colours, edgecolor=edges, linewidth=[2.5 if e == TEXT else 0 for e in edges],
                  width=0.62, zorder=3)
    for bar, value in zip(bars, coverage, strict=True):
        ax.annotate(f"{value:.0f}%", (bar.get_x() + bar.get_width() / 2, value), textcoords="offset points",
                    xytext=(0, 5), ha="center", color=TEXT, fontsize=12, zorder=4)
    ax.axhline(100, color=ENTRY, linestyle="--", linewidth=1.2, zorder=2)
    ax.set_ylim(0, 118)
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}"))
    ax.set_xlabel("slippage", color=MUTED, fontsize=12)
    ax.set_ylabel("% of your position sellable", color=MUTED, fontsize=12)
    ax.grid(False, axis="x")
    ax.set_title(title, color=TEXT, fontsize=16, loc="left", pad=12, fontweight="bold")
    if trend:
        colour = {"growing": PROFIT, "draining": LOSS}.get(trend, MUTED)
        fig.text(0.98, 0.93, f"liquidity {trend}", color=colour, fontsize=14, ha="right", fontweight="bold")
    if yours is not None:
        fig.text(0.02, 0.02, f"outlined: your slippage ({(your_slippage_bps or 0) / 100:g}%)", color=MUTED, fontsize=9)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.86, bottom=0.13)
    return _png(fig)


def _utc(t_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ms / 1000, tz=dt.UTC).replace(tzinfo=None)


def write_samples(directory: Path | str = "docs") -> tuple[Path, Path]:
    """Write one example of each chart (made-up but realistic data) for the README."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    start = calendar.timegm((2025, 5, 14, 14, 2, 0, 0, 0, 0)) * 1000
    entry = 500_000_000
    samples: list[Sample] = []
    tokens_share = 1.0
    for i in range(160):
        t = start + i * 3_000
        # a run-up, a pull-back, a second leg; half sold at +40%
        shape = 1 + 0.55 * (i / 90) ** 1.4 if i < 90 else 1.55 - 0.25 * ((i - 90) / 40) if i < 130 else 1.3 + 0.012 * (i - 130)
        wiggle = 0.02 * math.sin(i / 2.3) + 0.012 * math.sin(i * 1.7)
        if i == 70:
            tokens_share = 0.5
        basis = int(entry * tokens_share)
        proceeds = int(basis * (shape + wiggle))
        samples.append(Sample(t, proceeds, proceeds - basis))
    # what the bot draws: sells that landed (a signal that was skipped or failed is left off)
    marks = [Mark(start + 70 * 3_000, "sell", "take_profit 50%")]
    pnl_path = directory / "pnl-chart.png"
    pnl_path.write_bytes(render_pnl_chart(samples, marks, title="PEPE · Pepe"))
    bands = [Band(100, 3_100_000_000, 22.0), Band(300, 9_300_000_000, 64.5), Band(500, 15_000_000_000, 100.0),
             Band(1000, 30_000_000_000, 100.0), Band(2000, 60_000_000_000, 100.0)]
    liquidity_path = directory / "liquidity-chart.png"
    liquidity_path.write_bytes(render_liquidity_chart(bands, title="PEPE · liquidity", your_slippage_bps=500,
                                                      trend="stable"))
    return pnl_path, liquidity_path


if __name__ == "__main__":
    for path in write_samples():
        print(path)
