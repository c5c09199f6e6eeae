"""The outbox's scheduling with a recording bot whose calls the test releases by hand."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from telegram.error import Forbidden, TimedOut

from bot.notify.outbox import DeliveryFailed, Outbox, OutboxCall, Priority

pytestmark = pytest.mark.timeout(20)


class RecordingBot:
    """Records calls; a chat listed in `hold` waits until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.hold: dict[int, asyncio.Event] = {}
        self.failures: dict[int, list[BaseException]] = defaultdict(list)
        self.running = 0
        self.most_running = 0

    async def send_message(self, chat_id: int, text: str, **_: Any) -> str:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0)
            if chat_id in self.hold:
                await self.hold[chat_id].wait()
            if self.failures[chat_id]:
                raise self.failures[chat_id].pop(0)
            self.calls.append((chat_id, text))
            return text
        finally:
            self.running -= 1


def fast_outbox(bot: RecordingBot, **options: Any) -> Outbox:
    # pacing is covered against the sandbox server; here it only must not get in the way
    return Outbox(bot, global_rate=10_000, per_chat_rate=10_000, per_chat_burst=100, **options)


async def test_a_slow_chat_does_not_stall_the_others() -> None:
    bot = RecordingBot()
    bot.hold[1] = asyncio.Event()
    outbox = fast_outbox(bot)
    await outbox.start()
    try:
        stuck = outbox.send_message(1, "slow", priority=Priority.URGENT)
        others = [outbox.send_message(2, f"m{i}", priority=Priority.ALERT) for i in range(5)]
        assert await asyncio.gather(*others) == [f"m{i}" for i in range(5)]
        assert not stuck.done()
        bot.hold[1].set()
        assert await stuck == "slow"
    finally:
        await outbox.stop()


async def test_one_call_in_flight_per_chat_keeps_order_and_concurrency_is_bounded() -> None:
    bot = RecordingBot()
    outbox = fast_outbox(bot, max_in_flight=4)
    await outbox.start()
    try:
        futures = [outbox.send_message(chat, f"{chat}:{i}", priority=Priority.ALERT)
                   for i in range(10) for chat in range(1, 21)]
        await asyncio.gather(*futures)
    finally:
        await outbox.stop()
    for chat in range(1, 21):
        assert [text for c, text in bot.calls if c == chat] == [f"{chat}:{i}" for i in range(10)]
    assert 1 < bot.most_running <= 4


async def test_stop_drains_what_it_can_then_fails_the_rest() -> None:
    bot = RecordingBot()
    outbox = fast_outbox(bot)
    await outbox.start()
    sent = [outbox.send_message(3, f"m{i}", priority=Priority.ALERT) for i in range(10)]
    await outbox.stop(drain_timeout=5)
    assert [f.result() for f in sent] == [f"m{i}" for i in range(10)]

    bot.hold[4] = asyncio.Event()
    outbox = fast_outbox(bot)
    await outbox.start()
    in_flight = outbox.send_message(4, "held", priority=Priority.URGENT)
    queued = outbox.send_message(4, "behind it", priority=Priority.URGENT)
    await asyncio.sleep(0)
    await outbox.stop(drain_timeout=0)
    for future in (in_flight, queued):
        with pytest.raises(DeliveryFailed) as failed:
            future.result()
        assert failed.value.reason == "stopped"
    late = outbox.send_message(4, "after stop", priority=Priority.URGENT)
    with pytest.raises(DeliveryFailed):
        await late


async def test_wait_for_room_bounds_the_broadcast_queue() -> None:
    bot = RecordingBot()
    bot.hold[5] = asyncio.Event()
    outbox = fast_outbox(bot, queue_limits={Priority.BROADCAST: 2})
    await outbox.start()
    try:
        first = outbox.send_message(5, "b0", priority=Priority.BROADCAST)
        await asyncio.sleep(0)  # b0 goes in flight
        rest = [outbox.send_message(5, f"b{i}", priority=Priority.BROADCAST) for i in (1, 2)]
        room = asyncio.ensure_future(outbox.wait_for_room(Priority.BROADCAST))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not room.done() and outbox.queue_depth()[Priority.BROADCAST] == 2
        bot.hold[5].set()
        await room
        await asyncio.gather(first, *rest)
    finally:
        await outbox.stop()


async def test_timeouts_are_retried_and_forbidden_reports_blocked() -> None:
    bot = RecordingBot()
    blocked: list[int] = []
    outbox = fast_outbox(bot, retry_delay=0.001, on_blocked=blocked.append)
    await outbox.start()
    try:
        bot.failures[6] = [TimedOut(), TimedOut()]
        assert await outbox.send_message(6, "sold", priority=Priority.URGENT) == "sold"
        assert outbox.metrics.retried == 2

        bot.failures[7] = [Forbidden("Forbidden: bot was blocked by the user")]
        with pytest.raises(DeliveryFailed) as failed:
            await outbox.send_message(7, "exit", priority=Priority.URGENT)
        assert failed.value.reason == "blocked" and failed.value.chat_id == 7
        assert blocked == [7]
    finally:
        await outbox.stop()


async def test_a_cancelled_call_is_not_sent() -> None:
    bot = RecordingBot()
    bot.hold[8] = asyncio.Event()
    outbox = fast_outbox(bot)
    await outbox.start()
    try:
        first = outbox.send_message(8, "first", priority=Priority.ALERT)
        await asyncio.sleep(0)
        unwanted = outbox.send_message(8, "unwanted", priority=Priority.ALERT)
        unwanted.cancel()
        last = outbox.send_message(8, "last", priority=Priority.ALERT)
        bot.hold[8].set()
        await asyncio.gather(first, last)
    finally:
        await outbox.stop()
    assert bot.calls == [(8, "first"), (8, "last")]


async def test_an_unknown_method_is_refused_at_once() -> None:

    outbox = fast_outbox(RecordingBot())
    with pytest.raises(ValueError, match="no method"):
        outbox.submit(OutboxCall("send_carrier_pigeon", 1, Priority.ALERT))


async def test_rates_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Outbox(RecordingBot(), global_rate=0)


async def test_an_instance_share_of_the_budget_changes_the_pace_not_the_messages() -> None:

    outbox = Outbox(object(), global_rate=25.0)
    outbox.set_global_rate(25.0 / 3)
    assert abs(outbox.global_rate - 25.0 / 3) < 1e-9
    with pytest.raises(ValueError, match="positive"):
        outbox.set_global_rate(0)
