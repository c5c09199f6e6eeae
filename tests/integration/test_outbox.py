"""The outbox against the sandbox Telegram Bot API server, through a real `telegram.Bot`.

Where timing matters the outbox reads the sandbox's clock (`clock=tg.now`), so a test moves both
with `tg.advance_clock()` + `outbox.wake()` instead of sleeping through a `retry_after`.
"""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.request import HTTPXRequest

from bot.notify.outbox import DeliveryFailed, Outbox, OutboxCall, Priority
from sandbox.telegram import SandboxTelegram

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def telegram(**limits: Any) -> AsyncIterator[tuple[SandboxTelegram, Bot]]:
    tg = SandboxTelegram(**limits)
    await tg.start()
    # PTB's default pool is one connection: the outbox runs several calls at once
    bot = Bot(tg.token, base_url=f"{tg.url}/bot", request=HTTPXRequest(connection_pool_size=32))
    try:
        async with bot:
            yield tg, bot
    finally:
        await tg.stop()


@asynccontextmanager
async def running(outbox: Outbox) -> AsyncIterator[Outbox]:
    await outbox.start()
    try:
        yield outbox
    finally:
        await outbox.stop(drain_timeout=0)


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Waits for a condition on the outbox's counters (they change on the event loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.002)


class ReadClock:
    """The sandbox's clock, counting its reads: the dispatcher reads it at the start of every round, so
    a read after a change proves the dispatcher has looked at that change and decided (synchronously)."""

    def __init__(self, tg: SandboxTelegram) -> None:
        self.tg = tg
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.tg.now()


async def dispatcher_looked(outbox: Outbox, clock: ReadClock) -> None:
    """Returns once the dispatcher has run a round after this call with nothing in flight: whatever it
    would send by now is launched (and counted in `in_flight`) by then."""
    await until(lambda: outbox.in_flight == 0)
    seen = clock.reads
    outbox.wake()
    await until(lambda: clock.reads > seen)


def texts(tg: SandboxTelegram, chat_id: int) -> list[str]:
    return [m["text"] for m in tg.bot_messages(chat_id)]


async def test_urgent_goes_before_a_backlog_of_broadcasts() -> None:
    async with telegram(per_chat_rate=None, global_rate=None) as (tg, bot):
        users = [tg.add_user(f"u{i}")[0] for i in range(20)]
        trader = users[0]
        async with running(Outbox(bot, global_rate=100, per_chat_rate=100, per_chat_burst=3, clock=tg.now)) as outbox:
            backlog = [
                outbox.send_message(users[i % 20], f"news {i}", priority=Priority.BROADCAST) for i in range(200)
            ]
            exit_signal = outbox.send_message(trader, "EXIT: target profit hit", priority=Priority.URGENT)
            message = await exit_signal
            assert isinstance(message, Message)
            # the exit signal overtook almost the whole backlog, its own chat's included
            assert outbox.queue_depth()[Priority.BROADCAST] > 150
            assert texts(tg, trader).index("EXIT: target profit hit") <= 1
            assert outbox.metrics.latencies[Priority.URGENT][-1] < 0.5
            # and the backlog still goes out, in order per chat
            await asyncio.gather(*backlog)
            assert texts(tg, users[3]) == [f"news {i}" for i in range(3, 200, 20)]
            assert outbox.metrics.sent == 201


