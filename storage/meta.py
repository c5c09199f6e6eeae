"""Small named values the bot keeps about its own database (the vault check value, the last rotation)."""

from __future__ import annotations

from storage.db import Database

VAULT_CHECK = "vault_check"  # a value sealed with the master key: proves a key opens this database
VAULT_ROTATED = "vault_rotated_at"  # "<ms>:<old key id>:<new key id>" of the last master key rotation

UPSERT = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"


class Meta:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> bytes | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key=?", (key,))
        return None if row is None else bytes(row[0])

    async def get_text(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM meta WHERE key=?", (key,))
        if row is None:
            return None
        value = row[0]  # PostgreSQL keeps the column's bytes (BYTEA), SQLite the text as written
        return bytes(value).decode() if isinstance(value, bytes | bytearray | memoryview) else str(value)

    async def insert(self, key: str, value: bytes | str) -> None:
        """Store a value that must not exist yet (raises on a duplicate key)."""
        await self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))

    async def put(self, key: str, value: bytes | str) -> None:
        await self.db.execute(UPSERT, (key, value))
