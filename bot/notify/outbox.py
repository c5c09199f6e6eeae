"""The outbox: every Telegram-bound call of the bot goes through here.

Telegram limits a bot to about one message a second per private chat (short bursts allowed),
twenty a minute per group and about thirty a second overall, and answers 429 with a
`retry_after` when a limit is crossed. A trader must never wait for an exit signal behind a
broadcast or a flood of position-card edits, so calls are queued by priority and released by one
dispatcher task that paces each chat and the bot as a whole:

- per chat a token bucket (`per_chat_rate`, `per_chat_burst`) and a 429 pause;
- a global token bucket (`global_rate`) and a global 429 pause;
- one call in flight per chat (keeps a chat's messages in order), a few chats in flight at once
  (one slow call does not stall the others);
- the highest priority item whose chat is ready goes first; within a chat and a priority, FIFO;
- card edits with a `coalesce_key` replace a not-yet-sent edit with the same key, so a busy card
  costs one call per pacing slot, not one per update.

The dispatcher sleeps exactly until the next item can become ready or something is submitted:
no polling. Time comes from the `clock` given to the constructor; after moving a fake clock,
call `wake()` so the dispatcher re-reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import heapq
import inspect
import itertools
import logging
import math
import time
import warnings
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import IntEnum
from typing import Any

from telegram import Bot, ForceReply, InlineKeyboardMarkup, ReplyKeyboardMarkup, ReplyKeyboardRemove
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DeliveryFailed",
    "Delivery",
    "Outbox",
    "OutboxCall",
    "OutboxMetrics",
    "Priority",
]


# what a message can carry below it (the Bot API's reply_markup)
ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply


class Priority(IntEnum):
    """Lower value goes first."""

    URGENT = 0  # exit signals and sell results
    ALERT = 1  # position and liquidity alerts
    CARD = 2  # live position card edits
    BROADCAST = 3  # admin broadcasts


class DeliveryFailed(Exception):
    """A call Telegram refused for good (blocked, chat not found, bad HTML, retries used up)."""

    def __init__(self, reason: str, error: BaseException | None = None, *, chat_id: int | None = None) -> None:
        detail = f": {error}" if error is not None else ""
        super().__init__(f"{reason}{detail}")
        self.reason = reason
        self.error = error
        self.chat_id = chat_id


# An OutboxCall whose kwargs hold INVOKE runs that coroutine function instead of a Bot method: how
# python-telegram-bot's own requests (handler replies) are paced by the same queues.
INVOKE = "_invoke"
DELIVERING: contextvars.ContextVar[bool] = contextvars.ContextVar("outbox_delivering", default=False)


@dataclass(frozen=True)
class OutboxCall:
    """One Bot API call: `method` is a `telegram.Bot` coroutine method taking `chat_id`."""

    method: str
    chat_id: int
    priority: Priority
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    coalesce_key: str | None = None


@dataclass(frozen=True)
class Delivery:
    """The outcome of one call of `Outbox.deliver_all`: a result or the error it ended with."""

    call: OutboxCall
    result: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class OutboxMetrics:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    rate_limited: int = 0  # 429 answers
    coalesced: int = 0
    blocked: int = 0
    # enqueue -> sent, in clock seconds, newest last
    last_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    latencies: dict[Priority, deque[float]] = field(
        default_factory=lambda: {p: deque(maxlen=4096) for p in Priority}
    )

    def snapshot(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "rate_limited": self.rate_limited,
            "coalesced": self.coalesced,
            "blocked": self.blocked,
        }


NOT_MODIFIED = "message is not modified"
# How long 429s from different chats count as "several at once" (then the whole bot pauses).
FLOOD_WINDOW_S = 1.0


class _Bucket:
    """A token bucket kept as (tokens, updated) so its ready time does not depend on `now`."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def ready_at(self) -> float:
        if self.tokens >= 1:
            return self.updated
        return self.updated + (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        self.tokens -= 1

    def restart(self, at: float) -> None:
        """After a 429: Telegram's own bucket is empty, start ours with one token at `at`."""
        self.tokens = 1.0
        self.updated = at

    def is_full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.burst


@dataclass(eq=False)
class _Item:
    call: OutboxCall
    futures: list[asyncio.Future[Any]]
    enqueued_at: float
    seq: int
    attempts: int = 0
    not_before: float = 0.0

    @property
    def key(self) -> tuple[int, str] | None:
        if self.call.coalesce_key is None:
            return None
        return (self.call.chat_id, self.call.coalesce_key)

    def abandoned(self) -> bool:
        # every caller cancelled its future: nobody wants this any more
        return all(f.done() for f in self.futures)


class _Chat:
    __slots__ = ("chat_id", "queues", "bucket", "paused_until", "busy", "scheduled")

    def __init__(self, chat_id: int, bucket: _Bucket) -> None:
        self.chat_id = chat_id
        self.queues: tuple[deque[_Item], ...] = tuple(deque() for _ in Priority)
        self.bucket = bucket
        self.paused_until = 0.0
        self.busy = False
        # priority -> ready time of this chat's live entry in that priority's heap
        self.scheduled: dict[int, float] = {}

    def ready_at(self, priority: int) -> float:
        head = self.queues[priority][0]
        return max(self.paused_until, head.not_before, self.bucket.ready_at())

    def empty(self) -> bool:
        return not any(self.queues)


class Outbox:
    """Priority queue, pacer and retrier in front of a `telegram.Bot`.

    Give the bot's HTTP client a connection pool at least `max_in_flight` large (PTB's
    `HTTPXRequest` defaults to one connection; `Application.builder()` to 256).
    """

    def __init__(
        self,
        bot: Bot | None = None,
        *,
        global_rate: float = 25.0,
        per_chat_rate: float = 1.0,
        per_chat_burst: int = 3,
        on_blocked: Callable[[int], Awaitable[None] | None] | None = None,
        clock: Callable[[], float] | None = None,
        global_burst: float | None = None,
        group_rate: float = 20 / 60,
        max_in_flight: int | None = None,
        max_attempts: int = 5,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
        queue_limits: Mapping[Priority, int] | None = None,
    ) -> None:
        if global_rate <= 0 or per_chat_rate <= 0 or group_rate <= 0:
            raise ValueError("rates must be positive (messages per second)")
        if per_chat_burst < 1:
            raise ValueError("per_chat_burst must be at least 1")
        self._bot = bot
        self._clock = clock or time.monotonic
        self._per_chat_rate = per_chat_rate
        self._per_chat_burst = per_chat_burst
        self._group_rate = group_rate
        self._on_blocked = on_blocked
        self._max_in_flight = max_in_flight or max(1, min(16, math.ceil(global_rate / 2)))
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        # submit() never refuses; these bound what wait_for_room() / deliver_all() let in
        self._queue_limits = {Priority.CARD: 1000, Priority.BROADCAST: 100, **(queue_limits or {})}

        now = self._clock()
        self._global = _Bucket(global_rate, max(1.0, global_burst or global_rate), now)
        self._global_paused_until = 0.0
        self._chats: dict[int, _Chat] = {}
        self._heaps: list[list[tuple[float, int, int]]] = [[] for _ in Priority]
        self._pending: dict[tuple[int, str], _Item] = {}  # coalesce key -> queued item
        self._depth = [0] * len(Priority)
        self._seq = itertools.count()
        self._recent_floods: deque[tuple[float, int]] = deque()
        self._room_waiters: list[tuple[Priority, asyncio.Future[None]]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._completions = 0

        self._wake_event = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False
        self.metrics = OutboxMetrics()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, bot: Bot | None = None) -> None:
        """Start sending, through `bot` (the application's, known once it is built) or the one given at
        construction."""
        if bot is not None:
            self._bot = bot
        if self._bot is None:
            raise ValueError("an Outbox needs a bot to send through")
        if self._dispatcher is not None:
            return
        self._closed = False
        self._dispatcher = asyncio.create_task(self._dispatch(), name="outbox-dispatcher")

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stops taking calls, sends what it can within `drain_timeout`, then cancels the rest
        (their futures fail with reason "stopped")."""
        self._closed = True
        if self._dispatcher is not None and not self._dispatcher.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
        tasks = [t for t in (self._dispatcher, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = None
        for chat in list(self._chats.values()):
            self._fail_queued(chat, DeliveryFailed("stopped", chat_id=chat.chat_id))
        for _, waiter in self._room_waiters:
            if not waiter.done():
                waiter.set_exception(DeliveryFailed("stopped"))
        self._room_waiters.clear()
        if self._side_tasks:
            # give on_blocked callbacks a bounded moment to finish, as the calls had
            _, late = await asyncio.wait(set(self._side_tasks), timeout=max(drain_timeout, 0.1))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until nothing is queued or in flight (tests, and a clean shutdown)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def wake(self) -> None:
        """Makes the dispatcher re-read the clock now (tests that move a fake clock)."""
        self._wake_event.set()

    # ------------------------------------------------------------------ submitting

    def submit(self, call: OutboxCall) -> asyncio.Future[Any]:
        """Queues `call`; the future resolves to the Bot method's result or raises
        DeliveryFailed. Awaiting it is optional: failures of unawaited futures are logged.
        A call whose `coalesce_key` matches a queued call of the same chat replaces that call's
        content in its place in the queue (and priority); both futures get the one result."""
        if INVOKE not in call.kwargs and not callable(getattr(self._bot, call.method, None)):
            raise ValueError(f"the bot has no method {call.method!r}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(functools.partial(_log_outcome, call))
        if self._closed:
            future.set_exception(DeliveryFailed("stopped", chat_id=call.chat_id))
            return future
        priority = Priority(call.priority)
        key = (call.chat_id, call.coalesce_key) if call.coalesce_key is not None else None
        queued = self._pending.get(key) if key is not None else None
        if queued is not None:
            # newest content wins; the caller of the replaced edit gets the same result
            queued.call = call
            queued.futures.append(future)
            self.metrics.coalesced += 1
            return future
        item = _Item(call, [future], self._clock(), next(self._seq))
        chat = self._chat(call.chat_id)
        chat.queues[priority].append(item)
        self._depth[priority] += 1
        if key is not None:
            self._pending[key] = item
        self._schedule(chat, priority)
        self._idle.clear()
        self._wake_event.set()
        return future

    def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        priority: Priority,
        reply_markup: ReplyMarkup | None = None,
        coalesce_key: str | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        return self.submit(
            OutboxCall("send_message", chat_id, priority, {"text": text, "reply_markup": reply_markup, **kwargs},
                       coalesce_key)
        )

    def edit_message_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        priority: Priority,
        reply_markup: ReplyMarkup | None = None,
        coalesce_key: str | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        """Resolves to the edited Message, or True when Telegram says "message is not modified"."""
        return self.submit(
            OutboxCall(
                "edit_message_text", chat_id, priority,
                {"message_id": message_id, "text": text, "reply_markup": reply_markup, **kwargs}, coalesce_key,
            )
        )

    def edit_message_reply_markup(
        self,
        chat_id: int,
        message_id: int,
        reply_markup: ReplyMarkup | None = None,
        *,
        priority: Priority,
        coalesce_key: str | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        return self.submit(
            OutboxCall(
                "edit_message_reply_markup", chat_id, priority,
                {"message_id": message_id, "reply_markup": reply_markup, **kwargs}, coalesce_key,
            )
        )

    def delete_message(
        self, chat_id: int, message_id: int, *, priority: Priority, **kwargs: Any
    ) -> asyncio.Future[Any]:
        return self.submit(OutboxCall("delete_message", chat_id, priority, {"message_id": message_id, **kwargs}))

    def send_photo(
        self,
        chat_id: int,
        photo_bytes: bytes,
        caption: str | None = None,
        *,
        priority: Priority,
        reply_markup: ReplyMarkup | None = None,
        coalesce_key: str | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        return self.submit(
            OutboxCall(
                "send_photo", chat_id, priority,
                {"photo": photo_bytes, "caption": caption, "reply_markup": reply_markup, **kwargs}, coalesce_key,
            )
        )

    def copy_message(
        self,
        chat_id: int,
        from_chat_id: int,
        message_id: int,
        *,
        priority: Priority,
        reply_markup: ReplyMarkup | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        return self.submit(
            OutboxCall(
                "copy_message", chat_id, priority,
                {"from_chat_id": from_chat_id, "message_id": message_id, "reply_markup": reply_markup, **kwargs},
            )
        )

    async def wait_for_room(self, priority: Priority = Priority.BROADCAST) -> None:
        """Waits until fewer than the queue limit of `priority` calls are queued, so a producer
        of many low-priority calls (a broadcast) keeps memory bounded."""
        limit = self._queue_limits.get(priority)
        while limit is not None and self._depth[priority] >= limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room_waiters.append((priority, waiter))
            await waiter

    async def deliver_all(
        self, calls: Iterable[OutboxCall] | AsyncIterable[OutboxCall], *, window: int | None = None
    ) -> AsyncIterator[Delivery]:
        """Pulls calls lazily (at most `window` outstanding) and yields each outcome as it
        completes: the broadcast job's way to send to everyone without queuing everyone."""
        window = window or self._queue_limits.get(Priority.BROADCAST, 100)
        outstanding: dict[asyncio.Future[Any], OutboxCall] = {}
        source = _aiter(calls)
        exhausted = False
        while outstanding or not exhausted:
            while not exhausted and len(outstanding) < window:
                try:
                    call = await anext(source)
                except StopAsyncIteration:
                    exhausted = True
                    break
                outstanding[self.submit(call)] = call
            if not outstanding:
                break
            done, _ = await asyncio.wait(outstanding, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                call = outstanding.pop(future)
                if future.cancelled():
                    yield Delivery(call, error=DeliveryFailed("cancelled", chat_id=call.chat_id))
                elif (error := future.exception()) is not None:
                    yield Delivery(call, error=error)
                else:
                    yield Delivery(call, result=future.result())

    # ------------------------------------------------------------------ shared budget

    def set_global_rate(self, rate: float) -> None:
        """This instance's share of the bot's budget (several instances divide Telegram's ~30/s between them)."""
        if rate <= 0:
            raise ValueError("rates must be positive (messages per second)")
        now = self._clock()
        self._global.take(now)  # bring the bucket up to now at the old rate, then give the token back
        self._global.tokens += 1
        self._global.rate = rate
        self._global.burst = 1.0  # shared: no burst above the share, or the instances together would pass it
        self._global.tokens = min(self._global.tokens, self._global.burst)
        self.wake()

    @property
    def global_rate(self) -> float:
        return self._global.rate

    # ------------------------------------------------------------------ introspection

    def queue_depth(self) -> dict[Priority, int]:
        return {p: self._depth[p] for p in Priority}

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # ------------------------------------------------------------------ dispatcher

    def _chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            # negative ids are groups and channels: Telegram allows them 20 messages a minute
            rate = self._per_chat_rate if chat_id > 0 else min(self._per_chat_rate, self._group_rate)
            chat = self._chats[chat_id] = _Chat(chat_id, _Bucket(rate, self._per_chat_burst, self._clock()))
        return chat

    def _schedule(self, chat: _Chat, priority: int) -> None:
        if chat.busy or not chat.queues[priority]:
            return
        at = chat.ready_at(priority)
        entered = chat.scheduled.get(priority)
        if entered is not None and entered <= at:
            return  # the live entry is early enough; _pick re-checks it when it comes up
        # an older, later entry becomes stale: _pick drops entries that do not match
        chat.scheduled[priority] = at
        heapq.heappush(self._heaps[priority], (at, chat.queues[priority][0].seq, chat.chat_id))

    def _pick(self, now: float) -> tuple[_Chat, int] | float | None:
        """The chat and priority to send next, else the earliest time one becomes ready
        (None when nothing is queued)."""
        earliest: float | None = None
        for priority, heap in enumerate(self._heaps):
            while heap:
                at, _, chat_id = heap[0]
                chat = self._chats.get(chat_id)
                if chat is None or chat.scheduled.get(priority) != at:
                    heapq.heappop(heap)  # stale: the chat was forgotten or re-entered
                    continue
                if chat.busy or not chat.queues[priority]:
                    heapq.heappop(heap)
                    del chat.scheduled[priority]
                    continue
                actual = chat.ready_at(priority)
                if actual > at:
                    # the chat got paused or spent its tokens since this entry was made
                    chat.scheduled[priority] = actual
                    heapq.heapreplace(heap, (actual, chat.queues[priority][0].seq, chat_id))
                    continue
                if at <= now:
                    heapq.heappop(heap)
                    del chat.scheduled[priority]
                    return chat, priority
                earliest = at if earliest is None else min(earliest, at)
                break
        return earliest

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake_event.clear()
            now = self._clock()
            wake_at: float | None = None
            if len(self._in_flight) < self._max_in_flight:
                global_ready = max(self._global_paused_until, self._global.ready_at())
                if global_ready > now:
                    wake_at = global_ready if any(self._depth) else None
                else:
                    picked = self._pick(now)
                    if isinstance(picked, tuple):
                        self._launch(*picked, now)
                        continue
                    wake_at = picked
            if wake_at is None:
                await self._wake_event.wait()
                continue
            timer = loop.call_later(max(0.0, wake_at - now), self._wake_event.set)
            try:
                await self._wake_event.wait()
            finally:
                timer.cancel()

    def _launch(self, chat: _Chat, priority: int, now: float) -> None:
        item = chat.queues[priority].popleft()
        self._dequeued(item, priority)
        if item.abandoned():
            self._schedule(chat, priority)
            self._update_idle()
            return
        chat.busy = True
        chat.bucket.take(now)
        self._global.take(now)
        task = asyncio.create_task(self._deliver(chat, priority, item))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _dequeued(self, item: _Item, priority: int) -> None:
        self._depth[priority] -= 1
        key = item.key
        if key is not None and self._pending.get(key) is item:
            del self._pending[key]
        if self._room_waiters:
            still = []
            for wanted, waiter in self._room_waiters:
                limit = self._queue_limits.get(wanted)
                if waiter.done():
                    continue
                if limit is None or self._depth[wanted] < limit:
                    waiter.set_result(None)
                else:
                    still.append((wanted, waiter))
            self._room_waiters = still

    async def _deliver(self, chat: _Chat, priority: int, item: _Item) -> None:
        item.attempts += 1
        call = item.call
        DELIVERING.set(True)  # calls made from here go straight to Telegram (see OutboxRateLimiter)
        try:
            invoke = call.kwargs.get(INVOKE)
            if invoke is not None:
                result = await invoke()
            else:
                result = await getattr(self._bot, call.method)(chat_id=call.chat_id, **call.kwargs)
        except asyncio.CancelledError:
            self._resolve(item, error=DeliveryFailed("stopped", chat_id=call.chat_id))
            raise
        except RetryAfter as error:
            self._flood(chat, priority, item, error)
        except Forbidden as error:
            self._blocked(chat, item, error)
        except BadRequest as error:
            if NOT_MODIFIED in str(error).lower():
                self._resolve(item, result=True)
            else:
                self._resolve(item, error=DeliveryFailed("bad_request", error, chat_id=call.chat_id))
        except NetworkError as error:  # TimedOut included; BadRequest handled above
            self._network_error(chat, priority, item, error)
        except ChatMigrated as error:
            self._resolve(item, error=DeliveryFailed("chat_migrated", error, chat_id=call.chat_id))
        except TelegramError as error:  # InvalidToken, EndPointNotFound, Conflict, ...
            self._resolve(item, error=DeliveryFailed("refused", error, chat_id=call.chat_id))
        except Exception as error:
            logger.exception("outbox: %s to chat %s raised", call.method, call.chat_id)
            self._resolve(item, error=DeliveryFailed("error", error, chat_id=call.chat_id))
        else:
            self._resolve(item, result=result)
        finally:
            # leave the in-flight set now, not in a done-callback: the dispatcher woken below
            # runs before such a callback and would still see this call occupying a slot
            current = asyncio.current_task()
            if current is not None:
                self._in_flight.discard(current)
            chat.busy = False
            for p in range(len(Priority)):
                self._schedule(chat, p)
            self._completions += 1
            if self._completions % 1024 == 0:
                self._forget_idle_chats()
            self._update_idle()
            self._wake_event.set()

    def _resolve(self, item: _Item, *, result: Any = None, error: BaseException | None = None) -> None:
        if error is None:
            self.metrics.sent += 1
            latency = self._clock() - item.enqueued_at
            self.metrics.last_latencies.append(latency)
            self.metrics.latencies[Priority(item.call.priority)].append(latency)
        else:
            self.metrics.failed += 1
        for future in item.futures:
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _requeue(self, chat: _Chat, priority: int, item: _Item) -> None:
        """Puts a call that must be tried again back at the front of its chat's queue, unless a
        newer edit with the same key is waiting: then that one carries the caller's future."""
        self.metrics.retried += 1
        key = item.key
        newer = self._pending.get(key) if key is not None else None
        if newer is not None:
            newer.futures.extend(item.futures)
            self.metrics.coalesced += 1
            return
        if item.abandoned():
            return
        chat.queues[priority].appendleft(item)
        self._depth[priority] += 1
        if key is not None:
            self._pending[key] = item

    def _flood(self, chat: _Chat, priority: int, item: _Item, error: RetryAfter) -> None:
        now = self._clock()
        wait = _seconds(error)
        self.metrics.rate_limited += 1
        # a 429 is not the call's fault: retry it without spending an attempt
        item.attempts -= 1
        chat.paused_until = max(chat.paused_until, now + wait)
        chat.bucket.restart(chat.paused_until)
        # Telegram does not say whether a chat or the bot was limited: several chats limited
        # within a second means the bot was
        self._recent_floods.append((now, chat.chat_id))
        while self._recent_floods and self._recent_floods[0][0] < now - FLOOD_WINDOW_S:
            self._recent_floods.popleft()
        if len({chat_id for _, chat_id in self._recent_floods}) > 1:
            self._global_paused_until = max(self._global_paused_until, now + wait)
            self._global.restart(self._global_paused_until)
        logger.warning("outbox: 429 for chat %s, pausing %.0f s", chat.chat_id, wait)
        self._requeue(chat, priority, item)

    def _network_error(self, chat: _Chat, priority: int, item: _Item, error: NetworkError) -> None:
        # exit signals and sell results are never dropped; everything else gives up eventually
        if item.call.priority != Priority.URGENT and item.attempts >= self._max_attempts:
            self._resolve(item, error=DeliveryFailed("network", error, chat_id=item.call.chat_id))
            return
        delay = min(self._max_retry_delay, self._retry_delay * 2 ** (item.attempts - 1))
        item.not_before = self._clock() + delay
        logger.info(
            "outbox: %s to chat %s failed (%s), retry %d in %.1f s",
            item.call.method, item.call.chat_id, error, item.attempts, delay,
        )
        self._requeue(chat, priority, item)

    def _blocked(self, chat: _Chat, item: _Item, error: Forbidden) -> None:
        failure = DeliveryFailed("blocked", error, chat_id=chat.chat_id)
        self.metrics.blocked += 1
        self._resolve(item, error=failure)
        # the user is gone: what is queued for them fails now instead of costing calls
        self._fail_queued(chat, failure)
        if self._on_blocked is None:
            return
        try:
            outcome = self._on_blocked(chat.chat_id)
        except Exception:
            logger.exception("outbox: on_blocked(%s) raised", chat.chat_id)
            return
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._side_tasks.add(task)
            task.add_done_callback(self._side_task_done)

    def _side_task_done(self, task: asyncio.Task[Any]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("outbox: on_blocked callback failed", exc_info=task.exception())

    def _fail_queued(self, chat: _Chat, failure: DeliveryFailed) -> None:
        for priority, queue in enumerate(chat.queues):
            while queue:
                item = queue.popleft()
                self._dequeued(item, priority)
                self._resolve(item, error=failure)
        self._update_idle()

    def _forget_idle_chats(self) -> None:
        # bounded memory: a chat with nothing queued, no pause and a full bucket has no state
        now = self._clock()
        for chat_id, chat in list(self._chats.items()):
            if not chat.busy and chat.empty() and chat.paused_until <= now and chat.bucket.is_full(now):
                del self._chats[chat_id]

    def _update_idle(self) -> None:
        if not any(self._depth) and not self._in_flight:
            self._idle.set()
        else:
            self._idle.clear()


def _seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        # PTB 22 warns that retry_after will become a timedelta; accept both
        warnings.simplefilter("ignore")
        value = error.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _log_outcome(call: OutboxCall, future: asyncio.Future[Any]) -> None:
    # retrieving the exception here keeps fire-and-forget calls from logging
    # "Future exception was never retrieved"
    if future.cancelled():
        return
    error = future.exception()
    if error is None:
        return
    reason = error.reason if isinstance(error, DeliveryFailed) else type(error).__name__
    logger.warning("outbox: %s to chat %s failed: %s", call.method, call.chat_id, reason)


async def _aiter(calls: Iterable[OutboxCall] | AsyncIterable[OutboxCall]) -> AsyncIterator[OutboxCall]:
    if isinstance(calls, AsyncIterable):
        async for call in calls:
            yield call
    else:
        for call in calls:
            yield call
