"""Small named values the bot keeps about its own database (the vault check value, the last rotation)."""

from __future__ import annotations

from storage.db import Database


class Meta:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> bytes | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key=?", (key,))
        return None if row is None else bytes(row[0])

    async def get_text(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key=?", (key,))
        return None if row is None else str(row[0])

    async def insert(self, key: str, value: bytes | str) -> None:
        await self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
