"""Telegram updates already taken, by update_id: with webhooks behind several instances Telegram may post an
update again (a timeout, a 5xx), to any instance; the first instance to record its id processes it.

The table is operational (created on first use, the same SQL on SQLite and PostgreSQL); ids older than a
day are pruned, long past Telegram's re-delivery window.
"""

from __future__ import annotations

import time

from storage.db import Database

TABLE = """CREATE TABLE IF NOT EXISTS telegram_updates (
    update_id    BIGINT PRIMARY KEY,
    received_at  BIGINT NOT NULL
)"""
KEEP_MS = 24 * 3600 * 1000


class SeenUpdates:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._last_prune = 0.0

    async def ensure_table(self) -> None:
        await self.db.ensure_tables([TABLE])

    async def first_time(self, update_id: int) -> bool:
        """Record the id; True for exactly one caller across every instance, False for a re-delivery."""
        now = int(time.time() * 1000)
        added = await self.db.write(
            "INSERT INTO telegram_updates (update_id, received_at) VALUES (?, ?) ON CONFLICT (update_id) DO NOTHING",
            (update_id, now),
        )
        if time.monotonic() - self._last_prune > 600:
            self._last_prune = time.monotonic()
            await self.db.write("DELETE FROM telegram_updates WHERE received_at < ?", (now - KEEP_MS,))
        return added == 1