async def test_pacing_stays_under_the_servers_flood_limits() -> None:
    # The server allows 50/s per chat (burst 5) and 250/s overall (burst 30): scaled-up
    # Telegram limits so the test is quick. The outbox is configured below both.
    async with telegram(per_chat_rate=50, per_chat_burst=5, global_rate=250, global_burst=30) as (tg, bot):
        # half the server's rates: arrival jitter on a loaded machine must not bunch calls past its buckets
        outbox = Outbox(bot, global_rate=125, global_burst=15, per_chat_rate=25, per_chat_burst=3, clock=tg.now)
        async with running(outbox):
            one_chat = tg.add_user("busy")[0]
            results = await asyncio.gather(
                *(outbox.send_message(one_chat, f"tick {i}", priority=Priority.ALERT) for i in range(60))
            )
            assert all(isinstance(r, Message) for r in results)
            assert texts(tg, one_chat) == [f"tick {i}" for i in range(60)]

            many = [tg.add_user(f"u{i}")[0] for i in range(30)]
            await asyncio.gather(
                *(outbox.send_message(many[i % 30], f"alert {i}", priority=Priority.ALERT) for i in range(300))
            )
        assert tg.stats()["http_429"] == 0
        assert outbox.metrics.rate_limited == 0
        assert outbox.metrics.sent == 360
        assert all(len(tg.bot_messages(chat)) == 10 for chat in many)


async def test_card_edits_coalesce_to_the_newest_content() -> None:
    async with telegram() as (tg, bot):
        chat = tg.add_user("trader")[0]
        outbox = Outbox(bot, per_chat_rate=1, per_chat_burst=1, clock=tg.now)
        async with running(outbox):
            card = await outbox.send_message(chat, "PnL +0%", priority=Priority.CARD)
            # the chat spent its only token: the edits wait for the next one and coalesce
            keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Sell", callback_data="s1")]])
            edits = []
            for pct in range(1, 21):
                edits.append(
                    outbox.edit_message_text(
                        chat, card.message_id, f"PnL +{pct}%", priority=Priority.CARD,
                        reply_markup=keyboard, coalesce_key=f"card:{card.message_id}",
                    )
                )
                await asyncio.sleep(0)
            assert outbox.queue_depth()[Priority.CARD] == 1
            tg.advance_clock(1.0)
            outbox.wake()
            results = await asyncio.gather(*edits)
        assert all(r.text == "PnL +20%" for r in results)
        assert tg.stats()["calls"]["editMessageText"] == 1
        assert outbox.metrics.coalesced == 19
        [shown] = tg.bot_messages(chat)
        assert shown["text"] == "PnL +20%" and shown["edits"] == 1
        assert shown["buttons"] == [[{"text": "Sell", "data": "s1"}]]


async def test_a_429_pauses_that_chat_and_the_message_still_arrives() -> None:
    async with telegram() as (tg, bot):
        limited, other = tg.add_user("a")[0], tg.add_user("b")[0]
        async with running(Outbox(bot, clock=tg.now)) as outbox:
            tg.inject_fault("sendMessage", 429, retry_after=4)
            exit_signal = outbox.send_message(limited, "EXIT now", priority=Priority.URGENT)
            await until(lambda: outbox.metrics.rate_limited == 1)
            # only that chat waits: another chat goes through at once
            await outbox.send_message(other, "hello", priority=Priority.ALERT)
            assert not exit_signal.done() and texts(tg, limited) == []

            tg.advance_clock(3.0)
            outbox.wake()
            await until(lambda: outbox.in_flight == 0)
            assert not exit_signal.done()
            tg.advance_clock(1.0)
            outbox.wake()
            assert (await exit_signal).text == "EXIT now"
        assert texts(tg, limited) == ["EXIT now"]
        assert outbox.metrics.latencies[Priority.URGENT][-1] >= 4.0
        assert outbox.metrics.failed == 0


async def test_429s_from_several_chats_pause_the_whole_bot() -> None:
    async with telegram() as (tg, bot):
        a, b, c = (tg.add_user(name)[0] for name in "abc")
        clock = ReadClock(tg)
        async with running(Outbox(bot, clock=clock)) as outbox:
            tg.inject_fault("sendMessage", 429, retry_after=2, count=2)
            first = [outbox.send_message(chat, "m", priority=Priority.URGENT) for chat in (a, b)]
            await until(lambda: outbox.metrics.rate_limited == 2)
            late = outbox.send_message(c, "m", priority=Priority.URGENT)
            await dispatcher_looked(outbox, clock)  # it has seen the new message: it must hold it back
            assert outbox.in_flight == 0 and not late.done()
            assert tg.stats()["calls"]["sendMessage"] == 2
            tg.advance_clock(2.0)
            outbox.wake()
            await asyncio.gather(*first, late)
        assert [texts(tg, chat) for chat in (a, b, c)] == [["m"], ["m"], ["m"]]


