"""The panels and cards the chat shows: their text (HTML, every user-controlled string through `render.esc`) and
their buttons (typed callback data). Handlers call these and send what they return; several features show
the same view (the home panel opens the positions list, the wallets, the settings and the history).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from telegram import InlineKeyboardMarkup

from bot.accounts import AccountError, WalletView
from bot.callbacks import (
    CallbackData,
    HomeTap,
    PositionTap,
    SettingsTap,
    TokenBuyTap,
    TokenTap,
    WalletTap,
    keyboard,
)
from bot.exits.sell import sellable_within
from bot.keys import short_address
from bot.notify import render
from bot.notify.render import esc
from bot.services import Services
from bot.solana_rpc import TOKEN_2022_PROGRAM, RpcError
from bot.strategy import KEYWORDS, Strategy
from storage.accounts import TIP_FLOOR_LAMPORTS, UserSettings
from storage.history import BuyOrders
from storage.positions import Position

log = logging.getLogger("lasersell_bot.cards")

LAMPORTS_PER_SOL = 1_000_000_000
SELL_SHARES = (25, 50, 100)
GONE = "This position is closed or not yours."

# --- words shared by settings and setup -------------------------------------------------------------------------
MODE_NAMES = {"helius_sender": "Helius Sender", "astralane": "Astralane", "rpc": "your RPC (no tip)"}
ALERT_KINDS = {"position": "Position opened", "liquidity": "Liquidity trend", "cards": "PnL card updates",
               "signals": "Exit signals"}


def sol_text(lamports: int) -> str:
    """`0.00001 SOL`, never `1e-05 SOL`."""
    text = f"{lamports / LAMPORTS_PER_SOL:.9f}".rstrip("0").rstrip(".")
    return f"{text} SOL"


def tip_rule(mode: str) -> str:
    """What the mode asks of the tip, in words (shown in /settings and at onboarding)."""
    if mode == "rpc":
        return "plain RPC sends no tip (tip 0)"
    return f"{MODE_NAMES.get(mode, mode)} needs a tip of at least {sol_text(TIP_FLOOR_LAMPORTS[mode])}"


def alert_level(settings: UserSettings, kind: str) -> str:
    return settings.alerts.get(kind, "on")


# --- /settings ----------------------------------------------------------------------------------------------------
def settings_text(s: UserSettings, key_hint: str | None) -> str:
    alerts = ", ".join(f"{label.lower()}: {alert_level(s, k)}" for k, label in ALERT_KINDS.items())
    skipped = ", ".join(sorted(s.skipped_steps))
    return "\n".join(
        [
            "<b>Settings</b>",
            f"• LaserSell key: {esc(key_hint) if key_hint else 'not set (/apikey)'}",
            f"• Send mode: {esc(s.send_mode)}" + (" (key set)" if s.send_mode == "astralane" and s.astralane_sealed else ""),
            f"• Tip: {sol_text(s.tip_lamports)} ({tip_rule(s.send_mode)})",
            f"• Slippage: {s.slippage_bps / 100:g}%, retries up to {s.slippage_cap_bps / 100:g}%, {s.retry_count} automatic retries",
            f"• Auto-sell: {'on — exits are sold without a tap' if s.auto_sell else 'off — every sell waits for your tap'}",
            f"• Alerts: {alerts}",
            f"• Watching: {'paused' if s.paused else 'on'}",
        ]
        + ([f"• Skipped setup steps: {esc(skipped)} (/start to finish)"] if skipped else [])
    )


def settings_markup(s: UserSettings) -> InlineKeyboardMarkup:
    return keyboard(
        [(f"Send mode: {s.send_mode}", SettingsTap("mode"))],
        [("Tip −", SettingsTap("tip", "-")), (f"Tip {sol_text(s.tip_lamports)}", SettingsTap("ask", "tip")),
         ("Tip +", SettingsTap("tip", "+"))],
        [("Slippage −", SettingsTap("slip", "-")), (f"Slippage {s.slippage_bps / 100:g}%", SettingsTap("ask", "slippage")),
         ("Slippage +", SettingsTap("slip", "+"))],
        [("Cap −", SettingsTap("cap", "-")), (f"Slippage cap {s.slippage_cap_bps / 100:g}%", SettingsTap("ask", "cap")),
         ("Cap +", SettingsTap("cap", "+"))],
        [(f"Retries: {s.retry_count}", SettingsTap("ask", "retries"))],
        [(f"Auto-sell: {'on' if s.auto_sell else 'off'}", SettingsTap("auto"))],
        *[[(f"{label}: {alert_level(s, k)}", SettingsTap("al", k))] for k, label in ALERT_KINDS.items()],  # type: ignore[arg-type]
        [("Resume watching" if s.paused else "Pause watching", SettingsTap("pause"))],
    )


SETTINGS_USAGE = "/settings mode helius_sender tip 0.001 cap 15 retries 2 auto off alerts.liquidity silent"


async def settings_view(services: Services, user_id: int, *, usage: bool = False) -> tuple[str, InlineKeyboardMarkup]:
    """The settings panel; with `usage`, the one-line form under it (in a new message, not an edit)."""
    s = await services.accounts.user_settings(user_id)
    info = await services.accounts.key_info(user_id)
    hint = f"{info.hint} ({'yours' if info.source == 'yours' else 'operator'})" if info else None
    text = settings_text(s, hint) + (f"\n\nOr in one line: <code>{esc(SETTINGS_USAGE)}</code>" if usage else "")
    return text, settings_markup(s)


# --- /wallets -----------------------------------------------------------------------------------------------------
def _sol(lamports: int | None) -> str:
    return "? SOL" if lamports is None else f"{lamports / LAMPORTS_PER_SOL:.4f} SOL"


def wallets_text(views: list[WalletView]) -> str:
    if not views:
        return "<b>Your wallets</b>\nNo wallet yet. Import the one you trade from, or generate a new one."
    lines = ["<b>Your wallets</b>"]
    for v in views:
        w = v.wallet
        star = "⭐ " if w.is_default else ""
        tokens = "?" if v.token_count is None else str(v.token_count)
        lines.append(
            f"{star}<b>{esc(w.label)}</b> <code>{esc(short_address(w.address))}</code> · {_sol(v.sol_lamports)} · "
            f"{tokens} token(s)" + ("" if w.registered_at else " · not registered with LaserSell yet")
        )
    return "\n".join(lines)


async def wallets_view(services: Services, user_id: int) -> tuple[str, InlineKeyboardMarkup]:
    views = await services.accounts.overview(user_id)
    rows = [[(f"⚙ {v.wallet.label}", WalletTap("open", v.wallet.id))] for v in views]
    rows.append([("Import a wallet", WalletTap("import")), ("Generate a new one", WalletTap("gen"))])
    return wallets_text(views), keyboard(*rows)


# --- positions ----------------------------------------------------------------------------------------------------
async def live_position(services: Services, user_id: int, position_id: int) -> Position | None:
    """The stored position with the stream's newest numbers (PnL and liquidity are written in batches)."""
    return await services.streams.position(user_id, position_id)


