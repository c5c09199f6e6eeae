"""The buttons on exit signals: Sell / Skip, and Retry / Refresh after a failed or expired sell."""

from __future__ import annotations

from telegram import Update

from bot.callbacks import SignalTap
from bot.context import BotContext
from handlers.common import answer, user_id_of
from handlers.registry import Button, Router


async def on_signal_button(update: Update, context: BotContext) -> None:
    tap = SignalTap.read(update)
    services = context.services
    user_id = user_id_of(update)
    query = update.callback_query
    shown_in = None
    if query is not None and query.message is not None:
        shown_in = (query.message.chat.id, query.message.message_id)
    if tap.action == "skip":
        if shown_in is not None:
            # a tap can beat the write of the message id right after the signal was shown: the tapped message is it
            await services.inbox.remember_message(tap.signal_id, user_id, *shown_in)
        _ok, words = await services.inbox.skip(user_id, tap.signal_id)
        await answer(update, words)
        return
    if services.seller is None:
        await answer(update, "Selling is not available on this bot.", alert=True)
        return
    early = services.seller.early.started(query.id) if query is not None and tap.action == "sell" else None
    if early is not None:  # read off Telegram's answer and started before this handler (bot/exits/early_taps.py)
        words = await early
    else:
        words = await services.seller.tap(user_id, tap.signal_id, tap.action, shown_in=shown_in)
    await services.seller.wait_sent(tap.signal_id)  # the answer goes after the sells still to be sent
    await answer(update, words)


router = Router(buttons=[Button(SignalTap, on_signal_button)])
