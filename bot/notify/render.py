"""What the user reads: HTML texts (escaped) for stream events, in the trader's words."""

from __future__ import annotations

import html
import time
from typing import Any

from storage.positions import ExitSignal, Position

LAMPORTS_PER_SOL = 1_000_000_000
USD1_MINT = "USD1ttGY1N17NEEHLmELoaybftRBUSErhqYiQzvEmuB"
# Quote units: lamports in SOL markets, USD1 base units (6 decimals) in USD1 markets.
QUOTE_DECIMALS = {"SOL": 9, "USD1": 6}

REASONS = {
    "target_profit": "🎯 Take profit reached",
    "take_profit": "🎯 Take profit reached",
    "tp": "🎯 Take profit reached",
    "chained_tp": "🎯 Take-profit level reached",
    "take_profit_level": "🎯 Take-profit level reached",
    "stop_loss": "🛑 Stop loss hit",
    "trailing_stop": "📉 Trailing stop hit",
    "breakeven_trail": "↩️ Breakeven trail: back to entry",
    "timeout": "⏰ Deadline reached",
    "deadline_timeout": "⏰ Deadline reached",
    "deadline": "⏰ Deadline reached",
    "sell_now": "👆 You asked to sell",
    "manual": "👆 You asked to sell",
    "graduation": "🎓 Token graduated",
    "sell_on_graduation": "🎓 Token graduated",
    "liquidity_guard": "💧 Liquidity guard: the pool is draining",
}
CLOSE_REASONS = {
    "sold": "sold",
    "closed_by_user": "you stopped tracking it",
    "balance_zero": "the tokens left the wallet",
    "transferred": "the tokens left the wallet",
}
MARKETS = {
    "pump_fun": "Pump.fun",
    "pump_swap": "PumpSwap",
    "meteora_dbc": "Meteora DBC",
    "meteora_damm_v2": "Meteora DAMM v2",
    "raydium_launchpad": "Raydium LaunchLab",
    "raydium_cpmm": "Raydium CPMM",
}
TRENDS = {"growing": "📈 growing", "stable": "➖ stable", "draining": "🚨 draining"}


def esc(value: Any) -> str:
    """The one way a string someone else chose (a token's symbol or name, a wallet label, a nickname, an error
    text) enters a message: every message is HTML, so `<` and `&` are written as entities."""
    return html.escape(str(value), quote=False)


def quote_from_context(market_context: Any) -> str:
    """"USD1" when a market_context's sub-object names USD1 as its quote mint, else "SOL"."""
    if isinstance(market_context, dict):
        for value in market_context.values():
            if isinstance(value, dict) and value.get("quote_mint") == USD1_MINT:
                return "USD1"
    return "SOL"


def quote_of(item: Any) -> str:
    """The quote asset of a position (or signal): its stored `quote`; SOL when nothing says otherwise."""
    return "USD1" if getattr(item, "quote", None) == "USD1" else "SOL"


def money(units: int | None, quote: str = "SOL", *, signed: bool = False) -> str:
    """Quote units as the trader reads them: `0.25 SOL`, `12.5 USD1`."""
    if quote != "USD1":
        return sol(units, signed=signed)
    if units is None:
        return "?"
    value = units / 10 ** QUOTE_DECIMALS["USD1"]
    if abs(value) < 0.005:
        return "0 USD1"
    text = f"{value:+,.2f}" if signed else f"{value:,.2f}"
    return f"{text} USD1"


def sol(units: int | None, *, signed: bool = False) -> str:
    if units is None:
        return "?"
    value = units / LAMPORTS_PER_SOL
    if abs(value) < 0.00005:
        return "0 SOL"
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    return text.rstrip("0").rstrip(".") + " SOL" if "." in text else text + " SOL"


