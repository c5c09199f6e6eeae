"""/status (the stream and what it watches) and /history (the last exits)."""

from __future__ import annotations

import time

from telegram import Update
from telegram.ext import ContextTypes

from bot.accounts import AccountError
from bot.notify import render
from bot.services import get_services
from handlers.common import esc
from handlers.registry import Command

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


def _ago(monotonic_at: float | None) -> str:
    if monotonic_at is None:
        return "never"
    seconds = int(time.monotonic() - monotonic_at)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


async def status_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    user_id = update.effective_user.id
    stream = services.streams.status(user_id) if services.streams else None
    settings = await services.accounts.store.get(user_id)
    lines = ["<b>Status</b>"]
    if stream is None:
        why = "paused (/resume)" if settings.paused else "not running: finish setup with /start"
        lines.append(f"Stream: ⚪ {why}")
    else:
        lines.append(f"Stream: {STATES.get(stream['state'], esc(stream['state']))}")
        if stream["reason"]:
            lines.append(f"  {esc(stream['reason'])}")
        if stream["connected_since"] is not None and stream["state"] == "connected":
            lines.append(f"  connected since {_ago(stream['connected_since'])}, {stream['reconnects']} reconnect(s)")
        lines.append(f"  last message {_ago(stream['last_message_at'])}")
        lines.extend(services.streams.load_notes(user_id))
        try:
            info = await services.accounts.key_info(user_id)
        except AccountError:
            info = None  # the key itself is reported elsewhere; status still shows the rest
        if info is not None and info.plan:
            lines.append(f"  {esc(info.limits_words())}")
        limits = stream["limits"]
        if limits:
            lines.append(
                f"  plan limits: {limits.get('max_wallets_per_session', '?')} wallet(s), "
                f"{limits.get('max_positions_per_session', '?')} positions per session"
            )
    positions = await services.streams.positions.open_for(user_id) if services.streams else []
    lines.append(f"\n<b>Open positions</b> ({len(positions)})")
    for p in positions[:20]:
        pnl = ""
        if p.profit_units is not None and p.proceeds_units is not None:
            pnl = (f" · {render.money(p.profit_units, render.quote_of(p), signed=True)} "
                   f"({render.pct(p.profit_units, p.proceeds_units - p.profit_units)})")
        lines.append(f"• {esc(p.label)}{pnl}")
    pending = await services.inbox.signals.for_user(user_id, ("pending", "approved", "signing", "submitted"))
    lines.append(f"\n<b>Exit signals waiting</b>: {len(pending)}")
    for s in pending[:10]:
        lines.append(f"• {render.reason_words(s.reason)} · {OUTCOMES.get(s.state, s.state)}")
    await update.effective_message.reply_text("\n".join(lines))


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


async def history_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    user_id = update.effective_user.id
    signals = await services.inbox.signals.for_user(user_id, ("landed", "failed", "skipped", "expired"), limit=15)
    if not signals:
        await update.effective_message.reply_text("No exits yet. They show here once you sell or skip one.")
        return
    lines = ["<b>Last exits</b>"]
    for s in signals:
        position = await services.streams.positions.get(user_id, s.position_id)
        decimals = position.decimals if position else None
        label = esc(position.label) if position else render.short(s.mint)
        copier = getattr(services, "copier", None)
        source = await copier.source_label(user_id, position.wallet, position.mint) if copier and position else None
        if source:
            label += f" (🪞 {esc(source)})"  # copy trading: the watched wallet it came from
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
            line += f' · <a href="https://solscan.io/tx/{s.signature}">tx</a>'
        lines.append(line)
    await update.effective_message.reply_text("\n".join(lines), disable_web_page_preview=True)


COMMANDS = [
    Command("status", "Your stream, open positions and waiting exit signals", status_command, section="Trading"),
    Command("history", "Your last exits: time, token, reason, amount, proceeds, PnL, outcome", history_command,
            section="Trading"),
]
