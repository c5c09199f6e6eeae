"""Background work a service starts and must end at shutdown (a sell being confirmed, a retry)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("lasersell_bot.tasks")


class BackgroundTasks:
    """Keeps a reference to every task it starts (so none is collected mid-flight) and cancels them together.

    A task that dies of an exception is logged with its name and traceback (asyncio would only mention it
    when the task is collected, if ever), and `on_failure`, when given, is told so the owner can settle
    what the task left half done.
    """

    def __init__(self, on_failure: Callable[[str, BaseException], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_failure = on_failure
        self.failures = 0

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name or getattr(coro, "__qualname__", None))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.failures += 1
        log.error("background task %s died: %s", task.get_name(), type(exc).__name__, exc_info=exc)
        if self.on_failure is not None:
            try:
                self.on_failure(task.get_name(), exc)
            except Exception:
                log.exception("handling the death of %s failed", task.get_name())

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for every task running now to finish (none is cancelled)."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