SUBSCRIPT_DIGITS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def price(value: float | None, quote: str = "SOL", *, digits: int = 3) -> str:
    """A unit price with `digits` significant digits; four or more leading zeros are written as a
    subscript count, the way traders read small prices: 0.000000030 -> `0.0₇30 SOL`."""
    if value is None:
        return "?"
    if value == 0:
        return f"0 {quote}"
    if abs(value) >= 1:
        return f"{value:,.{max(0, digits - len(str(int(abs(value)))))}f} {quote}"
    mantissa = f"{abs(value):.{digits}e}"  # e.g. 3.000e-08
    significant, exponent = mantissa.split("e")
    zeros = -int(exponent) - 1
    figures = significant.replace(".", "")[:digits].rstrip("0") or "0"
    sign = "-" if value < 0 else ""
    if zeros >= 4:
        return f"{sign}0.0{str(zeros).translate(SUBSCRIPT_DIGITS)}{figures} {quote}"
    return f"{sign}0.{'0' * zeros}{figures} {quote}"


def pct(part: float, whole: float, *, signed: bool = True) -> str:
    if not whole:
        return "?"
    value = 100.0 * part / whole
    if abs(value) < 0.05:
        value = 0.0
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def tokens(amount: int, decimals: int | None) -> str:
    value = amount / (10 ** (decimals or 0))
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f}M"
    if value >= 1_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def reason_words(reason: str) -> str:
    return REASONS.get(reason, esc(reason))


def market_words(market_type: str | None) -> str:
    if not market_type:
        return "unknown market"
    return MARKETS.get(market_type, esc(market_type))