async def open_positions(services: Services, user_id: int) -> list[Position]:
    """The user's open positions, each with its newest live numbers."""
    stored = await services.streams.positions.open_for(user_id)
    return [await live_position(services, user_id, p.position_id) or p for p in stored]


def opened_local_ms(services: Services, user_id: int, position: Position) -> int:
    worker = services.streams.workers.get(user_id)
    if position.opened_at_ms and worker is not None:
        return min(position.first_seen_ms, position.opened_at_ms - worker.clock_offset_ms)
    return position.first_seen_ms


async def copy_source(services: Services, user_id: int, position: Position) -> str | None:
    """The watched wallet a copied position came from (copy trading), else None."""
    copier = getattr(services, "copier", None)
    found: str | None = None if copier is None else await copier.source_label(user_id, position.wallet, position.mint)
    return found


def pnl_words(p: Position) -> str:
    if p.profit_units is None or p.proceeds_units is None:
        return ""
    return f"{render.money(p.profit_units, render.quote_of(p), signed=True)} " \
           f"({render.pct(p.profit_units, p.proceeds_units - p.profit_units)})"


async def positions_view(services: Services, user_id: int) -> tuple[str, InlineKeyboardMarkup | None]:
    positions = await open_positions(services, user_id)
    if not positions:
        return ("No open positions. Buy with <code>/buy &lt;mint&gt; &lt;SOL&gt;</code>, or from any app: "
                "LaserSell tracks what your wallets buy."), None
    lines = [f"<b>Open positions</b> ({len(positions)})"]
    buttons = []
    for p in positions[:30]:
        pnl = ""
        if p.profit_units is not None and p.proceeds_units is not None:
            pnl = f" · {pnl_words(p)} · value {render.money(p.proceeds_units, render.quote_of(p))}"
        trend = f" · {render.TRENDS.get(p.liquidity_trend, esc(p.liquidity_trend))}" if p.liquidity_trend else ""
        age = render.age(opened_local_ms(services, user_id, p))
        source = await copy_source(services, user_id, p)
        copied = f" · 🪞 {esc(source)}" if source else ""
        lines.append(f"<b>{esc(p.label)}</b> #{p.position_id}{pnl}{trend} · {age}{copied}")
        buttons.append((f"{p.label} #{p.position_id}", PositionTap("open", p.position_id)))
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    lines.append("\nTap one to open its card.")
    return "\n".join(lines), keyboard(*rows)