async def test_blocked_user_calls_on_blocked_and_later_messages_go_through() -> None:
    blocked: list[int] = []

    async def on_blocked(chat_id: int) -> None:
        blocked.append(chat_id)

    async with telegram() as (tg, bot):
        chat = tg.add_user("leaver")[0]
        async with running(Outbox(bot, on_blocked=on_blocked, clock=tg.now)) as outbox:
            tg.block(chat)
            queued = [
                outbox.send_message(chat, "EXIT", priority=Priority.URGENT),
                outbox.send_message(chat, "liquidity draining", priority=Priority.ALERT),
                outbox.send_message(chat, "card", priority=Priority.CARD),
            ]
            outcomes = await asyncio.gather(*queued, return_exceptions=True)
            assert all(isinstance(o, DeliveryFailed) and o.reason == "blocked" for o in outcomes)
            await until(lambda: blocked == [chat])
            # the queued ones were dropped without costing a call
            assert tg.stats()["calls"]["sendMessage"] == 1
            assert outbox.metrics.failed == 3 and outbox.queue_depth()[Priority.ALERT] == 0

            tg.unblock(chat)
            tg.advance_clock(5.0)
            again = await outbox.send_message(chat, "EXIT after unblock", priority=Priority.URGENT)
            assert again.text == "EXIT after unblock"
        assert texts(tg, chat) == ["EXIT after unblock"]
        assert blocked == [chat]


async def test_message_not_modified_is_a_success() -> None:
    async with telegram() as (tg, bot):
        chat = tg.add_user("trader")[0]
        async with running(Outbox(bot, clock=tg.now)) as outbox:
            card = await outbox.send_message(chat, "PnL +5%", priority=Priority.CARD)
            same = await outbox.edit_message_text(chat, card.message_id, "PnL +5%", priority=Priority.CARD)
            assert same is True
            changed = await outbox.edit_message_text(chat, card.message_id, "PnL +6%", priority=Priority.CARD)
            assert changed.text == "PnL +6%"
        assert outbox.metrics.failed == 0 and outbox.metrics.retried == 0


async def test_network_errors_are_retried_with_growing_backoff() -> None:
    async with telegram() as (tg, bot):
        chat = tg.add_user("trader")[0]
        clock = ReadClock(tg)
        async with running(Outbox(bot, retry_delay=1.0, clock=clock)) as outbox:
            tg.inject_fault("sendMessage", 502, count=2)
            sent = outbox.send_message(chat, "sold: +42%", priority=Priority.URGENT)
            await until(lambda: outbox.metrics.retried == 1)
            tg.advance_clock(1.0)  # first backoff: 1 s
            outbox.wake()
            await until(lambda: outbox.metrics.retried == 2)
            tg.advance_clock(1.0)  # second backoff is 2 s: not yet
            await dispatcher_looked(outbox, clock)
            assert outbox.in_flight == 0 and not sent.done()
            tg.advance_clock(1.0)
            outbox.wake()
            assert (await sent).text == "sold: +42%"
        assert tg.stats()["calls"]["sendMessage"] == 3
        assert texts(tg, chat) == ["sold: +42%"]


