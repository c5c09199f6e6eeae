"""Stream events turned into Telegram messages a trader can act on, through the outbox.

- a new position: one message that is then the live position card (edited in place, at most once every
  `card_interval_s` per chat, only when its text changed), with **Sell now** / **Stop tracking**;
- liquidity: an alert when the trend turns draining (or recovers) and holds for `trend_hold` snapshots;
- exit signals: stored first by the caller, then a message with **Sell** / **Skip** (urgent);
- closes, errors and copy-trading notices in words.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardMarkup

from bot.callbacks import CallbackData, PositionTap, SignalTap, keyboard
from bot.metrics import exit_signal_sent
from bot.notify import render
from bot.notify.outbox import DeliveryFailed, Outbox, Priority
from bot.tasks import BackgroundTasks
from storage.accounts import SettingsStore
from storage.positions import ExitSignal, Position, Positions

log = logging.getLogger("lasersell_bot.alerts")

LEVEL_CACHE_S = 5.0
# reads a position (user, position number), with its newest live numbers when the streams hold some
LoadPosition = Callable[[int, int], Awaitable[Position | None]]


def buttons(*rows: Sequence[tuple[str, CallbackData]]) -> InlineKeyboardMarkup:
    return keyboard(*rows)


def position_buttons(position_id: int) -> InlineKeyboardMarkup:
    return buttons([("Sell now", PositionTap("now", position_id)), ("Stop tracking", PositionTap("stop", position_id))])


def signal_buttons(signal_id: str) -> InlineKeyboardMarkup:
    return buttons([("✅ Sell", SignalTap("sell", signal_id)), ("Skip", SignalTap("skip", signal_id))])


@dataclass
class _TrendState:
    shown: str = "stable"  # the trend the user was last told about (stable at first: no news)
    candidate: str = "stable"
    count: int = 0


@dataclass
class _ChatCards:
    last_edit: float = 0.0
    dirty: set[int] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    texts: dict[int, str] = field(default_factory=dict)


class Alerts:
    def __init__(
        self,
        outbox: Outbox,
        positions: Positions,
        settings: SettingsStore,
        *,
        card_interval_s: float = 3.0,
        trend_hold: int = 3,
        load_position: LoadPosition | None = None,
    ) -> None:
        self.outbox = outbox
        self.positions = positions
        self.settings = settings
        self.card_interval_s = card_interval_s
        self.trend_hold = trend_hold
        self._trends: dict[tuple[int, int], _TrendState] = {}
        self._cards: dict[int, _ChatCards] = {}
        self._card_owner: dict[int, int] = {}  # chat -> telegram id
        self._has_card: set[tuple[int, int]] = set()  # positions with a live card message to edit
        # reads a position with its newest live numbers (the PnL batcher holds back their writes)
        self.load_position: LoadPosition = load_position or positions.get
        self._closed = False
        self._flushes = BackgroundTasks()  # card edits due now
        self._levels: dict[int, tuple[float, dict[str, str]]] = {}

    def track_card(self, user_id: int, position_id: int) -> None:
        """This position has a card message: edit it when its numbers change."""
        self._has_card.add((user_id, position_id))

    async def close(self) -> None:
        """Cancel pending card flushes (at shutdown, before the database closes)."""
        self._closed = True
        for cards in self._cards.values():
            if cards.timer is not None:
                cards.timer.cancel()
                cards.timer = None
        await self._flushes.cancel_all()

    async def _level(self, user_id: int, kind: str) -> str:
        # alert levels change rarely and are read on hot paths: cache them for a few seconds
        now = time.monotonic()
        cached = self._levels.get(user_id)
        if cached is None or now - cached[0] > LEVEL_CACHE_S:
            cached = (now, dict((await self.settings.get(user_id)).alerts))
            self._levels[user_id] = cached
        return cached[1].get(kind, "on")

    # --- positions ---------------------------------------------------------------------------------------
    async def position_opened(self, user_id: int, chat_id: int, p: Position) -> None:
        level = await self._level(user_id, "position")
        if level == "off":
            return
        text = render.position_opened(p)
        try:
            message = await self.outbox.send_message(
                chat_id, text, priority=Priority.ALERT, reply_markup=position_buttons(p.position_id),
                disable_notification=level == "silent",
            )
        except DeliveryFailed as exc:
            log.info("position message not delivered: %s", exc)
            return
        await self.positions.update(user_id, p.position_id, card_message_id=message.message_id)
        self.track_card(user_id, p.position_id)
        self._cards.setdefault(chat_id, _ChatCards()).texts[p.position_id] = text

    def card_changed(self, user_id: int, chat_id: int, position_id: int) -> None:
        """A position's numbers changed: edit its card soon (coalesced, paced per chat)."""
        if self._closed or (user_id, position_id) not in self._has_card:
            return
        cards = self._cards.setdefault(chat_id, _ChatCards())
        self._card_owner[chat_id] = user_id
        cards.dirty.add(position_id)
        if cards.timer is not None:
            return
        loop = asyncio.get_running_loop()
        due = max(0.0, cards.last_edit + self.card_interval_s - time.monotonic())
        cards.timer = loop.call_later(due, lambda: self._flushes.spawn(self._flush_cards(chat_id), name="card-edits"))

    async def _flush_cards(self, chat_id: int) -> None:
        cards = self._cards.get(chat_id)
        if cards is None:
            return
        cards.timer = None
        user_id = self._card_owner.get(chat_id)
        dirty, cards.dirty = cards.dirty, set()
        if user_id is None or not dirty:
            return
        if await self._level(user_id, "cards") == "off":
            return
        cards.last_edit = time.monotonic()
        for position_id in dirty:
            p = await self.load_position(user_id, position_id)
            if p is None or p.card_message_id is None or p.status != "open":
                self._has_card.discard((user_id, position_id))
                continue
            text = render.position_opened(p) + "\n\n" + render.position_card(p)
            if cards.texts.get(position_id) == text:
                continue  # only when it changed
            cards.texts[position_id] = text
            self.outbox.edit_message_text(
                chat_id, p.card_message_id, text, priority=Priority.CARD,
                reply_markup=position_buttons(position_id), coalesce_key=f"card:{position_id}",
            )

    async def liquidity(
        self, user_id: int, chat_id: int, position_id: int, trend: str, bands: list[dict[str, Any]], load: LoadPosition
    ) -> None:
        """Count the trend; only a change that held `trend_hold` snapshots reaches the user (and reads storage)."""
        state = self._trends.setdefault((user_id, position_id), _TrendState())
        if trend == state.candidate:
            state.count += 1
        else:
            state.candidate, state.count = trend, 1
        if state.count < self.trend_hold or trend == state.shown:
            return
        worth_telling = trend == "draining" or state.shown == "draining"
        state.shown = trend
        if not worth_telling:
            return
        p = await load(user_id, position_id)
        if p is None or p.status != "open":
            return
        level = await self._level(user_id, "liquidity")
        if level == "off":
            return
        markup = buttons([("Sell now", PositionTap("now", p.position_id))]) if trend == "draining" else None
        self.outbox.send_message(
            chat_id, render.liquidity_alert(p, trend, bands), priority=Priority.ALERT, reply_markup=markup,
            disable_notification=level == "silent",
        )

    async def position_closed(self, user_id: int, chat_id: int, p: Position | None, msg: dict[str, Any]) -> None:
        self._trends.pop((user_id, int(msg.get("position_id", -1))), None)
        if p is not None and p.card_message_id is not None:
            self.outbox.edit_message_text(
                chat_id, p.card_message_id, render.position_opened(p) + "\n\n" + render.position_closed(p, msg),
                priority=Priority.CARD, coalesce_key=f"card:{p.position_id}",
            )
            # A sale has its own message (the sell's outcome, or the trader's own doing): the card says
            # the rest. Any other ending is news worth a message of its own.
            if msg.get("reason") == "sold" or await self._level(user_id, "position") != "on":
                return
        self.outbox.send_message(chat_id, render.position_closed(p, msg), priority=Priority.ALERT)

    # --- exit signals ------------------------------------------------------------------------------------
    async def exit_signal(self, user_id: int, chat_id: int, s: ExitSignal, p: Position | None) -> int | None:
        """Send the Sell/Skip message; returns its message id (None if the user turned these off)."""
        settings = await self.settings.get(user_id)
        level = settings.alerts.get("signals", "on")
        if level == "off" and settings.auto_sell:
            return None
        message = await self.outbox.send_message(
            chat_id, render.exit_signal(s, p, slippage_bps=s.slippage_bps), priority=Priority.URGENT,
            reply_markup=signal_buttons(s.id), disable_notification=level == "silent",
        )
        exit_signal_sent(s.received_at_ms)  # /metrics: exit-signal-to-message latency
        return int(message.message_id)

    def text(self, chat_id: int, text: str, priority: Priority = Priority.ALERT) -> asyncio.Future[Any]:
        return self.outbox.send_message(chat_id, text, priority=priority)
