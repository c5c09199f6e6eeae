"""Deadline timers: one per open position, asking the stream for an exit when the strategy's time is up."""

from __future__ import annotations

import asyncio
import time

from bot.stream.worker import Worker
from bot.tasks import BackgroundTasks
from storage.positions import Positions


class DeadlineTimers:
    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.requests: set[tuple[int, int]] = set()  # exits the deadline timer asked for
        self._fired = BackgroundTasks()

    def arm(
        self, worker: Worker, position_id: int, opened_at_ms: int | None, first_seen_ms: int, watched: bool,
        *, replace: bool = False,
    ) -> None:
        """One timer per position from its opening time; a re-sent position_opened does not restart it."""
        if watched or (position_id in worker.deadlines and not replace):
            return
        if replace and position_id in worker.deadlines:
            worker.deadlines.pop(position_id).cancel()
        deadline_s = worker.wanted.strategy.deadline_s
        if not deadline_s:
            return
        start_local_ms = (opened_at_ms - worker.clock_offset_ms) if opened_at_ms else first_seen_ms
        due_s = (start_local_ms + deadline_s * 1000) / 1000 - time.time()
        loop = asyncio.get_running_loop()
        worker.deadlines[position_id] = loop.call_later(
            max(0.0, due_s), lambda: self._fired.spawn(self._fire(worker, position_id), name="deadline")
        )

    def disarm(self, worker: Worker, position_id: int) -> None:
        handle = worker.deadlines.pop(position_id, None)
        if handle is not None:
            handle.cancel()

    def disarm_all(self, worker: Worker) -> None:
        for handle in worker.deadlines.values():
            handle.cancel()
        worker.deadlines.clear()

    async def _fire(self, worker: Worker, position_id: int) -> None:
        worker.deadlines.pop(position_id, None)
        position = await self.positions.get(worker.user_id, position_id)
        if position is None or position.status != "open" or position.deadline_fired:
            return
        await self.positions.update(worker.user_id, position_id, waiting_exit=True, deadline_fired=True)
        self.requests.add((worker.user_id, position_id))
        # not sent while reconnecting: waiting_exit has it asked once the position is announced again
        await worker.ask_exit(position_id)

    def exit_reason(self, user_id: int, position_id: int, reason: str) -> str:
        """The stream answers our request with `manual`: say it was the deadline when the deadline asked."""
        if (user_id, position_id) in self.requests:
            self.requests.discard((user_id, position_id))
            if reason in ("manual", "sell_now", ""):
                return "deadline_timeout"
        return reason

    async def close(self) -> None:
        await self._fired.cancel_all()
