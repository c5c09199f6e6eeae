"""One LaserSell stream per set-up user, kept open day and night: who streams, and what they are told.

A worker per user owns a `StreamClient` and a consumer task that hands every event to the event router.
Plain asyncio tasks, not PTB's: `UserStreams` drains and cancels them itself on shutdown within a bound
(DESIGN decision 2). Requests go out by token account; when a reconnect (a new session) announces a
position again, the router re-sends its per-position strategy and asks again for an exit the bot was
waiting on.

A stream that drops is reconnected for ever (only a refused key stops it); the trader hears about it
once, if it stays down longer than `down_notice_after_s`, and again when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from bot.notify.outbox import Priority
from bot.notify.render import esc
from bot.strategy import Strategy
from bot.stream.client import (
    CONNECTED,
    CONNECTING,
    NEEDS_ATTENTION,
    RECONNECTING,
    STOPPED,
    StreamClient,
    StreamConfig,
)
from bot.stream.deadlines import DeadlineTimers
from bot.stream.pnl import PnlBatcher
from bot.stream.router import CopyEvents, EventRouter, ExitHandler, RiskFlags, StreamAlerts
from bot.stream.worker import Wanted, Worker
from bot.tasks import BackgroundTasks
from storage.history import PnlHistory
from storage.positions import Position, Positions
from storage.users import Users

log = logging.getLogger("lasersell_bot.streams")

__all__ = ["CopyConfig", "CopyTrading", "StreamAccounts", "UserStreams", "Wanted", "Worker"]


class _Ownership(Protocol):
    def holds(self, user_id: int) -> bool: ...


class _StreamSettings(Protocol):
    @property
    def paused(self) -> bool: ...
    @property
    def strategy_json(self) -> str | None: ...
    @property
    def send_mode(self) -> str: ...
    @property
    def tip_lamports(self) -> int: ...


class _SettingsReader(Protocol):
    async def get(self, user_id: int) -> _StreamSettings: ...

    async def unpaused_ids(self) -> list[int]: ...


class _Wallet(Protocol):
    @property
    def address(self) -> str: ...
    @property
    def registered_at(self) -> int | None: ...


class _WalletLister(Protocol):
    async def list(self, user_id: int) -> Sequence[_Wallet]: ...


class StreamAccounts(Protocol):
    """What a user's stream is built from (`bot.accounts.AccountService`)."""

    @property
    def store(self) -> _SettingsReader: ...
    @property
    def wallets(self) -> _WalletLister: ...

    async def api_key(self, user_id: int) -> tuple[str, object] | None: ...


class CopyConfig(Protocol):
    """What copy trading adds to `configure` (`bot.copy.Copier`)."""

    async def watch_entries(self, user_id: int) -> list[dict[str, Any]]: ...

    async def mirror_config(self, user_id: int) -> dict[str, Any] | None: ...


class CopyTrading(CopyEvents, CopyConfig, Protocol):
    """Copy trading as the streams see it: what it adds to configure, and the events it hears."""


RegisterWallets = Callable[[int, str], Coroutine[Any, Any, object]]


# Streams (re)started at once when the bot starts, on average per second: each is a handshake, a configure and
# a registration of its wallets with LaserSell's REST API.
START_CONNECTS_PER_S = 50.0