def age(ms: int | None, now_ms: int | None = None) -> str:
    if ms is None:
        return "?"
    seconds = max(0, ((now_ms or int(time.time() * 1000)) - ms) // 1000)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def short(address: str) -> str:
    """An address shortened for a message (escaped: it may come from a stream or a paste)."""
    return esc(f"{address[:4]}…{address[-4:]}")


def position_opened(p: Position) -> str:
    name = f" ({esc(p.name)})" if p.name and p.name != p.symbol else ""
    return (
        f"🟢 <b>New position: {esc(p.label)}</b>{name}\n"
        f"{tokens(p.tokens, p.decimals)} tokens for {money(p.entry_quote_units, quote_of(p))} on "
        f"{market_words(p.market_type)}\n"
        f"Wallet <code>{short(p.wallet)}</code> · mint <code>{esc(p.mint)}</code>"
    ) + "".join(f"\n⚠️ {esc(flag)}" for flag in p.risks)


def position_card(p: Position, now_ms: int | None = None) -> str:
    quote = quote_of(p)
    lines = [f"📊 <b>{esc(p.label)}</b> · {tokens(p.tokens, p.decimals)} tokens · {market_words(p.market_type)}"]
    lines.append(pnl_line(p))
    extra = []
    if p.price_quote is not None:
        per_unit = p.price_quote / 10 ** QUOTE_DECIMALS[quote]
        extra.append(f"price {price(per_unit, quote)}")
    if p.market_cap_quote is not None:
        extra.append(f"mcap {money(p.market_cap_quote, quote)}")
    if p.liquidity_trend:
        extra.append(f"liquidity {TRENDS.get(p.liquidity_trend, esc(p.liquidity_trend))}")
    if extra:
        lines.append(" · ".join(extra))
    # the opening time, not the age: the card is edited only when its numbers change
    opened = time.strftime("%H:%M:%S", time.gmtime((p.opened_at_ms or p.first_seen_ms) / 1000))
    lines.append(f"Opened {opened} UTC")
    return "\n".join(lines)


def pnl_line(p: Position) -> str:
    """`PnL +0.1 SOL (+10.0%) · value 1.1 SOL`, in the position's quote (or the entry before any price)."""
    quote = quote_of(p)
    if p.profit_units is not None and p.proceeds_units is not None:
        basis = p.proceeds_units - p.profit_units
        return (f"PnL {money(p.profit_units, quote, signed=True)} ({pct(p.profit_units, basis)}) · "
                f"value {money(p.proceeds_units, quote)}")
    return f"Entry {money(p.entry_quote_units, quote)} · waiting for the first price"


def bands_table(bands: list[dict[str, Any]]) -> str:
    rows = ["slippage │ sellable"]
    for band in sorted(bands, key=lambda b: b.get("slippage_bps", 0)):
        rows.append(f"{band.get('slippage_bps', 0) / 100:>6.1f}% │ {float(band.get('coverage_pct', 0)):5.1f}%")
    return "<pre>" + esc("\n".join(rows)) + "</pre>"


def liquidity_alert(p: Position, trend: str, bands: list[dict[str, Any]]) -> str:
    head = {
        "draining": f"🚨 <b>Liquidity draining on {esc(p.label)}</b>: the pool is losing depth. Selling gets more expensive.",
        "growing": f"📈 <b>Liquidity growing on {esc(p.label)}</b>",
        "stable": f"➖ <b>Liquidity stable again on {esc(p.label)}</b>",
    }.get(trend, f"Liquidity on {esc(p.label)}: {esc(trend)}")
    return f"{head}\nHow much of your position sells within each slippage:\n{bands_table(bands)}"


def exit_signal(s: ExitSignal, p: Position | None, *, slippage_bps: int | None = None) -> str:
    label = esc(p.label) if p else short(s.mint)
    decimals = p.decimals if p else None
    basis = p.entry_quote_units * s.position_tokens // p.tokens if p and p.tokens else None
    quote = quote_of(p) if p is not None else quote_of(s)
    pnl = f"{money(s.profit_units, quote, signed=True)}" + (f" ({pct(s.profit_units, basis)})" if basis else "")
    amount = f"{tokens(s.tokens_to_sell, decimals)} tokens"
    if s.sell_tokens and s.sell_tokens < s.position_tokens:
        share = 100 * s.sell_tokens / s.position_tokens if s.position_tokens else 0
        amount += f" ({share:.0f}% of the position"
        amount += f", ladder level {s.level_index + 1})" if s.level_index is not None else ")"
    elif s.level_index is not None:
        amount += f" (ladder level {s.level_index + 1})"
    when = time.strftime("%H:%M:%S", time.gmtime(s.triggered_at_ms / 1000))
    lines = [
        f"<b>{reason_words(s.reason)} — {label}</b>",
        f"PnL {pnl}",
        f"Sell {amount}",
        f"Triggered {when} UTC · wallet <code>{short(s.wallet)}</code>",
    ]
    if slippage_bps:
        lines.append(f"Slippage {slippage_bps / 100:g}%")
    if s.market_type and s.market_type not in MARKETS:
        lines.append(f"Market: {esc(s.market_type)} (new to this bot)")
    return "\n".join(lines)


def position_closed(p: Position | None, msg: dict[str, Any]) -> str:
    reason = str(msg.get("reason", ""))
    label = esc(p.label) if p else short(str(msg.get("mint", "????????")))
    return f"⚪ <b>{label} closed</b>: {esc(CLOSE_REASONS.get(reason, reason))}."


def stream_error(msg: dict[str, Any]) -> str:
    return f"⚠️ LaserSell says: {esc(msg.get('message') or msg.get('code'))} (<code>{esc(msg.get('code'))}</code>)"


def mirror_event(msg: dict[str, Any]) -> str:
    kind = msg.get("type")
    if kind == "mirror_buy_failed":
        return f"🪞 Copy-trade buy of <code>{esc(msg.get('mint'))}</code> failed: {esc(msg.get('reason'))}"
    if kind == "mirror_wallet_auto_disabled":
        return (
            f"🪞 Copy trading of <code>{esc(msg.get('watched_wallet'))}</code> was turned off after "
            f"{esc(msg.get('loss_count'))} losses: {esc(msg.get('reason'))}"
        )
    if kind == "mirror_buy_signal":
        return f"🪞 Copy-trade buy signal for <code>{esc(msg.get('mint'))}</code> from <code>{esc(msg.get('watched_wallet'))}</code>"
    return f"LaserSell: {esc(kind)}"
