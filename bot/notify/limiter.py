"""Routes python-telegram-bot's own sends (handler replies, edits) through the outbox's pacing.

PTB calls `process_request` for every Bot API request. Sends and edits to a chat are queued in the
outbox (priority ALERT: after exit signals, before cards and broadcasts), so a burst of replies never
trips Telegram's per-chat limit and shares the global budget with everything else. Calls the outbox
itself makes, and everything else (getUpdates, answerCallbackQuery, ...), go straight through.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram.ext import BaseRateLimiter

from bot.notify.outbox import DELIVERING, INVOKE, DeliveryFailed, Outbox, OutboxCall, Priority

PACED = frozenset(
    {
        "sendMessage", "editMessageText", "editMessageReplyMarkup", "editMessageCaption", "sendPhoto",
        "sendDocument", "copyMessage",
    }
)


class OutboxRateLimiter(BaseRateLimiter[dict[str, Any]]):
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict[str, Any] | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        if DELIVERING.get() or endpoint not in PACED or not isinstance(chat_id, int | str):
            return await callback(*args, **kwargs)
        try:
            chat = int(chat_id)
        except ValueError:  # @channelusername: not ours to pace
            return await callback(*args, **kwargs)
        priority = Priority((rate_limit_args or {}).get("priority", Priority.ALERT))
        call = OutboxCall(endpoint, chat, priority, {INVOKE: lambda: callback(*args, **kwargs)})
        try:
            return await self.outbox.submit(call)
        except DeliveryFailed as exc:
            if exc.error is not None:
                raise exc.error from None
            raise
