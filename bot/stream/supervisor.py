"""One LaserSell stream per set-up user, kept open day and night, with its deadline timers.

A worker per user owns a `StreamClient` and a consumer task that persists what the stream says and
hands it to `Alerts`. Plain asyncio tasks, not PTB's: the supervisor drains and cancels them itself on
shutdown within a bound (DESIGN decision 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.strategy import Strategy
from bot.stream.client import CONNECTED, NEEDS_ATTENTION, StreamClient, StreamConfig
from bot.stream.events import StreamEvent
from storage.history import PnlHistory
from storage.positions import ExitSignals, Positions

log = logging.getLogger("lasersell_bot.supervisor")

ExitHandler = Callable[[int, StreamEvent], Awaitable[None]]


@dataclass
class Wanted:
    """What a user's stream should run with, built from storage."""

    api_key: str
    wallets: list[str]
    strategy: Strategy
    send_mode: str
    tip_lamports: int

    def connection_key(self) -> tuple[Any, ...]:
        # changes to these need a new connection (no update message exists for them)
        return (self.api_key, self.send_mode, self.tip_lamports)


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
    ) -> None:
        self.services = services
        self.alerts = alerts
        self.stream_url = stream_url
        self.on_exit_signal = on_exit_signal
        self.start_jitter_s = start_jitter_s
        self.client_options = client_options or {}
        self.positions = Positions(services.db)
        self.signals = ExitSignals(services.db)
        self.workers: dict[int, Worker] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._starting: set[asyncio.Task[None]] = set()
        self._closing = False
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
        workers = list(self.workers.values())
        if workers:
            await asyncio.wait(
                [asyncio.create_task(self._stop_worker(w, timeout=timeout * 0.8)) for w in workers], timeout=timeout
            )
        await self.flush_live()

    # --- a worker ---------------------------------------------------------------------------------------
    async def _start_worker(self, user_id: int, wanted: Wanted) -> None:
        user = await self.services.users.get(user_id)
        assert user is not None

        async def config() -> StreamConfig:
            current = await self.wanted(user_id) or wanted
            worker.wanted = current
            overrides = {
                p.position_id: Strategy.from_json(p.strategy_json).to_wire()
                for p in await self.positions.open_for(user_id)
                if p.strategy_json
            }
            return StreamConfig(
                wallet_pubkeys=current.wallets,
                strategy=current.strategy.to_wire(),
                send_mode=current.send_mode,
                tip_lamports=current.tip_lamports,
                position_strategies=overrides,
            )

        def on_state(state: str, reason: str | None) -> Any:
            return self._on_state(worker, state, reason)

        client = StreamClient(wanted.api_key, config, url=self.stream_url, on_state_change=on_state, **self.client_options)
        worker = Worker(user_id, user.chat_id, client, wanted)
        self.workers[user_id] = worker
        worker.task = asyncio.create_task(self._consume(worker), name=f"stream-consumer-{user_id}")
        await client.start()
        for position in await self.positions.open_for(user_id):
            self._arm_deadline(worker, position.position_id, position.opened_at_ms, position.first_seen_ms, position.watched)
            if position.card_message_id is not None:
                self.alerts.track_card(user_id, position.position_id)

    async def _stop_worker(self, worker: Worker, timeout: float = 5.0) -> None:
        if self.workers.get(worker.user_id) is worker:
            del self.workers[worker.user_id]
        for handle in worker.deadlines.values():
            handle.cancel()
        worker.deadlines.clear()
        await worker.client.stop(timeout=timeout / 2)
        if worker.task is not None:
            worker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(worker.task, timeout / 2)

    async def _on_state(self, worker: Worker, state: str, reason: str | None) -> None:
        if state == CONNECTED:
            worker.told_attention = False
            # An exit signal sent while the socket was down is never re-sent: ask again.
            for position in await self.positions.open_for(worker.user_id):
                if position.waiting_exit:
                    await worker.client.request_exit_signal(position.position_id)
        elif state == NEEDS_ATTENTION and not worker.told_attention:
            worker.told_attention = True
            from bot.notify.outbox import Priority

            self.alerts.text(
                worker.chat_id,
                f"⚠️ <b>Your LaserSell stream stopped</b>: {_esc(reason or 'LaserSell refused the connection')}\n"
                "I will not retry until you change it (/apikey, /wallets or /strategy).",
                Priority.URGENT,
            )

    async def _consume(self, worker: Worker) -> None:
        async for event in worker.client:
            try:
                await self.handle_event(worker, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a %s event failed", event.type)

    async def handle_event(self, worker: Worker, event: StreamEvent) -> None:
        msg, kind, user_id, chat_id = event.data, event.type, worker.user_id, worker.chat_id
        if kind == "hello_ok":
            if isinstance(msg.get("server_time_ms"), int):
                worker.clock_offset_ms = int(msg["server_time_ms"]) - int(time.time() * 1000)
        elif kind == "position_opened":
            position, is_new = await self.positions.opened(user_id, msg)
            self._arm_deadline(worker, position.position_id, position.opened_at_ms, position.first_seen_ms, position.watched)
            if is_new and position.card_message_id is None:
                await self.alerts.position_opened(user_id, chat_id, position)
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
            await self.positions.update(user_id, position_id, waiting_exit=False)
            if self.on_exit_signal is not None:
                await self.on_exit_signal(user_id, event)
        elif kind == "position_closed":
            position_id = int(msg["position_id"])
            handle = worker.deadlines.pop(position_id, None)
            if handle is not None:
                handle.cancel()
            position = await self.positions.closed(user_id, position_id, str(msg.get("reason", "")))
            await self.alerts.position_closed(user_id, chat_id, position, msg)
        elif kind == "error":
            from bot.notify import render

            self.alerts.text(chat_id, render.stream_error(msg))
        elif kind.startswith("mirror_"):
            from bot.notify import render

            self.alerts.text(chat_id, render.mirror_event(msg))
        elif kind in ("pong", "trade_tick"):
            pass
        else:
            log.info("stream message of unknown type %r kept but not shown", kind)

        await PnlHistory.for_db(self.services.db).observe(user_id, kind, msg)  # chart samples and exit marks

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
        await worker.client.request_exit_signal(position_id)

    def exit_reason(self, user_id: int, position_id: int, reason: str) -> str:
        """The stream answers our request with `manual`: say it was the deadline when the deadline asked."""
        if (user_id, position_id) in self.deadline_requests:
            self.deadline_requests.discard((user_id, position_id))
            if reason in ("manual", "sell_now", ""):
                return "deadline_timeout"
        return reason

    async def request_exit(self, user_id: int, position_id: int, slippage_bps: int | None = None) -> bool:
        """Ask the stream for a fresh exit transaction (Sell now, refresh, retry)."""
        worker = self.workers.get(user_id)
        if worker is None:
            return False
        await self.positions.update(user_id, position_id, waiting_exit=True)
        return await worker.client.request_exit_signal(position_id, slippage_bps)

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
        }


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=False)
