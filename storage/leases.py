"""Who owns each user's stream when several instances share one database: leases with fencing tokens.

LaserSell allows one stream session per API key, so exactly one instance may hold a user's stream. A row
of `stream_leases` says which (`owner`) until when (`expires_at`, the database's clock, unix ms); `token`
grows by one with every new owner, so an instance can tell that its lease was taken over meanwhile
(fencing) and an action stamped with an old token is refused.

`stream_instances` lists the live instances (each renews `seen_at` on its heartbeat): it spreads streams
evenly and divides shared budgets by the instance count.

The tables are operational, not user data: they are created on first use (IF NOT EXISTS), in the same SQL
on SQLite and PostgreSQL, and may be dropped while every instance is stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from storage.db import Database

TABLES = (
    """CREATE TABLE IF NOT EXISTS stream_leases (
        user_id     BIGINT PRIMARY KEY,
        owner       TEXT NOT NULL,
        token       BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS stream_leases_owner ON stream_leases(owner)",
    """CREATE TABLE IF NOT EXISTS stream_instances (
        owner       TEXT PRIMARY KEY,
        address     TEXT NOT NULL DEFAULT '',
        seen_at     BIGINT NOT NULL
    )""",
)


class _Now:
    """The clock leases are measured on, as SQL: PostgreSQL's (one clock for every instance, no skew between
    machines); on SQLite, one machine, this process's clock as a literal."""

    def __init__(self, db: Database) -> None:
        self.postgres = db.backend == "postgresql"

    def __str__(self) -> str:
        if self.postgres:
            return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        return str(int(time.time() * 1000))

    def __format__(self, spec: str) -> str:
        return str(self)


def now_sql(db: Database) -> _Now:
    return _Now(db)


@dataclass(frozen=True)
class Lease:
    user_id: int
    owner: str
    token: int
    expires_at: int


class Leases:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._now = now_sql(db)

    async def ensure_tables(self) -> None:
        await self.db.ensure_tables(TABLES)

    async def now_ms(self) -> int:
        row = await self.db.fetchone(f"SELECT {self._now}")
        return int(row[0]) if row else 0

    async def acquire(self, user_id: int, owner: str, ttl_ms: int) -> int | None:
        """Take the lease if it is free, expired or already ours; the fencing token, or None if another holds it."""
        await self.db.execute(
            f"""INSERT INTO stream_leases (user_id, owner, token, expires_at) VALUES (?, ?, 1, {self._now} + ?)
                ON CONFLICT (user_id) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at,
                  token=CASE WHEN stream_leases.owner = excluded.owner AND stream_leases.expires_at >= {self._now}
                             THEN stream_leases.token ELSE stream_leases.token + 1 END
                WHERE stream_leases.owner = excluded.owner OR stream_leases.expires_at < {self._now}""",
            (user_id, owner, ttl_ms),
        )
        lease = await self.get(user_id)
        return lease.token if lease is not None and lease.owner == owner else None

    async def renew(self, owner: str, ttl_ms: int) -> dict[int, int]:
        """Extend every lease this owner still holds; {user_id: token} of those (others were taken over)."""
        await self.db.execute(f"UPDATE stream_leases SET expires_at={self._now} + ? WHERE owner=?", (ttl_ms, owner))
        rows = await self.db.fetchall(
            f"SELECT user_id, token FROM stream_leases WHERE owner=? AND expires_at > {self._now}", (owner,)
        )
        return {int(r[0]): int(r[1]) for r in rows}

    async def release(self, owner: str, user_ids: Iterable[int] | None = None) -> int:
        """Give leases up at once (expired now, the token kept): another instance may take them immediately."""
        if user_ids is None:
            return await self.db.execute("UPDATE stream_leases SET expires_at=0 WHERE owner=?", (owner,))
        ids = list(user_ids)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        return await self.db.execute(
            f"UPDATE stream_leases SET expires_at=0 WHERE owner=? AND user_id IN ({marks})", (owner, *ids)
        )

    async def get(self, user_id: int) -> Lease | None:
        row = await self.db.fetchone(
            "SELECT user_id, owner, token, expires_at FROM stream_leases WHERE user_id=?", (user_id,)
        )
        return Lease(int(row[0]), str(row[1]), int(row[2]), int(row[3])) if row else None

    async def holder(self, user_id: int) -> str | None:
        """The instance holding a live lease on this user's stream, if any."""
        row = await self.db.fetchone(
            f"SELECT owner FROM stream_leases WHERE user_id=? AND expires_at > {self._now}", (user_id,)
        )
        return str(row[0]) if row else None

    async def held_by(self) -> dict[str, int]:
        """Live leases per owner."""
        rows = await self.db.fetchall(
            f"SELECT owner, COUNT(*) FROM stream_leases WHERE expires_at > {self._now} GROUP BY owner"
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def free(self, user_ids: Iterable[int]) -> list[int]:
        """Of these users, those whose stream nobody holds (no lease, or an expired one)."""
        ids = list(user_ids)
        if not ids:
            return []
        held: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = await self.db.fetchall(
                f"SELECT user_id FROM stream_leases WHERE expires_at > {self._now} "
                f"AND user_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            held.update(int(r[0]) for r in rows)
        return [u for u in ids if u not in held]

    # --- instances ----------------------------------------------------------------------------------------
    async def heartbeat(self, owner: str, address: str = "") -> None:
        await self.db.execute(
            f"""INSERT INTO stream_instances (owner, address, seen_at) VALUES (?, ?, {self._now})
                ON CONFLICT (owner) DO UPDATE SET address=excluded.address, seen_at=excluded.seen_at""",
            (owner, address),
        )

    async def live_instances(self, within_ms: int) -> list[str]:
        rows = await self.db.fetchall(
            f"SELECT owner FROM stream_instances WHERE seen_at > {self._now} - ? ORDER BY owner", (within_ms,)
        )
        return [str(r[0]) for r in rows]

    async def leave(self, owner: str) -> None:
        await self.db.execute("DELETE FROM stream_instances WHERE owner=?", (owner,))

    # --- what the lease holders need besides -------------------------------------------------------------
    async def stream_candidates(self) -> list[int]:
        """Users whose stream should run somewhere: not paused, not blocked, with a strategy."""
        rows = await self.db.fetchall(
            "SELECT s.telegram_id FROM user_settings s JOIN users u ON u.telegram_id = s.telegram_id "
            "WHERE s.paused=0 AND u.blocked=0 AND s.strategy_json IS NOT NULL ORDER BY s.telegram_id"
        )
        return [int(r[0]) for r in rows]

    async def notify(self, channel: str, payload: str) -> None:
        """PostgreSQL NOTIFY to every instance LISTENing on `channel` (nothing to do on SQLite: one process)."""
        if self.db.backend == "postgresql":
            await self.db.execute("SELECT pg_notify(?, ?)", (channel, payload))