async def test_low_priority_gives_up_but_urgent_never_does() -> None:
    async with telegram(per_chat_rate=None, global_rate=None) as (tg, bot):
        chat = tg.add_user("trader")[0]
        # pacing is not under test here: the server has no flood limits, the outbox a high rate
        outbox = Outbox(bot, per_chat_rate=1000, max_attempts=3, retry_delay=0.001, max_retry_delay=0.002)
        async with running(outbox):
            tg.inject_fault("sendMessage", 500, count=3)
            with pytest.raises(DeliveryFailed) as failed:
                await outbox.send_message(chat, "weekly news", priority=Priority.BROADCAST)
            assert failed.value.reason == "network"

            tg.inject_fault("sendMessage", 503, count=6)
            exit_signal = await outbox.send_message(chat, "EXIT", priority=Priority.URGENT)
            assert exit_signal.text == "EXIT"
        assert tg.stats()["calls"]["sendMessage"] == 3 + 7
        assert texts(tg, chat) == ["EXIT"]


async def test_permanent_errors_fail_at_once() -> None:
    async with telegram() as (tg, bot):
        chat = tg.add_user("trader")[0]
        async with running(Outbox(bot, clock=tg.now)) as outbox:
            with pytest.raises(DeliveryFailed) as bad_html:
                await outbox.send_message(chat, "<b>unclosed", priority=Priority.URGENT, parse_mode="HTML")
            assert bad_html.value.reason == "bad_request"
            with pytest.raises(DeliveryFailed) as no_chat:
                await outbox.send_message(123456, "hi", priority=Priority.ALERT)
            assert "chat not found" in str(no_chat.value).lower()
        assert outbox.metrics.retried == 0 and outbox.metrics.failed == 2


async def test_fire_and_forget_failures_are_logged_not_left_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        async with telegram() as (tg, bot):
            async with running(Outbox(bot, clock=tg.now)) as outbox:
                outbox.send_message(999, "to nobody", priority=Priority.ALERT)
                await until(lambda: outbox.metrics.failed == 1)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert unretrieved == []
    assert any("send_message to chat 999 failed" in r.getMessage() for r in caplog.records)


async def test_photos_copies_markup_edits_and_deletes_go_through() -> None:


    image = io.BytesIO()
    Image.new("RGB", (64, 32), "green").save(image, format="PNG")
    async with telegram() as (tg, bot):
        chat, other = tg.add_user("trader")[0], tg.add_user("friend")[0]
        async with running(Outbox(bot, per_chat_burst=4, clock=tg.now)) as outbox:
            photo = await outbox.send_photo(chat, image.getvalue(), "PnL card", priority=Priority.URGENT)
            assert photo.photo and photo.caption == "PnL card"
            copied = await outbox.copy_message(other, chat, photo.message_id, priority=Priority.BROADCAST)
            assert copied.message_id == 1
            keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Sell", callback_data="x")]])
            text = await outbox.send_message(chat, "position", priority=Priority.ALERT)
            edited = await outbox.edit_message_reply_markup(
                chat, text.message_id, keyboard, priority=Priority.CARD
            )
            assert edited.reply_markup == keyboard
            assert await outbox.delete_message(chat, photo.message_id, priority=Priority.CARD) is True
        assert tg.bot_messages(other)[0]["photo"] is True
        assert [m["deleted"] for m in tg.bot_messages(chat)] == [True, False]


async def test_deliver_all_keeps_a_bounded_window() -> None:
    async with telegram(per_chat_rate=None, global_rate=None) as (tg, bot):
        users = [tg.add_user(f"u{i}")[0] for i in range(40)]
        async with running(Outbox(bot, global_rate=1000, per_chat_rate=100)) as outbox:
            pulled = 0
            most_queued = 0

            def calls() -> Any:
                nonlocal pulled, most_queued
                for user in users:
                    pulled += 1
                    most_queued = max(most_queued, outbox.queue_depth()[Priority.BROADCAST])
                    yield OutboxCall("send_message", user, Priority.BROADCAST, {"text": "hello all"})

            outcomes = [d async for d in outbox.deliver_all(calls(), window=5)]
        assert pulled == 40 and all(d.ok for d in outcomes) and len(outcomes) == 40
        assert most_queued <= 5
        assert all(texts(tg, user) == ["hello all"] for user in users)
