"""The `scheduled_deletions` rows: messages showing a secret, each kept until Telegram confirms it is gone."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Database


@dataclass(frozen=True)
class DueDeletion:
    chat_id: int
    message_id: int
    delete_at: int  # unix ms


class DeletionSchedule:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def schedule(self, chat_id: int, message_id: int, at_ms: int) -> None:
        """Delete at `at_ms`; a message already scheduled starts over (no attempts, not told)."""
        await self.db.execute(
            "INSERT INTO scheduled_deletions (chat_id, message_id, delete_at, attempts, first_due_at, told) "
            "VALUES (?,?,?,0,?,0) ON CONFLICT(chat_id, message_id) DO UPDATE SET delete_at=excluded.delete_at, "
            "attempts=0, first_due_at=excluded.first_due_at, told=0",
            (chat_id, message_id, at_ms, at_ms),
        )

    async def due_now(self, chat_id: int, message_id: int, now_ms: int, retry_at_ms: int) -> None:
        """A deletion tried at once: kept for a retry at `retry_at_ms`, due since `now_ms` (or earlier)."""
        await self.db.execute(
            "INSERT INTO scheduled_deletions (chat_id, message_id, delete_at, attempts, first_due_at, told) "
            "VALUES (?,?,?,0,?,0) ON CONFLICT(chat_id, message_id) DO UPDATE SET delete_at=excluded.delete_at, "
            "first_due_at=CASE WHEN scheduled_deletions.first_due_at IS NULL "
            "OR excluded.first_due_at < scheduled_deletions.first_due_at "
            "THEN excluded.first_due_at ELSE scheduled_deletions.first_due_at END",
            (chat_id, message_id, retry_at_ms, now_ms),
        )

    async def count(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM scheduled_deletions")
        return int(row[0]) if row else 0

    async def forget(self, chat_id: int, message_id: int) -> None:
        await self.db.execute(
            "DELETE FROM scheduled_deletions WHERE chat_id=? AND message_id=?", (chat_id, message_id)
        )

    async def attempts(self, chat_id: int, message_id: int) -> int:
        row = await self.db.fetchone(
            "SELECT attempts FROM scheduled_deletions WHERE chat_id=? AND message_id=?", (chat_id, message_id)
        )
        return int(row[0]) if row else 0

    async def retry_at(self, chat_id: int, message_id: int, attempts: int, at_ms: int) -> None:
        await self.db.execute(
            "UPDATE scheduled_deletions SET attempts=?, delete_at=? WHERE chat_id=? AND message_id=?",
            (attempts, at_ms, chat_id, message_id),
        )

    async def notice(self, chat_id: int, message_id: int) -> tuple[int | None, bool] | None:
        """(when it first fell due, whether the chat was asked to delete it by hand); None when not kept."""
        row = await self.db.fetchone(
            "SELECT first_due_at, told FROM scheduled_deletions WHERE chat_id=? AND message_id=?", (chat_id, message_id)
        )
        if row is None:
            return None
        first = row["first_due_at"]
        return (int(first) if first is not None else None), bool(row["told"])

    async def mark_told(self, chat_id: int, message_id: int) -> None:
        await self.db.execute(
            "UPDATE scheduled_deletions SET told=1 WHERE chat_id=? AND message_id=?", (chat_id, message_id)
        )

    async def next_due(self) -> DueDeletion | None:
        row = await self.db.fetchone(
            "SELECT chat_id, message_id, delete_at FROM scheduled_deletions ORDER BY delete_at LIMIT 1"
        )
        if row is None:
            return None
        return DueDeletion(int(row["chat_id"]), int(row["message_id"]), int(row["delete_at"]))
