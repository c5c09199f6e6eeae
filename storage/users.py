"""Telegram users."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from storage.db import Database


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class User:
    telegram_id: int
    chat_id: int
    first_name: str
    last_name: str | None
    username: str | None
    created_at: int
    last_seen_at: int
    blocked: bool


def _row(row: object) -> User:
    r = dict(row)  # type: ignore[call-overload]
    return User(
        telegram_id=r["telegram_id"],
        chat_id=r["chat_id"],
        first_name=r["first_name"],
        last_name=r["last_name"],
        username=r["username"],
        created_at=r["created_at"],
        last_seen_at=r["last_seen_at"],
        blocked=bool(r["blocked"]),
    )


SEEN_BATCH_S = 1.0


class Users:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending_seen: dict[int, tuple[str, str | None, str | None, int, int]] = {}
        self._flushing: asyncio.Future[None] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None

    async def seen_often(
        self, telegram_id: int, chat_id: int, first_name: str, last_name: str | None = None, username: str | None = None
    ) -> bool:
        """`seen` for every update. A known, unblocked user's "last seen" is written in batches about once a
        second, so a burst of taps does not queue a write each in front of the writes that matter.
        Returns True when the user had blocked the bot and is back."""
        current = await self.get(telegram_id)  # a read: cheap
        if current is None or current.blocked or current.chat_id != chat_id:
            await self.seen(telegram_id, chat_id, first_name, last_name, username)
            return current is not None and current.blocked
        self._pending_seen[telegram_id] = (first_name or "", last_name, username, now_ms(), telegram_id)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(SEEN_BATCH_S, self._start_flush)
        return False

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flushing = asyncio.ensure_future(self.flush_seen())

    async def close(self) -> None:
        """Write what is batched; a timed write under way is let finish first."""
        if self._flushing is not None and not self._flushing.done():
            with contextlib.suppress(Exception):
                await self._flushing
        await self.flush_seen()

    async def flush_seen(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = None
        pending, self._pending_seen = self._pending_seen, {}
        if pending:
            async with self.db.transaction() as conn:
                await conn.executemany(
                    "UPDATE users SET first_name=?, last_name=?, username=?, last_seen_at=? WHERE telegram_id=?",
                    list(pending.values()),
                )

    async def seen(
        self,
        telegram_id: int,
        chat_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
    ) -> User:
        """Record that the user talked to the bot (creating them); a message from them unblocks them."""
        now = now_ms()
        await self.db.execute(
            """INSERT INTO users (telegram_id, chat_id, first_name, last_name, username, created_at, last_seen_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(telegram_id) DO UPDATE SET chat_id=excluded.chat_id, first_name=excluded.first_name,
                 last_name=excluded.last_name, username=excluded.username, last_seen_at=excluded.last_seen_at,
                 blocked=0""",
            (telegram_id, chat_id, first_name or "", last_name, username, now, now),
        )
        user = await self.get(telegram_id)
        assert user is not None
        return user

    async def get(self, telegram_id: int) -> User | None:
        row = await self.db.fetchone("SELECT * FROM users WHERE telegram_id=?", (telegram_id,))
        return _row(row) if row else None

    async def blocked_chat(self, chat_id: int) -> int | None:
        """Telegram says the chat blocked the bot: mark its user blocked; returns their id (None: unknown)."""
        row = await self.db.fetchone("SELECT telegram_id FROM users WHERE chat_id=?", (chat_id,))
        if row is None:
            return None
        await self.set_blocked(int(row[0]))
        return int(row[0])

    async def set_blocked(self, telegram_id: int, blocked: bool = True) -> None:
        await self.db.execute("UPDATE users SET blocked=? WHERE telegram_id=?", (int(blocked), telegram_id))

    async def all_reachable(self) -> list[User]:
        rows = await self.db.fetchall("SELECT * FROM users WHERE blocked=0 ORDER BY telegram_id")
        return [_row(r) for r in rows]

    async def count(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM users")
        return int(row[0]) if row else 0


DEFAULT_BUY_PRESETS: tuple[int, ...] = (100_000_000, 500_000_000, 1_000_000_000)  # 0.1, 0.5 and 1 SOL
MAX_BUY_PRESETS = 4


class BuyPresets:
    """The SOL amounts on a token panel's buy buttons, per user (lamports; migration 0009).

    Forgetting a user removes their row with the user (ON DELETE CASCADE).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, telegram_id: int) -> tuple[int, ...]:
        row = await self.db.fetchone("SELECT lamports FROM buy_presets WHERE telegram_id=?", (telegram_id,))
        if row is None:
            return DEFAULT_BUY_PRESETS
        values = tuple(int(v) for v in str(row[0]).split(",") if v.strip().isdigit())
        return values or DEFAULT_BUY_PRESETS

    async def set(self, telegram_id: int, lamports: tuple[int, ...]) -> None:
        await self.db.execute(
            "INSERT INTO buy_presets (telegram_id, lamports) VALUES (?, ?) "
            "ON CONFLICT(telegram_id) DO UPDATE SET lamports=excluded.lamports",
            (telegram_id, ",".join(str(v) for v in lamports)),
        )
