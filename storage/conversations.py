"""A user's open conversation (what their next typed message answers), stored for every instance to read."""

from __future__ import annotations

import json
import time
from typing import Any

from storage.db import Database


class Conversations:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, telegram_id: int) -> dict[str, Any] | None:
        row = await self.db.fetchone("SELECT state_json FROM conversations WHERE telegram_id=?", (telegram_id,))
        return json.loads(row[0]) if row else None

    async def put(self, telegram_id: int, state: dict[str, Any] | None) -> None:
        if not state:
            await self.db.execute("DELETE FROM conversations WHERE telegram_id=?", (telegram_id,))
            return
        await self.db.execute(
            "INSERT INTO conversations (telegram_id, state_json, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (telegram_id) DO UPDATE SET state_json=excluded.state_json, updated_at=excluded.updated_at",
            (telegram_id, json.dumps(state, separators=(",", ":")), int(time.time() * 1000)),
        )
