"""Admin broadcast and /stats end to end: the real bot, polling the sandbox Telegram, with an admin whose id
is known before the bot starts (ADMIN_USER_IDS)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.app import BotRunner
from sandbox.services import SandboxServices
from sandbox.terminal import sandbox_settings
from storage.admin import AuditLog
from tests.e2e.harness import ChatUser, Harness, start_bot, stop_harness, until

AdminStarter = Callable[..., Awaitable[tuple[Harness, ChatUser]]]


@pytest.fixture
async def admin_harness(tmp_path: Path) -> AsyncIterator[AdminStarter]:
    """Starts the sandbox with the admin created first, so their id can go into ADMIN_USER_IDS."""
    started: list[Harness] = []

    async def start(broadcast_rate: float = 200.0) -> tuple[Harness, ChatUser]:
        # a roomy flood limit and outbox rate keep the tests quick; pacing itself is the benchmark's business
        services = SandboxServices(seed=1, telegram_options={"global_rate": 500.0, "global_burst": 500})
        await services.__aenter__()
        admin_id, admin_chat = services.telegram.add_user("Ada", "ada")
        settings = dataclasses.replace(
            sandbox_settings(services.urls, services.telegram.token, tmp_path, (admin_id,)),
            broadcast_rate=broadcast_rate, telegram_global_rate=200.0,
        )
        harness = await start_bot(services, settings, tmp_path)
        started.append(harness)
        return harness, ChatUser(harness, admin_id, admin_chat)

    yield start
    for harness in started:
        await stop_harness(harness)


async def traders(h: Harness, names: list[str]) -> list[ChatUser]:
    """Users who have talked to the bot (so they are recipients)."""
    users = [await h.user(name) for name in names]
    for user in users:
        await user.send("/help", expect=r"/start")
    return users


def copies(user: ChatUser, marker: str) -> list[dict[str, Any]]:
    return [m for m in user.bot_messages() if marker in (m.get("text") or m.get("caption") or "")]


def services_of(h: Harness) -> Any:
    assert h.runner.services is not None
    return h.runner.services


async def test_preview_then_send_to_every_user_and_count_the_blocked_one(admin_harness: AdminStarter) -> None:
    h, ada = await admin_harness()
    ann, bob, cat, dan = await traders(h, ["Ann", "Bob", "Cat", "Dan"])
    h.services.telegram.block(dan.user_id)

    question = await ada.send("/broadcast <b>Maintenance</b> tonight at 22:00 UTC", expect=r"Send it to")
    assert "<b>4</b>" in question["text"] or "4" in question["text"]
    preview = await ada.wait_text(r"Maintenance tonight")
    assert any(e["type"] == "bold" for e in preview["entities"])  # the HTML was applied, as recipients get it
    assert ada.buttons(question) == ["📣 Send", "Cancel"]

    report = await ada.press("Send", message=question, expect=r"Broadcast #\d+ finished")
    assert "sent 3" in report["text"] and "blocked 1" in report["text"] and "failed 0" in report["text"]
    assert report["message_id"] == question["message_id"]  # the progress message is the one edited

    for user in (ann, bob, cat):
        got = copies(user, "Maintenance tonight")
        assert len(got) == 1
        assert any(e["type"] == "bold" for e in got[0]["entities"])
    assert copies(dan, "Maintenance") == []
    assert copies(ada, "Maintenance tonight") == [preview]  # the admin has the preview, not a second copy

    services = services_of(h)
    assert (await services.users.get(dan.user_id)).blocked
    rows = {r.telegram_id: r for r in await services.broadcasts.jobs.recipients(1)}
    assert rows[dan.user_id].state == "blocked" and "blocked" in (rows[dan.user_id].error or "")
    assert {rows[u.user_id].state for u in (ann, bob, cat)} == {"sent"}
    actions = [e.action for e in await AuditLog(services.db).recent()]
    assert "broadcast_preview" in actions and "broadcast_send" in actions
    assert all(e.telegram_id == ada.user_id for e in await AuditLog(services.db).recent())


async def test_a_reply_is_broadcast_as_a_copy_with_its_photo(admin_harness: AdminStarter) -> None:
    h, ada = await admin_harness()
    (ann,) = await traders(h, ["Ann"])
    tg = h.services.telegram
    # The driver has no "send a photo" or "reply" call: build the admin's messages as the server would.
    photo = tg._new_message(ada.chat_id, from_bot=False)
    photo.photo = [{"file_id": "AgACphoto1", "file_unique_id": "u1", "width": 64, "height": 64}]
    photo.caption = "New feature: ladders"
    tg._touch_chat(ada.chat_id)
    tg._queue_update("message", tg._message_to_api(photo))
    command = tg._new_message(ada.chat_id, from_bot=False)
    command.text = "/broadcast"
    command.entities = [{"type": "bot_command", "offset": 0, "length": len("/broadcast")}]
    command.reply_to = photo.message_id
    tg._touch_chat(ada.chat_id)
    tg._queue_update("message", tg._message_to_api(command))

    question = await ada.wait_text(r"Send it to")
    assert "<b>1</b>" in question["text"] or " 1 " in question["text"]
    await ada.press("Send", message=question, expect=r"finished")
    got = copies(ann, "New feature: ladders")
    assert len(got) == 1 and got[0]["photo"]


async def test_admin_commands_do_not_exist_for_anyone_else(admin_harness: AdminStarter) -> None:
    h, ada = await admin_harness()
    (eve,) = await traders(h, ["Eve"])
    for command in ("/broadcast hello all", "/broadcast_cancel", "/stats"):
        reply = await eve.send(command, expect=r"don't know the command")
        assert command.split()[0] in reply["text"]
    help_text = (await eve.send("/help", expect=r"/start"))["text"]
    assert "/broadcast" not in help_text and "/stats" not in help_text
    # and the admin gets /stats, audited
    stats = await ada.send("/stats", expect=r"Stats")
    assert "Users" in stats["text"] and "Streams" in stats["text"] and "Last broadcast" in stats["text"]
    assert "none yet" in stats["text"]
    entries = await AuditLog(services_of(h).db).recent()
    assert [(e.telegram_id, e.action) for e in entries] == [(ada.user_id, "stats")]


async def test_cancel_stops_the_broadcast_and_nothing_more_is_sent(admin_harness: AdminStarter) -> None:
    h, ada = await admin_harness(broadcast_rate=4.0)
    users = await traders(h, [f"T{i}" for i in range(8)])
    question = await ada.send("/broadcast Cancel me", expect=r"Send it to")
    await ada.press("Send", message=question, expect=r"sending")
    services = services_of(h)

    async def some_sent() -> bool:
        return any(r.state == "sent" for r in await services.broadcasts.jobs.recipients(1))

    await until(some_sent, "a first copy", timeout=15)
    reply = await ada.send("/broadcast_cancel", expect=r"cancelled")
    assert "the rest will not be sent" in reply["text"]
    await ada.wait_text(r"Broadcast #1 cancelled")
    job = await services.broadcasts.jobs.get(1)
    assert job.state == "cancelled" and not services.broadcasts.is_sending(1)
    rows = await services.broadcasts.jobs.recipients(1)
    sent = {r.telegram_id for r in rows if r.state == "sent"}
    assert 0 < len(sent) < len(users)
    assert {r.state for r in rows} <= {"sent", "pending"}
    # what arrived is exactly what the rows say, and the job is over: nothing more can arrive
    assert {u.user_id for u in users if copies(u, "Cancel me")} == sent
    assert all(len(copies(u, "Cancel me")) <= 1 for u in users)
    assert "broadcast_cancel" in [e.action for e in await AuditLog(services.db).recent()]
    stats = await ada.send("/stats", expect=r"Last broadcast")
    assert "cancelled" in stats["text"]


async def test_restart_mid_broadcast_resumes_and_sends_each_copy_once(admin_harness: AdminStarter) -> None:
    h, ada = await admin_harness(broadcast_rate=5.0)
    users = await traders(h, [f"R{i}" for i in range(10)])
    question = await ada.send("/broadcast Restart test", expect=r"Send it to <b>10</b>|Send it to 10")
    await ada.press("Send", message=question, expect=r"sending")

    async def a_few_sent() -> bool:
        rows = await services_of(h).broadcasts.jobs.recipients(1)
        return sum(r.state == "sent" for r in rows) >= 2

    await until(a_few_sent, "two copies sent", timeout=15)
    await h.runner.stop()  # a restart mid-way: the job must resume from the database
    assert any(r["state"] == "pending" for r in await _rows_after_stop(h))
    h.runner = BotRunner(h.runner.settings, poll_timeout=1)
    await h.runner.start()
    report = await ada.wait_text(r"Broadcast #1 finished", timeout=20)
    assert "sent 10" in report["text"]
    for user in users:
        assert len(copies(user, "Restart test")) == 1, user.transcript()
    rows = await services_of(h).broadcasts.jobs.recipients(1)
    assert {r.state for r in rows} == {"sent"}


async def test_rows_caught_mid_send_by_a_crash_are_reported_not_resent(admin_harness: AdminStarter) -> None:
    h, ada = await admin_harness(broadcast_rate=3.0)
    users = await traders(h, [f"C{i}" for i in range(5)])
    question = await ada.send("/broadcast Crash test", expect=r"Send it to")
    await ada.press("Send", message=question, expect=r"sending")
    services = services_of(h)

    async def one_sent() -> bool:
        return any(r.state == "sent" for r in await services.broadcasts.jobs.recipients(1))

    await until(one_sent, "a first copy", timeout=15)
    await h.runner.stop()
    # What a crash between the Bot API call and its bookkeeping leaves behind: a row in 'sending'.
    rows = await _rows_after_stop(h)
    caught = next(r for r in rows if r["state"] == "pending")
    await _set_state(h, caught["telegram_id"], "sending")
    h.runner = BotRunner(h.runner.settings, poll_timeout=1)
    await h.runner.start()

    report = await ada.wait_text(r"Broadcast #1 finished", timeout=20)
    assert "unknown 1" in report["text"] and "sent 4" in report["text"]
    caught_user = next(u for u in users if u.user_id == caught["telegram_id"])
    assert copies(caught_user, "Crash test") == []  # at most once: never sent after the crash
    for user in users:
        if user is not caught_user:
            assert len(copies(user, "Crash test")) == 1


async def _rows_after_stop(h: Harness) -> list[dict[str, Any]]:

    async with aiosqlite.connect(h.runner.settings.database_path) as conn:
        conn.row_factory = aiosqlite.Row
        async with conn.execute("SELECT * FROM broadcast_recipients ORDER BY telegram_id") as cur:
            return [dict(r) for r in await cur.fetchall()]


async def _set_state(h: Harness, telegram_id: int, state: str) -> None:

    async with aiosqlite.connect(h.runner.settings.database_path) as conn:
        await conn.execute("UPDATE broadcast_recipients SET state=? WHERE telegram_id=?", (state, telegram_id))
        await conn.commit()
