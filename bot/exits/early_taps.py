"""Sell taps read straight off Telegram's answer, before the update machinery.

python-telegram-bot turns every update into objects before its first handler runs: about 0.15 ms an
update, so in a burst of a hundred taps the last Sell waited some 20 ms for the parsing of the others, and
then for their handlers. A Sell tap needs four numbers and a string (who, which signal, which message),
read here from the update as Telegram sent it; the sell starts at once, through the same `Seller.tap`
(ownership, state, the atomic approve, the guard). The update still goes through the library afterwards
(recording the user, the conversation), and its Sell handler answers with the words of the sell already
started instead of tapping again (`started`).

Polling: the getUpdates answer passes through `from_updates_body` before the library reads it, which
waits (bounded) until the sells are sent, so the library's work on the batch comes after them. Webhooks:
one update per request, passed to `take`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from bot.callbacks import CallbackError, SignalTap

log = logging.getLogger("lasersell_bot.taps")

KEEP_S = 60.0  # a started tap's words wait this long for the library's handler to collect them
MAX_STARTED = 10_000


class Tapper(Protocol):
    async def tap(self, user_id: int, signal_id: str, action: str, shown_in: tuple[int, int] | None = None) -> str: ...

    async def sends_first(self, timeout: float = 2.0) -> None: ...


def sell_tap(update: Any) -> tuple[str, int, str, tuple[int, int] | None] | None:
    """(callback query id, user id, signal id, (chat, message) or None) when `update` (as Telegram sent it)
    is a tap on an exit signal's Sell button; None for anything else."""
    if not isinstance(update, dict):
        return None
    query = update.get("callback_query")
    if not isinstance(query, dict):
        return None
    data = query.get("data")
    if not SignalTap.matches(data):
        return None
    try:
        tap = SignalTap.unpack(data)
    except CallbackError:
        return None
    sender = query.get("from")
    query_id = query.get("id")
    if tap.action != "sell" or not isinstance(query_id, str) or not isinstance(sender, dict):
        return None
    user_id = sender.get("id")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or sender.get("is_bot"):
        return None
    shown_in = None
    message = query.get("message")
    if isinstance(message, dict):
        chat = message.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        message_id = message.get("message_id")
        if isinstance(chat_id, int) and isinstance(message_id, int) and message_id > 0:
            shown_in = (chat_id, message_id)
    return query_id, user_id, tap.signal_id, shown_in


class EarlyTaps:
    """Sell taps started before the library handles their update, by callback query id."""

    def __init__(self, seller: Tapper) -> None:
        self.seller = seller
        self._started: dict[str, asyncio.Task[str]] = {}

    def take(self, update: Any) -> bool:
        """Start the sell if `update` is a Sell tap not started yet; True when it was started now."""
        found = sell_tap(update)
        return found is not None and self.take_found(found)

    def take_found(self, found: tuple[str, int, str, tuple[int, int] | None]) -> bool:
        query_id, user_id, signal_id, shown_in = found
        if query_id in self._started:
            return False
        if len(self._started) >= MAX_STARTED:  # the library stopped collecting: its handler taps itself
            return False
        task = asyncio.ensure_future(self._tap(user_id, signal_id, shown_in))
        self._started[query_id] = task
        task.add_done_callback(lambda _t: asyncio.get_running_loop().call_later(KEEP_S, self._forget, query_id, task))
        return True

    def _tap(self, user_id: int, signal_id: str, shown_in: tuple[int, int] | None) -> Coroutine[Any, Any, str]:
        return self.seller.tap(user_id, signal_id, "sell", shown_in=shown_in)

    def _forget(self, query_id: str, task: asyncio.Task[str]) -> None:
        if self._started.get(query_id) is task:
            del self._started[query_id]
            if not task.cancelled() and task.exception() is not None:
                log.error("an early Sell tap failed and no handler collected it", exc_info=task.exception())

    def started(self, query_id: str) -> asyncio.Task[str] | None:
        """The sell this tap already started (its answer's words), handed out once; None if none was."""
        return self._started.pop(query_id, None)

    async def from_updates_body(self, body: bytes) -> None:
        """getUpdates answered `body`: start its Sell taps, and return once they are sent (bounded)."""
        if b'"x:sell:' not in body:  # the button's data as JSON writes it: no Sell tap in this batch
            return
        try:
            answer = json.loads(body)
        except ValueError:
            return  # the library reports it
        updates = answer.get("result") if isinstance(answer, dict) and answer.get("ok") else None
        if not isinstance(updates, list):
            return
        started = [self._started[found[0]] for found in map(sell_tap, updates)
                   if found is not None and self.take_found(found)]
        if started:
            # each tap approves its signal and starts the sell; then wait for every sell to be sent
            await asyncio.wait(started, timeout=2.0)
            await self.seller.sends_first()

    async def close(self) -> None:
        for task in self._started.values():
            task.cancel()
        self._started.clear()
