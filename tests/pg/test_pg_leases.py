"""Stream ownership by lease: two instances (two Ownerships, each with its own pool) in one process."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from bot.ownership import Ownership
from storage.db import Database
from storage.leases import Leases
from storage.updates import SeenUpdates

USERS = list(range(101, 111))
_INSTANCES: list[Instance] = []


class Instance:
    """One bot instance's view: the streams it runs, and when each started and stopped."""

    def __init__(self, db: Database, name: str, **timing: float) -> None:
        self.running: set[int] = set()
        self.started: list[tuple[int, float]] = []
        self.changed = asyncio.Event()
        _INSTANCES.append(self)
        self.ownership = Ownership(
            db, owner=name, candidates=self.candidates, on_acquired=self.start_stream, on_lost=self.stop_stream,
            rng=random.Random(name), **timing,
        )

    async def candidates(self) -> list[int]:
        return list(USERS)

    async def start_stream(self, user_id: int) -> None:
        self.running.add(user_id)
        self.started.append((user_id, time.monotonic()))
        self.changed.set()

    async def stop_stream(self, user_id: int) -> None:
        self.running.discard(user_id)
        self.changed.set()


async def until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for a stream to start or stop somewhere until the predicate holds."""
    instances = [i for i in _INSTANCES]
    async with asyncio.timeout(timeout):
        while not predicate():
            waits = [asyncio.ensure_future(i.changed.wait()) for i in instances]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            for i in instances:
                i.changed.clear()


async def test_a_lease_is_held_by_one_owner_and_a_new_owner_gets_a_higher_token(db_target: Path | str) -> None:
    db = await Database.open(db_target)
    try:
        leases = Leases(db)
        await leases.ensure_tables()
        first = await leases.acquire(7, "a", 60_000)
        assert first is not None
        assert await leases.acquire(7, "b", 60_000) is None  # held by a
        assert await leases.acquire(7, "a", 60_000) == first  # renewing one's own keeps the token
        assert await leases.renew("a", 60_000) == {7: first}
        assert await leases.release("a") == 1
        second = await leases.acquire(7, "b", 60_000)
        assert second is not None and second > first
        assert await leases.renew("a", 60_000) == {}  # a is fenced out
        assert await leases.holder(7) == "b"
    finally:
        await db.close()


async def test_two_instances_never_run_the_same_stream_and_a_dead_ones_streams_move(pg_url: str) -> None:
    timing = {"ttl_s": 1.5, "heartbeat_s": 0.3, "fence_margin_s": 0.5, "takeover_jitter_s": 0.1}
    db_a, db_b = await Database.open(pg_url), await Database.open(pg_url)
    a, b = Instance(db_a, "a", **timing), Instance(db_b, "b", **timing)
    try:
        await a.ownership.start()
        await b.ownership.start()
        await until(lambda: len(a.running | b.running) == len(USERS))
        assert not a.running & b.running
        # a freezes (its heartbeat stops, as in a stalled or killed process); b takes every stream over
        assert a.ownership._task is not None
        a.ownership._task.cancel()
        moved = set(a.running)
        assert moved
        await until(lambda: moved <= b.running)
        took_over_at = {u: t for u, t in b.started if u in moved}
        # a's leases had run out in a's own reckoning before b started any of them: never two sessions
        for user_id in moved:
            assert not a.ownership.holds(user_id)
            assert a.ownership._valid_until <= took_over_at[user_id]
        leases = Leases(db_b)
        assert all([await leases.holder(u) == "b" for u in moved])
        # a wakes up: its heartbeat finds the tokens changed and stops those streams (fenced out)
        await a.ownership.tick(jitter=False)
        assert not a.running & b.running and not a.ownership.held
    finally:
        await b.ownership.stop()
        await a.ownership.stop()
        await db_a.close()
        await db_b.close()


async def test_a_stopping_instance_hands_its_streams_over_at_once(pg_url: str) -> None:
    # heartbeats far apart: only the stopping instance's NOTIFY can move the streams in time
    timing = {"ttl_s": 60.0, "heartbeat_s": 30.0, "fence_margin_s": 5.0, "takeover_jitter_s": 0.1}
    db_a, db_b = await Database.open(pg_url), await Database.open(pg_url)
    a, b = Instance(db_a, "a", **timing), Instance(db_b, "b", **timing)
    try:
        await a.ownership.start()
        await b.ownership.start()
        assert a.running == set(USERS) and not b.running  # a came first and took them all
        await a.ownership.tick(jitter=False)
        assert a.ownership.live_count == b.ownership.live_count == 2  # each sends half of Telegram's budget
        await a.ownership.stop()
        assert not a.running  # stopped before released
        await until(lambda: b.running == set(USERS), timeout=10.0)
        assert b.ownership.takeovers == len(USERS)
        await b.ownership.tick(jitter=False)
        assert b.ownership.live_count == 1  # a left: b has the whole budget again
    finally:
        await b.ownership.stop()
        await a.ownership.stop()
        await db_a.close()
        await db_b.close()


async def test_instances_starting_together_create_the_operational_tables_without_failing(pg_url: str) -> None:
    """Instances start together on a new database: each ensures the lease and update tables at once. PostgreSQL's
    `CREATE TABLE IF NOT EXISTS` races itself (a unique-index error from its catalog); every instance must
    start, and the tables must work afterwards."""
    dbs = [await Database.open(pg_url) for _ in range(6)]
    try:
        for _ in range(3):  # the race is a matter of timing: give it several chances on fresh tables
            await dbs[0].execute("DROP TABLE IF EXISTS stream_leases")
            await dbs[0].execute("DROP TABLE IF EXISTS stream_instances")
            await dbs[0].execute("DROP TABLE IF EXISTS telegram_updates")
            results = await asyncio.gather(
                *(Leases(db).ensure_tables() for db in dbs),
                *(SeenUpdates(db).ensure_table() for db in dbs),
                return_exceptions=True,
            )
            assert [r for r in results if isinstance(r, BaseException)] == []
        seen = [SeenUpdates(db) for db in dbs]
        firsts = await asyncio.gather(*(s.first_time(77) for s in seen))
        assert sorted(firsts) == [False] * 5 + [True]
    finally:
        for db in dbs:
            await db.close()
