"""The admin broadcast job: one persisted row per recipient, sent through the outbox at the lowest priority.

Pacing: calls are fed to the outbox at `rate` messages a second overall (one message per chat), at
Priority.BROADCAST, so exit signals and sell results always go first and keep their latency; the outbox
honours 429s (pauses and retries) and reports a 403, which marks the user blocked and stops their stream.

Delivery is AT MOST ONCE per recipient. A row goes pending -> sending right before the Bot API call (inside
the outbox's dispatch, not when it is queued) and to sent / failed / blocked once Telegram answered. After
a crash a row still in 'sending' may or may not have arrived, and Telegram offers no way to ask, so it
becomes 'unknown' and is never sent again: the final report counts it. A call that timed out is treated the
same way. Rows only queued in the outbox were never marked, so they are simply sent after the restart.
A graceful stop (restart, shutdown) stops feeding, lets the calls in flight finish and leaves the job
'running' so `resume()` continues where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot.notify.outbox import INVOKE, Delivery, DeliveryFailed, Outbox, OutboxCall, Priority
from bot.notify.render import esc
from storage.admin import (
    BLOCKED,
    CANCELLED,
    FAILED,
    FINISHED,
    RUNNING,
    SENT,
    UNKNOWN,
    Broadcast,
    BroadcastJobs,
    Recipient,
)
from storage.db import Database
from storage.users import Users

log = logging.getLogger("lasersell_bot.broadcast")

INTERRUPTED = "interrupted while sending (restart): it may or may not have arrived, not sent again"
TIMED_OUT = "timed out: Telegram may or may not have delivered it, not sent again"
PAGE = 200


class _Outcome:
    """What a broadcast call returns instead of a Message when it did not (certainly) send."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOT_SENT = _Outcome("not_sent")  # the job halted before this call went out: the row stays pending
ALREADY_DONE = _Outcome("already_done")  # the row was no longer pending: never send twice
UNSURE = _Outcome("unsure")  # timed out: Telegram may have delivered it


@dataclass
class _Run:
    """One job being sent by this process."""

    job: Broadcast
    started: float
    resumed: bool = False
    interrupted: int = 0
    finished_here: int = 0  # rows this run finished (for the rate)
    cancelled: bool = False
    stopping: bool = False
    next_slot: float = 0.0
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def halted(self) -> bool:
        return self.cancelled or self.stopping


