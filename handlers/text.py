"""Plain messages: the answer to what the bot asked for, and a safety net for pasted secrets."""

from __future__ import annotations

import re

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from bot.keys import looks_like_secret
from handlers.common import awaiting, clear_input, delete_secret_message, is_private, refuse_secret_in_group

SECRET_INPUTS = {"apikey": "API key", "import": "wallet key", "astralane": "Astralane key"}
# LaserSell keys start with ls_ (the bot shows them back as ls_…abcd)
LASERSELL_KEY_RE = re.compile(r"(?<![A-Za-z0-9])ls_[A-Za-z0-9_-]{16,}")


def looks_like_api_key(text: str) -> bool:
    return LASERSELL_KEY_RE.search(text) is not None


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or not message.text:
        return
    waiting = awaiting(context)
    what = waiting["what"] if waiting else None
    if not is_private(update):
        if what in SECRET_INPUTS or looks_like_secret(message.text) or looks_like_api_key(message.text):
            clear_input(context)
            await refuse_secret_in_group(update, SECRET_INPUTS.get(what or "", "secret key"))
        return
    if what not in SECRET_INPUTS and looks_like_secret(message.text):
        # Pasted unasked, or instead of a wallet name: never keep it in the chat, nor as a label.
        clear_input(context)
        note = await delete_secret_message(message, "secret key")
        await message.chat.send_message(
            f"That looked like a secret key, so I did not keep it. {note}\n"
            "To add a wallet, open /wallets and tap <b>Import a wallet</b> first."
        )
    elif what != "apikey" and looks_like_api_key(message.text):
        clear_input(context)
        note = await delete_secret_message(message, "API key")
        await message.chat.send_message(
            f"That looked like a LaserSell API key, so I did not keep it. {note}\n"
            "To set your key, send <code>/apikey YOUR_KEY</code>."
        )
    elif what == "apikey":
        from handlers.start import save_api_key

        await save_api_key(update, context, message.text)
    elif what == "import":
        from handlers.wallets import import_wallet

        await import_wallet(update, context, message.text)
    elif what == "astralane":
        from handlers.settings import save_astralane_key

        await save_astralane_key(update, context, message.text)
    elif what == "rename" and waiting is not None:
        from handlers.wallets import rename_wallet

        await rename_wallet(update, context, int(waiting["wallet_id"]), message.text)
    else:
        await message.reply_text("I only understand commands. Send /help to see them.")


def register(app: Application) -> None:
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
