"""/status (the stream and what it watches) and /history (the last exits): the status view and the history view."""

from __future__ import annotations

from telegram import Update

from bot.context import BotContext
from bot.notify import cards
from bot.notify.cards import failure_words
from handlers.common import user_id_of
from handlers.registry import Command, Router

__all__ = ["failure_words", "history_command", "router", "status_command"]


async def status_command(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(await cards.status_view(context.services, user_id_of(update)))


async def history_command(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    text = await cards.history_view(context.services, user_id_of(update))
    await update.effective_message.reply_text(text, disable_web_page_preview=True)


router = Router(
    commands=[
        Command("status", "Your stream, open positions and waiting exit signals", status_command, section="Trading"),
        Command("history", "Your last exits: time, token, reason, amount, proceeds, PnL, outcome", history_command,
                section="Trading"),
    ],
)
