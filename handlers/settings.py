"""/settings (send mode, tip, slippage cap, retries, auto-sell, alerts, pause), /pause, /resume, /forget."""

from __future__ import annotations

import math

from telegram import Update

from bot.accounts import AccountError
from bot.callbacks import SettingsTap, keyboard
from bot.context import BotContext
from bot.notify import cards
from bot.notify.cards import ALERT_KINDS, alert_level, sol_text, tip_rule
from bot.notify.cards import settings_text as describe
from bot.notify.render import esc
from bot.services import Services
from handlers.common import (
    PCT_LADDER,
    TIP_LADDER_LAMPORTS,
    answer,
    clear_input,
    delete_secret_message,
    edit_or_reply,
    expect_input,
    is_private,
    ladder_step,
    refuse_secret_in_group,
    send,
    show,
    user_id_of,
)
from handlers.registry import Button, Command, Router
from storage.accounts import (
    DEFAULT_TIP_LAMPORTS,
    MAX_TIP_LAMPORTS,
    SEND_MODES,
    TIP_FLOOR_LAMPORTS,
    UserSettings,
)

__all__ = ["SettingsError", "describe", "parse_changes", "router"]

ALERT_LEVELS = ("on", "silent", "off")
LAMPORTS_PER_SOL = 1_000_000_000
MAX_TIP_SOL = MAX_TIP_LAMPORTS / LAMPORTS_PER_SOL
USAGE = cards.SETTINGS_USAGE


def check_tip(mode: str, tip_lamports: int) -> None:
    """Refuse a tip its send mode would not carry, saying why."""
    if mode == "rpc" and tip_lamports > 0:
        raise SettingsError("plain RPC mode sends no tip: set tip 0, or pick mode helius_sender or astralane")
    floor = TIP_FLOOR_LAMPORTS.get(mode, 0)
    if tip_lamports < floor:
        raise SettingsError(
            f"a tip of {sol_text(tip_lamports)} is under the floor: {tip_rule(mode)} "
            "(it drops transactions with a smaller tip, so the sell would never land)"
        )


def tip_for_new_mode(mode: str, tip_lamports: int) -> int:
    """The tip to keep when the mode changes: none for RPC, the CLI's default when the old one is too small."""
    if mode == "rpc":
        return 0
    return tip_lamports if tip_lamports >= TIP_FLOOR_LAMPORTS.get(mode, 0) else DEFAULT_TIP_LAMPORTS


class SettingsError(ValueError):
    pass


def _number(name: str, raw: str, low: float, high: float, unit: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} {raw!r} is not a number: use {low:g} to {high:g}{unit}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise SettingsError(f"{name} {raw!r} is out of range: use {low:g} to {high:g}{unit}")
    return value


def validate_alerts(alerts: dict[str, str], auto_sell: bool) -> None:
    if alerts.get("signals") == "off" and not auto_sell:
        raise SettingsError(
            "exit signals cannot be turned off while auto-sell is off: every sell waits for your tap on that alert"
        )


