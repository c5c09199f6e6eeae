"""Copy trading's storage: watched wallets, the user's limits, and the copy buys made (for the daily budget
and for which watched wallet a position came from)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from storage.db import Database
from storage.users import now_ms

DAY_MS = 86_400_000

# The server's documented defaults (mirror_config) plus the bot's own limits on top of them.
DEFAULT_LIMITS: dict[str, Any] = {
    "max_positions_per_wallet": 1,
    "cooldown_sec": 30,
    "max_active_sol": 5.0,
    "buy_slippage_bps": 2500,
    "skip_creator_tokens": False,
    "min_liquidity_sol": None,
    "max_entry_drift_pct": None,
    "max_consecutive_losses": None,
    # the bot's own, never sent to the server
    "daily_budget_sol": 1.0,
    "fee_reserve_sol": 0.01,
}
SERVER_LIMITS = (
    "max_positions_per_wallet", "cooldown_sec", "skip_creator_tokens", "max_active_sol", "buy_slippage_bps",
    "min_liquidity_sol", "max_entry_drift_pct", "max_consecutive_losses",
)


@dataclass(frozen=True)
class WatchedWallet:
    telegram_id: int
    address: str
    nickname: str
    amount_units: int
    quote: str
    buy_wallet: str | None
    mode: str
    enabled: bool
    disabled_reason: str | None
    created_at: int


def _wallet(row: sqlite3.Row) -> WatchedWallet:
    return WatchedWallet(
        int(row["telegram_id"]), row["address"], row["nickname"], int(row["amount_units"]), row["quote"],
        row["buy_wallet"], row["mode"], bool(row["enabled"]), row["disabled_reason"], int(row["created_at"]),
    )


class CopyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- watched wallets ----------------------------------------------------------------------------------
    async def wallets(self, telegram_id: int) -> list[WatchedWallet]:
        rows = await self.db.fetchall(
            "SELECT * FROM copy_wallets WHERE telegram_id=? ORDER BY created_at, nickname", (telegram_id,)
        )
        return [_wallet(r) for r in rows]

    async def find(self, telegram_id: int, name_or_address: str) -> WatchedWallet | None:
        row = await self.db.fetchone(
            "SELECT * FROM copy_wallets WHERE telegram_id=? AND (address=? OR lower(nickname)=lower(?))",
            (telegram_id, name_or_address, name_or_address),
        )
        return None if row is None else _wallet(row)

    async def add(self, telegram_id: int, address: str, nickname: str, amount_units: int) -> WatchedWallet:
        await self.db.execute(
            "INSERT INTO copy_wallets (telegram_id, address, nickname, amount_units, created_at) VALUES (?,?,?,?,?)",
            (telegram_id, address, nickname, amount_units, now_ms()),
        )
        found = await self.find(telegram_id, address)
        assert found is not None
        return found

    async def update(self, telegram_id: int, address: str, **values: Any) -> None:
        allowed = {"nickname", "amount_units", "quote", "buy_wallet", "mode", "enabled", "disabled_reason"}
        assert values and set(values) <= allowed
        assignments = ", ".join(f"{name}=?" for name in values)
        await self.db.execute(
            f"UPDATE copy_wallets SET {assignments} WHERE telegram_id=? AND address=?",
            (*values.values(), telegram_id, address),
        )

    async def remove(self, telegram_id: int, address: str) -> None:
        await self.db.execute("DELETE FROM copy_wallets WHERE telegram_id=? AND address=?", (telegram_id, address))

    # --- limits -------------------------------------------------------------------------------------------
    async def limits(self, telegram_id: int) -> dict[str, Any]:
        row = await self.db.fetchone("SELECT limits_json FROM copy_settings WHERE telegram_id=?", (telegram_id,))
        changed = json.loads(row["limits_json"]) if row is not None else {}
        return {**DEFAULT_LIMITS, **{k: v for k, v in changed.items() if k in DEFAULT_LIMITS}}

    async def set_limit(self, telegram_id: int, name: str, value: Any) -> None:
        assert name in DEFAULT_LIMITS
        row = await self.db.fetchone("SELECT limits_json FROM copy_settings WHERE telegram_id=?", (telegram_id,))
        changed = json.loads(row["limits_json"]) if row is not None else {}
        changed[name] = value
        await self.db.execute(
            """INSERT INTO copy_settings (telegram_id, limits_json) VALUES (?, ?)
               ON CONFLICT(telegram_id) DO UPDATE SET limits_json=excluded.limits_json""",
            (telegram_id, json.dumps(changed, separators=(",", ":"))),
        )

    # --- copy buys ----------------------------------------------------------------------------------------
    async def record_buy(self, order_id: str, telegram_id: int, *, watched: str, wallet: str, mint: str,
                         lamports: int, mode: str) -> None:
        await self.db.execute(
            """INSERT INTO copy_buys (order_id, telegram_id, watched, wallet, mint, lamports, mode, created_at)
               VALUES (?,?,?,?,?,?,?,?)""",
            (order_id, telegram_id, watched, wallet, mint, lamports, mode, now_ms()),
        )

    async def spent_today(self, telegram_id: int) -> int:
        """Lamports of copy buys of the last 24 hours that spent or may still spend (a failed, skipped or
        expired one spent nothing; one waiting for a tap or being signed counts, so two at once cannot pass)."""
        row = await self.db.fetchone(
            """SELECT COALESCE(SUM(c.lamports), 0) FROM copy_buys c JOIN buy_orders b ON b.id = c.order_id
               WHERE c.telegram_id=? AND c.created_at>=?
                 AND b.state IN ('quoted', 'approved', 'signing', 'submitted', 'landed')""",
            (telegram_id, now_ms() - DAY_MS),
        )
        return int(row[0]) if row is not None else 0

    async def source_of(self, telegram_id: int, wallet: str, mint: str) -> str | None:
        """The watched wallet the latest landed copy buy of this mint into this wallet came from."""
        row = await self.db.fetchone(
            """SELECT c.watched FROM copy_buys c JOIN buy_orders b ON b.id = c.order_id
               WHERE c.telegram_id=? AND c.wallet=? AND c.mint=? AND b.state IN ('submitted', 'landed')
               ORDER BY c.created_at DESC LIMIT 1""",
            (telegram_id, wallet, mint),
        )
        return None if row is None else str(row[0])

    async def buy_for_order(self, order_id: str) -> sqlite3.Row | None:
        return await self.db.fetchone("SELECT * FROM copy_buys WHERE order_id=?", (order_id,))

    async def stats(self, telegram_id: int, watched: str) -> dict[str, Any]:
        """Per watched wallet, like the desktop app: copies, closed ones' win rate, best, worst, hold, PnL."""
        copies = await self.db.fetchone(
            """SELECT COUNT(*) FROM copy_buys c JOIN buy_orders b ON b.id = c.order_id
               WHERE c.telegram_id=? AND c.watched=? AND b.state='landed'""",
            (telegram_id, watched),
        )
        rows = await self.db.fetchall(
            """SELECT DISTINCT p.telegram_id, p.position_id, p.profit_units, p.opened_at_ms, p.first_seen_ms, p.updated_at
               FROM positions p JOIN copy_buys c ON c.telegram_id=p.telegram_id AND c.wallet=p.wallet AND c.mint=p.mint
               JOIN buy_orders b ON b.id = c.order_id
               WHERE c.telegram_id=? AND c.watched=? AND b.state='landed' AND p.status='closed'""",
            (telegram_id, watched),
        )
        profits = [int(r["profit_units"] or 0) for r in rows]
        holds = [max(0, int(r["updated_at"]) - int(r["opened_at_ms"] or r["first_seen_ms"])) for r in rows]
        return {
            "copies": int(copies[0]) if copies else 0,
            "closed": len(profits),
            "wins": sum(p > 0 for p in profits),
            "best": max(profits) if profits else None,
            "worst": min(profits) if profits else None,
            "avg_hold_s": sum(holds) / len(holds) / 1000 if holds else None,
            "total": sum(profits),
        }