class Broadcasts:
    """Starts, paces, reports, cancels and resumes admin broadcasts."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        bot: Bot,
        *,
        rate: float = 25.0,
        progress_every: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("the broadcast rate must be positive (messages per second)")
        self.db = db
        self.outbox = outbox
        self.bot = bot
        self.rate = rate
        self.progress_every = progress_every
        self.jobs = BroadcastJobs(db)
        self.users = Users(db)
        self._clock = clock
        # enough outstanding calls to cover Telegram's answer time at this rate, few enough that a halt
        # has little to wind down
        self.window = max(4, min(100, math.ceil(rate / 2)))
        self._runs: dict[int, _Run] = {}

    # --- what the admin commands read and change ----------------------------------------------------------
    async def running(self) -> list[Broadcast]:
        """The jobs sending now (at most one is started at a time)."""
        return await self.jobs.running()

    async def get(self, broadcast_id: int) -> Broadcast | None:
        return await self.jobs.get(broadcast_id)

    async def draft(
        self, admin_id: int, admin_chat_id: int, *, text: str | None = None, source: tuple[int, int] | None = None
    ) -> Broadcast:
        """A draft of HTML `text`, or of a copy of the admin's message `source` = (chat id, message id)."""
        return await self.jobs.create_draft(admin_id, admin_chat_id, text=text, source=source)

    async def discard(self, broadcast_id: int) -> bool:
        """Drop a draft that was never sent; False when it is no longer a draft."""
        return await self.jobs.discard(broadcast_id)

    async def cancel_all(self, admin_id: int) -> tuple[list[Broadcast], list[int]]:
        """Stop every running job and discard this admin's drafts: the jobs stopped (final counts), the drafts
        dropped."""
        stopped = [job for job in [await self.cancel(j.id) for j in await self.jobs.running()] if job is not None]
        dropped = [d.id for d in await self.jobs.drafts_of(admin_id) if await self.jobs.discard(d.id)]
        return stopped, dropped

    async def last_report(self, reasons: int = 3) -> tuple[Broadcast, list[tuple[str, int]]] | None:
        """The last job started, with fresh counts while it runs, and its most common failure reasons."""
        last = await self.jobs.last_started()
        if last is None:
            return None
        if last.state == RUNNING:
            last = await self.jobs.refresh_counts(last.id) or last
        return last, await self.jobs.failure_reasons(last.id, limit=reasons)

    # --- starting -------------------------------------------------------------------------------------------
    async def recipient_count(self, exclude: tuple[int, ...] = ()) -> int:
        return sum(1 for u in await self.users.all_reachable() if u.telegram_id not in exclude)

    async def send(
        self, draft_id: int, *, progress_message_id: int | None = None, exclude: tuple[int, ...] = ()
    ) -> Broadcast | None:
        """Turn a draft into a running job (recipients: every reachable user now, but `exclude`) and start
        sending. None when the draft is gone (sent, discarded) or another broadcast is running."""
        recipients = [(u.telegram_id, u.chat_id) for u in await self.users.all_reachable() if u.telegram_id not in exclude]
        job = await self.jobs.start(draft_id, recipients, progress_message_id)
        if job is None:
            return None
        self._launch(job)
        return job

    async def resume(self) -> list[int]:
        """At start: continue every job a restart interrupted; rows caught mid-call are not resent."""
        resumed = []
        for job in await self.jobs.running():
            await self.resume_job(job)
            resumed.append(job.id)
        return resumed

    async def resume_job(self, job: Broadcast) -> None:
        """Continue one interrupted job here (at start, or claimed from an instance that died)."""
        if job.id in self._runs:
            return
        interrupted = await self.jobs.interrupted(job.id, INTERRUPTED)
        if interrupted:
            log.warning("broadcast %s: %d recipients were mid-send at the restart; not resending", job.id, interrupted)
        self._launch(job, resumed=True, interrupted=interrupted)

    def running_here(self) -> set[int]:
        """The jobs this process is sending."""
        return set(self._runs)

    def _launch(self, job: Broadcast, *, resumed: bool = False, interrupted: int = 0) -> None:
        run = _Run(job, self._clock(), resumed=resumed, interrupted=interrupted)
        run.task = asyncio.create_task(self._run(run), name=f"broadcast-{job.id}")
        self._runs[job.id] = run

    # --- stopping -------------------------------------------------------------------------------------------
    def is_sending(self, broadcast_id: int) -> bool:
        return broadcast_id in self._runs

    async def cancel(self, broadcast_id: int) -> Broadcast | None:
        """Stop a running job for good (its pending rows are never sent); returns it with its final counts,
        or None when it was not running."""
        if not await self.jobs.cancel(broadcast_id):
            return None
        run = self._runs.get(broadcast_id)
        if run is not None:
            run.cancelled = True
            await run.done.wait()
        else:  # running in the database but not here (should not happen): report anyway
            await self._report(broadcast_id)
        return await self.jobs.get(broadcast_id)

    async def wait(self, broadcast_id: int) -> Broadcast | None:
        """Wait until this process stops sending the job (finished, cancelled or stopped)."""
        run = self._runs.get(broadcast_id)
        if run is not None:
            await run.done.wait()
        return await self.jobs.get(broadcast_id)

    async def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: feed no more, let calls in flight finish, leave jobs 'running' for resume()."""
        runs = list(self._runs.values())
        for run in runs:
            run.stopping = True
        tasks = [r.task for r in runs if r.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    # --- sending --------------------------------------------------------------------------------------------
    async def _run(self, run: _Run) -> None:
        job_id = run.job.id
        ticker = asyncio.create_task(self._progress_loop(run), name=f"broadcast-progress-{job_id}")
        try:
            self._show_progress(await self.jobs.refresh_counts(job_id) or run.job, run)
            async for delivery in self.outbox.deliver_all(self._calls(run), window=self.window):
                await self._record(run, delivery)
            ticker.cancel()
            if run.stopping and not run.cancelled:
                job = await self.jobs.refresh_counts(job_id)
                if job is not None and job.state == RUNNING:
                    self._edit(job, progress_text(job, paused=True))
                return
            if not run.cancelled:
                await self.jobs.finish(job_id)
            await self._report(job_id)
        except Exception:
            log.exception("broadcast %s stopped on an error; it resumes at the next start", job_id)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self._runs.pop(job_id, None)
            run.done.set()

    async def _calls(self, run: _Run) -> AsyncIterator[OutboxCall]:
        job = run.job
        method = "send_message" if job.kind == "text" else "copy_message"
        after = 0
        while not run.halted:
            page = await self.jobs.pending(job.id, after, PAGE)
            if not page:
                return
            for recipient in page:
                await self._pace(run)
                if run.halted:
                    return
                yield OutboxCall(
                    method, recipient.chat_id, Priority.BROADCAST,
                    {INVOKE: self._sender(run, recipient), "recipient": recipient},
                )
            after = page[-1].telegram_id

    async def _pace(self, run: _Run) -> None:
        # one overall budget of `rate` a second for the whole job, no burst
        now = self._clock()
        if run.next_slot > now:
            await asyncio.sleep(run.next_slot - now)
            now = self._clock()
        run.next_slot = max(run.next_slot, now) + 1 / self.rate

    def _sender(self, run: _Run, recipient: Recipient) -> Callable[[], Any]:
        job = run.job

        async def send() -> Any:
            # Runs when the outbox dispatches the call, so 'sending' covers only the call itself.
            if run.halted:
                return NOT_SENT
            if not await self.jobs.mark_sending(job.id, recipient.telegram_id):
                return ALREADY_DONE
            try:
                if job.kind == "text":
                    assert job.text is not None  # a text broadcast is stored with its text
                    return await self.bot.send_message(chat_id=recipient.chat_id, text=job.text, parse_mode="HTML")
                assert job.source_chat_id is not None and job.source_message_id is not None  # a copy, with its source
                return await self.bot.copy_message(
                    chat_id=recipient.chat_id, from_chat_id=job.source_chat_id, message_id=job.source_message_id
                )
            except TimedOut:
                return UNSURE  # the request may have reached Telegram: never retry it
            except BadRequest:
                raise  # final: recorded as failed with Telegram's description
            except (RetryAfter, NetworkError):
                # certainly not delivered; the outbox waits and calls again, which re-marks the row
                await self.jobs.release(job.id, recipient.telegram_id)
                raise

        return send

    async def _record(self, run: _Run, delivery: Delivery) -> None:
        recipient: Recipient = delivery.call.kwargs["recipient"]
        job_id, user = run.job.id, recipient.telegram_id
        if delivery.ok:
            result = delivery.result
            if result is NOT_SENT or result is ALREADY_DONE:
                return
            if result is UNSURE:
                await self.jobs.mark_done(job_id, user, UNKNOWN, TIMED_OUT)
            else:
                await self.jobs.mark_done(job_id, user, SENT)
            run.finished_here += 1
            return
        error = delivery.error
        reason = error.reason if isinstance(error, DeliveryFailed) else type(error).__name__
        if reason in ("stopped", "cancelled"):
            # the outbox shut down: a row still 'sending' becomes 'unknown' at resume, a pending one is sent then
            return
        detail = str(error.error) if isinstance(error, DeliveryFailed) and error.error is not None else str(error)
        await self.jobs.mark_done(job_id, user, BLOCKED if reason == "blocked" else FAILED, detail or reason)
        run.finished_here += 1

    # --- reporting ------------------------------------------------------------------------------------------
    async def _progress_loop(self, run: _Run) -> None:
        while True:
            await asyncio.sleep(self.progress_every)
            job = await self.jobs.refresh_counts(run.job.id)
            if job is None or job.state != RUNNING:
                return
            self._show_progress(job, run)

    def _show_progress(self, job: Broadcast, run: _Run) -> None:
        elapsed = self._clock() - run.started
        rate = run.finished_here / elapsed if elapsed > 0.5 else None
        self._edit(job, progress_text(job, rate=rate, resumed=run.resumed, interrupted=run.interrupted))

    async def _report(self, broadcast_id: int) -> None:
        job = await self.jobs.refresh_counts(broadcast_id)
        if job is None:
            return
        reasons = await self.jobs.failure_reasons(broadcast_id)
        self._edit(job, report_text(job, reasons), priority=Priority.ALERT)
        log.info(
            "broadcast %s %s: %d sent, %d failed, %d blocked, %d unknown of %d",
            job.id, job.state, job.sent, job.failed, job.blocked, job.unknown, job.total,
        )

    def _edit(self, job: Broadcast, text: str, priority: Priority = Priority.CARD) -> None:
        # the admin's message, edited in place; a newer edit replaces one not yet sent
        if job.progress_message_id is None:
            return
        self.outbox.edit_message_text(
            job.admin_chat_id, job.progress_message_id, text, priority=priority,
            coalesce_key=f"broadcast:{job.id}", parse_mode="HTML",
        )


# --- texts ----------------------------------------------------------------------------------------------------
def progress_bar(done: int, total: int, width: int = 12) -> str:
    share = done / total if total else 1.0
    filled = min(width, int(share * width))
    return "▓" * filled + "░" * (width - filled) + f" {share * 100:.0f}%"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _counts(job: Broadcast) -> str:
    line = f"✅ sent {job.sent:,} · ❌ failed {job.failed:,} · 🚫 blocked {job.blocked:,}"
    if job.unknown:
        line += f" · ❔ unknown {job.unknown:,}"
    return line


def progress_text(
    job: Broadcast,
    *,
    rate: float | None = None,
    resumed: bool = False,
    interrupted: int = 0,
    paused: bool = False,
) -> str:
    head = f"📣 <b>Broadcast #{job.id}</b>: " + ("paused, the bot is restarting" if paused else "sending")
    lines = [head, f"{progress_bar(job.done, job.total)} ({job.done:,} of {job.total:,})", _counts(job)]
    if rate is not None and not paused:
        left = job.total - job.done
        eta = f", about {_duration(left / rate)} left" if rate > 0 else ""
        lines.append(f"{rate:.1f} msg/s{eta}")
    if resumed:
        note = "Resumed after a restart"
        if interrupted:
            note += f"; {interrupted} caught mid-send were not sent again"
        lines.append(note + ".")
    if not paused:
        lines.append("/broadcast_cancel stops it.")
    return "\n".join(lines)


def report_text(job: Broadcast, reasons: list[tuple[str, int]]) -> str:
    word = {FINISHED: "finished", CANCELLED: "cancelled"}.get(job.state, job.state)
    lines = [f"📣 <b>Broadcast #{job.id} {word}</b>", _counts(job)]
    not_sent = job.total - job.done
    summary = f"{job.done:,} of {job.total:,} recipients"
    if job.started_at_ms and job.finished_at_ms:
        summary += f" in {_duration((job.finished_at_ms - job.started_at_ms) / 1000)}"
    if not_sent:
        summary += f"; {not_sent:,} not sent"
    lines.append(summary)
    if job.unknown:
        lines.append("❔ unknown: the send was cut off mid-call; to never send twice these were not retried.")
    if reasons:
        lines.append("<b>Top failure reasons</b>")
        lines.extend(f"• {esc(reason)}: {count:,}" for reason, count in reasons)
    return "\n".join(lines)
