"""/settings (send mode, tip, slippage cap, retries, auto-sell, alerts, pause), /pause, /resume, /forget."""

from __future__ import annotations

import math

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot.services import Services, get_services
from handlers.common import (
    PCT_LADDER,
    TIP_LADDER_LAMPORTS,
    answer,
    clear_input,
    delete_secret_message,
    edit_or_reply,
    esc,
    expect_input,
    is_private,
    keyboard,
    ladder_step,
    refuse_secret_in_group,
)
from handlers.registry import Command
from storage.accounts import (
    DEFAULT_TIP_LAMPORTS,
    MAX_TIP_LAMPORTS,
    SEND_MODES,
    TIP_FLOOR_LAMPORTS,
    UserSettings,
)

ALERT_KINDS = {"position": "Position opened", "liquidity": "Liquidity trend", "cards": "PnL card updates",
               "signals": "Exit signals"}
ALERT_LEVELS = ("on", "silent", "off")
LAMPORTS_PER_SOL = 1_000_000_000
MAX_TIP_SOL = MAX_TIP_LAMPORTS / LAMPORTS_PER_SOL
USAGE = "/settings mode helius_sender tip 0.001 cap 15 retries 2 auto off alerts.liquidity silent"
MODE_NAMES = {"helius_sender": "Helius Sender", "astralane": "Astralane", "rpc": "your RPC (no tip)"}


def sol_text(lamports: int) -> str:
    """`0.00001 SOL`, never `1e-05 SOL`."""
    text = f"{lamports / LAMPORTS_PER_SOL:.9f}".rstrip("0").rstrip(".")
    return f"{text} SOL"


def tip_rule(mode: str) -> str:
    """What the mode asks of the tip, in words (shown in /settings and at onboarding)."""
    if mode == "rpc":
        return "plain RPC sends no tip (tip 0)"
    return f"{MODE_NAMES.get(mode, mode)} needs a tip of at least {sol_text(TIP_FLOOR_LAMPORTS[mode])}"


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


def alert_level(settings: UserSettings, kind: str) -> str:
    return settings.alerts.get(kind, "on")


def describe(s: UserSettings, key_hint: str | None) -> str:
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


def markup(s: UserSettings) -> InlineKeyboardMarkup:
    return keyboard(
        [(f"Send mode: {s.send_mode}", "cfg:mode")],
        [("Tip −", "cfg:tip:-"), (f"Tip {sol_text(s.tip_lamports)}", "cfg:ask:tip"), ("Tip +", "cfg:tip:+")],
        [("Slippage −", "cfg:slip:-"), (f"Slippage {s.slippage_bps / 100:g}%", "cfg:ask:slippage"),
         ("Slippage +", "cfg:slip:+")],
        [("Cap −", "cfg:cap:-"), (f"Slippage cap {s.slippage_cap_bps / 100:g}%", "cfg:ask:cap"), ("Cap +", "cfg:cap:+")],
        [(f"Retries: {s.retry_count}", "cfg:ask:retries")],
        [(f"Auto-sell: {'on' if s.auto_sell else 'off'}", "cfg:auto")],
        *[[(f"{label}: {alert_level(s, k)}", f"cfg:al:{k}")] for k, label in ALERT_KINDS.items()],
        [("Resume watching" if s.paused else "Pause watching", "cfg:pause")],
    )


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


def parse_changes(current: UserSettings, args: list[str]) -> dict[str, object]:
    """`mode rpc tip 0.001 ...` -> field changes, all checked before anything is stored."""
    if not args or len(args) % 2:
        raise SettingsError(f"give settings as name value pairs, for example {USAGE}")
    changes: dict[str, object] = {}
    alerts = dict(current.alerts)
    auto_sell = current.auto_sell
    for name, raw in zip(args[::2], args[1::2], strict=True):
        name, low_raw = name.lower(), raw.lower()
        if name == "mode":
            if low_raw not in SEND_MODES:
                raise SettingsError(f"mode {raw!r} is not a send mode: use {', '.join(SEND_MODES)}")
            changes["send_mode"] = low_raw
            if "tip_lamports" not in changes:
                changes["tip_lamports"] = tip_for_new_mode(low_raw, current.tip_lamports)
        elif name == "tip":
            changes["tip_lamports"] = round(_number("tip", raw, 0, MAX_TIP_SOL, " SOL") * LAMPORTS_PER_SOL)
        elif name == "slippage":
            changes["slippage_bps"] = round(_number("slippage", raw.rstrip("%"), 0.1, 50, " %") * 100)
        elif name == "cap":
            changes["slippage_cap_bps"] = round(_number("cap", raw.rstrip("%"), 0.5, 50, " %") * 100)
        elif name == "retries":
            value = _number("retries", raw, 0, 5, "")
            if value != int(value):
                raise SettingsError(f"retries {raw!r} must be a whole number from 0 to 5")
            changes["retry_count"] = int(value)
        elif name == "auto":
            if low_raw not in ("on", "off"):
                raise SettingsError(f"auto {raw!r} must be on or off")
            auto_sell = low_raw == "on"
            changes["auto_sell"] = auto_sell
        elif name.startswith("alerts.") and name[7:] in ALERT_KINDS:
            if low_raw not in ALERT_LEVELS:
                raise SettingsError(f"{name} {raw!r} must be one of {', '.join(ALERT_LEVELS)}")
            alerts[name[7:]] = low_raw
            changes["alerts_json"] = alerts
        else:
            raise SettingsError(
                f"unknown setting {name!r}: use mode, tip, slippage, cap, retries, auto or "
                + ", ".join(f"alerts.{k}" for k in ALERT_KINDS)
            )
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
    s = await services.accounts.store.get(user_id)
    info = await services.accounts.key_info(user_id)
    text = describe(s, f"{info.hint} ({'yours' if info.source == 'yours' else 'operator'})" if info else None)
    if edit:
        await edit_or_reply(update, text, markup(s))
    else:
        assert update.effective_chat is not None
        await update.effective_chat.send_message(text + f"\n\nOr in one line: <code>{esc(USAGE)}</code>", reply_markup=markup(s))


