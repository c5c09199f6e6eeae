"""The event router: every stream event of a user, translated to the bot's position number and handed on.

Positions keep the bot's own number (`Position.position_id`) for their whole life. The stream's ids
last one session, so every event is translated here, by token account, to the bot's number before
anything else sees it. An exit signal goes first, to the signal inbox, before any write that could
delay it; PnL and liquidity numbers go to the PnL batcher (written in batches, never in the way).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.notify import render
from bot.notify.outbox import Priority
from bot.strategy import Strategy, StrategyError
from bot.stream.client import describe_error, is_refused_key
from bot.stream.deadlines import DeadlineTimers
from bot.stream.events import StreamEvent, quote_of
from bot.stream.pnl import PnlBatcher
from bot.stream.worker import Worker
from storage.history import PnlHistory
from storage.positions import Position, Positions

log = logging.getLogger("lasersell_bot.streams")

ExitHandler = Callable[[int, StreamEvent], Awaitable[object]]
CopyEventHandler = Callable[[int, int, dict[str, Any]], Awaitable[None]]
LoadPosition = Callable[[int, int], Awaitable[Position | None]]
RiskFlags = Callable[[str], Awaitable[list[str]]]  # a mint's risk flags, read from the chain

# The documented stream error codes (and a refused session), shown with what the trader can do about them.
ACTIONABLE_ERRORS = frozenset({"invalid_strategy", "wallet_not_registered", "too_many_wallets", "session_limit"})


class StreamAlerts(Protocol):
    """What the streams tell the trader (`bot.notify.alerts.Alerts`)."""

    def text(self, chat_id: int, text: str, priority: Priority = ...) -> object: ...

    def track_card(self, user_id: int, position_id: int) -> None: ...

    def card_changed(self, user_id: int, chat_id: int, position_id: int) -> None: ...

    async def position_opened(self, user_id: int, chat_id: int, p: Position) -> None: ...

    async def position_closed(self, user_id: int, chat_id: int, p: Position | None, msg: dict[str, Any]) -> None: ...

    async def liquidity(
        self, user_id: int, chat_id: int, position_id: int, trend: str, bands: list[dict[str, Any]],
        load: LoadPosition,
    ) -> None: ...


class CopyEvents(Protocol):
    """What copy trading hears from the stream (`bot.copy.Copier`)."""

    async def position_opened(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None: ...

    async def on_event(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None: ...


class StoredStrategies:
    """Stored strategies, checked by today's rules before they go to the stream: one an older version saved that
    LaserSell would now refuse is never sent as it is, and the trader is told once (per stored text) what is wrong."""

    def __init__(self, alerts: StreamAlerts) -> None:
        self.alerts = alerts
        self._told: dict[tuple[int, str], str] = {}  # (user, what) -> the stored text told about

    def load(self, user_id: int, chat_id: int, what: str, stored: str, *, fix: str = "/strategy tp 50 sl 20") -> Strategy | None:
        try:
            return Strategy.load(stored)
        except StrategyError as exc:
            if self._told.get((user_id, what)) != stored:
                self._told[(user_id, what)] = stored
                log.warning("user %s: %s is not valid any more (%s); not sent to the stream", user_id, what, exc)
                self.alerts.text(chat_id, f"⚠️ {render.esc(what)} is not valid any more: {render.esc(str(exc))}. "
                                 f"I did not send it to LaserSell. Set it again, for example {render.esc(fix)}")
            return None


class EventRouter:
    def __init__(
        self,
        *,
        positions: Positions,
        alerts: StreamAlerts,
        pnl: PnlBatcher,
        deadlines: DeadlineTimers,
        history: PnlHistory,
        on_exit_signal: ExitHandler | None = None,
        copy: CopyEvents | None = None,
        wallet_changed: Callable[[str], None] | None = None,
        risk_flags: RiskFlags | None = None,
        error_repeat_s: float = 600.0,
    ) -> None:
        self.risk_flags = risk_flags  # read from the mint when a position opens, shown on its message
        self.positions = positions
        self.alerts = alerts
        self.pnl = pnl
        self.deadlines = deadlines
        self.history = history
        self.on_exit_signal = on_exit_signal
        self.copy = copy
        self.wallet_changed = wallet_changed  # a balance moved: the guard reads the wallet's holdings afresh
        self.error_repeat_s = error_repeat_s  # the same stream error is shown at most once in this long
        self.strategies = StoredStrategies(alerts)

    async def _number(self, worker: Worker, event: StreamEvent) -> int | None:
        """The bot's number for the position an event is about (its stream id is only this session's)."""
        account = event.token_account
        if account:
            number = worker.numbers.get(account)
            if number is not None:
                return number
        msg = event.data
        position = await self.positions.open_by_account(
            worker.user_id, account, msg.get("wallet_pubkey"), msg.get("mint")
        )
        if position is None:
            return None
        worker.remember(position.position_id, position.token_account)
        return position.position_id

    async def _translate(self, worker: Worker, event: StreamEvent) -> bool:
        """Put the bot's number in the event; False when it is to be dropped."""
        msg, kind = event.data, event.type
        if kind == "hello_ok":
            worker.connection = max(worker.connection, event.connection)
        elif event.connection < worker.connection and not event.urgent:
            return False  # PnL noise from a session that has ended: its ids mean nothing now
        if isinstance(msg.get("position_id"), int) and kind != "position_opened":
            number = await self._number(worker, event)
            if number is None:
                if kind != "exit_signal_with_tx":
                    log.debug("%s for a position this bot does not know; skipped", kind)
                    return False
                log.warning("exit signal for a position this bot does not know (stream id %s)", msg["position_id"])
            else:
                msg["stream_position_id"] = msg["position_id"]
                msg["position_id"] = number
        return True

    async def handle(self, worker: Worker, event: StreamEvent) -> None:
        if not await self._translate(worker, event):
            return
        kind = event.type
        handler = self._HANDLERS.get(kind)
        if handler is not None:
            await handler(self, worker, event)
        elif kind.startswith("mirror_"):
            await self._mirror(worker, event)
        elif kind not in ("pong", "trade_tick"):
            log.info("stream message of unknown type %r kept but not shown", kind)
        await self.history.observe(worker.user_id, kind, event.data)  # chart samples and exit marks

    async def _hello_ok(self, worker: Worker, event: StreamEvent) -> None:
        msg = event.data
        if isinstance(msg.get("server_time_ms"), int):
            worker.clock_offset_ms = int(msg["server_time_ms"]) - int(time.time() * 1000)

    async def _position_opened(self, worker: Worker, event: StreamEvent) -> None:
        msg, user_id = event.data, worker.user_id
        context = msg.get("market_context")
        quote = quote_of(context) if isinstance(context, dict) else None
        position, is_new = await self.positions.opened(user_id, msg, quote)
        msg["stream_position_id"] = msg["position_id"]
        msg["position_id"] = position.position_id
        worker.remember(position.position_id, position.token_account or event.token_account)
        self.deadlines.arm(worker, position.position_id, position.opened_at_ms, position.first_seen_ms, position.watched)
        if is_new and position.card_message_id is None:
            if self.risk_flags is not None and position.risk_flags is None:
                flags = json.dumps(await self.risk_flags(position.mint))
                await self.positions.update(user_id, position.position_id, risk_flags=flags)
                position = dataclasses.replace(position, risk_flags=flags)
            await self.alerts.position_opened(user_id, worker.chat_id, position)
            if self.copy is not None:
                await self.copy.position_opened(user_id, worker.chat_id, msg)
        if not is_new:
            await self._reapply(worker, position)

    async def _pnl_update(self, worker: Worker, event: StreamEvent) -> None:
        # Noisy: kept in memory and written in batches, so exit signals never queue behind PnL writes.
        msg = event.data
        live = self.pnl.columns(worker.user_id, int(msg["position_id"]))
        live["profit_units"] = msg.get("profit_units")
        live["proceeds_units"] = msg.get("proceeds_units")
        if msg.get("token_price_quote") is not None:
            live["price_quote"] = msg["token_price_quote"]
        if msg.get("market_cap_quote") is not None:
            live["market_cap_quote"] = msg["market_cap_quote"]
        self.pnl.schedule()
        self.alerts.card_changed(worker.user_id, worker.chat_id, int(msg["position_id"]))

    async def _liquidity_snapshot(self, worker: Worker, event: StreamEvent) -> None:
        msg, user_id, chat_id = event.data, worker.user_id, worker.chat_id
        position_id = int(msg["position_id"])
        live = self.pnl.columns(user_id, position_id)
        live["liquidity_trend"] = msg.get("liquidity_trend")
        live["bands_json"] = json.dumps(msg.get("bands", []), separators=(",", ":"))
        self.pnl.schedule()
        self.alerts.card_changed(user_id, chat_id, position_id)
        await self.alerts.liquidity(
            user_id, chat_id, position_id, str(msg.get("liquidity_trend")), msg.get("bands", []), self.pnl.position
        )

    async def _balance_update(self, worker: Worker, event: StreamEvent) -> None:
        msg = event.data
        if self.wallet_changed is not None:  # the guard reads holdings afresh
            self.wallet_changed(str(msg.get("wallet_pubkey")))
        changed = await self.positions.tokens_changed(
            worker.user_id, str(msg.get("wallet_pubkey")), str(msg.get("mint")), int(msg.get("tokens", 0))
        )
        if changed is not None:
            self.alerts.card_changed(worker.user_id, worker.chat_id, changed)

    async def _exit_signal(self, worker: Worker, event: StreamEvent) -> None:
        msg, user_id = event.data, worker.user_id
        position_id = int(msg["position_id"])
        reason = self.deadlines.exit_reason(user_id, position_id, str(msg.get("reason", "")))
        if reason != msg.get("reason"):
            event.data = msg = {**msg, "reason": reason}
        # the signal first (stored and shown by the inbox); this flag's write must not delay it
        if self.on_exit_signal is not None:
            await self.on_exit_signal(user_id, event)
        await self.positions.update(user_id, position_id, waiting_exit=False)

    async def _position_closed(self, worker: Worker, event: StreamEvent) -> None:
        msg, user_id = event.data, worker.user_id
        position_id = int(msg["position_id"])
        self.deadlines.disarm(worker, position_id)
        position = await self.positions.closed(user_id, position_id, str(msg.get("reason", "")))
        worker.forget(position_id)
        worker.asked.pop(position_id, None)
        await self.alerts.position_closed(user_id, worker.chat_id, position, msg)

    async def _error(self, worker: Worker, event: StreamEvent) -> None:
        self._show_error(worker, event.data)

    async def _mirror(self, worker: Worker, event: StreamEvent) -> None:
        if self.copy is not None:
            await self.copy.on_event(worker.user_id, worker.chat_id, event.data)
        else:
            self.alerts.text(worker.chat_id, render.mirror_event(event.data))

    _HANDLERS: dict[str, Callable[[EventRouter, Worker, StreamEvent], Awaitable[None]]] = {
        "hello_ok": _hello_ok,
        "position_opened": _position_opened,
        "pnl_update": _pnl_update,
        "liquidity_snapshot": _liquidity_snapshot,
        "balance_update": _balance_update,
        "exit_signal_with_tx": _exit_signal,
        "position_closed": _position_closed,
        "error": _error,
    }

    async def _reapply(self, worker: Worker, position: Position) -> None:
        """A position announced again (a new session): its override and a pending exit, with the new id."""
        if position.strategy_json:
            override = self.strategies.load(
                worker.user_id, worker.chat_id, f"The saved strategy of {position.label} #{position.position_id}",
                position.strategy_json, fix=f"/pstrategy {position.position_id} tp 50 sl 20",
            )
            if override is not None:  # an invalid one is told about and left out: the account strategy applies
                await worker.client.update_position_strategy(position.position_id, override.to_wire())
        if position.waiting_exit and worker.asked.get(position.position_id) != worker.client.connection:
            await worker.ask_exit(position.position_id)

    def _show_error(self, worker: Worker, msg: dict[str, Any]) -> None:
        """A stream error in the chat, the same code at most once per `error_repeat_s` (a refused
        configure comes back on every reconnect)."""
        code = str(msg.get("code", ""))
        # coalesced per kind: the documented codes each, every other code as one (a flood of errors with
        # changing codes is one message, not hundreds)
        kind = code if code in ACTIONABLE_ERRORS or is_refused_key(code) else "other"
        now = time.monotonic()
        last = worker.errors_shown.get(kind)
        if last is not None and now - last < self.error_repeat_s:
            return
        worker.errors_shown[kind] = now
        if code in ACTIONABLE_ERRORS:
            # documented codes: say what to do about it, not only what LaserSell said
            self.alerts.text(worker.chat_id, "⚠️ " + render.esc(describe_error(code, str(msg.get("message") or ""))))
        else:
            self.alerts.text(worker.chat_id, render.stream_error(msg))
