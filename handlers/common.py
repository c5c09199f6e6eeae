"""Small pieces every feature handler uses: buttons, waiting for typed input, deleting secret messages."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.error import TelegramError

from bot.context import BotContext
from bot.deletions import DELETED, REFUSED, RETRYING
from bot.strategy import Strategy

log = logging.getLogger("lasersell_bot.handlers")

AWAITING = "awaiting"
DRAFT = "strategy_draft"  # a strategy being edited with the editor's buttons


def user_id_of(update: Update) -> int:
    """The id of the user who sent this update (every handler here serves a user)."""
    assert update.effective_user is not None
    return update.effective_user.id


def expect_input(context: BotContext, what: str, **extra: Any) -> None:
    """The user's next plain message answers `what` (apikey, import, rename, astralane)."""
    assert context.user_data is not None
    context.user_data[AWAITING] = {"what": what, **extra}
    remember(context)


def awaiting(context: BotContext) -> dict[str, Any] | None:
    return None if context.user_data is None else context.user_data.get(AWAITING)


def clear_input(context: BotContext) -> None:
    if context.user_data is not None and context.user_data.pop(AWAITING, None) is not None:
        remember(context)


def remember(context: BotContext) -> None:
    """Share the open conversation (typed input awaited, strategy draft) with the other instances, if any."""
    user_data, user_id = context.user_data, context.user_id
    if user_data is None or user_id is None:
        return
    draft = user_data.get(DRAFT)
    state = {"awaiting": user_data.get(AWAITING), "draft": draft.to_json() if draft is not None else None}
    context.services.conversations.save_soon(user_id, state if any(state.values()) else None)


async def recall(update: Update, context: BotContext) -> None:
    """Before an update is handled: the open conversation as the instance that last changed it left it."""
    user_data, user_id = context.user_data, context.user_id
    if user_data is None or user_id is None or not context.services.conversations.shared:
        return
    state = await context.services.conversations.load(user_id) or {}
    for key, value in ((AWAITING, state.get("awaiting")), (DRAFT, state.get("draft"))):
        if value is None:
            user_data.pop(key, None)
        else:
            user_data[key] = Strategy.load(value) if key == DRAFT else value


def is_private(update: Update) -> bool:
    return update.effective_chat is not None and update.effective_chat.type == "private"


# Messages the secret screen (handlers.text.screen_secrets) already handed to the deletion job, with
# whether Telegram confirmed at once; the flow that asked for the secret reads it once.
_SCREENED: OrderedDict[tuple[int, int], str] = OrderedDict()
_SCREENED_MAX = 1000


def note_screened(chat_id: int, message_id: int, outcome: str) -> None:
    _SCREENED[(chat_id, message_id)] = outcome
    while len(_SCREENED) > _SCREENED_MAX:
        _SCREENED.popitem(last=False)


def deletion_note(outcome: str, what: str) -> str:
    """The sentence telling the user what became of their message holding a secret (see bot.deletions)."""
    if outcome == DELETED:
        return f"I deleted your message with the {what} so it does not stay in this chat."
    if outcome == RETRYING:
        return (
            f"⚠️ Telegram has not let me delete your message with the {what} yet. I keep trying; "
            "if it is still there in a minute, delete it yourself."
        )
    return f"⚠️ Telegram did not let me delete your message with the {what}: delete it yourself now."


async def delete_secret_message(message: Message | None, what: str = "secret") -> str:
    """Delete the message that held a secret; return a sentence saying so (or asking the user to do it)."""
    if message is None:
        return ""
    screened = _SCREENED.pop((message.chat.id, message.message_id), None) if hasattr(message, "message_id") else None
    if screened is not None:
        return deletion_note(screened, what)
    try:
        await message.delete()
        return deletion_note(DELETED, what)
    except TelegramError as exc:
        log.warning("could not delete a message holding a secret: %s", exc)
        return deletion_note(REFUSED, what)


async def refuse_secret_in_group(update: Update, what: str) -> None:
    """Secrets are accepted in private chats only: delete it here and say where to send it."""
    note = await delete_secret_message(update.effective_message, what)
    chat = update.effective_chat
    if chat is not None:
        await chat.send_message(
            f"Never send your {what} in a group. {note} Open a private chat with me and send it there."
        )


async def answer(update: Update, text: str | None = None, alert: bool = False) -> None:
    """Answer a button press (Telegram shows a spinner until we do)."""
    if update.callback_query is not None:
        try:
            await update.callback_query.answer(text, show_alert=alert)
        except TelegramError as exc:  # too old: the press is handled anyway
            log.info("callback answer failed: %s", exc)


async def send(
    update: Update, text: str, markup: InlineKeyboardMarkup | None = None, *, no_preview: bool = False
) -> None:
    """A new message in the chat of this update (`no_preview`: links in it get no preview)."""
    chat = update.effective_chat
    assert chat is not None
    if no_preview:
        await chat.send_message(text, reply_markup=markup, disable_web_page_preview=True)
    else:
        await chat.send_message(text, reply_markup=markup)


async def show(update: Update, text: str, markup: InlineKeyboardMarkup | None = None, *, edit: bool = False) -> None:
    """Edit the tapped message into `text` (`edit`), or send it as a new message."""
    if edit:
        await edit_or_reply(update, text, markup)
    else:
        await send(update, text, markup)


async def edit_or_reply(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """From a button: edit that message; from a command: send a new one."""
    query = update.callback_query
    if query is not None and query.message is not None:
        try:
            await query.edit_message_text(text, reply_markup=markup)
            return
        except TelegramError as exc:
            if "not modified" in str(exc):
                return
            log.info("edit failed, sending instead: %s", exc)
    chat = update.effective_chat
    assert chat is not None
    await chat.send_message(text, reply_markup=markup)


# Values the +/- buttons step through: small steps near small values, larger ones further up, so a tap
# moves by an amount that fits the value (6 % -> 7 %, 50 % -> 60 %), never a fixed jump.
PCT_LADDER: tuple[float, ...] = (
    0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 35, 40, 50, 60, 75, 100, 125, 150, 200, 250,
    300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 25000, 50000, 100000,
)
SECONDS_LADDER: tuple[float, ...] = (
    15, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600,
    28800, 43200, 64800, 86400,
)
TIP_LADDER_LAMPORTS: tuple[float, ...] = (
    0, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000,
    50_000_000, 100_000_000,
)


def ladder_step(ladder: tuple[float, ...], value: float, up: bool) -> float | None:
    """The next value on `ladder` above (or below) `value`; None past either end."""
    if up:
        return next((v for v in ladder if v > value + 1e-9), None)
    return next((v for v in reversed(ladder) if v < value - 1e-9), None)
