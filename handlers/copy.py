"""/copy: watch wallets, their buys (amount, buying wallet, ask me / auto), on / off / remove, the limits."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from telegram import InlineKeyboardMarkup, Update

from bot.callbacks import CopyModeTap, CopyTap, keyboard
from bot.context import BotContext
from bot.copy import DEFAULT_LIMITS, USD1_UNITS, Copier, CopyError, NotWatched, amount_words
from bot.exits.buy import LAMPORTS_PER_SOL
from bot.notify import render
from handlers.common import answer, user_id_of
from handlers.registry import Button, Command, Router

LIMIT_WORDS: dict[str, str] = {
    "max_positions_per_wallet": "open copies per watched wallet; more buys from it are skipped",
    "cooldown_sec": "seconds between two copy buys from the same watched wallet",
    "max_active_sol": "SOL across all open copied positions; a buy past it is skipped",
    "buy_slippage_bps": "slippage for copy buys, in basis points (2500 = 25%)",
    "skip_creator_tokens": "skip tokens the watched wallet created (on / off)",
    "min_liquidity_sol": "minimum pool liquidity in SOL (off = no minimum)",
    "max_entry_drift_pct": "skip when the price moved more than this % since the wallet bought (off = any)",
    "max_consecutive_losses": "turn a watched wallet off after this many losses in a row (off = never)",
    "daily_budget_sol": "the most SOL this bot spends on copy buys in 24 hours",
    "fee_reserve_sol": "SOL always left in the wallet for exit fees; a buy that would dip under it is refused",
}
INTEGER_LIMITS = {"max_positions_per_wallet", "cooldown_sec", "buy_slippage_bps", "max_consecutive_losses"}
OPTIONAL_LIMITS = {"min_liquidity_sol", "max_entry_drift_pct", "max_consecutive_losses"}

USAGE = (
    "<b>Copy trading</b> commands:\n"
    "<code>/copy add &lt;address&gt; &lt;nickname&gt;</code> watch a wallet\n"
    "<code>/copy amount &lt;nickname&gt; 0.1</code> (or <code>25 usd1</code>) per copy buy\n"
    "<code>/copy wallet &lt;nickname&gt; &lt;your wallet's name&gt;</code> which of your wallets buys\n"
    "<code>/copy mode &lt;nickname&gt; ask</code> or <code>auto</code>\n"
    "<code>/copy on|off|remove &lt;nickname&gt;</code>\n"
    "<code>/copy limit &lt;name&gt; &lt;value&gt;</code> (names below)"
)


class CopyInputError(CopyError):
    """Bad input; `str()` says what was wrong and how to write it."""


def _limit_value(limits: dict[str, Any], name: str) -> str:
    value = limits[name]
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_limit(name: str, text: str) -> Any:
    if name not in DEFAULT_LIMITS:
        raise CopyInputError(f"there is no limit called {render.esc(name)!r}; the limits are: {', '.join(DEFAULT_LIMITS)}")
    lowered = text.strip().lower()
    if name == "skip_creator_tokens":
        if lowered not in ("on", "off"):
            raise CopyInputError("skip_creator_tokens is on or off")
        return lowered == "on"
    if lowered == "off" and name in OPTIONAL_LIMITS:
        return None
    try:
        number = Decimal(lowered.replace(",", "."))
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        hint = " or off" if name in OPTIONAL_LIMITS else ""
        raise CopyInputError(f"{name} takes a number of 0 or more{hint}, like /copy limit {name} {DEFAULT_LIMITS[name] or 3}")
    if name in INTEGER_LIMITS:
        if number != number.to_integral_value():
            raise CopyInputError(f"{name} is a whole number")
        if name == "buy_slippage_bps" and not 0 < number <= 10_000:
            raise CopyInputError("buy_slippage_bps is between 1 and 10000 (2500 = 25%)")
        return int(number)
    return float(number)


def parse_amount(words: list[str]) -> tuple[int, str]:
    if not words or len(words) > 2:
        raise CopyInputError("write the amount like <code>/copy amount alice 0.1</code> or <code>25 usd1</code>")
    quote = words[1].upper() if len(words) == 2 else "SOL"
    if quote not in ("SOL", "USD1"):
        raise CopyInputError(f"{render.esc(words[1])!r} is not SOL or USD1")
    try:
        amount = Decimal(words[0].replace(",", "."))
    except InvalidOperation:
        raise CopyInputError(f"{render.esc(words[0])!r} is not an amount: write it like 0.1") from None
    if not amount.is_finite() or amount <= 0:
        raise CopyInputError("the amount must be more than 0")
    if amount > 10_000:
        raise CopyInputError(f"{words[0]} {quote} per copy buy is more than this bot allows (10000)")
    units = int(amount * (LAMPORTS_PER_SOL if quote == "SOL" else USD1_UNITS))
    if units <= 0:
        raise CopyInputError("the amount is smaller than one unit")
    return units, quote


async def overview(copier: Copier, user_id: int) -> str:
    view = await copier.overview(user_id)
    lines = [f"🪞 <b>Copy trading</b> · {len(view.rows)} of {view.slots} watch-wallet slots used ({view.plan} plan)"]
    if not view.rows:
        lines.append("You watch no wallet yet.")
    for row in view.rows:
        w = row.wallet
        state = "on" if w.enabled else "<b>disabled</b>" + (f" ({render.esc(w.disabled_reason)})" if w.disabled_reason else "")
        mode = "auto" if w.mode == "auto" else "ask me"
        buyer = "default wallet" if row.buyer_label is None else row.buyer_label
        lines.append(f"• <b>{render.esc(w.nickname)}</b> <code>{render.short(w.address)}</code> · {amount_words(w)} · "
                     f"{mode} · buys with {render.esc(buyer)} · {state}")
        lines.append("   " + row.stats)
    lines.append("\n<b>Limits</b> (default in brackets):")
    for name, words in LIMIT_WORDS.items():
        default = _limit_value(DEFAULT_LIMITS, name)
        lines.append(f"• <code>{name}</code> {_limit_value(view.limits, name)} ({default}): {words}")
    lines.append("")
    lines.append(USAGE)
    return "\n".join(lines)


async def copy_command(update: Update, context: BotContext) -> None:
    copier = context.services.copier
    assert update.effective_user is not None and update.effective_message is not None
    message = update.effective_message
    user_id = update.effective_user.id
    args = list(context.args or [])
    try:
        reply = await _run(copier, user_id, args) if args else await overview(copier, user_id)
    except CopyError as exc:
        await message.reply_text(f"Not changed: {exc}.")
        return
    if isinstance(reply, tuple):
        await message.reply_text(reply[0], reply_markup=reply[1])
    else:
        await message.reply_text(reply)


async def _run(copier: Copier, user_id: int, args: list[str]) -> str | tuple[str, InlineKeyboardMarkup]:
    action, rest = args[0].lower(), args[1:]
    if action == "add":
        if len(rest) != 2:
            raise CopyInputError("write <code>/copy add &lt;wallet address&gt; &lt;nickname&gt;</code>")
        w = await copier.watch(user_id, rest[0], rest[1])
        return (f"👀 Watching <b>{render.esc(w.nickname)}</b> <code>{render.esc(w.address)}</code>: each of its buys is "
                f"offered to you for {amount_words(w)} (ask me). Change it with /copy amount, /copy mode.")
    if action == "limit":
        if len(rest) != 2:
            raise CopyInputError("write <code>/copy limit &lt;name&gt; &lt;value&gt;</code>; /copy lists the names")
        name = rest[0]
        value = await copier.set_limit(user_id, name, parse_limit(name, rest[1]))
        return f"Saved: <code>{name}</code> is now {_limit_value({name: value}, name)} ({LIMIT_WORDS[name]})."
    if action not in ("amount", "wallet", "mode", "on", "off", "remove"):
        raise CopyInputError(f"/copy does not know {render.esc(args[0])!r}.\n\n{USAGE}")
    if not rest:
        raise CopyInputError(f"say which watched wallet: <code>/copy {action} &lt;nickname&gt;</code>")
    nickname, more = rest[0], rest[1:]
    if action == "amount":
        units, quote = parse_amount(more)
        w = await copier.set_amount(user_id, nickname, units, quote)
        return f"Saved: each copy of <b>{render.esc(w.nickname)}</b> buys for {amount_words(w)}."
    if action == "wallet":
        if not more:
            raise CopyInputError("write <code>/copy wallet &lt;nickname&gt; &lt;your wallet's name&gt;</code>")
        w, chosen = await copier.set_buy_wallet(user_id, nickname, " ".join(more))
        return f"Saved: copies of <b>{render.esc(w.nickname)}</b> buy with {render.esc(chosen.label)}."
    if action == "mode":
        return await _mode(copier, user_id, nickname, more)
    if action in ("on", "off"):
        w = await copier.enable(user_id, nickname, action == "on")
        return f"Copy trading of <b>{render.esc(w.nickname)}</b> is {action}."
    w = await copier.remove(user_id, nickname)
    return f"Removed <b>{render.esc(w.nickname)}</b>: it is no longer watched."


async def _mode(copier: Copier, user_id: int, nickname: str, rest: list[str]) -> str | tuple[str, InlineKeyboardMarkup]:
    choice = rest[0].lower() if len(rest) == 1 else ""
    if choice in ("ask", "askme", "ask-me"):
        w = await copier.set_mode(user_id, nickname, "ask")
        return f"Saved: each buy of <b>{render.esc(w.nickname)}</b> waits for your Copy / Skip."
    if choice == "auto":  # asked first: nothing changes until Yes
        found = await copier.get(user_id, nickname)
        text = (f"⚠️ <b>Auto-copy {render.esc(found.nickname)}?</b> Every buy it makes is copied for "
                f"{amount_words(found)} without asking, within your limits (daily budget, fee reserve, cooldown, "
                "exposure). Flagged or odd transactions are still refused by the guard.")
        return text, keyboard([("Yes, auto-copy", CopyModeTap("auto", found.address)),
                               ("No", CopyModeTap("no", found.address))])
    raise CopyInputError("the mode is <code>ask</code> (Copy / Skip on each buy) or <code>auto</code>")


async def on_mode_button(update: Update, context: BotContext) -> None:
    tap = CopyModeTap.read(update)
    copier = context.services.copier
    user_id = user_id_of(update)
    query = update.callback_query
    assert query is not None
    if tap.action == "auto":
        try:
            w = await copier.set_mode(user_id, tap.address, "auto")
        except NotWatched:
            await answer(update, "That wallet is no longer watched.", alert=True)
            return
        await answer(update, "Auto-copy on")
        await query.edit_message_text(f"✅ Auto-copy of <b>{render.esc(w.nickname)}</b> is on.")
        return
    found = await copier.find(user_id, tap.address)
    if found is None:
        await answer(update, "That wallet is no longer watched.", alert=True)
        return
    await answer(update, "Unchanged")
    await query.edit_message_text(f"Unchanged: <b>{render.esc(found.nickname)}</b> still asks you first.")


async def on_copy_button(update: Update, context: BotContext) -> None:
    """Copy / Skip under a buy a watched wallet made."""
    tap = CopyTap.read(update)
    copier = context.services.copier
    if copier is None:
        await answer(update, "Copy trading is not available on this bot.")
        return
    await answer(update, await copier.tap(user_id_of(update), tap.order_id, tap.action == "go"))


router = Router(
    commands=[
        Command("copy", "Copy trading: watch wallets and copy their buys under your limits", copy_command,
                section="Trading", usage="/copy add <address> <nickname>"),
    ],
    buttons=[Button(CopyTap, on_copy_button), Button(CopyModeTap, on_mode_button)],
)
