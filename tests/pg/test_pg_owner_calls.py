"""What needs the stream's owner (ask for a fresh exit) reaches it from any instance, or says no in time."""

from __future__ import annotations

import types
from typing import Any

from bot.ownership import OwnedStreams
from storage.db import Database

USER = 42
TIMING = {"ttl_s": 30.0, "heartbeat_s": 10.0, "fence_margin_s": 5.0, "takeover_jitter_s": 0.0}


class Positions:
    def __init__(self) -> None:
        self.updates: list[tuple[int, int, dict[str, Any]]] = []

    async def update(self, user_id: int, position_id: int, **values: Any) -> None:
        self.updates.append((user_id, position_id, values))


class Supervisor:
    """The calls a stream owner answers; `asked` records the exits it asked its stream for."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int, int | None]] = []
        self.positions = Positions()

    async def request_exit(self, user_id: int, position_id: int, slippage_bps: int | None = None) -> bool:
        self.asked.append((user_id, position_id, slippage_bps))
        return True

    async def close_position(self, user_id: int, position_id: int) -> bool:
        return True

    async def set_position_strategy(self, user_id: int, position_id: int, strategy: Any) -> bool:
        return True

    async def refresh(self, user_id: int) -> None:
        return None

    async def stop_user(self, user_id: int) -> None:
        return None


async def instance(url: str, name: str, users: list[int]) -> tuple[OwnedStreams, Supervisor, Database]:
    db = await Database.open(url)
    supervisor = Supervisor()
    services = types.SimpleNamespace(db=db, streams=supervisor, broadcasts=None, outbox=None, settings=None)
    owned = OwnedStreams(services, owner=name, **TIMING)

    async def candidates() -> list[int]:
        return users

    owned.ownership.candidates = candidates
    return owned, supervisor, db


async def test_an_exit_asked_on_another_instance_is_asked_by_the_owner(pg_url: str) -> None:
    a, sup_a, db_a = await instance(pg_url, "a", [USER])
    b, sup_b, db_b = await instance(pg_url, "b", [])
    try:
        await a.start()
        await b.start()
        assert a.ownership.holds(USER) and not b.ownership.holds(USER)
        assert await sup_b.request_exit(USER, 3, 700) is True  # a Sell tap handled by b
        assert sup_a.asked == [(USER, 3, 700)]
        assert sup_b.positions.updates == [(USER, 3, {"waiting_exit": True})]  # kept even if the call is lost
        # the owner stops: nobody holds the stream, the answer is a quick no (the exit waits in the database)
        await a.stop()
        assert await sup_b.request_exit(USER, 4) is False
        assert sup_a.asked == [(USER, 3, 700)]
    finally:
        await b.stop()
        await a.stop()
        await db_a.close()
        await db_b.close()
