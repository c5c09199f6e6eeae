"""Admin broadcast: sustained rate, 429s, and exit-signal latency while it runs.

    python -m bench.broadcast [--quick] [--users N] [--alerts N] [--rate R]

The sandbox Telegram runs in another process with Telegram's limits (30 messages/s overall, 1/s per chat
with a burst of 5). This process holds the bot's side: the SQLite database with N users, the outbox at the
bot's default global rate, and the broadcast job (`bot.broadcast.Broadcasts`) at BROADCAST_RATE, talking to
the sandbox through python-telegram-bot's `Bot`. While the broadcast runs, an exit-signal message goes to
each of `--alerts` users at even intervals through the same outbox (Priority.URGENT).

Figures: the broadcast's sustained rate (recipients over the time between the first and the last copy
arriving), the number of 429 answers the sandbox gave, and the p50/p99 delivery latency of the exit signals
(submitted to the outbox here, stored by the sandbox there; both stamped with CLOCK_MONOTONIC).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from telegram import Bot
from telegram.request import HTTPXRequest

from bench.common import ServiceProcess, percentile, print_figures, print_table
from bot import runtime
from bot.broadcast import Broadcasts
from bot.config import VARIABLES
from bot.notify.outbox import Outbox, Priority
from storage.db import Database
from storage.users import Users

BROADCAST_TEXT = "📣 <b>Maintenance</b> tonight at 22:00 UTC: exits keep working."
ALERT_PREFIX = "🚨 Exit signal"


async def run(users: int, alerts: int, rate: float, global_rate: float) -> dict[str, Any]:
    token = "123456789:" + "A" * 35
    async with ServiceProcess("telegram", token) as telegram:
        url = telegram.info["url"]
        ids = (await telegram.call("users", count=users + 1))["ids"]
        admin, recipients = ids[0], ids[1:]
        with tempfile.TemporaryDirectory() as tmp:
            db = await Database.open(Path(tmp) / "bench.db")
            request = HTTPXRequest(connection_pool_size=64)
            bot = Bot(token, base_url=f"{url}/bot", request=request)
            await bot.initialize()
            outbox = Outbox(bot, global_rate=global_rate)
            await outbox.start()
            try:
                figures = await _measure(db, outbox, bot, admin, recipients, alerts, rate)
            finally:
                await outbox.stop(drain_timeout=2)
                await bot.shutdown()
                await db.close()
        delivered = await telegram.call("bot_messages", chats=recipients, timeout=300)
    return _figures(figures, delivered, users)


async def _measure(
    db: Database, outbox: Outbox, bot: Bot, admin: int, recipients: list[int], alerts: int, rate: float
) -> dict[str, Any]:
    user_store = Users(db)
    for telegram_id in (admin, *recipients):
        await user_store.seen(telegram_id, telegram_id, f"Trader{telegram_id}")
    broadcasts = Broadcasts(db, outbox, bot, rate=rate)
    progress = await outbox.send_message(admin, "📣 Broadcast: starting…", priority=Priority.ALERT)
    draft = await broadcasts.jobs.create_draft(admin, admin, text=BROADCAST_TEXT)
    job = await broadcasts.send(draft.id, progress_message_id=progress.message_id, exclude=(admin,))
    assert job is not None
    started = time.monotonic()

    # exit signals at even intervals over the broadcast's expected duration, to users spread over the list
    expected_s = len(recipients) / rate
    step = max(1, len(recipients) // max(1, alerts))
    alert_chats = recipients[::step][:alerts]
    submitted: dict[int, int] = {}
    futures: list[asyncio.Future[Any]] = []

    async def send_alerts() -> None:
        for index, chat in enumerate(alert_chats):
            at = started + (index + 0.5) * expected_s / len(alert_chats)
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            submitted[chat] = time.monotonic_ns()
            futures.append(
                outbox.send_message(chat, f"{ALERT_PREFIX} #{index}: take profit reached", priority=Priority.URGENT)
            )

    alerter = asyncio.create_task(send_alerts())
    final = await broadcasts.wait(job.id)
    await alerter
    await asyncio.gather(*futures, return_exceptions=True)
    assert final is not None
    return {"job": final, "submitted": submitted, "elapsed_s": time.monotonic() - started, "outbox": outbox.metrics.snapshot()}


def _figures(measured: dict[str, Any], delivered: dict[str, Any], users: int) -> dict[str, Any]:
    job = measured["job"]
    chats = delivered["chats"]
    copies = [m["received_ns"] for messages in chats.values() for m in messages if "Maintenance" in m["text"]]
    span_s = (max(copies) - min(copies)) / 1e9 if len(copies) > 1 else float("nan")
    rate_per_s = (len(copies) - 1) / span_s if span_s and span_s > 0 else float("nan")
    latencies_ms = []
    for chat, sent_ns in measured["submitted"].items():
        arrived = [m["received_ns"] for m in chats[str(chat)] if m["text"].startswith(ALERT_PREFIX)]
        if arrived:
            latencies_ms.append((arrived[0] - sent_ns) / 1e6)
    duplicates = sum(max(0, sum("Maintenance" in m["text"] for m in messages) - 1) for messages in chats.values())
    http_429 = int(delivered["stats"]["http_429"])
    print_table(
        "Broadcast through the outbox (sandbox Telegram limiting at 30 msg/s)",
        ["figure", "value"],
        [
            ["recipients", users],
            ["copies delivered", len(copies)],
            ["duplicate copies", duplicates],
            ["job: sent / failed / blocked / unknown", f"{job.sent} / {job.failed} / {job.blocked} / {job.unknown}"],
            ["sustained rate (msg/s)", rate_per_s],
            ["HTTP 429 received", http_429],
            ["exit signals delivered", f"{len(latencies_ms)} of {len(measured['submitted'])}"],
            ["exit signal latency p50 (ms)", percentile(latencies_ms, 50)],
            ["exit signal latency p99 (ms)", percentile(latencies_ms, 99)],
            ["wall time (s)", measured["elapsed_s"]],
        ],
    )
    return {
        "recipients": users,
        "rate_per_s": round(rate_per_s, 2),
        "http_429": http_429,
        "alert_p99_ms": round(percentile(latencies_ms, 99), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 users and 20 exit signals (about 15 s)")
    parser.add_argument("--users", type=int, default=None, help="recipients (default 2,000)")
    parser.add_argument("--alerts", type=int, default=None, help="exit signals sent during the broadcast (default 50)")
    parser.add_argument("--rate", type=float, default=float(VARIABLES["BROADCAST_RATE"][0]), help="BROADCAST_RATE")
    parser.add_argument(
        "--global-rate", type=float, default=float(VARIABLES["TELEGRAM_GLOBAL_RATE"][0]), help="TELEGRAM_GLOBAL_RATE"
    )
    args = parser.parse_args(argv)
    users = args.users or (300 if args.quick else 2000)
    alerts = args.alerts or (20 if args.quick else 50)
    figures = runtime.run(run(users, alerts, args.rate, args.global_rate))
    print_figures(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
