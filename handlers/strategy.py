"""/strategy (plain words, an inline editor, and a one-line form) and /ladder."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from telegram import InlineKeyboardMarkup, Update

from bot.callbacks import StrategyTap, keyboard
from bot.context import BotContext
from bot.notify.render import esc
from bot.strategy import LADDER_USAGE, ONE_LINE_USAGE, Strategy, StrategyError, apply_one_line, parse_ladder
from handlers.common import (
    DRAFT,
    PCT_LADDER,
    SECONDS_LADDER,
    answer,
    edit_or_reply,
    ladder_step,
    remember,
    user_id_of,
)
from handlers.onboarding import continue_setup
from handlers.registry import Button, Command, Router

# editor rows: key -> (field, label, step, lowest on-value, highest, default when turned on)
STEPPERS: dict[str, tuple[str, str, float, float, float, float]] = {
    "tp": ("take_profit_pct", "Take profit", 5, 1, 100000, 25),
    "sl": ("stop_loss_pct", "Stop loss", 1, 1, 99, 10),  # a loss, or a fall from a peak, stays below 100 %
    "tr": ("trailing_stop_pct", "Trailing stop", 1, 1, 99, 5),
    "dl": ("deadline_s", "Deadline", 15, 15, 86400, 45),
    "be": ("breakeven_trail_pct", "Breakeven trail", 1, 1, 99, 3),
}
TOGGLES: dict[str, tuple[str, str]] = {
    "gr": ("sell_on_graduation", "Sell on graduation"),
    "lg": ("liquidity_guard", "Liquidity guard (check the pool before an exit)"),
}
# the answer to a toggle tap, so the trader learns what the switch does where they flip it
TOGGLE_NOTES: dict[str, str] = {
    "lg": "Liquidity guard: LaserSell checks the pool's liquidity before building an exit and holds it back while "
    "the pool is too thin. It is not an exit by itself.",
}
HELP = (
    "LaserSell needs at least one of take profit, stop loss, trailing stop or a deadline above 0. "
    "A ladder level sells a share of what is LEFT when it fires: /ladder 25:30 50:50 100:100 sells 30% at +25%, "
    "half of the rest (35% of the position) at +50% and the rest at +100%. "
    "The liquidity guard is not an exit: it makes LaserSell check pool liquidity before it builds one."
)


def _change(field: str, value: object) -> dict[str, Any]:
    return {field: value}


def describe(strategy: Strategy, title: str = "Your exit strategy") -> str:
    return f"<b>{esc(title)}</b>\n" + "\n".join(f"• {esc(line)}" for line in strategy.describe())


def _value_label(key: str, value: float) -> str:
    if not value:
        return "off"
    return f"{value:g} s" if key == "dl" else f"{value:g}%"


def editor_markup(draft: Strategy) -> InlineKeyboardMarkup:
    rows: list[list[tuple[str, StrategyTap]]] = []
    for key, (field, label, *_rest) in STEPPERS.items():
        value = getattr(draft, field)
        if key == "tp" and draft.ladder:
            rows.append([(f"Take profit: ladder ({len(draft.ladder)} levels, /ladder)", StrategyTap("noop"))])
            continue
        rows.append([("−", StrategyTap("dn", key)), (f"{label}: {_value_label(key, value)}", StrategyTap("tg", key)),  # type: ignore[arg-type]
                     ("+", StrategyTap("up", key))])  # type: ignore[arg-type]
    for key, (field, label) in TOGGLES.items():
        rows.append([(f"{label}: {'on' if getattr(draft, field) else 'off'}", StrategyTap("tg", key))])  # type: ignore[arg-type]
    rows.append([("✅ Done", StrategyTap("done")), ("Cancel", StrategyTap("cancel"))])
    return keyboard(*rows)


async def strategy_command(update: Update, context: BotContext) -> None:
    services = context.services
    assert update.effective_user is not None and update.effective_message is not None
    current = await services.accounts.strategy(update.effective_user.id)
    if context.args:
        try:
            changed = apply_one_line(current, list(context.args))
        except StrategyError as exc:
            await update.effective_message.reply_text(
                f"❌ {esc(exc)}.\nNothing was changed. Example: <code>{esc(ONE_LINE_USAGE)}</code>"
            )
            return
        saved = await services.accounts.set_strategy(update.effective_user.id, changed)
        await update.effective_message.reply_text("✅ Saved and sent to your stream.\n" + describe(saved))
        return
    await update.effective_message.reply_text(
        describe(current) + f"\n\nChange it with the editor, or in one line:\n<code>{esc(ONE_LINE_USAGE)}</code>\n"
        f"<code>{esc(LADDER_USAGE)}</code>\n\n{esc(HELP)}",
        reply_markup=keyboard([("Edit", StrategyTap("edit"))]),
    )


async def ladder_command(update: Update, context: BotContext) -> None:
    services = context.services
    assert update.effective_user is not None and update.effective_message is not None
    current = await services.accounts.strategy(update.effective_user.id)
    try:
        changed = parse_ladder(current, list(context.args or []))
    except StrategyError as exc:
        await update.effective_message.reply_text(f"❌ {esc(exc)}.\nNothing was changed. Usage: <code>{esc(LADDER_USAGE)}</code>")
        return
    saved = await services.accounts.set_strategy(update.effective_user.id, changed)
    note = ""
    if current.take_profit_pct and not saved.take_profit_pct:
        note = (
            f"\nYour take profit (+{current.take_profit_pct:g}%) is now off: it would have sold the whole position "
            "before the ladder's levels. Set one above the top level with /strategy tp if you want a cap."
        )
    await update.effective_message.reply_text("✅ Saved and sent to your stream.\n" + describe(saved) + note)


def _step(draft: Strategy, key: str, direction: int) -> Strategy:
    field, _label, _step_size, low, high, default = STEPPERS[key]
    value = getattr(draft, field)
    if not value:
        new = default if direction > 0 else 0
    else:
        ladder = SECONDS_LADDER if key == "dl" else PCT_LADDER
        found = ladder_step(ladder, value, direction > 0)
        new = high if found is None and direction > 0 else (found or 0)
        if new < low:
            new = 0  # stepping below the lowest value turns it off
        new = min(new, high)
    return replace(draft, **_change(field, int(new) if key == "dl" else float(new)))


async def _apply(draft: Strategy, tap: StrategyTap) -> tuple[Strategy, str | None]:
    """The draft after a stepper or toggle tap, and the note to answer with (None: none)."""
    if tap.action in ("up", "dn") and tap.key in STEPPERS:
        return _step(draft, tap.key, 1 if tap.action == "up" else -1), None
    if tap.action == "tg" and tap.key in STEPPERS:
        field = STEPPERS[tap.key][0]
        draft = replace(draft, **_change(field, 0 if getattr(draft, field) else STEPPERS[tap.key][5]))
        if tap.key == "dl":
            draft = replace(draft, deadline_s=int(draft.deadline_s))
        return draft, None
    if tap.action == "tg" and tap.key in TOGGLES:
        field = TOGGLES[tap.key][0]
        return replace(draft, **_change(field, not getattr(draft, field))), TOGGLE_NOTES.get(tap.key)
    return draft, None


async def _save(update: Update, context: BotContext, draft: Strategy) -> None:
    user_data: dict[Any, Any] = context.user_data  # type: ignore[assignment]
    try:
        saved = await context.services.accounts.set_strategy(user_id_of(update), draft)
    except StrategyError as exc:
        # an alert holds 200 characters: the whole reason goes into the editor's message
        await answer(update, "Not saved: see what to change in the message.", alert=True)
        await edit_or_reply(
            update, describe(draft, "Editing your strategy (not saved yet)") + f"\n\n❌ Not saved: {esc(exc)}.",
            editor_markup(draft),
        )
        return
    user_data.pop(DRAFT, None)
    remember(context)
    await answer(update, "Saved")
    await edit_or_reply(update, "✅ Saved and sent to your stream.\n" + describe(saved))
    await continue_setup(update, context)


async def on_button(update: Update, context: BotContext) -> None:
    tap = StrategyTap.read(update)
    assert context.user_data is not None
    services = context.services
    user_id = user_id_of(update)
    draft: Strategy | None = context.user_data.get(DRAFT)
    if tap.action == "noop":
        await answer(update, "Change the ladder with /ladder")
        return
    if tap.action == "cancel":
        context.user_data.pop(DRAFT, None)
        remember(context)
        await answer(update, "Nothing was changed")
        current = await services.accounts.strategy(user_id)
        await edit_or_reply(update, describe(current) + "\n(Unchanged.)", keyboard([("Edit", StrategyTap("edit"))]))
        return
    if tap.action == "edit" or draft is None:
        draft = context.user_data[DRAFT] = await services.accounts.strategy(user_id)
        remember(context)
        if tap.action != "edit":
            await answer(update, "The editor was reopened with your saved strategy.")
            await edit_or_reply(update, describe(draft, "Editing your strategy"), editor_markup(draft))
            return
    if tap.action == "done":
        await _save(update, context, draft)
        return
    draft, note = await _apply(draft, tap)
    context.user_data[DRAFT] = draft
    remember(context)
    await answer(update, note[:190] if note else None)
    await edit_or_reply(update, describe(draft, "Editing your strategy (not saved yet)"), editor_markup(draft))


router = Router(
    commands=[
        Command("strategy", "Your exit strategy: see it, edit it, or set it in one line (guard on = check pool "
                "liquidity before an exit)", strategy_command, section="Setup", usage=ONE_LINE_USAGE),
        Command("ladder", "Take-profit ladder: each level sells a share of what is left", ladder_command,
                section="Setup", usage="/ladder 25:30 50:50 100:100 (30% at +25%, half of the rest at +50%, the rest "
                "at +100%)"),
    ],
    buttons=[Button(StrategyTap, on_button)],
)
