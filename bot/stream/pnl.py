"""The PnL batcher: noisy live numbers (PnL, liquidity) kept in memory and written in batches.

Exit signals never queue behind PnL writes: the event router only lays the newest numbers into a dict
here, and one timer writes them all at most once per `flush_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

from storage.history import PnlHistory
from storage.positions import Position, Positions

log = logging.getLogger("lasersell_bot.streams")


class PnlBatcher:
    def __init__(self, positions: Positions, history: PnlHistory, *, flush_interval_s: float = 1.0) -> None:
        self.positions = positions
        self.history = history
        self.flush_interval_s = flush_interval_s
        # (user, position) -> latest PnL / liquidity columns not yet written
        self.live: dict[tuple[int, int], dict[str, Any]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closing = False

    def columns(self, user_id: int, position_id: int) -> dict[str, Any]:
        """The not-yet-written columns of a position, to lay new numbers into (then call `schedule`)."""
        return self.live.setdefault((user_id, position_id), {})

    def schedule(self) -> None:
        if self._flush_handle is None and not self._closing:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_interval_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        batch, self.live = self.live, {}
        try:
            await self.positions.apply_live(batch)
            await self.history.flush()
        except Exception:
            log.exception("writing live position numbers failed")

    async def position(self, user_id: int, position_id: int) -> Position | None:
        """The stored position with the newest live numbers laid over it."""
        position = await self.positions.get(user_id, position_id)
        live = self.live.get((user_id, position_id))
        if position is None or not live:
            return position
        return replace(position, **{k: v for k, v in live.items() if v is not None})

    async def stop_timer(self) -> None:
        """No more timed writes; a running one is let finish (then `flush` writes what is left)."""
        self._closing = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
