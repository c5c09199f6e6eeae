"""/start (onboarding in three steps), /help and /apikey."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot.accounts import AccountError
from bot.services import Services, get_services
from bot.strategy import DEFAULT_STRATEGY
from handlers.common import (
    answer,
    clear_input,
    delete_secret_message,
    edit_or_reply,
    esc,
    expect_input,
    is_private,
    keyboard,
    refuse_secret_in_group,
)
from handlers.registry import Command

INTRO = (
    "I watch your Solana positions with the <b>LaserSell Exit Intelligence Stream</b> and tell you when to get out.\n"
    "• New positions, liquidity going bad and exit signals arrive here as messages.\n"
    "• Tap <b>Sell</b> and I sign the ready-made exit with your encrypted key and land it on chain.\n"
    "• Your take profit, stop loss, trailing stop and more are set by chat."
)

STEPS = ("apikey", "wallet", "strategy")
STEP_TITLES = {"apikey": "LaserSell key", "wallet": "wallet", "strategy": "strategy"}


async def setup_state(services: Services, user_id: int) -> dict[str, bool]:
    """Which setup steps are done, from what is stored (not from what the user clicked)."""
    settings = await services.accounts.store.get(user_id)
    return {
        "apikey": await services.accounts.key_info(user_id) is not None,
        "wallet": bool(await services.accounts.wallets.list(user_id)),
        "strategy": settings.strategy_json is not None,
    }


async def next_step(services: Services, user_id: int) -> str | None:
    done = await setup_state(services, user_id)
    skipped = (await services.accounts.store.get(user_id)).skipped_steps
    for step in STEPS:
        if not done[step] and step not in skipped:
            return step
    return None


def progress(step: str) -> str:
    return f"<b>{STEPS.index(step) + 1}/{len(STEPS)} {STEP_TITLES[step]}</b>"


async def show_step(update: Update, context: ContextTypes.DEFAULT_TYPE, *, edit: bool = False) -> None:
    """Show the next setup step (or the summary when nothing is left)."""
    services = get_services(context)
    user = update.effective_user
    assert user is not None
    step = await next_step(services, user.id)
    await services.accounts.store.update(user.id, onboarding_step=step or "done")
    send = (lambda t, m=None: edit_or_reply(update, t, m)) if edit else (
        lambda t, m=None: update.effective_chat.send_message(t, reply_markup=m)  # type: ignore[union-attr]
    )
    if step == "apikey":
        operator = services.settings.lasersell_api_key and services.settings.is_admin(user.id)
        extra = "\n\nThis bot also has an operator key you may use instead." if operator else ""
        await send(
            f"{progress('apikey')}\nSend me your LaserSell API key (from your LaserSell dashboard). I check it with "
            "LaserSell, keep it encrypted and delete your message at once." + extra,
            keyboard([("Enter my key", "ob:key")], [("Skip for now", "ob:skip:apikey")]),
        )
    elif step == "wallet":
        await send(
            f"{progress('wallet')}\nAdd the wallet you trade from: import its secret key or recovery phrase, or let me "
            "generate a new one. Keys are encrypted at rest and used only to sign your exits.",
            keyboard(
                [("Import a wallet", "w:import"), ("Generate a new one", "w:gen")],
                [("Skip for now", "ob:skip:wallet")],
            ),
        )
    elif step == "strategy":
        strategy = await services.accounts.strategy(user.id)
        lines = "\n".join(f"• {esc(line)}" for line in strategy.describe())
        await send(
            f"{progress('strategy')}\nYour exit strategy. The defaults:\n{lines}",
            keyboard([("Use this strategy", "ob:strategy"), ("Edit it", "s:edit")], [("Skip for now", "ob:skip:strategy")]),
        )
    else:
        done = all((await setup_state(services, user.id)).values())
        await send(await summary(services, user.id), keyboard([("🏠 Home", "h:home")]) if done else None)


async def summary(services: Services, user_id: int) -> str:
    from handlers.settings import MODE_NAMES, sol_text, tip_rule

    done = await setup_state(services, user_id)
    if all(done.values()):
        s = await services.accounts.store.get(user_id)
        return (
            "✅ You're set up. I'm watching your wallets: new positions, liquidity alerts and exit signals will "
            f"arrive here.\nSells go out through {MODE_NAMES.get(s.send_mode, esc(s.send_mode))} with a "
            f"{sol_text(s.tip_lamports)} tip ({tip_rule(s.send_mode)}); change it in /settings."
            "\n/wallets · /strategy · /settings · /status"
        )
    missing = [f"{STEP_TITLES[s]} ({'/apikey' if s == 'apikey' else '/wallets' if s == 'wallet' else '/strategy'})"
               for s in STEPS if not done[s]]
    return "Setup is not finished. Still to do: " + ", ".join(missing) + ".\nYou can finish it any time from /settings."


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    assert update.effective_message is not None and user is not None
    services = get_services(context)
    clear_input(context)
    step = await next_step(services, user.id)
    if step is None and all((await setup_state(services, user.id)).values()):
        from handlers.home import show_home

        await show_home(update, context)  # set up: straight to the balances and positions
        return
    greeting = f"Hi {esc(user.first_name or 'trader')}!\n\n{INTRO}\n\nSend /help to see every command."
    if step == "apikey" and not (await setup_state(services, user.id))["wallet"]:
        await update.effective_message.reply_text(greeting + "\n\nSetting up takes three steps and a couple of minutes.")
    else:
        await update.effective_message.reply_text(greeting)
    await show_step(update, context)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from handlers.registry import all_commands

    assert update.effective_message is not None and update.effective_user is not None
    services = get_services(context)
    is_admin = services.settings.is_admin(update.effective_user.id)
    sections: dict[str, list[str]] = {}
    for command in all_commands():
        if command.admin and not is_admin:
            continue
        line = f"/{command.name} — {esc(command.description)}"
        if command.usage:
            line += f"\n    <code>{esc(command.usage)}</code>"
        sections.setdefault(command.section, []).append(line)
    text = "\n\n".join(f"<b>{esc(name)}</b>\n" + "\n".join(lines) for name, lines in sections.items())
    await update.effective_message.reply_text(text)


async def apikey(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and update.effective_user is not None
    if context.args:
        if not is_private(update):
            await refuse_secret_in_group(update, "API key")
            return
        await save_api_key(update, context, " ".join(context.args))
        return
    services = get_services(context)
    info = await services.accounts.key_info(update.effective_user.id)
    current = (
        f"In use: <code>{esc(info.hint)}</code> ({'your key' if info.source == 'yours' else 'the operator key'}).\n"
        if info else "No key set yet.\n"
    )
    if not is_private(update):
        await message.reply_text(current + "Send your key in a private chat with me, never in a group.")
        return
    expect_input(context, "apikey")
    await message.reply_text(
        current + "Send your LaserSell API key as your next message (or /apikey YOUR_KEY). I delete it from the chat at once."
    )


async def save_api_key(update: Update, context: ContextTypes.DEFAULT_TYPE, key: str) -> None:
    """Check, seal and store the key; the message holding it is deleted first, whatever happens next."""
    services = get_services(context)
    user = update.effective_user
    assert user is not None and update.effective_chat is not None
    note = await delete_secret_message(update.effective_message, "API key")
    clear_input(context)
    try:
        info = await services.accounts.set_api_key(user.id, key)
    except AccountError as exc:
        expect_input(context, "apikey")
        await update.effective_chat.send_message(f"❌ {esc(exc)}\n{note}\nSend the key again, or /cancel.")
        return
    await update.effective_chat.send_message(
        f"✅ LaserSell key saved: <code>{esc(info.hint)}</code> (your key).\n"
        f"{esc(info.limits_words())}.\n{note}"
    )
    await show_step(update, context)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    parts = query.data.split(":")
    await answer(update)
    if parts[1] == "key":
        expect_input(context, "apikey")
        await edit_or_reply(update, f"{progress('apikey')}\nSend your LaserSell API key as your next message.")
    elif parts[1] == "skip" and len(parts) == 3 and parts[2] in STEPS:
        settings = await services.accounts.store.get(update.effective_user.id)
        await services.accounts.store.update(update.effective_user.id, skipped_steps=set(settings.skipped_steps) | {parts[2]})
        clear_input(context)
        await show_step(update, context, edit=True)
    elif parts[1] == "strategy":
        current = await services.accounts.strategy(update.effective_user.id)
        await services.accounts.set_strategy(update.effective_user.id, current or DEFAULT_STRATEGY)
        await show_step(update, context, edit=True)


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    clear_input(context)
    assert update.effective_message is not None
    await update.effective_message.reply_text("Cancelled. Nothing was changed.")


def register(app: Application) -> None:
    app.add_handler(CallbackQueryHandler(on_button, pattern=r"^ob:"))


COMMANDS = [
    Command("start", "Start here: what I do and how to set me up", start),
    Command("help", "Every command and how to use it", help_command),
    Command("apikey", "Set your LaserSell API key", apikey, section="Setup", usage="/apikey YOUR_KEY"),
    Command("cancel", "Stop what I asked you to type", cancel),
]
