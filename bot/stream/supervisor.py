"""One LaserSell stream per set-up user, kept open day and night, with its deadline timers.

A worker per user owns a `StreamClient` and a consumer task that persists what the stream says and
hands it to `Alerts`. Plain asyncio tasks, not PTB's: the supervisor drains and cancels them itself on
shutdown within a bound (DESIGN decision 2).

Positions keep the bot's own number (`Position.position_id`) for their whole life. The stream's ids
last one session, so every event is translated here, by token account, to the bot's number before
anything else sees it; requests go out by token account. When a reconnect (a new session) announces
a position again, its per-position strategy is re-sent with the new id and an exit the bot was
waiting on is asked for again.

A stream that drops is reconnected for ever (only a refused key stops it); the trader hears about it
once, if it stays down longer than `down_notice_after_s`, and again when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.strategy import Strategy
from bot.stream.client import (
    CONNECTED,
    CONNECTING,
    NEEDS_ATTENTION,
    RECONNECTING,
    STOPPED,
    StreamClient,
    StreamConfig,
    describe_error,
    is_refused_key,
)
from bot.stream.events import StreamEvent, quote_of
from bot.tasks import BackgroundTasks
from storage.history import PnlHistory
from storage.positions import ExitSignals, Position, Positions

log = logging.getLogger("lasersell_bot.supervisor")

ExitHandler = Callable[[int, StreamEvent], Awaitable[None]]

# The documented stream error codes (and a refused session), shown with what the trader can do about them.
ACTIONABLE_ERRORS = frozenset({"invalid_strategy", "wallet_not_registered", "too_many_wallets", "session_limit"})


@dataclass
class Wanted:
    """What a user's stream should run with, built from storage."""

    api_key: str
    wallets: list[str]
    strategy: Strategy
    send_mode: str
    tip_lamports: int

    def deadline_on_configure(self) -> int | None:
        """The deadline, on `configure` only when it is the strategy's one exit condition (the docs count
        it towards a valid strategy there); the bot's own timer asks for the exit either way."""
        return None if self.strategy.wire_has_exit() or not self.strategy.deadline_s else self.strategy.deadline_s

    def connection_key(self) -> tuple[Any, ...]:
        # changes to these need a new connection (no update message exists for them)
        return (self.api_key, self.send_mode, self.tip_lamports, self.deadline_on_configure())


@dataclass
class Worker:
    user_id: int
    chat_id: int
    client: StreamClient
    wanted: Wanted
    task: asyncio.Task[None] | None = None
    deadlines: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    clock_offset_ms: int = 0  # server time minus our time, from hello_ok
    told_attention: bool = False
    started_at: float = field(default_factory=time.monotonic)
    # the bot's position number <-> token account, for open positions (stable across sessions)
    accounts: dict[int, str] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    connection: int = 0  # the client connection whose hello_ok the consumer handled last
    asked: dict[int, int] = field(default_factory=dict)  # position number -> connection its exit was asked on
    down_since: float | None = None
    down_reason: str | None = None  # why the last attempt failed, for the down notice
    down_timer: asyncio.TimerHandle | None = None
    up_timer: asyncio.TimerHandle | None = None
    reask_timer: asyncio.TimerHandle | None = None
    told_down: bool = False
    errors_shown: dict[str, float] = field(default_factory=dict)  # error code -> when it was last shown

    def remember(self, number: int, token_account: str | None) -> None:
        if token_account:
            self.accounts[number] = token_account
            self.numbers[token_account] = number

    def forget(self, number: int) -> None:
        account = self.accounts.pop(number, None)
        if account is not None and self.numbers.get(account) == number:
            del self.numbers[account]


