"""The signal inbox: every exit signal is stored first, then shown with Sell / Skip; taps come back here.

States of a stored signal: pending -> approved -> signing -> submitted -> landed | failed, or
pending -> skipped / superseded / expired. A tap moves pending -> approved atomically, so a second tap
(from any device, at any moment) finds it taken and nothing is signed twice.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from bot.notify import render
from bot.notify.outbox import DeliveryFailed, Outbox, Priority
from bot.stream.events import StreamEvent
from storage.accounts import SettingsStore
from storage.positions import ExitSignal, ExitSignals, Position, Positions
from storage.users import Users

log = logging.getLogger("lasersell_bot.exits")

SIGNAL_TTL_MS = 10 * 60 * 1000  # after this a button offers Refresh instead of Sell
UNTRACKED = "untracked"  # the error of a signal voided because its position is no longer tracked


class InboxAlerts(Protocol):
    """How a signal is shown (`bot.notify.alerts.Alerts`)."""

    @property
    def outbox(self) -> Outbox: ...

    async def exit_signal(self, user_id: int, chat_id: int, s: ExitSignal, p: Position | None) -> int | None: ...


class InboxSeller(Protocol):
    """What the inbox asks of the sell path (`bot.exits.sell.Seller`)."""

    def kept_reason(self, user_id: int, position_id: int, reason: str) -> str: ...

    def prefetch(self, signal: ExitSignal) -> None: ...

    async def absorbs(self, signal: ExitSignal) -> bool: ...

    async def auto_sell(self, signal_id: str, user_id: int) -> None: ...


class SignalInbox:
    def __init__(
        self,
        *,
        users: Users,
        settings: SettingsStore,
        signals: ExitSignals,
        positions: Positions,
        alerts: InboxAlerts,
        seller: InboxSeller | None = None,
    ) -> None:
        self.users = users
        self.settings = settings
        self.alerts = alerts
        self.signals = signals
        self.positions = positions
        self.seller = seller  # the sell path; without one, signals are stored and shown only

    async def on_signal(self, user_id: int, event: StreamEvent) -> ExitSignal:
        msg = event.data
        if not msg.get("token_account") and event.token_account:
            # the signal may omit it; the stream client knows it from this session's position_opened
            msg = {**msg, "token_account": event.token_account}
        if self.seller is not None:
            reason = self.seller.kept_reason(user_id, int(msg["position_id"]), str(msg.get("reason", "")))
            if reason != msg.get("reason"):
                msg = {**msg, "reason": reason}
        settings = await self.settings.get(user_id)
        # Stored before anything is shown, so a crash from here on never loses the signal: in the journal, a write
        # nothing else can hold up; the database row follows while the message goes out (storage/signal_journal.py).
        signal = await self.signals.store(user_id, msg, int(time.time() * 1000), settings.slippage_bps)
        user = await self.users.get(user_id)
        position = await self.positions.get(user_id, signal.position_id)
        if self.seller is not None:
            self.seller.prefetch(signal)  # the wallet's holdings, read before the tap rather than after it
        if self.seller is not None and await self.seller.absorbs(signal):
            return signal  # an automatic retry or refresh the seller was waiting for
        if user is None:
            return signal
        try:
            message_id = await self.alerts.exit_signal(user_id, user.chat_id, signal, position)
        except DeliveryFailed as exc:
            log.warning("exit signal message not delivered: %s", exc)
            message_id = None
        if message_id is not None:
            await self.signals.set(signal.id, chat_id=user.chat_id, message_id=message_id)
        if settings.auto_sell and self.seller is not None:
            await self.seller.auto_sell(signal.id, user_id)
        return signal

    async def remember_message(self, signal_id: str, user_id: int, chat_id: int, message_id: int) -> None:
        signal = await self.signals.get(signal_id)
        if signal is not None and signal.telegram_id == user_id and signal.message_id is None:
            await self.signals.set(signal_id, chat_id=chat_id, message_id=message_id)

    async def skip(self, user_id: int, signal_id: str) -> tuple[bool, str]:
        signal = await self.signals.get_tapped(signal_id)
        if signal is None or signal.telegram_id != user_id:
            return False, "This signal is not yours."
        if not await self.signals.transition(signal_id, ("pending",), "skipped"):
            current = await self.signals.get(signal_id)
            return False, f"Too late: this signal is already {current.state if current else 'gone'}."
        position = await self.positions.get(user_id, signal.position_id)
        text = render.exit_signal(signal, position) + "\n\n⏭ Skipped. The position stays tracked."
        if signal.chat_id and signal.message_id:
            self.alerts.outbox.edit_message_text(signal.chat_id, signal.message_id, text, priority=Priority.URGENT)
        return True, "Skipped"

    async def stop_tracking(self, user_id: int, position_id: int) -> int:
        """The trader stopped tracking the position: every signal of it still waiting for a tap (or a Retry or
        Refresh) is voided, so an older Sell cannot sell what they no longer track. Returns how many."""
        label = None
        voided = 0
        for signal in await self.signals.for_user(user_id, ("pending", "expired", "failed"), limit=500):
            if signal.position_id != position_id:
                continue
            if not await self.signals.transition(signal.id, (signal.state,), "skipped", error=UNTRACKED):
                continue
            voided += 1
            if label is None:
                position = await self.positions.get(user_id, position_id)
                label = position.label if position else render.short(signal.mint)
            if signal.chat_id and signal.message_id:
                self.alerts.outbox.edit_message_text(
                    signal.chat_id, signal.message_id,
                    f"⏹ You stopped tracking {render.esc(label)}: this exit will not be sold. Your tokens are still "
                    "in your wallet.", priority=Priority.URGENT,
                )
        return voided