async def settings_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    user_id = update.effective_user.id
    if context.args:
        current = await services.accounts.store.get(user_id)
        try:
            changes = parse_changes(current, list(context.args))
        except SettingsError as exc:
            await update.effective_message.reply_text(f"❌ {esc(exc)}.\nNothing was changed.")
            return
        if changes.get("send_mode") == "astralane" and current.astralane_sealed is None:
            changes.pop("send_mode")
            changes.pop("tip_lamports", None)  # the tip follows the mode once the key is there
            await _apply(services, user_id, changes)
            await ask_astralane_key(update, context)
            return
        await _apply(services, user_id, changes)
        await update.effective_message.reply_text("✅ Saved.")
    await _show(update, services, user_id, edit=False)


async def _apply(services: Services, user_id: int, changes: dict[str, object]) -> None:
    if changes:
        await services.accounts.store.update(user_id, **changes)
        await services.accounts._changed(user_id)


async def ask_astralane_key(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    expect_input(context, "astralane")
    assert update.effective_chat is not None
    await update.effective_chat.send_message(
        "Astralane needs its API key: send it as your next message (I delete it at once), or /cancel."
    )


async def save_astralane_key(update: Update, context: ContextTypes.DEFAULT_TYPE, key: str) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_chat is not None
    if not is_private(update):
        await refuse_secret_in_group(update, "Astralane key")
        return
    note = await delete_secret_message(update.effective_message, "Astralane key")
    key = key.strip()
    if len(key) < 8 or any(c.isspace() for c in key):
        await update.effective_chat.send_message(f"❌ That does not look like an Astralane key. {note} Send it again, or /cancel.")
        return
    clear_input(context)
    user_id = update.effective_user.id
    sealed = services.vault.seal(key.encode(), user_id=user_id, kind="astralane_key", identity="astralane_key")
    current = await services.accounts.store.get(user_id)
    await _apply(services, user_id, {"astralane_sealed": sealed, "send_mode": "astralane",
                                     "tip_lamports": tip_for_new_mode("astralane", current.tip_lamports)})
    await update.effective_chat.send_message(f"✅ Astralane key saved; send mode is astralane. {note}")


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    user_id = update.effective_user.id
    s = await services.accounts.store.get(user_id)
    parts = query.data.split(":")
    changes: dict[str, object] = {}
    action = parts[1]
    if action == "mode":
        mode = SEND_MODES[(SEND_MODES.index(s.send_mode) + 1) % len(SEND_MODES)] if s.send_mode in SEND_MODES else SEND_MODES[0]
        if mode == "astralane" and s.astralane_sealed is None:
            await answer(update)
            await ask_astralane_key(update, context)
            return
        changes["send_mode"] = mode
        changes["tip_lamports"] = tip_for_new_mode(mode, s.tip_lamports)
    elif action == "ask" and len(parts) == 3 and parts[2] in TYPED:
        await answer(update)
        expect_input(context, "setting", name=parts[2])
        assert update.effective_chat is not None
        await update.effective_chat.send_message(await typed_prompt(services, user_id, parts[2]))
        return
    elif action == "tip":
        floor = 0 if s.send_mode == "rpc" else TIP_FLOOR_LAMPORTS.get(s.send_mode, 0)
        ceiling = 0 if s.send_mode == "rpc" else MAX_TIP_LAMPORTS
        found = ladder_step(TIP_LADDER_LAMPORTS, s.tip_lamports, parts[2] == "+")
        wanted = int(found) if found is not None else (ceiling if parts[2] == "+" else floor)
        changes["tip_lamports"] = max(floor, min(ceiling, wanted))
        if changes["tip_lamports"] == s.tip_lamports:
            await answer(update, f"Tip stays at {sol_text(s.tip_lamports)}: {tip_rule(s.send_mode)}.")
            return
    elif action == "cap":
        found = ladder_step(PCT_LADDER, s.slippage_cap_bps / 100, parts[2] == "+")
        wanted = round(found * 100) if found is not None else s.slippage_cap_bps
        changes["slippage_cap_bps"] = max(s.slippage_bps, 50, min(5000, wanted))
        if changes["slippage_cap_bps"] == s.slippage_cap_bps:
            await answer(update, f"The cap stays at {s.slippage_cap_bps / 100:g}%: it is 0.5% to 50% and never below "
                         f"your slippage ({s.slippage_bps / 100:g}%).")
            return
    elif action == "slip":
        found = ladder_step(PCT_LADDER, s.slippage_bps / 100, parts[2] == "+")
        wanted = round(found * 100) if found is not None else s.slippage_bps
        changes["slippage_bps"] = max(10, min(5000, wanted))
        if changes["slippage_bps"] > s.slippage_cap_bps:
            changes["slippage_cap_bps"] = changes["slippage_bps"]  # the cap is never below the slippage
        if changes["slippage_bps"] == s.slippage_bps:
            await answer(update, f"Slippage stays at {s.slippage_bps / 100:g}%: it is 0.1% to 50%.")
            return
    elif action == "auto":
        changes["auto_sell"] = not s.auto_sell
        if s.auto_sell and s.alerts.get("signals") == "off":
            alerts = dict(s.alerts)
            alerts["signals"] = "on"  # without auto-sell the exit alert is how a sell happens
            changes["alerts_json"] = alerts
    elif action == "al" and parts[2] in ALERT_KINDS:
        alerts = dict(s.alerts)
        level = ALERT_LEVELS[(ALERT_LEVELS.index(alert_level(s, parts[2])) + 1) % len(ALERT_LEVELS)]
        alerts[parts[2]] = level
        try:
            validate_alerts(alerts, s.auto_sell)
        except SettingsError as exc:
            alerts[parts[2]] = "on"
            await answer(update, str(exc).capitalize()[:190], alert=True)
            changes["alerts_json"] = alerts
            await _apply(services, user_id, changes)
            await _show(update, services, user_id, edit=True)
            return
        changes["alerts_json"] = alerts
    elif action == "pause":
        changes["paused"] = not s.paused
    elif action == "forget":
        from bot.accounts import AccountService

        accounts: AccountService = services.accounts
        await accounts.forget(user_id)
        clear_input(context)
        await answer(update, "Everything deleted")
        await edit_or_reply(update, "🗑 Done: I deleted your keys, wallets, strategy and settings. /start sets you up again.")
        return
    elif action == "keep":
        await answer(update, "Nothing was deleted")
        await edit_or_reply(update, "Nothing was deleted.")
        return
    else:
        await answer(update)
        return
    await _apply(services, user_id, changes)
    await answer(update)
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
    s = await services.accounts.store.get(user_id)
    rule = f" ({tip_rule(s.send_mode)})" if name == "tip" else ""
    return f"Send {TYPED[name]}{rule}, or /cancel."


def typed_value(s: UserSettings, name: str) -> str:
    return {
        "tip": sol_text(s.tip_lamports), "slippage": f"{s.slippage_bps / 100:g}%",
        "cap": f"{s.slippage_cap_bps / 100:g}%", "retries": str(s.retry_count),
    }[name]


async def save_typed_setting(update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, text: str) -> None:
    """The typed answer to a setting's button: checked with the same rules as the one-line form."""
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    user_id = update.effective_user.id
    current = await services.accounts.store.get(user_id)
    try:
        changes = parse_changes(current, [name, text.strip()])
    except SettingsError as exc:
        await update.effective_message.reply_text(f"❌ Not changed: {esc(exc)}.\nSend another value, or /cancel.")
        return
    clear_input(context)
    await _apply(services, user_id, changes)
    saved = await services.accounts.store.get(user_id)
    await update.effective_message.reply_text(f"✅ {TYPED_DONE[name]} set to {typed_value(saved, name)}.")
    await _show(update, services, user_id, edit=False)


async def pause_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _set_paused(update, context, True)


async def resume_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _set_paused(update, context, False)


async def _set_paused(update: Update, context: ContextTypes.DEFAULT_TYPE, paused: bool) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    await _apply(services, update.effective_user.id, {"paused": paused})
    await update.effective_message.reply_text(
        "⏸ Paused: I stopped watching your wallets. /resume starts again." if paused
        else "▶️ Watching your wallets again."
    )


async def forget_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        "Delete <b>everything</b> I hold for you: your LaserSell key, wallet keys, strategy and settings? This cannot "
        "be undone; make sure you have your wallet keys elsewhere.",
        reply_markup=keyboard([("Yes, delete everything", "cfg:forget"), ("Cancel", "cfg:keep")]),
    )


def register(app: Application) -> None:
    app.add_handler(CallbackQueryHandler(on_button, pattern=r"^cfg:"))


COMMANDS = [
    Command("settings", "Send mode, tip, slippage, auto-sell, alerts, pause", settings_command, section="Setup", usage=USAGE),
    Command("pause", "Stop watching your wallets for now", pause_command, section="Setup"),
    Command("resume", "Watch your wallets again", resume_command, section="Setup"),
    Command("forget", "Delete everything I hold for you", forget_command, section="Setup"),
]
