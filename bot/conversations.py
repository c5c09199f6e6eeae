"""Conversation state shared by instances: what a user's next typed message answers, and a strategy draft.

One instance keeps it in PTB's `user_data` (in memory, as before). With several webhook instances the next
message may reach another instance, so there the state is also written to the database when it changes and
read back before each update is handled."""

from __future__ import annotations

import logging
from typing import Any

from bot.tasks import BackgroundTasks
from storage.conversations import Conversations

log = logging.getLogger("lasersell_bot.conversations")


class ConversationStates:
    def __init__(self, store: Conversations, *, shared: bool) -> None:
        self.store = store
        self.shared = shared  # several instances (PostgreSQL): the database holds the state
        self._writes = BackgroundTasks()
        self._latest: dict[int, dict[str, Any] | None] = {}

    async def load(self, user_id: int) -> dict[str, Any] | None:
        if not self.shared:
            return None
        if user_id in self._latest:  # a write of ours still on its way: it is the newest
            return self._latest[user_id]
        return await self.store.get(user_id)

    def save_soon(self, user_id: int, state: dict[str, Any] | None) -> None:
        """Write the state in the background; a no-op for a single instance. Each write stores the newest
        state, so writes finishing out of order still leave the newest in the database."""
        if not self.shared:
            return
        self._latest[user_id] = state
        self._writes.spawn(self._write(user_id, state), name="conversation-state")

    async def _write(self, user_id: int, state: dict[str, Any] | None) -> None:
        await self.store.put(user_id, self._latest.get(user_id, state))
        if self._latest.get(user_id) is state:
            del self._latest[user_id]

    async def close(self) -> None:
        await self._writes.drain()
