"""Deleting messages that showed a secret: at a time, persisted so a restart still deletes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from storage.db import Database

log = logging.getLogger("lasersell_bot.deletions")

DeleteFn = Callable[[int, int], Awaitable[bool]]


class ScheduledDeletions:
    def __init__(self, db: Database, delete: DeleteFn, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._delete = delete
        # Unix seconds; tests swap in a clock they can move forward, then call `wake()`.
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def schedule(self, chat_id: int, message_id: int, after_s: float) -> None:
        at = int((self.clock() + after_s) * 1000)
        await self.db.execute(
            "INSERT OR REPLACE INTO scheduled_deletions (chat_id, message_id, delete_at) VALUES (?,?,?)",
            (chat_id, message_id, at),
        )
        self._wake.set()

    def wake(self) -> None:
        """Look at the schedule again now (after the clock moved or a deletion was added)."""
        self._wake.set()

    async def delete_now(self, chat_id: int, message_id: int) -> bool:
        await self.db.execute(
            "DELETE FROM scheduled_deletions WHERE chat_id=? AND message_id=?", (chat_id, message_id)
        )
        return await self._delete(chat_id, message_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduled-deletions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            row = await self.db.fetchone(
                "SELECT chat_id, message_id, delete_at FROM scheduled_deletions ORDER BY delete_at LIMIT 1"
            )
            if row is None:
                await self._wake.wait()
                continue
            wait_s = row["delete_at"] / 1000 - self.clock()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
                continue
            try:
                await self.delete_now(row["chat_id"], row["message_id"])
            except Exception as exc:  # already deleted, or the chat is gone: nothing more to do
                log.info("scheduled deletion failed: %s", exc)
                await self.db.execute(
                    "DELETE FROM scheduled_deletions WHERE chat_id=? AND message_id=?",
                    (row["chat_id"], row["message_id"]),
                )
