"""/start (the home panel once set up, else the setup steps), /help, /apikey and /cancel."""

from __future__ import annotations

from typing import Any

from telegram import Update

from bot.accounts import AccountError
from bot.context import BotContext
from bot.notify import cards
from bot.notify.render import esc
from handlers.common import (
    clear_input,
    delete_secret_message,
    expect_input,
    is_private,
    refuse_secret_in_group,
    send,
    user_id_of,
)
from handlers.onboarding import is_set_up, next_step, setup_state, show_step
from handlers.registry import Command, Router, installed_commands

INTRO = (
    "I watch your Solana positions with the <b>LaserSell Exit Intelligence Stream</b> and tell you when to get out.\n"
    "• New positions, liquidity going bad and exit signals arrive here as messages.\n"
    "• Tap <b>Sell</b> and I sign the ready-made exit with your encrypted key and land it on chain.\n"
    "• Your take profit, stop loss, trailing stop and more are set by chat."
)


async def start(update: Update, context: BotContext) -> None:
    user = update.effective_user
    assert update.effective_message is not None and user is not None
    services = context.services
    clear_input(context)
    if await is_set_up(services, user.id):
        await send(update, *await cards.home_view(services, user.id))  # straight to the balances and positions
        return
    greeting = f"Hi {esc(user.first_name or 'trader')}!\n\n{INTRO}\n\nSend /help to see every command."
    if await next_step(services, user.id) == "apikey" and not (await setup_state(services, user.id))["wallet"]:
        greeting += "\n\nSetting up takes three steps and a couple of minutes."
    await update.effective_message.reply_text(greeting)
    await show_step(update, context)


async def help_command(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    is_admin = context.services.settings.is_admin(user_id_of(update))
    sections: dict[str, list[str]] = {}
    for command in installed_commands(context):
        if command.admin and not is_admin:
            continue
        line = f"/{command.name} — {esc(command.description)}"
        if command.usage:
            line += f"\n    <code>{esc(command.usage)}</code>"
        sections.setdefault(command.section, []).append(line)
    text = "\n\n".join(f"<b>{esc(name)}</b>\n" + "\n".join(lines) for name, lines in sections.items())
    await update.effective_message.reply_text(text)


async def apikey(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    if context.args:
        if not is_private(update):
            await refuse_secret_in_group(update, "API key")
            return
        await save_api_key(update, context, " ".join(context.args))
        return
    info = await context.services.accounts.key_info(user_id_of(update))
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


async def save_api_key(update: Update, context: BotContext, key: str, _asked: Any = None) -> None:
    """Check, seal and store the key; the message holding it is deleted first, whatever happens next."""
    services = context.services
    note = await delete_secret_message(update.effective_message, "API key")
    clear_input(context)
    try:
        info = await services.accounts.set_api_key(user_id_of(update), key)
    except AccountError as exc:
        expect_input(context, "apikey")
        await send(update, f"❌ {esc(exc)}\n{note}\nSend the key again, or /cancel.")
        return
    await send(update, f"✅ LaserSell key saved: <code>{esc(info.hint)}</code> (your key).\n"
                       f"{esc(info.limits_words())}.\n{note}")
    await show_step(update, context)


async def cancel(update: Update, context: BotContext) -> None:
    clear_input(context)
    assert update.effective_message is not None
    await update.effective_message.reply_text("Cancelled. Nothing was changed.")


router = Router(
    commands=[
        Command("start", "Start here: what I do and how to set me up", start),
        Command("help", "Every command and how to use it", help_command),
        Command("apikey", "Set your LaserSell API key", apikey, section="Setup", usage="/apikey YOUR_KEY"),
        Command("cancel", "Stop what I asked you to type", cancel),
    ],
    inputs={"apikey": save_api_key},
)
