"""/start and /help."""

from __future__ import annotations

import html

from telegram import Update
from telegram.ext import ContextTypes

from bot.services import get_services
from handlers.registry import Command

INTRO = (
    "I watch your Solana positions with the <b>LaserSell Exit Intelligence Stream</b> and tell you when to get out.\n"
    "• New positions, liquidity going bad and exit signals arrive here as messages.\n"
    "• Tap <b>Sell</b> and I sign the ready-made exit with your encrypted key and land it on chain.\n"
    "• Your take profit, stop loss, trailing stop and more are set by chat."
)

SETUP_STEPS = (
    ("LaserSell key", "/apikey"),
    ("wallet", "/wallets"),
    ("strategy", "/strategy"),
)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    assert update.effective_message is not None and user is not None
    name = html.escape(user.first_name or "trader")
    steps = "\n".join(f"{i}/{len(SETUP_STEPS)} {label}: {cmd}" for i, (label, cmd) in enumerate(SETUP_STEPS, 1))
    await update.effective_message.reply_text(
        f"Hi {name}!\n\n{INTRO}\n\n<b>Set up</b>\n{steps}\n\nSend /help to see every command."
    )


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from handlers.registry import all_commands

    assert update.effective_message is not None and update.effective_user is not None
    services = get_services(context)
    is_admin = services.settings.is_admin(update.effective_user.id)
    sections: dict[str, list[str]] = {}
    for command in all_commands():
        if command.admin and not is_admin:
            continue
        line = f"/{command.name} — {html.escape(command.description)}"
        if command.usage:
            line += f"\n    <code>{html.escape(command.usage)}</code>"
        sections.setdefault(command.section, []).append(line)
    text = "\n\n".join(f"<b>{html.escape(name)}</b>\n" + "\n".join(lines) for name, lines in sections.items())
    await update.effective_message.reply_text(text)


COMMANDS = [
    Command("start", "Start here: what I do and how to set me up", start),
    Command("help", "Every command and how to use it", help_command),
]
