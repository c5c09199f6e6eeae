"""Plain messages: the answer to what the bot asked for (each feature names its prompts' readers in its router),
and the secret screen that sees every text first."""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import ApplicationHandlerStop, MessageHandler, filters

from bot.context import BotContext
from bot.keys import LASERSELL_KEY_RE, incoming_secret, looks_like_secret
from handlers.common import (
    awaiting,
    clear_input,
    delete_secret_message,
    deletion_note,
    expect_input,
    is_private,
    note_screened,
    refuse_secret_in_group,
)
from handlers.registry import PLAIN_TEXT, Router, installed_inputs

SECRET_INPUTS = {"apikey": "API key", "import": "wallet key", "astralane": "Astralane key"}
# Commands whose argument is a secret by definition, whatever it looks like.
SECRET_COMMANDS = {"apikey": "apikey"}


def looks_like_api_key(text: str) -> bool:
    return LASERSELL_KEY_RE.search(text) is not None


async def on_text(update: Update, context: BotContext) -> None:
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
    else:
        inputs = installed_inputs(context)
        reader = inputs.get(what or PLAIN_TEXT) or inputs.get(PLAIN_TEXT)
        if reader is not None:
            await reader(update, context, message.text, waiting or {})


def _incoming(update: Update) -> tuple[Message | None, bool]:
    """The user's message in this update (new or edited) and whether it is an edit."""
    for message, edited in (
        (update.message, False), (update.edited_message, True),
        (update.channel_post, False), (update.edited_channel_post, True),
        (update.business_message, False), (update.edited_business_message, True),
    ):
        if message is not None:
            return message, edited
    return None, False


def _command(text: str | None) -> tuple[str | None, str]:
    """("name", rest) when `text` is a command, else (None, "")."""
    if not text or not text.startswith("/"):
        return None, ""
    parts = text.split(maxsplit=1)
    return parts[0][1:].split("@")[0].lower(), parts[1].strip() if len(parts) > 1 else ""


async def screen_secrets(update: Update, context: BotContext) -> None:
    """Runs before every other handler: a secret in any text is deleted at once and goes no further.

    Texts: messages, command arguments, captions, edits. A secret the bot asked for (the import and
    key prompts, `/apikey KEY`) is handed to the deletion job and its flow continues; anywhere else
    the message is deleted, the user told why and how to do it right, and nothing else sees it.
    """
    message, edited = _incoming(update)
    if message is None or message.from_user is not None and message.from_user.is_bot:
        return
    texts = [t for t in (message.text, message.caption) if t]
    if not texts:
        return
    kinds = {incoming_secret(t) for t in texts}
    kind = "wallet" if "wallet" in kinds else "api_key" if "api_key" in kinds else None
    waiting = awaiting(context)
    what = waiting["what"] if waiting else None
    command, argument = _command(message.text)
    plain = message.text is not None and command is None and not edited
    awaited = plain and what in SECRET_INPUTS
    secret_argument = command in SECRET_COMMANDS and bool(argument) and not edited
    if kind is None and not awaited and not secret_argument:
        return
    services = context.services
    outcome = await services.deletions.delete_secret(message.chat.id, message.message_id)
    chat = message.chat
    if not is_private(update):
        clear_input(context)
        label = SECRET_INPUTS.get(what or "", "secret key") if awaited else (
            "API key" if secret_argument or kind == "api_key" else "secret key"
        )
        await chat.send_message(
            f"Never send your {label} in a group. {deletion_note(outcome, label)} "
            "Open a private chat with me and send it there."
        )
        raise ApplicationHandlerStop
    asked_for = (awaited and (kind is None or (kind == "wallet") == (what == "import"))) or (
        secret_argument and kind != "wallet"
    )
    if asked_for:
        note_screened(chat.id, message.message_id, outcome)
        return  # the flow that asked for it reads the note; the message is already being deleted
    if kind == "wallet" and (what in ("apikey", "astralane") and plain or secret_argument):
        # A wallet key where an API key was asked for: refused here, never sent to LaserSell or anyone.
        service = "Astralane" if what == "astralane" and not secret_argument else "LaserSell"
        if not secret_argument:
            expect_input(context, what or "apikey")
        hint = " (it starts with <code>ls_</code>)" if service == "LaserSell" else ""
        await chat.send_message(
            f"That is a wallet's secret key, not a {service} API key, so I did not use it or send it anywhere. "
            f"{deletion_note(outcome, 'wallet key')}\nCopy your API key from your {service} dashboard{hint} "
            "and send it, or /cancel. To add a wallet, use /wallets → <b>Import a wallet</b>."
        )
        raise ApplicationHandlerStop
    clear_input(context)
    if kind == "wallet":
        await chat.send_message(
            f"That looked like a secret key, so I did not keep it. {deletion_note(outcome, 'secret key')}\n"
            "To add a wallet, open /wallets and tap <b>Import a wallet</b> first, then send the key."
        )
    else:
        await chat.send_message(
            f"That looked like a LaserSell API key, so I did not keep it. {deletion_note(outcome, 'API key')}\n"
            "To set your key, send <code>/apikey YOUR_KEY</code>."
        )
    raise ApplicationHandlerStop


router = Router(handlers=[MessageHandler(filters.TEXT & ~filters.COMMAND, on_text)])
