"""Failover of stream ownership between instances on PostgreSQL: `python -m bench.failover`.

Starts INSTANCES processes that share one PostgreSQL database and own USERS streams by lease
(bot/ownership.py, the production code and timings). A stand-in for LaserSell holds each user's exit
signals until an owner of that user's stream takes them (as the stream re-sends pending exits after a
reconnect): the owner claims each one with one atomic UPDATE and "messages" it, at its share of Telegram's
per-bot budget (`bot.ownership.budget_share`, as the outbox paces several instances). The bench then emits
signals at a steady rate, SIGKILLs the instance holding the most streams in the middle, keeps emitting
through the takeover, and waits until every stream has an owner and every signal a message.

The last line is JSON: instances, users, takeover_p99_s (kill -> the stream running elsewhere),
lost_signals, double_sells (a signal messaged twice, or a stream run by two live instances at once),
peak_msgs_per_s (messages in the busiest second).

TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names the server; the bench works in
a schema of its own and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bot import runtime
from bot.ownership import Ownership, budget_share
from storage.db import Database
from storage.leases import Leases

# Telegram's ~30 messages/s per bot, the default TELEGRAM_GLOBAL_RATE: one budget for every instance
TELEGRAM_RATE = 30.0
DEFAULT_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SIGNALS_TABLE = """CREATE TABLE IF NOT EXISTS bench_signals (
    id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, emitted_at DOUBLE PRECISION NOT NULL,
    delivered_by TEXT, delivered_at DOUBLE PRECISION, deliveries BIGINT NOT NULL DEFAULT 0)"""


# --- one instance (a child process) -------------------------------------------------------------------------
async def child(url: str, name: str, users: int) -> None:

    db = await Database.open(url, migrate=False)

    def emit(kind: str, user_id: int) -> None:
        sys.stdout.write(json.dumps({"ev": kind, "u": user_id, "i": name, "t": time.monotonic()}) + "\n")
        sys.stdout.flush()

    async def candidates() -> list[int]:
        return list(range(1, users + 1))

    async def acquired(user_id: int) -> None:
        emit("up", user_id)

    async def lost(user_id: int) -> None:
        emit("down", user_id)

    live = [1]

    async def tick(count: int) -> None:
        live[0] = count

    ownership = Ownership(db, owner=name, candidates=candidates, on_acquired=acquired, on_lost=lost, on_tick=tick)
    await ownership.start()
    emit("ready", 0)
    # Telegram's per-bot budget, shared as the outbox shares it (bot.ownership.budget_share, a bucket of one)
    tokens, refilled = 1.0, time.monotonic()
    try:
        while True:  # the streams this instance owns hand it their pending exit signals
            held = [u for u in list(ownership.held) if ownership.holds(u)]
            rate = budget_share(TELEGRAM_RATE, live[0])
            now = time.monotonic()
            tokens, refilled = min(1.0, tokens + (now - refilled) * rate), now
            if not held or tokens < 1:
                await asyncio.sleep(max(0.01, (1 - tokens) / rate) if held else 0.1)
                continue
            row = await db.fetchone(
                f"UPDATE bench_signals SET delivered_by=?, delivered_at=?, deliveries=deliveries+1 WHERE id = ("
                f"SELECT id FROM bench_signals WHERE delivered_by IS NULL AND user_id IN ({','.join('?' * len(held))}) "
                f"ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id",
                (name, time.monotonic(), *held),
            )
            if row is None:
                await asyncio.sleep(0.1)
                continue
            tokens -= 1
    finally:
        await ownership.stop()
        await db.close()


# --- the bench -------------------------------------------------------------------------------------------
class Fleet:
    def __init__(self, url: str, instances: int, users: int) -> None:
        self.url, self.instances, self.users = url, instances, users
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.owner: dict[int, str] = {}
        self.intervals: list[tuple[int, str, float, float | None]] = []  # user, instance, up, down
        self.open: dict[tuple[int, str], float] = {}
        self.dead: dict[str, float] = {}
        self.ready: set[str] = set()
        self.changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for n in range(self.instances):
            name = f"i{n}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.failover", "--child", name, "--url", self.url, "--users", str(self.users),
                stdout=asyncio.subprocess.PIPE,
            )
            self.procs[name] = proc
            self._readers.append(asyncio.create_task(self._read(name, proc)))

    async def _read(self, name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            user, t = int(ev["u"]), float(ev["t"])
            if ev["ev"] == "ready":
                self.ready.add(name)
            elif ev["ev"] == "up":
                self.open[(user, name)] = t
                self.owner[user] = name
            elif ev["ev"] == "down":
                began = self.open.pop((user, name), None)
                if began is not None:
                    self.intervals.append((user, name, began, t))
                if self.owner.get(user) == name:
                    del self.owner[user]
            self.changed.set()

    async def until(self, predicate: Any, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
                return True
        return predicate()

    def kill(self, name: str) -> float:
        self.procs[name].send_signal(signal.SIGKILL)
        at = time.monotonic()
        self.dead[name] = at
        for (user, inst), began in list(self.open.items()):  # a killed process's streams end with it
            if inst == name:
                self.intervals.append((user, inst, began, at))
                del self.open[(user, inst)]
                if self.owner.get(user) == inst:
                    del self.owner[user]
        return at

    async def stop(self) -> None:
        for name, proc in self.procs.items():
            if name not in self.dead and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
        for task in self._readers:
            task.cancel()

    def overlaps(self) -> int:
        now = time.monotonic()
        spans: dict[int, list[tuple[float, float]]] = {}
        for user, _inst, up, down in self.intervals:
            spans.setdefault(user, []).append((up, down if down is not None else now))
        for (user, _inst), up in self.open.items():
            spans.setdefault(user, []).append((up, now))
        count = 0
        for user_spans in spans.values():
            user_spans.sort()
            for (_a0, a1), (b0, _b1) in zip(user_spans, user_spans[1:], strict=False):
                if b0 < a1:
                    count += 1
        return count


async def run(url: str, instances: int, users: int, rate: float, emit_s: float) -> dict[str, Any]:


    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    target = f"{url}{sep}search_path={schema}"
    db = await Database.open(target)
    await Leases(db).ensure_tables()
    await db.execute(SIGNALS_TABLE)
    fleet = Fleet(target, instances, users)
    try:
        await fleet.start()
        if not await fleet.until(lambda: len(fleet.ready) == instances and len(fleet.owner) == users, 60):
            raise RuntimeError(f"only {len(fleet.owner)} of {users} streams found an owner")
        next_id = 0
        loop_start = time.monotonic()
        killed_at: float | None = None
        victims: set[int] = set()
        victim = ""
        while time.monotonic() - loop_start < emit_s:
            if killed_at is None and time.monotonic() - loop_start >= emit_s / 3:
                counts: dict[str, int] = {}
                for inst in fleet.owner.values():
                    counts[inst] = counts.get(inst, 0) + 1
                victim = max(counts, key=lambda k: counts[k])
                victims = {u for u, inst in fleet.owner.items() if inst == victim}
                killed_at = fleet.kill(victim)
            user = 1 + next_id % users
            next_id += 1
            await db.execute(
                "INSERT INTO bench_signals (id, user_id, emitted_at) VALUES (?, ?, ?)", (next_id, user, time.monotonic())
            )
            await asyncio.sleep(1 / rate)
        assert killed_at is not None
        await fleet.until(lambda: len(fleet.owner) == users, 60)

        async def pending() -> int:
            row = await db.fetchone("SELECT COUNT(*) FROM bench_signals WHERE delivered_by IS NULL")
            return int(row[0]) if row else 0

        for _ in range(150):  # the owners take what is pending every 0.1 s: allow 30 s
            if not await pending():
                break
            await asyncio.sleep(0.2)  # noqa: ASYNC110 - polling another process's writes
        takeovers = sorted(
            min(up for u2, inst, up, _d in fleet.intervals + [(u, i, t, None) for (u, i), t in fleet.open.items()]
                if u2 == user and inst != victim and up >= killed_at) - killed_at
            for user in victims
        )
        rows = await db.fetchall("SELECT delivered_at FROM bench_signals WHERE delivered_at IS NOT NULL")
        per_second: dict[int, int] = {}
        for row in rows:
            second = int(float(row[0]))
            per_second[second] = per_second.get(second, 0) + 1
        twice = await db.fetchone("SELECT COUNT(*) FROM bench_signals WHERE deliveries > 1")
        return {
            "instances": instances,
            "users": users,
            "signals": next_id,
            "moved_streams": len(victims),
            "takeover_p50_s": round(takeovers[len(takeovers) // 2], 2) if takeovers else None,
            "takeover_p99_s": round(takeovers[min(len(takeovers) - 1, int(len(takeovers) * 0.99))], 2) if takeovers else None,
            "lost_signals": await pending(),
            "double_sells": int(twice[0] if twice else 0) + fleet.overlaps(),
            "peak_msgs_per_s": max(per_second.values()) if per_second else 0,
        }
    finally:
        await fleet.stop()
        await db.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="exit signals emitted per second")
    parser.add_argument("--seconds", type=float, default=24.0, help="how long signals are emitted (the kill at 1/3)")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            runtime.run(child(args.url, args.child, args.users))
        return
    figures = runtime.run(run(args.url, args.instances, args.users, args.rate, args.seconds))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
