"""What admins do: the audit log, broadcast jobs with one row per recipient, and the numbers behind /stats."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from storage.db import Database
from storage.users import now_ms

# Recipient states. 'sending' is written just before the Bot API call; a row still 'sending' after a
# crash may or may not have reached the user, so it becomes 'unknown' and is never sent again.
PENDING, SENDING, SENT, FAILED, BLOCKED, UNKNOWN = "pending", "sending", "sent", "failed", "blocked", "unknown"
DONE_STATES = (SENT, FAILED, BLOCKED, UNKNOWN)

# Job states.
DRAFT, RUNNING, FINISHED, CANCELLED, DISCARDED = "draft", "running", "done", "cancelled", "discarded"

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class AuditEntry:
    id: int
    telegram_id: int
    action: str
    detail: str
    at_ms: int


@dataclass(frozen=True)
class Broadcast:
    id: int
    admin_id: int
    admin_chat_id: int
    kind: str  # "text" or "copy"
    text: str | None
    source_chat_id: int | None
    source_message_id: int | None
    state: str
    total: int
    sent: int
    failed: int
    blocked: int
    unknown: int
    progress_message_id: int | None
    created_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    updated_at_ms: int

    @property
    def done(self) -> int:
        """Recipients the job has finished with, whatever the outcome."""
        return self.sent + self.failed + self.blocked + self.unknown


@dataclass(frozen=True)
class Recipient:
    broadcast_id: int
    telegram_id: int
    chat_id: int
    state: str
    error: str | None


def _broadcast(row: sqlite3.Row) -> Broadcast:
    return Broadcast(**dict(row))


def _recipient(row: sqlite3.Row) -> Recipient:
    r = dict(row)
    return Recipient(r["broadcast_id"], r["telegram_id"], r["chat_id"], r["state"], r["error"])


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, telegram_id: int, action: str, detail: str = "") -> None:
        await self.db.insert(
            "INSERT INTO admin_audit (telegram_id, action, detail, at_ms) VALUES (?, ?, ?, ?)",
            (telegram_id, action, detail[:500], now_ms()),
        )

    async def recent(self, limit: int = 50) -> list[AuditEntry]:
        rows = await self.db.fetchall("SELECT * FROM admin_audit ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditEntry(**dict(r)) for r in rows]


class BroadcastJobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- the job ------------------------------------------------------------------------------------------
    async def create_draft(
        self,
        admin_id: int,
        admin_chat_id: int,
        *,
        text: str | None = None,
        source: tuple[int, int] | None = None,
    ) -> Broadcast:
        """A draft of HTML `text`, or of a copy of the admin's message `source` = (chat id, message id)."""
        if (text is None) == (source is None):
            raise ValueError("a broadcast is either a text or a copy of a message")
        now = now_ms()
        broadcast_id = await self.db.insert(
            """INSERT INTO broadcasts (admin_id, admin_chat_id, kind, text, source_chat_id, source_message_id,
                 created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (admin_id, admin_chat_id, "text" if text is not None else "copy", text,
             source[0] if source else None, source[1] if source else None, now, now),
        )
        found = await self.get(broadcast_id)
        assert found is not None
        return found

    async def get(self, broadcast_id: int) -> Broadcast | None:
        row = await self.db.fetchone("SELECT * FROM broadcasts WHERE id=?", (broadcast_id,))
        return _broadcast(row) if row else None

    async def running(self) -> list[Broadcast]:
        rows = await self.db.fetchall("SELECT * FROM broadcasts WHERE state=? ORDER BY id", (RUNNING,))
        return [_broadcast(r) for r in rows]

    async def last_started(self) -> Broadcast | None:
        """The newest broadcast that was actually sent (running, finished or cancelled)."""
        row = await self.db.fetchone(
            "SELECT * FROM broadcasts WHERE started_at_ms IS NOT NULL ORDER BY started_at_ms DESC, id DESC LIMIT 1"
        )
        return _broadcast(row) if row else None

    async def start(
        self, broadcast_id: int, recipients: Iterable[tuple[int, int]], progress_message_id: int | None = None
    ) -> Broadcast | None:
        """Draft -> running with one row per (telegram id, chat id), in one transaction. None when the draft
        was already sent, cancelled or discarded, or another broadcast is running (one at a time)."""
        now = now_ms()
        rows = [(broadcast_id, telegram_id, chat_id, now) for telegram_id, chat_id in recipients]
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                """UPDATE broadcasts SET state=?, total=?, started_at_ms=?, updated_at_ms=?,
                     progress_message_id=COALESCE(?, progress_message_id)
                   WHERE id=? AND state=? AND NOT EXISTS (SELECT 1 FROM broadcasts WHERE state=?)""",
                (RUNNING, len(rows), now, now, progress_message_id, broadcast_id, DRAFT, RUNNING),
            )
            started = cur.rowcount == 1
            await cur.close()
            if started:
                await conn.executemany(
                    "INSERT INTO broadcast_recipients (broadcast_id, telegram_id, chat_id, updated_at_ms) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
        return await self.get(broadcast_id) if started else None

    async def set_progress_message(self, broadcast_id: int, message_id: int) -> None:
        await self.db.execute(
            "UPDATE broadcasts SET progress_message_id=?, updated_at_ms=? WHERE id=?",
            (message_id, now_ms(), broadcast_id),
        )

    async def _move(self, broadcast_id: int, from_states: tuple[str, ...], to_state: str) -> bool:
        marks = ",".join("?" for _ in from_states)
        now = now_ms()
        finished = now if to_state in (FINISHED, CANCELLED) else None
        changed = await self.db.execute(
            f"UPDATE broadcasts SET state=?, updated_at_ms=?, finished_at_ms=COALESCE(?, finished_at_ms) "
            f"WHERE id=? AND state IN ({marks})",
            (to_state, now, finished, broadcast_id, *from_states),
        )
        return changed == 1

    async def discard(self, broadcast_id: int) -> bool:
        """A draft the admin cancelled before sending."""
        return await self._move(broadcast_id, (DRAFT,), DISCARDED)

    async def cancel(self, broadcast_id: int) -> bool:
        """A running job stops for good: its pending rows are never sent."""
        return await self._move(broadcast_id, (RUNNING,), CANCELLED)

    async def finish(self, broadcast_id: int) -> bool:
        return await self._move(broadcast_id, (RUNNING,), FINISHED)

    async def drafts_of(self, admin_id: int) -> list[Broadcast]:
        rows = await self.db.fetchall(
            "SELECT * FROM broadcasts WHERE admin_id=? AND state=? ORDER BY id", (admin_id, DRAFT)
        )
        return [_broadcast(r) for r in rows]

    # --- recipients ---------------------------------------------------------------------------------------
    async def pending(self, broadcast_id: int, after_telegram_id: int = 0, limit: int = 200) -> list[Recipient]:
        """The next page of recipients still to send to, in telegram id order."""
        rows = await self.db.fetchall(
            "SELECT * FROM broadcast_recipients WHERE broadcast_id=? AND state=? AND telegram_id>? "
            "ORDER BY telegram_id LIMIT ?",
            (broadcast_id, PENDING, after_telegram_id, limit),
        )
        return [_recipient(r) for r in rows]

    async def recipients(self, broadcast_id: int) -> list[Recipient]:
        rows = await self.db.fetchall(
            "SELECT * FROM broadcast_recipients WHERE broadcast_id=? ORDER BY telegram_id", (broadcast_id,)
        )
        return [_recipient(r) for r in rows]

    async def mark_sending(self, broadcast_id: int, telegram_id: int) -> bool:
        """pending -> sending, atomically: False means the row was already taken (never send it)."""
        changed = await self.db.execute(
            "UPDATE broadcast_recipients SET state=?, updated_at_ms=? WHERE broadcast_id=? AND telegram_id=? AND state=?",
            (SENDING, now_ms(), broadcast_id, telegram_id, PENDING),
        )
        return changed == 1

    async def mark_done(self, broadcast_id: int, telegram_id: int, state: str, error: str | None = None) -> None:
        """The outcome of a call: sent (Telegram accepted), failed, blocked or unknown. A row already
        finished is left alone; a pending one can fail (the outbox gave up retrying a network error)."""
        if state not in DONE_STATES:
            raise ValueError(f"{state!r} is not a final recipient state")
        await self.db.execute(
            "UPDATE broadcast_recipients SET state=?, error=?, updated_at_ms=? "
            "WHERE broadcast_id=? AND telegram_id=? AND state IN (?, ?)",
            (state, error[:300] if error else None, now_ms(), broadcast_id, telegram_id, SENDING, PENDING),
        )

    async def release(self, broadcast_id: int, telegram_id: int) -> None:
        """sending -> pending for a call that certainly did not reach Telegram (refused before sending)."""
        await self.db.execute(
            "UPDATE broadcast_recipients SET state=?, updated_at_ms=? WHERE broadcast_id=? AND telegram_id=? AND state=?",
            (PENDING, now_ms(), broadcast_id, telegram_id, SENDING),
        )

    async def interrupted(self, broadcast_id: int, note: str) -> int:
        """After a restart: rows caught mid-call become 'unknown' (not resent); returns how many."""
        return await self.db.execute(
            "UPDATE broadcast_recipients SET state=?, error=?, updated_at_ms=? WHERE broadcast_id=? AND state=?",
            (UNKNOWN, note, now_ms(), broadcast_id, SENDING),
        )

    async def refresh_counts(self, broadcast_id: int) -> Broadcast | None:
        """Recount the job's sent / failed / blocked / unknown from its rows (the rows are the truth)."""
        rows = await self.db.fetchall(
            "SELECT state, COUNT(*) FROM broadcast_recipients WHERE broadcast_id=? GROUP BY state", (broadcast_id,)
        )
        counts = {str(r[0]): int(r[1]) for r in rows}
        await self.db.execute(
            "UPDATE broadcasts SET sent=?, failed=?, blocked=?, unknown=?, updated_at_ms=? WHERE id=?",
            (counts.get(SENT, 0), counts.get(FAILED, 0), counts.get(BLOCKED, 0), counts.get(UNKNOWN, 0),
             now_ms(), broadcast_id),
        )
        return await self.get(broadcast_id)

    async def failure_reasons(self, broadcast_id: int, limit: int = 5) -> list[tuple[str, int]]:
        """The most common errors of failed and unknown rows, most frequent first."""
        rows = await self.db.fetchall(
            "SELECT COALESCE(error, state) AS reason, COUNT(*) AS n FROM broadcast_recipients "
            "WHERE broadcast_id=? AND state IN (?, ?) GROUP BY reason ORDER BY n DESC, reason LIMIT ?",
            (broadcast_id, FAILED, UNKNOWN, limit),
        )
        return [(str(r[0]), int(r[1])) for r in rows]


@dataclass(frozen=True)
class UserNumbers:
    total: int
    set_up: int
    active_7d: int
    blocked: int


@dataclass(frozen=True)
class SellNumbers:
    signals: int  # exit signals received today
    landed: int
    failed: int
    skipped: int
    auto: int  # sells today (landed or failed) of users with auto-sell on
    median_tap_to_submit_ms: float | None


class OperatorNumbers:
    """The queries behind /stats (streams are live state, counted by the caller)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def users(self, now: int | None = None) -> UserNumbers:
        now = now_ms() if now is None else now
        # "set up": onboarding finished, or everything it asks for is stored (a key, a wallet, a strategy),
        # since the onboarding marker stays behind when the steps were done by command.
        row = await self.db.fetchone(
            """SELECT COUNT(*),
                 COALESCE(SUM(CASE WHEN s.onboarding_step = 'done'
                              OR EXISTS (SELECT 1 FROM lasersell_keys k WHERE k.telegram_id = u.telegram_id)
                              AND EXISTS (SELECT 1 FROM wallets w WHERE w.telegram_id = u.telegram_id)
                              AND s.strategy_json IS NOT NULL THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN u.last_seen_at >= ? THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(u.blocked), 0)
               FROM users u LEFT JOIN user_settings s ON s.telegram_id = u.telegram_id""",
            (now - 7 * DAY_MS,),
        )
        assert row is not None
        return UserNumbers(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    async def open_positions(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM positions WHERE status='open'")
        return int(row[0]) if row else 0

    async def sells_since(self, since_ms: int) -> SellNumbers:
        row = await self.db.fetchone(
            """SELECT COUNT(*),
                 COALESCE(SUM(CASE WHEN e.state = 'landed' THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN e.state = 'failed' THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN e.state = 'skipped' THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN e.state IN ('landed', 'failed') AND s.auto_sell = 1 THEN 1 ELSE 0 END), 0)
               FROM exit_signals e LEFT JOIN user_settings s ON s.telegram_id = e.telegram_id
               WHERE e.received_at_ms >= ?""",
            (since_ms,),
        )
        assert row is not None
        spans = await self.db.fetchall(
            "SELECT submitted_at_ms - tapped_at_ms FROM exit_signals WHERE received_at_ms >= ? "
            "AND tapped_at_ms IS NOT NULL AND submitted_at_ms IS NOT NULL ORDER BY 1",
            (since_ms,),
        )
        values = [int(r[0]) for r in spans]
        median: float | None = None
        if values:
            middle = len(values) // 2
            median = float(values[middle]) if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
        return SellNumbers(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), median)