async def buy_cost(services: Services, user_id: int, position: Position) -> int | None:
    """Lamports this bot's landed buys of the position took from the wallet, fees and rent included (as the
    chain recorded them); None when the position was not bought here or a buy cannot be read."""
    signatures = await BuyOrders(services.db).landed_signatures(user_id, position.wallet, position.mint)
    total = 0
    for signature in signatures:
        change = await services.rpc.sol_change(signature, position.wallet) if signature else None
        if change is None:
            return None
        total += -change[0]
    return total or None


async def position_card(services: Services, user_id: int, position: Position) -> tuple[str, InlineKeyboardMarkup]:
    """The position card: text and buttons."""
    settings = await services.accounts.user_settings(user_id)
    held = await services.seller.held_tokens(position)
    pid = position.position_id
    name = f" ({esc(position.name)})" if position.name and position.name != position.symbol else ""
    lines = [f"📊 <b>{esc(position.label)}</b>{name} · {render.market_words(position.market_type)}",
             f"Holding {render.tokens(held, position.decimals)} tokens · wallet <code>{render.short(position.wallet)}</code>"]
    source = await copy_source(services, user_id, position)
    if source:
        lines.append(f"🪞 Copied from {esc(source)}")
    lines.append(render.pnl_line(position))
    cost = await buy_cost(services, user_id, position) if render.quote_of(position) == "SOL" else None
    sold = [x for x in await services.inbox.signals.for_user(user_id, ("landed",), limit=200)
            if x.position_id == position.position_id]
    if cost is not None and position.proceeds_units is not None and not sold:
        net = position.proceeds_units - cost
        lines.append(f"After the {render.sol(cost)} your buy paid, fees and rent included: "
                     f"{render.money(net, 'SOL', signed=True)} ({render.pct(net, cost)})")
    trend = render.TRENDS.get(position.liquidity_trend or "", esc(position.liquidity_trend or "not measured yet"))
    lines.append(f"Liquidity {trend} · age {render.age(opened_local_ms(services, user_id, position))}")
    best = sellable_within(position, settings.slippage_bps, held)
    if best is not None:
        tokens, share, band_bps = best
        lines.append(f"Sellable within your {settings.slippage_bps / 100:g}% slippage: "
                     f"{render.tokens(tokens, position.decimals)} tokens ({share:.0f}% of the position"
                     + (f", {band_bps / 100:g}% band)" if band_bps != settings.slippage_bps else ")"))
    elif position.bands:
        lines.append(f"No liquidity band at or below your {settings.slippage_bps / 100:g}% slippage.")
    if position.strategy_json:
        lines.append("Strategy for this position: " + "; ".join(Strategy.from_json(position.strategy_json).describe()[:3]))
    if position.waiting_exit:
        lines.append("⏳ Waiting for an exit transaction from LaserSell…")
    lines.append(f"Updated {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    rows = [[(f"Sell {share}%", PositionTap("s", pid, share)) for share in SELL_SHARES]]
    if best is not None:
        rows.append([(f"Sell max within {settings.slippage_bps / 100:g}% · {render.tokens(best[0], position.decimals)}",
                      PositionTap("max", pid))])
    rows += [
        [("⚡ Sell now", PositionTap("now", pid)), ("✏️ Edit strategy", PositionTap("edit", pid))],
        [("📈 PnL chart", PositionTap("chart", pid)), ("💧 Liquidity chart", PositionTap("liq", pid))],
        [("🔄 Refresh", PositionTap("ref", pid)), ("Stop tracking", PositionTap("stop", pid))],
    ]
    return "\n".join(lines), keyboard(*rows)


def stop_tracking_question(position: Position) -> tuple[str, InlineKeyboardMarkup]:
    return (
        f"Stop tracking <b>{esc(position.label)}</b>? I will not alert or sell it any more. This does <b>not</b> "
        "sell your tokens.",
        keyboard([("Yes, stop tracking", PositionTap("stopok", position.position_id)),
                  ("Cancel", PositionTap("keep", position.position_id))]),
    )


def stopped_tracking(position: Position) -> str:
    return f"Stopped tracking {esc(position.label)}. Your tokens are still in your wallet."


def still_tracking(position: Position) -> str:
    return f"Still tracking {esc(position.label)}."


async def position_strategy_form(services: Services, user_id: int, position: Position) -> str:
    current = (Strategy.from_json(position.strategy_json) if position.strategy_json
               else await services.accounts.strategy(user_id))
    whose = "its own" if position.strategy_json else "your account's"
    example = f"tp {current.take_profit_pct:g} sl {current.stop_loss_pct:g}"
    return (
        f"✏️ <b>{esc(position.label)}</b> #{position.position_id} follows {whose} strategy:\n"
        + "\n".join(f"• {esc(line)}" for line in current.describe() if not line.startswith("Deadline"))
        + f"\n\nTo change it for this position only, send for example:\n<code>/pstrategy {position.position_id} {example}</code>"
        + f"\n(keys: {', '.join(k for k in KEYWORDS if k != 'deadline')}; "
        + f"<code>/pstrategy {position.position_id} reset</code> follows your account's strategy again)"
    )


# --- the home panel -----------------------------------------------------------------------------------------------
STREAM_WORDS = {
    "connected": "🟢 connected",
    "connecting": "🟡 connecting…",
    "reconnecting": "🟡 reconnecting…",
    "needs_attention": "🔴 needs your attention (see /status)",
    "stopped": "⚪ not running",
}


async def realised_today(services: Services, user_id: int) -> dict[str, tuple[int, int]]:
    """Per quote: (PnL, sells) of the sells that landed since 00:00 UTC, as measured on chain when they
    landed (proceeds received minus the share of the cost basis sold)."""
    midnight_ms = int(time.time() // 86400 * 86400 * 1000)
    out: dict[str, tuple[int, int]] = {}
    for signal in await services.inbox.signals.for_user(user_id, ("landed",), limit=500):
        outcome = signal.outcome
        if signal.updated_at < midnight_ms or outcome.get("pnl") is None:
            continue
        quote = "USD1" if outcome.get("quote") == "USD1" else "SOL"
        units, count = out.get(quote, (0, 0))
        out[quote] = (units + int(outcome["pnl"]), count + 1)
    return out


def _wallet_line(view: WalletView, positions: list[Position]) -> str:
    wallet = view.wallet
    mine = [p for p in positions if p.wallet == wallet.address]
    values: dict[str, int] = {}
    for p in mine:
        if p.proceeds_units is not None:
            values[render.quote_of(p)] = values.get(render.quote_of(p), 0) + p.proceeds_units
    tokens = " + ".join(f"{render.money(v, q)} in tokens" for q, v in values.items()) if values else (
        "no tracked tokens" if not mine else "tokens not priced yet")
    star = "⭐ " if wallet.is_default else ""
    balance = "balance unavailable" if view.sol_lamports is None else render.sol(view.sol_lamports)
    return f"{star}{esc(wallet.label)} <code>{render.short(wallet.address)}</code>: {balance} · {tokens}"


async def home_text(services: Services, user_id: int) -> str:
    views = await services.accounts.overview(user_id)
    positions = await open_positions(services, user_id)
    lines = ["🏠 <b>Home</b>", "<b>Wallets</b>"]
    if not views:
        lines.append("No wallet yet: add one in /wallets.")
    lines.extend(_wallet_line(view, positions) for view in views)
    lines.append("")
    lines.append(f"<b>Open positions</b> ({len(positions)})")
    for p in positions[:10]:
        pnl = pnl_words(p) or "waiting for the first price"
        lines.append(f"• <b>{esc(p.label)}</b> #{p.position_id}: {pnl}")
    if len(positions) > 10:
        lines.append(f"…and {len(positions) - 10} more in /positions")
    if not positions:
        lines.append("None. Paste a token's address or link to buy one.")
    today = await realised_today(services, user_id)
    if today:
        lines.append("Realised today: " + " · ".join(
            f"{render.money(units, quote, signed=True)} from {count} sell{'s' if count != 1 else ''}"
            for quote, (units, count) in today.items()
        ) + " (what the sells received, minus what those tokens cost)")
    worker = services.streams.workers.get(user_id)
    state = worker.client.state if worker is not None else "stopped"
    lines.append("")
    lines.append(f"Stream: {STREAM_WORDS.get(state, esc(state))}")
    lines.append(f"Updated {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    return "\n".join(lines)


def home_markup() -> InlineKeyboardMarkup:
    return keyboard(
        [("📊 Positions", HomeTap("pos")), ("🛒 Buy", HomeTap("buy"))],
        [("👛 Wallets", HomeTap("wal")), ("⚙️ Settings", HomeTap("set"))],
        [("📜 History", HomeTap("hist")), ("🔄 Refresh", HomeTap("home"))],
    )


async def home_view(services: Services, user_id: int) -> tuple[str, InlineKeyboardMarkup]:
    return await home_text(services, user_id), home_markup()


# --- /status and /history -------------------------------------------------------------------------------------------
STATES = {
    "connected": "🟢 connected",
    "connecting": "🟡 connecting",
    "reconnecting": "🟡 reconnecting",
    "needs_attention": "🔴 stopped: needs your attention",
    "stopped": "⚪ stopped",
}
OUTCOMES = {"landed": "✅ sold", "failed": "❌ failed", "skipped": "⏭ skipped", "expired": "⌛ expired",
            "superseded": "↪️ replaced", "pending": "⏳ waiting for your tap", "approved": "⏳ selling",
            "signing": "⏳ selling", "submitted": "⏳ confirming"}
# Stored failure kinds (the part of the error before ':') in a trader's words; anything else is a
# generic sentence, so no exception name or internal word reaches the chat.
FAILURE_WORDS = {
    "slippage": "the price moved past your slippage",
    "fees": "the wallet had too little SOL for the fees",
    "expired": "it did not land in time",
    "duplicate": "it was already sent",
    "guard": "I refused to sign it: it did not look like a plain sell",
    "signing": "the wallet key could not sign it",
}


def failure_words(error: str) -> str:
    return FAILURE_WORDS.get(error.split(":")[0].strip(), "it did not land; nothing was sold")


def ago(monotonic_at: float | None) -> str:
    if monotonic_at is None:
        return "never"
    seconds = int(time.monotonic() - monotonic_at)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def stream_lines(stream: dict[str, Any]) -> list[str]:
    lines = [f"Stream: {STATES.get(stream['state'], esc(stream['state']))}"]
    if stream["reason"]:
        lines.append(f"  {esc(stream['reason'])}")
    if stream["connected_since"] is not None and stream["state"] == "connected":
        lines.append(f"  connected since {ago(stream['connected_since'])}, {stream['reconnects']} reconnect(s)")
    lines.append(f"  last message {ago(stream['last_message_at'])}")
    return lines


def history_line(s: Any, label: str, decimals: int | None) -> str:
    """One exit in /history: when, what, why, how much, and how it ended."""
    when = time.strftime("%m-%d %H:%M", time.gmtime(s.updated_at / 1000))
    line = f"{when} · {label} · {render.reason_words(s.reason)} · {render.tokens(s.tokens_to_sell, decimals)} · "
    # a signal voided by Stop tracking was not skipped by a tap: say what happened
    line += "⏹ not sold: you stopped tracking it" if s.error == "untracked" else OUTCOMES.get(s.state, s.state)
    outcome = s.outcome
    if s.state == "landed":
        # the row remembers its quote; rows from before it did measured SOL received
        quote = str(outcome.get("quote") or "SOL")
        line += f" {render.money(outcome.get('sol_received'), quote)}"
        if outcome.get("pnl") is not None and outcome.get("basis"):
            line += (f" PnL {render.money(outcome['pnl'], quote, signed=True)} "
                     f"({render.pct(outcome['pnl'], outcome['basis'])})")
    elif s.state == "failed" and s.error:
        line += f" ({failure_words(s.error)})"
    if s.signature:
        line += f' · <a href="https://solscan.io/tx/{esc(s.signature)}">tx</a>'
    return line


async def history_view(services: Services, user_id: int) -> str:
    signals = await services.inbox.signals.for_user(user_id, ("landed", "failed", "skipped", "expired"), limit=15)
    if not signals:
        return "No exits yet. They show here once you sell or skip one."
    lines = ["<b>Last exits</b>"]
    for s in signals:
        position = await services.streams.positions.get(user_id, s.position_id)
        label = esc(position.label) if position else render.short(s.mint)
        source = await copy_source(services, user_id, position) if position else None
        if source:
            label += f" (🪞 {esc(source)})"  # copy trading: the watched wallet it came from
        lines.append(history_line(s, label, position.decimals if position else None))
    return "\n".join(lines)


async def status_view(services: Services, user_id: int) -> str:
    streams = services.streams
    stream = streams.status(user_id)
    settings = await services.accounts.user_settings(user_id)
    lines = ["<b>Status</b>"]
    if stream is None:
        why = "paused (/resume)" if settings.paused else "not running: finish setup with /start"
        lines.append(f"Stream: ⚪ {why}")
    else:
        lines.extend(stream_lines(stream))
        lines.extend(streams.load_notes(user_id))
        lines.extend(await _plan_lines(services, user_id, stream["limits"]))
    positions = await streams.positions.open_for(user_id)
    lines.append(f"\n<b>Open positions</b> ({len(positions)})")
    for p in positions[:20]:
        pnl = pnl_words(p)
        lines.append(f"• {esc(p.label)}" + (f" · {pnl}" if pnl else ""))
    pending = await services.inbox.signals.for_user(user_id, ("pending", "approved", "signing", "submitted"))
    lines.append(f"\n<b>Exit signals waiting</b>: {len(pending)}")
    for s in pending[:10]:
        lines.append(f"• {render.reason_words(s.reason)} · {OUTCOMES.get(s.state, s.state)}")
    return "\n".join(lines)


async def _plan_lines(services: Services, user_id: int, limits: dict[str, Any] | None) -> list[str]:
    lines: list[str] = []
    try:
        info = await services.accounts.key_info(user_id)
    except AccountError:
        info = None  # the key itself is reported elsewhere; status still shows the rest
    if info is not None and info.plan:
        lines.append(f"  {esc(info.limits_words())}")
    if limits:
        lines.append(
            f"  plan limits: {limits.get('max_wallets_per_session', '?')} wallet(s), "
            f"{limits.get('max_positions_per_session', '?')} positions per session"
        )
    return lines


# --- the token panel (a pasted mint or link) ---------------------------------------------------------------------
@dataclass
class MintFacts:
    decimals: int
    supply: int
    mint_authority: str | None
    freeze_authority: str | None
    token_2022: bool
    extensions: list[str]


async def mint_facts(services: Services, mint: str) -> MintFacts | None:
    """What the chain says about a mint; None when the address is no token mint."""
    result = await services.rpc.call("getAccountInfo", [mint, {"encoding": "jsonParsed"}])
    value = (result or {}).get("value") if isinstance(result, dict) else None
    if not value:
        return None
    data = value.get("data")
    if not isinstance(data, dict) or data.get("parsed", {}).get("type") != "mint":
        return None
    info = data["parsed"].get("info", {})
    extensions = [str(e.get("extension")) for e in info.get("extensions") or [] if isinstance(e, dict)]
    return MintFacts(
        decimals=int(info.get("decimals") or 0),
        supply=int(info.get("supply") or 0),
        mint_authority=info.get("mintAuthority"),
        freeze_authority=info.get("freezeAuthority"),
        token_2022=value.get("owner") == TOKEN_2022_PROGRAM or data.get("program") == "spl-token-2022",
        extensions=extensions,
    )


async def token_panel(
    services: Services, user_id: int, mint: str, wallet_id: int | None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """Text and buttons for one token; `wallet_id` is the wallet the buy buttons spend from."""
    try:
        facts = await mint_facts(services, mint)
    except RpcError as exc:
        log.info("mint lookup failed: %s", exc)
        return ("I could not reach the Solana network to look this token up. Paste it again in a moment.",
                keyboard([("🔄 Try again", TokenTap("r", 0, mint))]))
    if facts is None:
        return (f"<code>{esc(mint)}</code> is not a token mint. Paste the token's mint address (on pump.fun it is "
                "the part after /coin/), or a link to its page.", None)
    positions = [p for p in await open_positions(services, user_id) if p.mint == mint]
    known = next((p for p in positions if p.symbol), None)
    title = esc(known.label) if known else render.short(mint)
    lines = [f"🪙 <b>{title}</b>", f"<code>{esc(mint)}</code>"]
    supply = render.tokens(facts.supply, facts.decimals)
    lines.append(f"Supply {supply} · {facts.decimals} decimals · {'Token-2022' if facts.token_2022 else 'SPL Token'}")
    priced = next((p for p in positions if p.price_quote is not None), None)
    if priced is not None:
        quote = render.quote_of(priced)
        per_token = priced.price_quote / 10 ** render.QUOTE_DECIMALS[quote]  # type: ignore[operator]
        extra = [f"Price {render.price(per_token, quote)}"]
        if priced.market_cap_quote is not None:
            extra.append(f"market cap {render.money(priced.market_cap_quote, quote)}")
        if priced.liquidity_trend:
            extra.append(f"liquidity {render.TRENDS.get(priced.liquidity_trend, esc(priced.liquidity_trend))}")
        lines.append(" · ".join(extra) + " (from your LaserSell stream)")
    else:
        lines.append("Price and market: LaserSell quotes them when you tap a buy amount.")
    flags = []
    if facts.mint_authority:
        flags.append("⚠️ the creator can still mint more tokens")
    if facts.freeze_authority:
        flags.append("⚠️ the creator can freeze your tokens")
    risky = {"TransferFeeConfig": "transfer fee", "PermanentDelegate": "permanent delegate",
             "TransferHook": "transfer hook", "NonTransferable": "non-transferable", "DefaultAccountState": "default frozen"}
    for extension in facts.extensions:
        if extension in risky:
            flags.append(f"⚠️ Token-2022 {risky[extension]}")
    lines.append("\n".join(flags) if flags else "✅ No mint or freeze authority" + (
        "; no risky Token-2022 extensions" if facts.token_2022 else ""))
    for p in positions:
        lines.append(f"You hold it: #{p.position_id} in {render.short(p.wallet)} · {render.pnl_line(p)}")
    wallets = [w for w in await services.accounts.wallets.list(user_id) if w.registered_at]
    if not wallets:
        lines.append("\nAdd a wallet in /wallets to buy.")
        return "\n".join(lines), keyboard([("🏠 Home", HomeTap("home"))])
    chosen = next((w for w in wallets if w.id == wallet_id), None) or next(
        (w for w in wallets if w.is_default), wallets[0])
    presets = await services.accounts.buy_presets(user_id)
    lines.append(f"\nBuy from <b>{esc(chosen.label)}</b>:")
    rows: list[list[tuple[str, CallbackData]]] = [
        [(f"Buy {render.sol(v)}", TokenBuyTap(chosen.id, i, mint)) for i, v in enumerate(presets)]
    ]
    if len(wallets) > 1:
        rows.append([(("✅ " if w.id == chosen.id else "") + w.label, TokenTap("w", w.id, mint)) for w in wallets[:4]])
    rows.append([("✏️ Buy amounts", TokenTap("p", chosen.id, mint)), ("🔄 Refresh", TokenTap("r", chosen.id, mint)),
                 ("🏠 Home", HomeTap("home"))])
    return "\n".join(lines), keyboard(*rows)
