"""The broadcast job with a real database and the real outbox, in front of a scripted Bot that answers the
way Telegram does (accepts, times out, 429, 400, 403)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from telegram.error import BadRequest, Forbidden, RetryAfter, TimedOut

from bot.broadcast import INTERRUPTED, TIMED_OUT, Broadcasts, report_text
from bot.notify.outbox import Outbox
from storage.admin import AuditLog, BroadcastJobs, OperatorNumbers
from storage.db import Database
from storage.users import Users

ADMIN = 1


class ScriptedBot:
    """Records every call; `script[chat_id]` is a list of exceptions to raise on the next calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.script: dict[int, list[BaseException]] = {}
        self.edits: list[str] = []

    async def _answer(self, method: str, chat_id: int) -> dict[str, Any]:
        self.calls.append((method, chat_id))
        pending = self.script.get(chat_id)
        if pending:
            raise pending.pop(0)
        return {"message_id": len(self.calls)}

    async def send_message(self, chat_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        return await self._answer("send_message", chat_id)

    async def copy_message(self, chat_id: int, from_chat_id: int, message_id: int, **kwargs: Any) -> dict[str, Any]:
        return await self._answer("copy_message", chat_id)

    async def edit_message_text(self, chat_id: int, message_id: int, text: str, **kwargs: Any) -> bool:
        self.edits.append(text)
        return True

    def sent_to(self, chat_id: int) -> int:
        return sum(1 for _, chat in self.calls if chat == chat_id)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "bot.db")
    users = Users(database)
    for telegram_id in range(1, 11):  # the admin and nine traders
        await users.seen(telegram_id, telegram_id, f"T{telegram_id}")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def outbox_and_bot() -> AsyncIterator[tuple[Outbox, ScriptedBot]]:
    bot = ScriptedBot()
    outbox = Outbox(bot, global_rate=1000.0, retry_delay=0.0)
    await outbox.start()
    try:
        yield outbox, bot
    finally:
        await outbox.stop(drain_timeout=1.0)


async def run_to_end(broadcasts: Broadcasts, text: str = "<b>hello</b>") -> Any:
    draft = await broadcasts.jobs.create_draft(ADMIN, ADMIN, text=text)
    job = await broadcasts.send(draft.id, progress_message_id=99, exclude=(ADMIN,))
    assert job is not None and job.total == 9
    finished = await broadcasts.wait(job.id)
    await broadcasts.outbox.wait_idle(5)  # the final report is an edit that may still be on its way
    return finished


async def test_each_outcome_is_recorded_and_nothing_is_sent_twice(db: Database, outbox_and_bot: Any) -> None:
    outbox, bot = outbox_and_bot
    bot.script = {
        2: [TimedOut()],  # may have arrived: at most once, so never again
        3: [RetryAfter(0)],  # certainly not sent: retried
        4: [BadRequest("Chat not found")],
        5: [BadRequest("Chat not found")],
        6: [Forbidden("Forbidden: bot was blocked by the user")],
    }
    broadcasts = Broadcasts(db, outbox, bot, rate=500.0)
    job = await run_to_end(broadcasts)

    assert job.state == "done"
    assert (job.sent, job.failed, job.blocked, job.unknown) == (5, 2, 1, 1)
    assert bot.sent_to(ADMIN) == 0
    assert bot.sent_to(2) == 1  # the timed-out call was not retried
    assert bot.sent_to(3) == 2  # the 429 was retried once, then accepted
    assert all(bot.sent_to(chat) == 1 for chat in (4, 5, 6, 7, 8, 9, 10))
    rows = {r.telegram_id: r for r in await broadcasts.jobs.recipients(job.id)}
    assert rows[2].state == "unknown" and rows[2].error == TIMED_OUT
    assert rows[3].state == "sent"
    assert rows[4].state == "failed" and rows[4].error == "Chat not found"
    assert rows[6].state == "blocked"
    reasons = await broadcasts.jobs.failure_reasons(job.id)
    assert reasons[0] == ("Chat not found", 2)
    report = report_text(job, reasons)
    assert "finished" in report and "sent 5" in report and "Chat not found: 2" in report and "unknown 1" in report
    assert any("finished" in edit for edit in bot.edits)  # the admin's progress message got the report


async def test_resume_skips_rows_caught_mid_send_and_sends_the_rest_once(db: Database, outbox_and_bot: Any) -> None:
    outbox, bot = outbox_and_bot
    jobs = BroadcastJobs(db)
    draft = await jobs.create_draft(ADMIN, ADMIN, source=(ADMIN, 42))
    job = await jobs.start(draft.id, [(i, i) for i in range(2, 11)], progress_message_id=99)
    assert job is not None
    # the state a crash leaves: two done, one in the middle of its call, six never touched
    for telegram_id in (2, 3, 4):
        assert await jobs.mark_sending(job.id, telegram_id)
    await jobs.mark_done(job.id, 2, "sent")
    await jobs.mark_done(job.id, 3, "failed", "Chat not found")

    broadcasts = Broadcasts(db, outbox, bot, rate=500.0)
    assert await broadcasts.resume() == [job.id]
    final = await broadcasts.wait(job.id)

    assert final is not None and final.state == "done"
    assert [chat for _, chat in bot.calls] == list(range(5, 11))  # only the untouched ones
    assert {m for m, _ in bot.calls} == {"copy_message"}
    rows = {r.telegram_id: r for r in await jobs.recipients(job.id)}
    assert rows[4].state == "unknown" and rows[4].error == INTERRUPTED
    assert (final.sent, final.failed, final.unknown) == (7, 1, 1)
    assert any("Resumed after a restart; 1 caught mid-send" in edit for edit in bot.edits)


