"""Background work never dies silently: a crashed task is logged and its owner told; the signature
watcher outlives an answer it cannot read, so no sell in flight waits forever."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.exits.confirm import SignatureWatcher
from bot.solana_rpc import SignatureStatus
from bot.tasks import BackgroundTasks


async def test_a_background_task_that_dies_is_logged_and_its_owner_told(caplog: pytest.LogCaptureFixture) -> None:
    told: list[tuple[str, str]] = []
    tasks = BackgroundTasks(on_failure=lambda name, exc: told.append((name, type(exc).__name__)))

    async def confirm_sell() -> None:
        raise KeyError("slot")

    with caplog.at_level(logging.ERROR, logger="lasersell_bot.tasks"):
        task = tasks.spawn(confirm_sell(), name="confirm-sell")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next turn

    assert told == [("confirm-sell", "KeyError")]
    assert tasks.failures == 1
    assert "confirm-sell died" in caplog.text


async def test_a_cancelled_task_is_not_reported_as_dead(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()
    started = asyncio.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks.spawn(wait_forever())
    await started.wait()
    await tasks.cancel_all()
    assert tasks.failures == 0


class BrokenThenGoodRpc:
    """Answers the first status call with an error the parser never expected, then the landed status."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_signature_statuses(self, signatures: list[str]) -> list[SignatureStatus | None]:
        self.calls += 1
        if self.calls == 1:
            raise TypeError("'str' object cannot be interpreted as an integer")
        return [SignatureStatus(5, "confirmed", None) for _ in signatures]


async def test_the_watcher_survives_an_unreadable_answer_and_the_sell_still_lands() -> None:
    rpc = BrokenThenGoodRpc()
    watcher = SignatureWatcher(rpc, interval_s=0.01)
    first = await asyncio.wait_for(watcher.next_status("sig"), 2)
    second = await asyncio.wait_for(watcher.next_status("sig"), 2)
    await watcher.close()  # shutdown does not raise either

    assert first is None  # unknown that round
    assert second is not None and second.landed
    assert rpc.calls == 2