class UserStreams:
    def __init__(
        self,
        *,
        users: Users,
        accounts: StreamAccounts,
        alerts: StreamAlerts,
        positions: Positions,
        history: PnlHistory,
        stream_url: str,
        on_exit_signal: ExitHandler | None = None,
        pnl: PnlBatcher | None = None,
        copy: CopyTrading | None = None,
        register_wallets: RegisterWallets | None = None,
        wallet_changed: Callable[[str], None] | None = None,
        risk_flags: RiskFlags | None = None,
        start_jitter_s: float = 2.0,
        client_options: dict[str, Any] | None = None,
        down_notice_after_s: float = 60.0,
        up_after_s: float = 2.0,
        reask_after_s: float = 5.0,
        error_repeat_s: float = 600.0,
    ) -> None:
        self.users = users
        self.accounts = accounts
        self.alerts = alerts
        self.positions = positions
        self.stream_url = stream_url
        self.copy = copy
        self.register_wallets = register_wallets  # every wallet registered under the key on each connect
        self.start_jitter_s = start_jitter_s
        self.client_options = client_options or {}
        self.down_notice_after_s = down_notice_after_s  # tell the trader once a stream is down this long
        self.up_after_s = up_after_s  # a reconnected stream counts as back once it stays up this long
        self.reask_after_s = reask_after_s  # after a reconnect, re-ask exits not re-announced by then
        self.pnl = pnl or PnlBatcher(positions, history)
        self.deadlines = DeadlineTimers(positions)
        self.router = EventRouter(
            positions=positions, alerts=alerts, pnl=self.pnl, deadlines=self.deadlines, history=history,
            on_exit_signal=on_exit_signal, copy=copy, wallet_changed=wallet_changed, risk_flags=risk_flags,
            error_repeat_s=error_repeat_s,
        )
        self.workers: dict[int, Worker] = {}
        # several instances (PostgreSQL): a stream runs only where its lease is held (bot/ownership.py)
        self.ownership: _Ownership | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._starting = BackgroundTasks()
        self._timers = BackgroundTasks()  # re-asks after a reconnect
        self._closing = False
        # wallet registrations run beside the connect, one at a time per user (see _start_worker)
        self._registrations = BackgroundTasks()
        self._registering: dict[int, asyncio.Task[Any]] = {}

    # --- who streams ------------------------------------------------------------------------------------
    async def wanted(self, user_id: int) -> Wanted | None:
        """The configuration for the user's stream, or None if they are not eligible to stream."""
        accounts = self.accounts
        user = await self.users.get(user_id)
        if user is None or user.blocked:
            return None
        settings = await accounts.store.get(user_id)
        if settings.paused or settings.strategy_json is None:
            return None
        found = await accounts.api_key(user_id)
        wallets = [w.address for w in await accounts.wallets.list(user_id) if w.registered_at]
        if found is None or not wallets:
            return None
        strategy = self.router.strategies.load(user_id, user.chat_id, "Your saved strategy", settings.strategy_json)
        if strategy is None:  # saved by an older version, invalid now: told, and never sent as it is
            return None
        return Wanted(found[0], wallets, strategy, settings.send_mode, settings.tip_lamports)

    async def start_all(self) -> None:
        """Resume every eligible user, spreading the connects over `start_jitter_s`, or longer for many users
        (at most START_CONNECTS_PER_S on average): no thundering herd of handshakes and registrations."""
        user_ids = await self.accounts.store.unpaused_ids()
        spread = max(self.start_jitter_s, len(user_ids) / START_CONNECTS_PER_S)
        for user_id in user_ids:
            delay = random.uniform(0, spread)
            self._starting.spawn(self._delayed_refresh(user_id, delay), name=f"stream-start-{user_id}")
        if user_ids:
            asyncio.get_running_loop().call_later(spread + 5.0, _freeze_heap)

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
            if self.ownership is not None and not self.ownership.holds(user_id):
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
                    self.deadlines.arm(worker, position.position_id, position.opened_at_ms, position.first_seen_ms,
                                       position.watched, replace=True)

    async def stop_user(self, user_id: int) -> None:
        worker = self.workers.get(user_id)
        if worker is not None:
            await self._stop_worker(worker)

    async def stop_all(self, timeout: float = 5.0) -> None:
        """Drain then cancel, within `timeout` seconds in all."""
        self._closing = True
        await self.pnl.stop_timer()
        await self._starting.cancel_all()
        await self._registrations.cancel_all()
        self._registering.clear()
        workers = list(self.workers.values())
        if workers:
            await asyncio.wait(
                [asyncio.create_task(self._stop_worker(w, timeout=timeout * 0.8)) for w in workers], timeout=timeout
            )
        await self._timers.cancel_all()
        await self.deadlines.close()
        await self.pnl.flush()

    async def _copy_config(self, user_id: int) -> dict[str, Any]:
        """watch_wallets and mirror_config for configure, from copy trading when it runs."""
        if self.copy is None:
            return {}
        return {"watch_wallets": await self.copy.watch_entries(user_id),
                "mirror_config": await self.copy.mirror_config(user_id)}

    # --- a worker ---------------------------------------------------------------------------------------
    async def _start_worker(self, user_id: int, wanted: Wanted) -> None:
        user = await self.users.get(user_id)
        assert user is not None

        async def config() -> StreamConfig:
            # the current wallets and strategy on every (re)connect; per-position overrides are re-sent
            # when the new session announces each position (its ids are new)
            # Every wallet is registered under this key first, as the official CLI does on every connect.
            # It runs beside the connect, never in front of it: a slow or unreachable REST API must not hold
            # a reconnect (and the exits waiting on it); a wallet the stream refuses meanwhile is retried with
            # the usual backoff, by when the registration has gone through.
            running = self._registering.get(user_id)
            if self.register_wallets is not None and (running is None or running.done()):
                self._registering[user_id] = self._registrations.spawn(
                    self.register_wallets(user_id, worker.wanted.api_key), name=f"register-wallets-{user_id}"
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

        def on_state(state: str, reason: str | None) -> Awaitable[None]:
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
            self.deadlines.arm(worker, position.position_id, position.opened_at_ms, position.first_seen_ms,
                               position.watched)
            if position.card_message_id is not None:
                self.alerts.track_card(user_id, position.position_id)

    async def _stop_worker(self, worker: Worker, timeout: float = 5.0) -> None:
        if self.workers.get(worker.user_id) is worker:
            del self.workers[worker.user_id]
        self.deadlines.disarm_all(worker)
        for timer in (worker.down_timer, worker.up_timer, worker.reask_timer):
            if timer is not None:
                timer.cancel()
        await worker.client.stop(timeout=timeout / 2)
        if worker.task is not None:
            worker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(worker.task, timeout / 2)

    async def _consume(self, worker: Worker) -> None:
        async for event in worker.client:
            try:
                await self.router.handle(worker, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a %s event failed", event.type)

    # --- up and down ------------------------------------------------------------------------------------
    async def _on_state(self, worker: Worker, state: str, reason: str | None) -> None:
        if state == CONNECTED:
            self._connected(worker)
        elif state in (CONNECTING, RECONNECTING):
            self._connecting(worker, reason)
        elif state == NEEDS_ATTENTION:
            if worker.down_timer is not None:
                worker.down_timer.cancel()
                worker.down_timer = None
            if not worker.told_attention:
                worker.told_attention = True
                self.alerts.text(
                    worker.chat_id,
                    f"⚠️ <b>Your LaserSell stream stopped</b>: {esc(reason or 'LaserSell refused the API key')}\n"
                    "I will not retry with this key: set a new one with /apikey.",
                    Priority.URGENT,
                )

    def _connected(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
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
            self.reask_after_s, lambda: self._timers.spawn(self._reask_waiting(worker), name="reask-exits")
        )

    def _connecting(self, worker: Worker, reason: str | None) -> None:
        if worker.up_timer is not None:
            worker.up_timer.cancel()
            worker.up_timer = None
        if worker.down_since is None:
            worker.down_since = time.monotonic()
        if reason:
            worker.down_reason = reason
        if worker.down_timer is None and not worker.told_down:
            worker.down_timer = asyncio.get_running_loop().call_later(
                self.down_notice_after_s, self._tell_down, worker
            )

    def _confirm_up(self, worker: Worker) -> None:
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
        worker.down_timer = None
        # not confirmed up since it went down (a connection that is hung up at once does not count)
        if self.workers.get(worker.user_id) is not worker or worker.client.state in (NEEDS_ATTENTION, STOPPED):
            return
        worker.told_down = True
        reason = worker.down_reason or "the LaserSell stream cannot be reached"
        self.alerts.text(
            worker.chat_id,
            f"⚠️ <b>Your LaserSell stream has been down for over {_duration(self.down_notice_after_s)}</b>: "
            f"{esc(reason)}\nI keep reconnecting and will tell you when it is back. No exit signal can reach "
            "you until then.",
            Priority.URGENT,
        )

    async def _reask_waiting(self, worker: Worker) -> None:
        worker.reask_timer = None
        if self.workers.get(worker.user_id) is not worker:
            return
        for position in await self.positions.open_for(worker.user_id):
            if position.waiting_exit and worker.asked.get(position.position_id) != worker.client.connection:
                await worker.ask_exit(position.position_id)

    # --- what handlers and the trade paths ask of a stream ------------------------------------------------
    async def position(self, user_id: int, position_id: int) -> Position | None:
        """The stored position with the newest live numbers laid over it."""
        return await self.pnl.position(user_id, position_id)

    async def request_exit(self, user_id: int, position_id: int, slippage_bps: int | None = None) -> bool:
        """Ask the stream for a fresh exit transaction (Sell now, refresh, retry) for the bot's position
        `position_id`. False when it cannot go out now: it is then asked as soon as the stream is back and
        the position announced (a reconnect starts a new session)."""
        worker = self.workers.get(user_id)
        if worker is None:
            return False
        await self.positions.update(user_id, position_id, waiting_exit=True)
        return await worker.ask_exit(position_id, slippage_bps)

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

    def client(self, user_id: int) -> StreamClient | None:
        """The user's running stream client, if they stream."""
        worker = self.workers.get(user_id)
        return worker.client if worker is not None else None

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
    loop for up to half a second, and an exit signal read meanwhile waited as long. No collection
    first, for the same reason (it was that half second): the little garbage start-up left is kept.
    """
    gc.freeze()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
