"""/dashboard: a button that opens the dashboard Mini App (Telegram's WebAppInfo), when the bot serves one."""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, Update

from bot.context import BotContext
from bot.miniapp.hook import dashboard_button
from handlers.registry import Command, Router


async def dashboard_command(update: Update, context: BotContext) -> None:
    message = update.effective_message
    assert message is not None
    button = dashboard_button(context.services)
    if button is None:
        await message.reply_text("This bot has no dashboard: its operator has not set MINIAPP_LISTEN. Everything "
                                 "works from the chat too: /help lists it.")
        return
    await message.reply_text(
        "📊 Your dashboard: live positions and charts, the strategy editor, copy trading, history, and the security "
        "screens (import a key, PIN, withdrawals) whose secrets never enter the chat.",
        reply_markup=InlineKeyboardMarkup([[button]]),
    )


router = Router(commands=[
    Command("dashboard", "Open the dashboard: live positions, charts, strategy, copy trading, security",
            dashboard_command, section="Trading"),
])
