"""What happened to a position over time (value samples, exit marks) and the buys asked for by chat.

The value history feeds the PnL chart. It is bounded twice: at most one sample per `min_interval_ms`
of stream time (the first of each interval is kept; the chart appends the current value), and at most
`max_samples` per position: past that, every other sample of the older half is dropped, so recent
history stays dense and old history gets coarser.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
import weakref
from dataclasses import dataclass, fields
from typing import Any

from storage.db import Database
from storage.trades import TradeStates
from storage.users import now_ms

log = logging.getLogger("lasersell_bot.history")

MIN_INTERVAL_MS = 3_000
MAX_SAMPLES = 2_000


@dataclass(frozen=True)
class Sample:
    t_ms: int
    proceeds_units: int
    profit_units: int

    @property
    def basis_units(self) -> int:
        """What the held tokens cost: value minus profit."""
        return self.proceeds_units - self.profit_units


@dataclass(frozen=True)
class Mark:
    t_ms: int
    kind: str  # signal, sell, closed
    label: str


@dataclass
class _Track:
    last_bucket: int
    count: int


_BY_DB: weakref.WeakKeyDictionary[Database, PnlHistory] = weakref.WeakKeyDictionary()


class PnlHistory:
    def __init__(self, db: Database, *, min_interval_ms: int = MIN_INTERVAL_MS, max_samples: int = MAX_SAMPLES) -> None:
        self.db = db
        self.min_interval_ms = min_interval_ms
        self.max_samples = max_samples
        self._tracks: dict[tuple[int, int], _Track] = {}
        self._pending: list[tuple[int, int, int, int, int]] = []
        self._clock_offset_ms: dict[int, int] = {}  # per user: stream time minus our time

    @classmethod
    def for_db(cls, db: Database) -> PnlHistory:
        """The one history of this database (its in-memory pacing must be shared by every caller)."""
        history = _BY_DB.get(db)
        if history is None:
            history = _BY_DB[db] = cls(db)
        return history

    def stream_now_ms(self, user_id: int) -> int:
        """Now on the user's stream clock, so marks line up with samples."""
        return int(time.time() * 1000) + self._clock_offset_ms.get(user_id, 0)

    async def observe(self, user_id: int, kind: str, msg: dict[str, Any]) -> None:
        """Record what a stream message means for the history; never raises (it must not cost an exit)."""
        try:
            if kind == "pnl_update":
                await self.sample(user_id, msg)
            elif kind == "exit_signal_with_tx":
                words = str(msg.get("reason") or "exit")
                if msg.get("sell_tokens") and msg.get("position_tokens"):
                    words += f" {100 * int(msg['sell_tokens']) / int(msg['position_tokens']):.0f}%"
                await self.mark(user_id, int(msg["position_id"]), "signal", words, msg.get("triggered_at_ms"))
            elif kind == "position_closed":
                await self.mark(user_id, int(msg["position_id"]), "closed", str(msg.get("reason") or "closed"))
        except Exception:
            log.exception("could not record %s in the position history", kind)

    async def sample(self, user_id: int, msg: dict[str, Any]) -> bool:
        """Keep this pnl_update if it opens a new interval; returns whether it was stored."""
        if msg.get("proceeds_units") is None or msg.get("profit_units") is None:
            return False
        local = int(time.time() * 1000)
        t_ms = int(msg["server_time_ms"]) if isinstance(msg.get("server_time_ms"), int) else local
        self._clock_offset_ms[user_id] = t_ms - local
        key = (user_id, int(msg["position_id"]))
        track = self._tracks.get(key) or await self._load(key)
        bucket = t_ms // self.min_interval_ms
        if bucket <= track.last_bucket:
            return False
        track.last_bucket = bucket
        # written in batches by flush(): a thousand positions must not mean a thousand writes a few seconds
        self._pending.append((user_id, key[1], t_ms, int(msg["proceeds_units"]), int(msg["profit_units"])))
        track.count += 1
        return True

    async def flush(self) -> None:
        """Write the samples kept since the last flush (one transaction), then thin long histories."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 100):  # in chunks: exit signals never wait for the whole batch
            async with self.db.transaction() as conn:
                await conn.executemany(
                    "INSERT INTO pnl_samples (telegram_id, position_id, t_ms, proceeds_units, profit_units) "
                    "VALUES (?,?,?,?,?)",
                    pending[start : start + 100],
                )
        for key in {(p[0], p[1]) for p in pending}:
            track = self._tracks.get(key)
            while track is not None and track.count > self.max_samples:
                before = track.count
                await self._thin(key, track)
                if track.count >= before:
                    break

    async def _load(self, key: tuple[int, int]) -> _Track:
        row = await self.db.fetchone(
            "SELECT COUNT(*), MAX(t_ms) FROM pnl_samples WHERE telegram_id=? AND position_id=?", key
        )
        count, last = (int(row[0]), row[1]) if row else (0, None)
        track = _Track(last_bucket=(int(last) // self.min_interval_ms) if last is not None else -1, count=count)
        self._tracks[key] = track
        return track

    async def _thin(self, key: tuple[int, int], track: _Track) -> None:
        rows = await self.db.fetchall(
            "SELECT t_ms FROM pnl_samples WHERE telegram_id=? AND position_id=? ORDER BY t_ms LIMIT ?",
            (*key, track.count // 2),
        )
        # keep the very first sample (the entry) and every other one after it
        doomed = [int(r[0]) for r in rows[1::2]]
        for start in range(0, len(doomed), 500):
            chunk = doomed[start:start + 500]
            # by time (one sample per time a position), not rowid: the same SQL serves PostgreSQL
            await self.db.execute(
                f"DELETE FROM pnl_samples WHERE telegram_id=? AND position_id=? AND t_ms IN ({','.join('?' * len(chunk))})",
                (*key, *chunk),
            )
        track.count -= len(doomed)

    async def mark(self, user_id: int, position_id: int, kind: str, label: str, t_ms: int | None = None) -> None:
        if t_ms is None:
            # no time from the stream: now on its clock, but never before what is already recorded
            row = await self.db.fetchone(
                """SELECT MAX(t) FROM (SELECT MAX(t_ms) AS t FROM pnl_samples WHERE telegram_id=? AND position_id=?
                   UNION ALL SELECT MAX(t_ms) FROM position_marks WHERE telegram_id=? AND position_id=?) AS latest""",
                (user_id, position_id, user_id, position_id),
            )
            t_ms = max(self.stream_now_ms(user_id), int(row[0]) if row and row[0] is not None else 0)
        await self.db.execute(
            "INSERT INTO position_marks (telegram_id, position_id, t_ms, kind, label) VALUES (?,?,?,?,?)",
            (user_id, position_id, int(t_ms), kind, label[:40]),
        )

    async def samples(self, user_id: int, position_id: int) -> list[Sample]:
        await self.flush()
        rows = await self.db.fetchall(
            "SELECT t_ms, proceeds_units, profit_units FROM pnl_samples WHERE telegram_id=? AND position_id=? ORDER BY t_ms",
            (user_id, position_id),
        )
        return [Sample(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def marks(self, user_id: int, position_id: int) -> list[Mark]:
        rows = await self.db.fetchall(
            "SELECT t_ms, kind, label FROM position_marks WHERE telegram_id=? AND position_id=? ORDER BY t_ms, id",
            (user_id, position_id),
        )
        return [Mark(int(r[0]), str(r[1]), str(r[2])) for r in rows]


# --- buys ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuyOrder:
    id: str
    telegram_id: int
    wallet: str
    mint: str
    lamports: int
    slippage_bps: int
    tip_lamports: int
    unsigned_tx_b64: str
    route_json: str
    state: str
    chat_id: int | None
    message_id: int | None
    signed_tx_b64: str | None
    signature: str | None
    error: str | None
    created_at: int
    updated_at: int

    @property
    def route(self) -> dict[str, Any]:
        return json.loads(self.route_json) if self.route_json else {}


def _order(row: sqlite3.Row) -> BuyOrder:
    return BuyOrder(**{f.name: row[f.name] for f in fields(BuyOrder)})


class BuyOrders(TradeStates[BuyOrder]):
    table = "buy_orders"
    order_by = "created_at"

    def __init__(self, db: Database) -> None:
        super().__init__(db, _order)

    async def landed_signatures(self, telegram_id: int, wallet: str, mint: str) -> list[str | None]:
        """The signatures of this user's landed buys of `mint` into `wallet` (the cost of a position)."""
        rows = await self.db.fetchall(
            "SELECT signature FROM buy_orders WHERE telegram_id=? AND wallet=? AND mint=? AND state='landed'",
            (telegram_id, wallet, mint),
        )
        return [row[0] for row in rows]

    async def create(
        self, telegram_id: int, *, wallet: str, mint: str, lamports: int, slippage_bps: int, tip_lamports: int,
        unsigned_tx_b64: str, route: dict[str, Any],
    ) -> BuyOrder:
        order_id = secrets.token_urlsafe(9)  # 12 characters: short, unguessable callback data
        now = now_ms()
        await self.db.execute(
            """INSERT INTO buy_orders (id, telegram_id, wallet, mint, lamports, slippage_bps, tip_lamports,
                 unsigned_tx_b64, route_json, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)""",
            (order_id, telegram_id, wallet, mint, lamports, slippage_bps, tip_lamports, unsigned_tx_b64,
             json.dumps(route, separators=(",", ":")), now, now),
        )
        order = await self.get(order_id)
        assert order is not None
        return order