def _switch(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw.lower() not in choices:
        raise SettingsError(f"{name} {raw!r} must be {' or '.join(choices) if len(choices) == 2 else 'one of ' + ', '.join(choices)}")
    return raw.lower()


def _one_change(name: str, raw: str, current: UserSettings, changes: dict[str, object]) -> dict[str, object]:
    """The field changes one `name value` pair of the one-line form asks for (checked)."""
    if name == "mode":
        if raw.lower() not in SEND_MODES:
            raise SettingsError(f"mode {raw!r} is not a send mode: use {', '.join(SEND_MODES)}")
        tip = changes.get("tip_lamports", tip_for_new_mode(raw.lower(), current.tip_lamports))
        return {"send_mode": raw.lower(), "tip_lamports": tip}
    if name == "tip":
        return {"tip_lamports": round(_number("tip", raw, 0, MAX_TIP_SOL, " SOL") * LAMPORTS_PER_SOL)}
    if name == "slippage":
        return {"slippage_bps": round(_number("slippage", raw.rstrip("%"), 0.1, 50, " %") * 100)}
    if name == "cap":
        return {"slippage_cap_bps": round(_number("cap", raw.rstrip("%"), 0.5, 50, " %") * 100)}
    if name == "retries":
        value = _number("retries", raw, 0, 5, "")
        if value != int(value):
            raise SettingsError(f"retries {raw!r} must be a whole number from 0 to 5")
        return {"retry_count": int(value)}
    if name == "auto":
        return {"auto_sell": _switch("auto", raw, ("on", "off")) == "on"}
    if name.startswith("alerts.") and name[7:] in ALERT_KINDS:
        alerts = dict(changes.get("alerts_json", current.alerts))  # type: ignore[call-overload]
        alerts[name[7:]] = _switch(name, raw, ALERT_LEVELS)
        return {"alerts_json": alerts}
    raise SettingsError(
        f"unknown setting {name!r}: use mode, tip, slippage, cap, retries, auto or "
        + ", ".join(f"alerts.{k}" for k in ALERT_KINDS)
    )


def parse_changes(current: UserSettings, args: list[str]) -> dict[str, object]:
    """`mode rpc tip 0.001 ...` -> field changes, all checked before anything is stored."""
    if not args or len(args) % 2:
        raise SettingsError(f"give settings as name value pairs, for example {USAGE}")
    changes: dict[str, object] = {}
    for name, raw in zip(args[::2], args[1::2], strict=True):
        changes.update(_one_change(name.lower(), raw, current, changes))
    alerts: dict[str, str] = changes.get("alerts_json", current.alerts)  # type: ignore[assignment]
    auto_sell = bool(changes.get("auto_sell", current.auto_sell))
    validate_alerts(alerts, auto_sell)
    if "tip_lamports" in changes or "send_mode" in changes:
        check_tip(str(changes.get("send_mode", current.send_mode)),
                  int(changes.get("tip_lamports", current.tip_lamports)))  # type: ignore[call-overload]
    slippage = int(changes.get("slippage_bps", current.slippage_bps))  # type: ignore[call-overload]
    cap = int(changes.get("slippage_cap_bps", current.slippage_cap_bps))  # type: ignore[call-overload]
    if cap < slippage:
        raise SettingsError(f"the slippage cap {cap / 100:g}% is below your slippage {slippage / 100:g}%: raise the cap")
    return changes


async def _show(update: Update, services: Services, user_id: int, *, edit: bool) -> None:
    await show(update, *await cards.settings_view(services, user_id, usage=not edit), edit=edit)


async def settings_command(update: Update, context: BotContext) -> None:
    services = context.services
    assert update.effective_message is not None
    user_id = user_id_of(update)
    if context.args:
        current = await services.accounts.user_settings(user_id)
        try:
            changes = parse_changes(current, list(context.args))
        except SettingsError as exc:
            await update.effective_message.reply_text(f"❌ {esc(exc)}.\nNothing was changed.")
            return
        if changes.get("send_mode") == "astralane" and current.astralane_sealed is None:
            changes.pop("send_mode")
            changes.pop("tip_lamports", None)  # the tip follows the mode once the key is there
            await services.accounts.update_settings(user_id, **changes)
            await ask_astralane_key(update, context)
            return
        await services.accounts.update_settings(user_id, **changes)
        await update.effective_message.reply_text("✅ Saved.")
    await _show(update, services, user_id, edit=False)


async def ask_astralane_key(update: Update, context: BotContext) -> None:
    expect_input(context, "astralane")
    await send(update, "Astralane needs its API key: send it as your next message (I delete it at once), or /cancel.")


async def save_astralane_key(update: Update, context: BotContext, key: str, _asked: object = None) -> None:
    services = context.services
    if not is_private(update):
        await refuse_secret_in_group(update, "Astralane key")
        return
    note = await delete_secret_message(update.effective_message, "Astralane key")
    user_id = user_id_of(update)
    current = await services.accounts.user_settings(user_id)
    try:
        await services.accounts.set_astralane_key(
            user_id, key, send_mode="astralane", tip_lamports=tip_for_new_mode("astralane", current.tip_lamports)
        )
    except AccountError as exc:
        await send(update, f"❌ {esc(exc)} {note} Send it again, or /cancel.")
        return
    clear_input(context)
    await send(update, f"✅ Astralane key saved; send mode is astralane. {note}")


def _stepped(s: UserSettings, tap: SettingsTap) -> tuple[dict[str, object], str | None]:
    """The change a − / + tap asks for, or (no change, why) when the value is at its bound."""
    up = tap.arg == "+"
    if tap.action == "tip":
        floor = 0 if s.send_mode == "rpc" else TIP_FLOOR_LAMPORTS.get(s.send_mode, 0)
        ceiling = 0 if s.send_mode == "rpc" else MAX_TIP_LAMPORTS
        found = ladder_step(TIP_LADDER_LAMPORTS, s.tip_lamports, up)
        tip = max(floor, min(ceiling, int(found) if found is not None else (ceiling if up else floor)))
        if tip == s.tip_lamports:
            return {}, f"Tip stays at {sol_text(s.tip_lamports)}: {tip_rule(s.send_mode)}."
        return {"tip_lamports": tip}, None
    if tap.action == "cap":
        found = ladder_step(PCT_LADDER, s.slippage_cap_bps / 100, up)
        cap = max(s.slippage_bps, 50, min(5000, round(found * 100) if found is not None else s.slippage_cap_bps))
        if cap == s.slippage_cap_bps:
            return {}, (f"The cap stays at {s.slippage_cap_bps / 100:g}%: it is 0.5% to 50% and never below "
                        f"your slippage ({s.slippage_bps / 100:g}%).")
        return {"slippage_cap_bps": cap}, None
    found = ladder_step(PCT_LADDER, s.slippage_bps / 100, up)
    slippage = max(10, min(5000, round(found * 100) if found is not None else s.slippage_bps))
    if slippage == s.slippage_bps:
        return {}, f"Slippage stays at {s.slippage_bps / 100:g}%: it is 0.1% to 50%."
    changes: dict[str, object] = {"slippage_bps": slippage}
    if slippage > s.slippage_cap_bps:
        changes["slippage_cap_bps"] = slippage  # the cap is never below the slippage
    return changes, None


def _toggled(s: UserSettings, tap: SettingsTap) -> tuple[dict[str, object], str | None]:
    """The change an on/off or cycling button asks for, and a note when a rule kept a value."""
    if tap.action == "mode":
        mode = SEND_MODES[(SEND_MODES.index(s.send_mode) + 1) % len(SEND_MODES)] if s.send_mode in SEND_MODES else SEND_MODES[0]
        return {"send_mode": mode, "tip_lamports": tip_for_new_mode(mode, s.tip_lamports)}, None
    if tap.action == "auto":
        changes: dict[str, object] = {"auto_sell": not s.auto_sell}
        if s.auto_sell and s.alerts.get("signals") == "off":
            # without auto-sell the exit alert is how a sell happens
            changes["alerts_json"] = {**s.alerts, "signals": "on"}
        return changes, None
    if tap.action == "pause":
        return {"paused": not s.paused}, None
    alerts = dict(s.alerts)
    alerts[tap.arg] = ALERT_LEVELS[(ALERT_LEVELS.index(alert_level(s, tap.arg)) + 1) % len(ALERT_LEVELS)]
    try:
        validate_alerts(alerts, s.auto_sell)
    except SettingsError as exc:
        alerts[tap.arg] = "on"
        return {"alerts_json": alerts}, str(exc).capitalize()[:190]
    return {"alerts_json": alerts}, None


async def _forget(update: Update, context: BotContext, tap: SettingsTap) -> None:
    if tap.action == "keep":
        await answer(update, "Nothing was deleted")
        await edit_or_reply(update, "Nothing was deleted.")
        return
    await context.services.accounts.forget(user_id_of(update))
    clear_input(context)
    await answer(update, "Everything deleted")
    await edit_or_reply(update, "🗑 Done: I deleted your keys, wallets, strategy and settings. /start sets you up again.")


async def on_button(update: Update, context: BotContext) -> None:
    tap = SettingsTap.read(update)
    if tap.action in ("forget", "keep"):
        await _forget(update, context, tap)
        return
    services = context.services
    user_id = user_id_of(update)
    s = await services.accounts.user_settings(user_id)
    if tap.action == "ask" and tap.arg in TYPED:
        await answer(update)
        expect_input(context, "setting", name=tap.arg)
        await send(update, await typed_prompt(services, user_id, tap.arg))
        return
    if tap.action == "mode" and _toggled(s, tap)[0]["send_mode"] == "astralane" and s.astralane_sealed is None:
        await answer(update)
        await ask_astralane_key(update, context)
        return
    if tap.action in ("tip", "cap", "slip"):
        changes, note = _stepped(s, tap)
        if not changes:
            await answer(update, note)
            return
    elif tap.action in ("mode", "auto", "pause") or (tap.action == "al" and tap.arg in ALERT_KINDS):
        changes, note = _toggled(s, tap)
    else:
        await answer(update)
        return
    await services.accounts.update_settings(user_id, **changes)
    await answer(update, note, alert=note is not None)
    await _show(update, services, user_id, edit=True)


# Settings a tap on their button lets the trader type: name in the one-line form -> what to send.
TYPED = {
    "tip": "the tip in SOL, for example 0.002",
    "slippage": "your slippage in %, 0.1 to 50, for example 5",
    "cap": "the slippage cap in %, 0.5 to 50: retries raise the slippage up to it",
    "retries": "how many automatic retries a failed sell gets, 0 to 5",
}
TYPED_DONE = {"tip": "Tip", "slippage": "Slippage", "cap": "Slippage cap", "retries": "Automatic retries"}


async def typed_prompt(services: Services, user_id: int, name: str) -> str:
    s = await services.accounts.user_settings(user_id)
    rule = f" ({tip_rule(s.send_mode)})" if name == "tip" else ""
    return f"Send {TYPED[name]}{rule}, or /cancel."


def typed_value(s: UserSettings, name: str) -> str:
    return {
        "tip": sol_text(s.tip_lamports), "slippage": f"{s.slippage_bps / 100:g}%",
        "cap": f"{s.slippage_cap_bps / 100:g}%", "retries": str(s.retry_count),
    }[name]


async def save_typed_setting(update: Update, context: BotContext, text: str, asked: dict[str, object]) -> None:
    """The typed answer to a setting's button: checked with the same rules as the one-line form."""
    services = context.services
    assert update.effective_message is not None
    user_id = user_id_of(update)
    name = str(asked["name"])
    current = await services.accounts.user_settings(user_id)
    try:
        changes = parse_changes(current, [name, text.strip()])
    except SettingsError as exc:
        await update.effective_message.reply_text(f"❌ Not changed: {esc(exc)}.\nSend another value, or /cancel.")
        return
    clear_input(context)
    saved = await services.accounts.update_settings(user_id, **changes)
    await update.effective_message.reply_text(f"✅ {TYPED_DONE[name]} set to {typed_value(saved, name)}.")
    await _show(update, services, user_id, edit=False)


async def pause_command(update: Update, context: BotContext) -> None:
    await _set_paused(update, context, True)


async def resume_command(update: Update, context: BotContext) -> None:
    await _set_paused(update, context, False)


async def _set_paused(update: Update, context: BotContext, paused: bool) -> None:
    assert update.effective_message is not None
    await context.services.accounts.update_settings(user_id_of(update), paused=paused)
    await update.effective_message.reply_text(
        "⏸ Paused: I stopped watching your wallets. /resume starts again." if paused
        else "▶️ Watching your wallets again."
    )


async def forget_command(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        "Delete <b>everything</b> I hold for you: your LaserSell key, wallet keys, strategy and settings? This cannot "
        "be undone; make sure you have your wallet keys elsewhere.",
        reply_markup=keyboard([("Yes, delete everything", SettingsTap("forget")), ("Cancel", SettingsTap("keep"))]),
    )


router = Router(
    commands=[
        Command("settings", "Send mode, tip, slippage, auto-sell, alerts, pause", settings_command, section="Setup",
                usage=USAGE),
        Command("pause", "Stop watching your wallets for now", pause_command, section="Setup"),
        Command("resume", "Watch your wallets again", resume_command, section="Setup"),
        Command("forget", "Delete everything I hold for you", forget_command, section="Setup"),
    ],
    buttons=[Button(SettingsTap, on_button)],
    inputs={"astralane": save_astralane_key, "setting": save_typed_setting},
)
