"""A running broadcast is sent by one instance; when its sender dies another resumes it, once per recipient."""

from __future__ import annotations

import types

from bot.broadcast import Broadcasts
from bot.notify.outbox import Outbox
from bot.ownership import OwnedStreams
from storage.admin import BroadcastJobs
from storage.db import Database
from storage.leases import Leases
from storage.users import Users
from tests.integration.test_broadcast import ADMIN, ScriptedBot


async def test_a_dead_senders_broadcast_is_resumed_by_another_instance_once_per_recipient(pg_url: str) -> None:
    db = await Database.open(pg_url)
    bot = ScriptedBot()
    outbox = Outbox(bot, global_rate=1000.0, retry_delay=0.0)
    await outbox.start()
    try:
        users = Users(db)
        for telegram_id in range(1, 11):
            await users.seen(telegram_id, telegram_id, f"T{telegram_id}")
        jobs = BroadcastJobs(db)
        draft = await jobs.create_draft(ADMIN, ADMIN, source=(ADMIN, 42))
        job = await jobs.start(draft.id, [(i, i) for i in range(2, 11)], progress_message_id=99)
        assert job is not None
        # instance "a" sent to two and was in the middle of a third when it died; its lease is still live
        for telegram_id in (2, 3, 4):
            assert await jobs.mark_sending(job.id, telegram_id)
        await jobs.mark_done(job.id, 2, "sent")
        await jobs.mark_done(job.id, 3, "sent")
        leases = Leases(db)
        await leases.ensure_tables()
        assert await leases.acquire(-job.id, "a", 60_000) is not None

        broadcasts = Broadcasts(db, outbox, bot, rate=500.0)
        services = types.SimpleNamespace(db=db, broadcasts=broadcasts, streams=None, outbox=None, settings=None)
        b = OwnedStreams(services)
        assert await b.claim_broadcasts() == []  # a's lease is live: a is sending it
        assert bot.calls == []
        await leases.release("a")  # a's lease runs out (it died)
        assert await b.claim_broadcasts() == [job.id]
        final = await broadcasts.wait(job.id)
        assert final is not None and final.state == "done"
        assert sorted(chat for _, chat in bot.calls) == list(range(5, 11))  # never 2, 3 (sent) or 4 (unsure)
        assert (final.sent, final.unknown) == (2 + 6, 1)
        assert await b.claim_broadcasts() == []  # done: nothing left to claim
    finally:
        await outbox.stop(drain_timeout=1.0)
        await db.close()
