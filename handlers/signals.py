"""Buttons on exit signals (Sell / Skip / Refresh / Retry) and on position messages (Sell now / Stop tracking)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot.services import get_services
from handlers.common import answer, keyboard

GONE = "This position is closed or not yours."


async def on_signal_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    _, action, signal_id = (query.data.split(":", 2) + ["", ""])[:3]
    user_id = update.effective_user.id
    if query.message is not None:
        # a tap can beat the write of the message id right after the signal was shown: the tapped message is it
        await services.inbox.remember_message(signal_id, user_id, query.message.chat.id, query.message.message_id)
    if action == "skip":
        _ok, words = await services.inbox.skip(user_id, signal_id)
        await answer(update, words)
    elif action in ("sell", "retry", "refresh"):
        if services.seller is None:
            await answer(update, "Selling is not available on this bot.", alert=True)
            return
        words = await services.seller.tap(user_id, signal_id, action)
        await services.seller.wait_sent(signal_id)
        await answer(update, words)
    else:
        await answer(update, "That button is no longer valid.")


async def on_position_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    parts = query.data.split(":")
    user_id = update.effective_user.id
    position_id = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else -1
    position = await services.streams.positions.get(user_id, position_id)
    if position is None or position.status != "open":
        await answer(update, GONE, alert=True)
        return
    if parts[1] == "sell":
        if await services.streams.request_exit(user_id, position_id):
            await answer(update, "Asking LaserSell for the exit transaction…")
        elif user_id in services.streams.workers:
            await answer(update, "Your stream is reconnecting; I will ask as soon as it is back.")
        else:
            await answer(update, "Your stream is not running: finish /start or /resume first.", alert=True)
    elif parts[1] == "stop":
        await answer(update)
        assert update.effective_chat is not None
        await update.effective_chat.send_message(
            f"Stop tracking <b>{position.label}</b>? I will not alert or sell it any more. This does <b>not</b> sell "
            "your tokens.",
            reply_markup=keyboard([("Yes, stop tracking", f"p:stopok:{position_id}"), ("Cancel", f"p:keep:{position_id}")]),
        )
    elif parts[1] == "stopok":
        worker = services.streams.workers.get(user_id)
        if worker is None:
            await answer(update, "Your stream is not running: try again once it is.", alert=True)
            return
        if not await worker.client.close_position(position_id):
            await answer(update, "Your stream is not connected: try again once it is.", alert=True)
            return
        await services.inbox.stop_tracking(user_id, position_id)
        await answer(update, "Stopped tracking")
        if query.message is not None:
            await query.edit_message_text(f"Stopped tracking {position.label}. Your tokens are still in your wallet.")
    elif parts[1] == "keep":
        await answer(update, "Still tracking")
        if query.message is not None:
            await query.edit_message_text(f"Still tracking {position.label}.")
    else:
        await answer(update, "That button is no longer valid.")


def register(app: Application) -> None:
    app.add_handler(CallbackQueryHandler(on_signal_button, pattern=r"^x:"))
    app.add_handler(CallbackQueryHandler(on_position_button, pattern=r"^p:"))
