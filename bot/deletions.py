"""Deleting messages that show a secret: a durable job, retried until Telegram confirms it.

Every deletion is a row in `scheduled_deletions` before the first attempt, so a restart, a 429 or a
5xx never loses it: the row goes only when Telegram confirms the deletion or says the message is gone.
429 waits the `retry_after` Telegram asks for; other transient failures back off 1, 2, 4 ... 30 s.
If a message that fell due cannot be deleted within `TELL_AFTER_S`, the chat is asked to delete it
by hand (once), and the job keeps trying. A message Telegram says can never be deleted gets the same
request and its row is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from telegram.error import BadRequest, Forbidden, RetryAfter

from storage.db import Database
from storage.deletions import DeletionSchedule

log = logging.getLogger("lasersell_bot.deletions")

DeleteFn = Callable[[int, int], Awaitable[bool]]
# What became of a deletion: done; kept and retried; or refused for good (the user must do it).
DELETED, RETRYING, REFUSED = "deleted", "retrying", "refused"
# (chat id, message id to point at, text): asks the chat to delete a message by hand
NotifyFn = Callable[[int, int, str], Awaitable[object]]

TELL_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
DELETE_BY_HAND = (
    "⚠️ Telegram would not let me delete a message that shows a secret key. Delete it yourself now: "
    "long-press it (or right-click) and choose <b>Delete</b>."
)


def _gone(exc: BadRequest) -> bool:
    return "not found" in str(exc).lower()


class ScheduledDeletions:
    def __init__(
        self, db: Database, delete: DeleteFn, clock: Callable[[], float] = time.time, notify: NotifyFn | None = None
    ) -> None:
        self.db = db
        self.rows = DeletionSchedule(db)
        self._delete = delete
        # Unix seconds; tests swap in a clock they can move forward, then call `wake()`.
        self.clock = clock
        # how a chat is asked to delete a message by hand (None: nobody is asked)
        self.notify = notify
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Rounds of the job's loop begun, each after the last attempt's bookkeeping: a test that moves the
        # clock waits for the next round first, or its wake() would land inside an attempt and be lost.
        self.rounds = 0

    def _ms(self, after_s: float = 0.0) -> int:
        return int((self.clock() + after_s) * 1000)

    async def schedule(self, chat_id: int, message_id: int, after_s: float) -> None:
        """Delete this message `after_s` seconds from now, surviving restarts."""
        at = self._ms(after_s)
        await self.rows.schedule(chat_id, message_id, at)
        self._wake.set()

    def wake(self) -> None:
        """Look at the schedule again now (after the clock moved or a deletion was added)."""
        self._wake.set()

    async def delete_now(self, chat_id: int, message_id: int) -> bool:
        """Delete at once; True when done. On a transient failure the job keeps it and retries."""
        return await self.delete_secret(chat_id, message_id) == DELETED

    async def delete_secret(self, chat_id: int, message_id: int) -> str:
        """Delete at once: DELETED, RETRYING (the job keeps it) or REFUSED (the caller tells the user)."""
        now = self._ms()
        # Stored first (due after the first back-off, so the loop does not race this attempt).
        await self.rows.due_now(chat_id, message_id, now, retry_at_ms=now + 1000)
        outcome = await self._attempt(chat_id, message_id, tell=False)
        self._wake.set()
        return outcome

    async def pending(self) -> int:
        """How many deletions are waiting (for `check` and tests)."""
        return await self.rows.count()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduled-deletions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _forget(self, chat_id: int, message_id: int) -> None:
        await self.rows.forget(chat_id, message_id)

    async def _attempt(self, chat_id: int, message_id: int, *, tell: bool = True) -> str:
        """One try; with `tell`, the chat hears of a message that cannot be deleted."""
        try:
            await self._delete(chat_id, message_id)
        except BadRequest as exc:
            if _gone(exc):
                await self._forget(chat_id, message_id)
                return DELETED
            # "message can't be deleted" (too old, or not ours): no retry will help.
            log.warning("a message showing a secret cannot be deleted: %s", exc)
            if tell:
                await self._tell(chat_id, message_id, force=True)
            await self._forget(chat_id, message_id)
            return REFUSED
        except Forbidden as exc:  # the user blocked the bot or left: nobody to delete it for
            log.info("deletion refused, the chat is closed to the bot: %s", exc)
            await self._forget(chat_id, message_id)
            return REFUSED
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # 429, 5xx, timeouts, garbage: kept and retried
            await self._retry_later(chat_id, message_id, exc, tell=tell)
            return RETRYING
        await self._forget(chat_id, message_id)
        return DELETED

    async def _retry_later(self, chat_id: int, message_id: int, exc: Exception, *, tell: bool) -> None:
        attempts = await self.rows.attempts(chat_id, message_id) + 1
        if isinstance(exc, RetryAfter):
            retry_after = exc.retry_after
            wait_s = retry_after.total_seconds() if hasattr(retry_after, "total_seconds") else float(retry_after)
        else:
            wait_s = min(MAX_BACKOFF_S, 2.0 ** (attempts - 1))
        log.info("deleting message %s failed (%s); attempt %s, next in %.1fs", message_id, type(exc).__name__, attempts, wait_s)
        await self.rows.retry_at(chat_id, message_id, attempts, self._ms(wait_s))
        if tell:
            await self._tell(chat_id, message_id)

    async def _tell(self, chat_id: int, message_id: int, *, force: bool = False) -> None:
        notice = await self.rows.notice(chat_id, message_id)
        if notice is None or notice[1]:
            return
        first = notice[0]
        if not force and first is not None and self._ms() - int(first) < TELL_AFTER_S * 1000:
            return
        if self.notify is None:
            return
        try:
            await self.notify(chat_id, message_id, DELETE_BY_HAND)
        except Exception as exc:  # the notice is retried at the next failed attempt
            log.warning("could not ask chat %s to delete a message by hand: %s", chat_id, exc)
            return
        await self.rows.mark_told(chat_id, message_id)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self.rounds += 1
            try:
                due = await self.rows.next_due()
                if due is None:
                    await self._wake.wait()
                    continue
                wait_s = due.delete_at / 1000 - self.clock()
                if wait_s > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
                    continue
                await self._attempt(due.chat_id, due.message_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database hiccuped: the rows are still there, look again shortly
                log.exception("the deletion job stumbled; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