async def test_cancel_leaves_the_rest_unsent_and_a_second_job_waits(db: Database, outbox_and_bot: Any) -> None:
    outbox, bot = outbox_and_bot
    broadcasts = Broadcasts(db, outbox, bot, rate=500.0)
    draft = await broadcasts.jobs.create_draft(ADMIN, ADMIN, text="one")
    other = await broadcasts.jobs.create_draft(ADMIN, ADMIN, text="two")
    job = await broadcasts.send(draft.id, exclude=(ADMIN,))
    assert job is not None
    assert await broadcasts.send(other.id) is None  # one broadcast at a time
    assert await broadcasts.send(draft.id) is None  # a draft is sent once
    cancelled = await broadcasts.cancel(job.id)
    assert cancelled is not None and cancelled.state == "cancelled"
    assert not broadcasts.is_sending(job.id)
    rows = await broadcasts.jobs.recipients(job.id)
    assert len(bot.calls) == sum(r.state == "sent" for r in rows)
    assert {r.state for r in rows} <= {"sent", "pending"}
    assert await broadcasts.cancel(job.id) is None
    # the next one may go now
    assert await broadcasts.send(other.id) is not None


async def test_a_graceful_stop_leaves_the_job_running_for_resume(db: Database, outbox_and_bot: Any) -> None:
    outbox, bot = outbox_and_bot
    broadcasts = Broadcasts(db, outbox, bot, rate=50.0)
    draft = await broadcasts.jobs.create_draft(ADMIN, ADMIN, text="slow")
    job = await broadcasts.send(draft.id, exclude=(ADMIN,))
    assert job is not None
    await broadcasts.stop(timeout=2.0)
    stopped = await broadcasts.jobs.get(job.id)
    assert stopped is not None and stopped.state == "running"
    rows = await broadcasts.jobs.recipients(job.id)
    assert "sending" not in {r.state for r in rows}  # calls in flight were finished and recorded

    again = Broadcasts(db, outbox, bot, rate=500.0)
    await again.resume()
    final = await again.wait(job.id)
    assert final is not None and final.sent == 9
    assert all(bot.sent_to(chat) == 1 for chat in range(2, 11))


async def test_audit_and_operator_numbers(db: Database) -> None:
    audit = AuditLog(db)
    await audit.record(ADMIN, "stats")
    await audit.record(ADMIN, "broadcast_send", "#1 to 9 users")
    assert [(e.action, e.detail) for e in await audit.recent()] == [("broadcast_send", "#1 to 9 users"), ("stats", "")]
    await Users(db).set_blocked(10)
    numbers = await OperatorNumbers(db).users()
    assert (numbers.total, numbers.blocked, numbers.active_7d) == (10, 1, 10)
    sells = await OperatorNumbers(db).sells_since(0)
    assert sells.signals == 0 and sells.median_tap_to_submit_ms is None


async def test_sells_today_and_median_tap_to_submit(db: Database) -> None:
    await db.execute(
        "INSERT INTO user_settings (telegram_id, auto_sell, onboarding_step, updated_at) VALUES (2, 1, 'done', 0)"
    )
    signals = [  # (id, user, state, received, tapped, submitted)
        ("a", 2, "landed", 1_000, 1_100, 1_400),  # auto-sell user
        ("b", 3, "landed", 1_000, 1_000, 1_200),
        ("c", 3, "failed", 1_000, 1_000, 1_600),
        ("d", 4, "skipped", 1_000, None, None),
        ("e", 4, "landed", 10, 20, 30),  # yesterday
    ]
    for sid, user, state, received, tapped, submitted in signals:
        await db.execute(
            """INSERT INTO exit_signals (id, telegram_id, position_id, wallet, mint, reason, profit_units,
                 position_tokens, triggered_at_ms, received_at_ms, unsigned_tx_b64, state, tapped_at_ms,
                 submitted_at_ms, updated_at) VALUES (?, ?, 1, 'w', 'm', 'tp', 0, 1, 0, ?, 'x', ?, ?, ?, 0)""",
            (sid, user, received, state, tapped, submitted),
        )
    sells = await OperatorNumbers(db).sells_since(500)
    assert (sells.signals, sells.landed, sells.failed, sells.skipped, sells.auto) == (4, 2, 1, 1, 1)
    assert sells.median_tap_to_submit_ms == 300.0  # of 300, 200, 600
    assert (await OperatorNumbers(db).users()).set_up == 1
