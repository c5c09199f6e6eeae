"""What happens when a handler fails: log it (redacted by the logging setup) and tell the user plainly."""

from __future__ import annotations

import logging
import secrets

from telegram import Update
from telegram.error import Forbidden, NetworkError

from bot.context import BotContext
from bot.notify.render import esc

log = logging.getLogger("lasersell_bot.errors")


async def on_error(update: object, context: BotContext) -> None:
    error = context.error
    reference = secrets.token_hex(3)
    if isinstance(error, Forbidden):
        log.info("user blocked the bot: %s", error)
        return
    if isinstance(error, NetworkError) and not isinstance(update, Update):
        log.warning("network error talking to Telegram: %s", error)
        return
    log.error("unhandled error (ref %s)", reference, exc_info=error)
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            await context.bot.send_message(
                update.effective_chat.id,
                "Something went wrong on my side and nothing was changed. "
                f"Please try again; if it keeps happening, tell the operator reference <code>{reference}</code>.",
            )
        except Exception:  # the chat may be gone; the error is logged above
            log.warning("could not tell the user about error %s", reference)


async def unknown_command(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or not message.text:
        return
    command = message.text.split()[0].split("@")[0]
    await message.reply_text(
        f"I don't know the command <code>{esc(command[:40])}</code>. Send /help to see what I can do."
    )