class StreamSupervisor:
    def __init__(
        self,
        services: Any,
        alerts: Any,
        *,
        stream_url: str,
        on_exit_signal: ExitHandler | None = None,
        start_jitter_s: float = 2.0,
        client_options: dict[str, Any] | None = None,
        down_notice_after_s: float = 60.0,
        up_after_s: float = 2.0,
        reask_after_s: float = 5.0,
        error_repeat_s: float = 600.0,
    ) -> None:
        self.services = services
        self.alerts = alerts
        self.stream_url = stream_url
        self.on_exit_signal = on_exit_signal
        self.start_jitter_s = start_jitter_s
        self.client_options = client_options or {}
        self.down_notice_after_s = down_notice_after_s  # tell the trader once a stream is down this long
        self.up_after_s = up_after_s  # a reconnected stream counts as back once it stays up this long
        self.reask_after_s = reask_after_s  # after a reconnect, re-ask exits not re-announced by then
        self.error_repeat_s = error_repeat_s  # the same stream error is shown at most once in this long
        self.positions = Positions(services.db)
        self.signals = ExitSignals(services.db)
        self.workers: dict[int, Worker] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._starting: set[asyncio.Task[None]] = set()
        self._closing = False
        # wallet registrations run beside the connect, one at a time per user (see config() below)
        self._registrations = BackgroundTasks()
        self._registering: dict[int, asyncio.Task[Any]] = {}
        # (user, position) -> latest PnL / liquidity columns not yet written
        self.live: dict[tuple[int, int], dict[str, Any]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.flush_interval_s = 1.0
        self.deadline_requests: set[tuple[int, int]] = set()  # exits the deadline timer asked for

    # --- who streams ------------------------------------------------------------------------------------
    async def wanted(self, user_id: int) -> Wanted | None:
        """The configuration for the user's stream, or None if they are not eligible to stream."""
        accounts = self.services.accounts
        user = await self.services.users.get(user_id)
        if user is None or user.blocked:
            return None
        settings = await accounts.store.get(user_id)
        if settings.paused or settings.strategy_json is None:
            return None
        found = await accounts.api_key(user_id)
        wallets = [w.address for w in await accounts.wallets.list(user_id) if w.registered_at]
        if found is None or not wallets:
            return None
        strategy = Strategy.from_json(settings.strategy_json)
        if not strategy.has_stream_exit():
            return None
        return Wanted(found[0], wallets, strategy, settings.send_mode, settings.tip_lamports)

    async def start_all(self) -> None:
        """Resume every eligible user, spreading the connects over `start_jitter_s` (no thundering herd)."""
        rows = await self.services.db.fetchall("SELECT telegram_id FROM user_settings WHERE paused=0")
        for row in rows:
            delay = random.uniform(0, self.start_jitter_s)
            task = asyncio.create_task(self._delayed_refresh(int(row[0]), delay))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        if rows:
            asyncio.get_running_loop().call_later(self.start_jitter_s + 5.0, _freeze_heap)

    async def _delayed_refresh(self, user_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.refresh(user_id)

    async def refresh(self, user_id: int) -> None:
        """Bring the user's stream in line with storage: start, restart, update in place or stop."""
        if self._closing:
            return
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            wanted = await self.wanted(user_id)
            ownership = getattr(self.services, "ownership", None)  # several instances: bot/ownership.py
            if ownership is not None and not ownership.holds(user_id):
                wanted = None  # another instance runs this stream (or nobody yet): never two sessions
            worker = self.workers.get(user_id)
            if wanted is None:
                if worker is not None:
                    await self._stop_worker(worker)
                return
            if worker is None or worker.wanted.connection_key() != wanted.connection_key():
                if worker is not None:
                    await self._stop_worker(worker)
                await self._start_worker(user_id, wanted)
                return
            if worker.client.state == NEEDS_ATTENTION:
                # the user changed something after we told them what to fix: try again
                await self._stop_worker(worker)
                await self._start_worker(user_id, wanted)
                return
            old, worker.wanted = worker.wanted, wanted
            if old.strategy.to_wire() != wanted.strategy.to_wire():
                await worker.client.update_strategy(wanted.strategy.to_wire())
            if old.wallets != wanted.wallets:
                await worker.client.update_wallets(wanted.wallets)
            if old.strategy.deadline_s != wanted.strategy.deadline_s:
                for position in await self.positions.open_for(user_id):
                    self._arm_deadline(worker, position.position_id, position.opened_at_ms, position.first_seen_ms,
                                       position.watched, replace=True)

    async def stop_user(self, user_id: int) -> None:
        worker = self.workers.get(user_id)
        if worker is not None:
            await self._stop_worker(worker)

    async def stop_all(self, timeout: float = 5.0) -> None:
        """Drain then cancel, within `timeout` seconds in all."""
        self._closing = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        for task in list(self._starting):
            task.cancel()
        await self._registrations.cancel_all()
        self._registering.clear()
        workers = list(self.workers.values())
        if workers:
            await asyncio.wait(
                [asyncio.create_task(self._stop_worker(w, timeout=timeout * 0.8)) for w in workers], timeout=timeout
            )
        await self.flush_live()

    async def _copy_config(self, user_id: int) -> dict[str, Any]:
        """watch_wallets and mirror_config for configure, from copy trading when it runs."""
        copier = getattr(self.services, "copier", None)
        if copier is None:
            return {}
        return {"watch_wallets": await copier.watch_entries(user_id), "mirror_config": await copier.mirror_config(user_id)}

    # --- a worker ---------------------------------------------------------------------------------------
    async def _start_worker(self, user_id: int, wanted: Wanted) -> None:
        user = await self.services.users.get(user_id)
        assert user is not None

        async def config() -> StreamConfig:
            # the current wallets and strategy on every (re)connect; per-position overrides are re-sent
            # when the new session announces each position (its ids are new)
            # Every wallet is registered under this key first, as the official CLI does on every connect.
            # It runs beside the connect, never in front of it: a slow or unreachable REST API must not hold
            # a reconnect (and the exits waiting on it); a wallet the stream refuses meanwhile is retried with
            # the usual backoff, by when the registration has gone through.
            register = getattr(self.services.accounts, "register_for_stream", None)
            running = self._registering.get(user_id)
            if register is not None and (running is None or running.done()):  # a bare accounts service has none
                self._registering[user_id] = self._registrations.spawn(
                    register(user_id, worker.wanted.api_key), name=f"register-wallets-{user_id}"
                )
            current = await self.wanted(user_id) or wanted
            worker.wanted = current
            return StreamConfig(
                wallet_pubkeys=current.wallets,
                strategy=current.strategy.to_wire(),
                send_mode=current.send_mode,
                tip_lamports=current.tip_lamports,
                deadline_timeout_sec=current.deadline_on_configure(),
                **await self._copy_config(user_id),
            )

        def on_state(state: str, reason: str | None) -> Any:
            return self._on_state(worker, state, reason)

        client = StreamClient(
            wanted.api_key, config, url=self.stream_url, on_state_change=on_state,
            position_account=lambda number: worker.accounts.get(number), **self.client_options,
        )
        worker = Worker(user_id, user.chat_id, client, wanted)
        open_positions = await self.positions.open_for(user_id)
        for position in open_positions:
            worker.remember(position.position_id, position.token_account)
        self.workers[user_id] = worker
        worker.task = asyncio.create_task(self._consume(worker), name=f"stream-consumer-{user_id}")
        await client.start()
        for position in open_positions:
            self._arm_deadline(worker, position.position_id, position.opened_at_ms, position.first_seen_ms, position.watched)
            if position.card_message_id is not None:
                self.alerts.track_card(user_id, position.position_id)

    async def _stop_worker(self, worker: Worker, timeout: float = 5.0) -> None:
        if self.workers.get(worker.user_id) is worker:
            del self.workers[worker.user_id]
        for handle in worker.deadlines.values():
            handle.cancel()
        worker.deadlines.clear()
        for timer in (worker.down_timer, worker.up_timer, worker.reask_timer):
            if timer is not None:
                timer.cancel()
        await worker.client.stop(timeout=timeout / 2)
        if worker.task is not None:
            worker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(worker.task, timeout / 2)

    async def _on_state(self, worker: Worker, state: str, reason: str | None) -> None:
        from bot.notify.outbox import Priority

        loop = asyncio.get_running_loop()
        if state == CONNECTED:
            worker.told_attention = False
            # Up only once it stays up a moment: a server that accepts and hangs up at once is still down.
            if worker.up_timer is not None:
                worker.up_timer.cancel()
            worker.up_timer = loop.call_later(self.up_after_s, self._confirm_up, worker)
            # The new session re-announces positions and their exits are re-asked then; this catches a
            # position it does not announce in time.
            if worker.reask_timer is not None:
                worker.reask_timer.cancel()
            worker.reask_timer = loop.call_later(
                self.reask_after_s, lambda: asyncio.ensure_future(self._reask_waiting(worker))
            )
        elif state in (CONNECTING, RECONNECTING):
            if worker.up_timer is not None:
                worker.up_timer.cancel()
                worker.up_timer = None
            if worker.down_since is None:
                worker.down_since = time.monotonic()
            if reason:
                worker.down_reason = reason
            if worker.down_timer is None and not worker.told_down:
                worker.down_timer = loop.call_later(self.down_notice_after_s, self._tell_down, worker)
        elif state == NEEDS_ATTENTION:
            if worker.down_timer is not None:
                worker.down_timer.cancel()
                worker.down_timer = None
            if not worker.told_attention:
                worker.told_attention = True
                self.alerts.text(
                    worker.chat_id,
                    f"⚠️ <b>Your LaserSell stream stopped</b>: {_esc(reason or 'LaserSell refused the API key')}\n"
                    "I will not retry with this key: set a new one with /apikey.",
                    Priority.URGENT,
                )

    def _confirm_up(self, worker: Worker) -> None:
        from bot.notify.outbox import Priority

        worker.up_timer = None
        if self.workers.get(worker.user_id) is not worker or worker.client.state != CONNECTED:
            return
        if worker.down_timer is not None:
            worker.down_timer.cancel()
            worker.down_timer = None
        if worker.told_down:
            down_for = time.monotonic() - (worker.down_since or time.monotonic()) - self.up_after_s
            self.alerts.text(
                worker.chat_id,
                f"✅ <b>Your LaserSell stream is back</b> after {_duration(down_for)} down. Exit signals flow again.",
                Priority.URGENT,
            )
        worker.told_down = False
        worker.down_since = None
        worker.down_reason = None

    def _tell_down(self, worker: Worker) -> None:
        """Once per outage, when the stream has been down for `down_notice_after_s`."""
        from bot.notify.outbox import Priority

        worker.down_timer = None
        # not confirmed up since it went down (a connection that is hung up at once does not count)
        if self.workers.get(worker.user_id) is not worker or worker.client.state in (NEEDS_ATTENTION, STOPPED):
            return
        worker.told_down = True
        reason = worker.down_reason or "the LaserSell stream cannot be reached"
        self.alerts.text(
            worker.chat_id,
            f"⚠️ <b>Your LaserSell stream has been down for over {_duration(self.down_notice_after_s)}</b>: "
            f"{_esc(reason)}\nI keep reconnecting and will tell you when it is back. No exit signal can reach "
            "you until then.",
            Priority.URGENT,
        )

    async def _reask_waiting(self, worker: Worker) -> None:
        worker.reask_timer = None
        if self.workers.get(worker.user_id) is not worker:
            return
        for position in await self.positions.open_for(worker.user_id):
            if position.waiting_exit and worker.asked.get(position.position_id) != worker.client.connection:
                await self._ask_exit(worker, position.position_id)

    async def _ask_exit(self, worker: Worker, number: int, slippage_bps: int | None = None) -> bool:
        sent = await worker.client.request_exit_signal(number, slippage_bps)
        if sent:
            # an exit asked on this connection is not asked again when the position is (re)announced on it
            worker.asked[number] = worker.client.connection
        return sent

    async def _consume(self, worker: Worker) -> None:
        async for event in worker.client:
            try:
                await self.handle_event(worker, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a %s event failed", event.type)

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

    async def handle_event(self, worker: Worker, event: StreamEvent) -> None:
        msg, kind, user_id, chat_id = event.data, event.type, worker.user_id, worker.chat_id
        if kind == "hello_ok":
            worker.connection = max(worker.connection, event.connection)
        elif event.connection < worker.connection and not event.urgent:
            return  # PnL noise from a session that has ended: its ids mean nothing now
        if isinstance(msg.get("position_id"), int) and kind != "position_opened":
            number = await self._number(worker, event)
            if number is None:
                if kind != "exit_signal_with_tx":
                    log.debug("%s for a position this bot does not know; skipped", kind)
                    return
                log.warning("exit signal for a position this bot does not know (stream id %s)", msg["position_id"])
            else:
                msg["stream_position_id"] = msg["position_id"]
                msg["position_id"] = number

        if kind == "hello_ok":
            if isinstance(msg.get("server_time_ms"), int):
                worker.clock_offset_ms = int(msg["server_time_ms"]) - int(time.time() * 1000)
        elif kind == "position_opened":
            context = msg.get("market_context")
            quote = quote_of(context) if isinstance(context, dict) else None
            position, is_new = await self.positions.opened(user_id, msg, quote)
            msg["stream_position_id"] = msg["position_id"]
            msg["position_id"] = position.position_id
            worker.remember(position.position_id, position.token_account or event.token_account)
            self._arm_deadline(worker, position.position_id, position.opened_at_ms, position.first_seen_ms, position.watched)
            if is_new and position.card_message_id is None:
                await self.alerts.position_opened(user_id, chat_id, position)
                if getattr(self.services, "copier", None) is not None:
                    await self.services.copier.position_opened(user_id, chat_id, msg)
            if not is_new:
                await self._reapply(worker, position)
        elif kind == "pnl_update":
            # Noisy: kept in memory and written in batches, so exit signals never queue behind PnL writes.
            live = self.live.setdefault((user_id, int(msg["position_id"])), {})
            live["profit_units"] = msg.get("profit_units")
            live["proceeds_units"] = msg.get("proceeds_units")
            if msg.get("token_price_quote") is not None:
                live["price_quote"] = msg["token_price_quote"]
            if msg.get("market_cap_quote") is not None:
                live["market_cap_quote"] = msg["market_cap_quote"]
            self._schedule_flush()
            self.alerts.card_changed(user_id, chat_id, int(msg["position_id"]))
        elif kind == "liquidity_snapshot":
            position_id = int(msg["position_id"])
            live = self.live.setdefault((user_id, position_id), {})
            live["liquidity_trend"] = msg.get("liquidity_trend")
            live["bands_json"] = json.dumps(msg.get("bands", []), separators=(",", ":"))
            self._schedule_flush()
            self.alerts.card_changed(user_id, chat_id, position_id)
            await self.alerts.liquidity(
                user_id, chat_id, position_id, str(msg.get("liquidity_trend")), msg.get("bands", []), self.position
            )
        elif kind == "balance_update":
            if getattr(self.services, "executor", None) is not None:  # the guard reads holdings afresh
                self.services.executor.holdings.forget(str(msg.get("wallet_pubkey")))
            changed = await self.positions.tokens_changed(
                user_id, str(msg.get("wallet_pubkey")), str(msg.get("mint")), int(msg.get("tokens", 0))
            )
            if changed is not None:
                self.alerts.card_changed(user_id, chat_id, changed)
        elif kind == "exit_signal_with_tx":
            position_id = int(msg["position_id"])
            reason = self.exit_reason(user_id, position_id, str(msg.get("reason", "")))
            if reason != msg.get("reason"):
                event.data = msg = {**msg, "reason": reason}
            # the signal first (stored and shown by the handler); this flag's write must not delay it
            if self.on_exit_signal is not None:
                await self.on_exit_signal(user_id, event)
            await self.positions.update(user_id, position_id, waiting_exit=False)
        elif kind == "position_closed":
            position_id = int(msg["position_id"])
            handle = worker.deadlines.pop(position_id, None)
            if handle is not None:
                handle.cancel()
            position = await self.positions.closed(user_id, position_id, str(msg.get("reason", "")))
            worker.forget(position_id)
            worker.asked.pop(position_id, None)
            await self.alerts.position_closed(user_id, chat_id, position, msg)
        elif kind == "error":
            self._show_error(worker, msg)
        elif kind.startswith("mirror_"):
            if getattr(self.services, "copier", None) is not None:
                await self.services.copier.on_event(user_id, chat_id, msg)
            else:
                from bot.notify import render

                self.alerts.text(chat_id, render.mirror_event(msg))
        elif kind in ("pong", "trade_tick"):
            pass
        else:
            log.info("stream message of unknown type %r kept but not shown", kind)

        await PnlHistory.for_db(self.services.db).observe(user_id, kind, msg)  # chart samples and exit marks

    async def _reapply(self, worker: Worker, position: Position) -> None:
        """A position announced again (a new session): its override and a pending exit, with the new id."""
        if position.strategy_json:
            await worker.client.update_position_strategy(
                position.position_id, Strategy.from_json(position.strategy_json).to_wire()
            )
        if position.waiting_exit and worker.asked.get(position.position_id) != worker.client.connection:
            await self._ask_exit(worker, position.position_id)

    def _show_error(self, worker: Worker, msg: dict[str, Any]) -> None:
        """A stream error in the chat, the same code at most once per `error_repeat_s` (a refused
        configure comes back on every reconnect)."""
        from bot.notify import render

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
            self.alerts.text(worker.chat_id, "⚠️ " + _esc(describe_error(code, str(msg.get("message") or ""))))
        else:
            self.alerts.text(worker.chat_id, render.stream_error(msg))

    # --- live numbers -----------------------------------------------------------------------------------
    def _schedule_flush(self) -> None:
        if self._flush_handle is None and not self._closing:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_interval_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flushing = asyncio.ensure_future(self.flush_live())

    async def flush_live(self) -> None:
        batch, self.live = self.live, {}
        try:
            await self.positions.apply_live(batch)
            await PnlHistory.for_db(self.services.db).flush()
        except Exception:
            log.exception("writing live position numbers failed")

    async def position(self, user_id: int, position_id: int) -> Any:
        """The stored position with the newest live numbers laid over it."""
        position = await self.positions.get(user_id, position_id)
        live = self.live.get((user_id, position_id))
        if position is None or not live:
            return position
        from dataclasses import replace

        return replace(position, **{k: v for k, v in live.items() if v is not None})

    # --- deadlines --------------------------------------------------------------------------------------
    def _arm_deadline(
        self, worker: Worker, position_id: int, opened_at_ms: int | None, first_seen_ms: int, watched: bool,
        *, replace: bool = False,
    ) -> None:
        """One timer per position from its opening time; a re-sent position_opened does not restart it."""
        if watched or (position_id in worker.deadlines and not replace):
            return
        if replace and position_id in worker.deadlines:
            worker.deadlines.pop(position_id).cancel()
        deadline_s = worker.wanted.strategy.deadline_s
        if not deadline_s:
            return
        start_local_ms = (opened_at_ms - worker.clock_offset_ms) if opened_at_ms else first_seen_ms
        due_s = (start_local_ms + deadline_s * 1000) / 1000 - time.time()
        loop = asyncio.get_running_loop()
        worker.deadlines[position_id] = loop.call_later(
            max(0.0, due_s), lambda: asyncio.ensure_future(self._deadline_fired(worker, position_id))
        )

    async def _deadline_fired(self, worker: Worker, position_id: int) -> None:
        worker.deadlines.pop(position_id, None)
        position = await self.positions.get(worker.user_id, position_id)
        if position is None or position.status != "open" or position.deadline_fired:
            return
        await self.positions.update(worker.user_id, position_id, waiting_exit=True, deadline_fired=True)
        self.deadline_requests.add((worker.user_id, position_id))
        # not sent while reconnecting: waiting_exit has it asked once the position is announced again
        await self._ask_exit(worker, position_id)

    def exit_reason(self, user_id: int, position_id: int, reason: str) -> str:
        """The stream answers our request with `manual`: say it was the deadline when the deadline asked."""
        if (user_id, position_id) in self.deadline_requests:
            self.deadline_requests.discard((user_id, position_id))
            if reason in ("manual", "sell_now", ""):
                return "deadline_timeout"
        return reason

    async def request_exit(self, user_id: int, position_id: int, slippage_bps: int | None = None) -> bool:
        """Ask the stream for a fresh exit transaction (Sell now, refresh, retry) for the bot's position
        `position_id`. False when it cannot go out now: it is then asked as soon as the stream is back and
        the position announced (a reconnect starts a new session)."""
        worker = self.workers.get(user_id)
        if worker is None:
            return False
        await self.positions.update(user_id, position_id, waiting_exit=True)
        return await self._ask_exit(worker, position_id, slippage_bps)

    async def close_position(self, user_id: int, position_id: int) -> bool:
        """Stop tracking the bot's position `position_id` (it does not sell). False when not connected."""
        worker = self.workers.get(user_id)
        return worker is not None and await worker.client.close_position(position_id)

    async def set_position_strategy(self, user_id: int, position_id: int, strategy: Strategy | None) -> bool:
        """Store a per-position strategy (None: back to the account's) and send it; it is re-sent with the new
        id whenever a reconnect announces the position again. False when it could not go out yet."""
        await self.positions.update(user_id, position_id, strategy_json=strategy.to_json() if strategy else None)
        worker = self.workers.get(user_id)
        if worker is None:
            return False
        wire = (strategy or worker.wanted.strategy).to_wire()
        return await worker.client.update_position_strategy(position_id, wire)

    def status(self, user_id: int) -> dict[str, Any] | None:
        worker = self.workers.get(user_id)
        if worker is None:
            return None
        c = worker.client
        return {
            "state": c.state,
            "reason": c.reason,
            "connected_since": c.connected_since,
            "reconnects": c.reconnect_count,
            "last_message_at": c.last_message_at,
            "limits": dict(c.limits or {}),
            "pnl_shed": c.pnl_shed,
        }

    def load_notes(self, user_id: int) -> list[str]:
        """Lines for /status (HTML) when the bot has been shedding this user's PnL detail under load."""
        worker = self.workers.get(user_id)
        shed = worker.client.pnl_shed if worker is not None else 0
        if not shed:
            return []
        return [
            f"  ⚠️ under heavy load: {shed:,} PnL update(s) skipped (only each position's newest is kept; "
            "exit signals are never skipped)"
        ]

    def pnl_shed(self) -> int:
        """PnL updates shed under load over every user's stream (the log says so too)."""
        return sum(w.client.pnl_shed for w in self.workers.values())


def _freeze_heap() -> None:
    """Move what start-up built (a thousand streams' connections, the app) out of the collector's reach.

    A full collection walks every live object: with a thousand streams open that stalled the event
    loop for up to half a second, and an exit signal read meanwhile waited as long.
    """
    gc.collect()
    gc.freeze()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=False)
