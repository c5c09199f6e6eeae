"""The dashboard's security state: PIN hashes and lockout counters, the withdrawal allow-list, security
changes waiting out their delay, and withdrawal records (the executor's state machine for a withdrawal).

Times are Unix milliseconds passed in by the caller, so a test (or the sandbox) can move the clock.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from storage.db import Database


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class PinRecord:
    telegram_id: int
    pin_hash: str
    failures: int
    locked_until: int


@dataclass(frozen=True)
class AllowedAddress:
    id: str
    telegram_id: int
    address: str
    label: str
    usable_at: int
    created_at: int

    def usable(self, now_ms: int) -> bool:
        return now_ms >= self.usable_at


@dataclass(frozen=True)
class SecurityChange:
    id: str
    telegram_id: int
    kind: str
    value: str | None
    effective_at: int
    state: str
    created_at: int


@dataclass(frozen=True)
class Withdrawal:
    id: str
    telegram_id: int
    wallet: str
    destination: str
    lamports: int
    state: str
    signed_tx_b64: str | None
    signature: str | None
    error: str | None
    created_at: int
    updated_at: int
    mint: str | None = None  # None: SOL; else `lamports` is the token's base units


def _row(cls: Any, row: sqlite3.Row) -> Any:
    return cls(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row has no iteration over keys)


class Pins:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, telegram_id: int) -> PinRecord | None:
        row = await self.db.fetchone(
            "SELECT telegram_id, pin_hash, failures, locked_until FROM miniapp_pins WHERE telegram_id=?", (telegram_id,)
        )
        return _row(PinRecord, row) if row is not None else None

    async def set(self, telegram_id: int, pin_hash: str, now_ms: int) -> None:
        await self.db.execute(
            "INSERT INTO miniapp_pins (telegram_id, pin_hash, failures, locked_until, updated_at) VALUES (?, ?, 0, 0, ?) "
            "ON CONFLICT (telegram_id) DO UPDATE SET pin_hash=excluded.pin_hash, failures=0, locked_until=0, "
            "updated_at=excluded.updated_at",
            (telegram_id, pin_hash, now_ms),
        )

    async def delete(self, telegram_id: int) -> None:
        await self.db.execute("DELETE FROM miniapp_pins WHERE telegram_id=?", (telegram_id,))

    async def failed(self, telegram_id: int, max_failures: int, lock_until_ms: int) -> PinRecord | None:
        """Count a wrong PIN; at `max_failures` the PIN locks until `lock_until_ms` and the count starts over."""
        async with self.db.transaction():
            await self.db.execute("UPDATE miniapp_pins SET failures=failures+1 WHERE telegram_id=?", (telegram_id,))
            await self.db.execute(
                "UPDATE miniapp_pins SET locked_until=?, failures=0 WHERE telegram_id=? AND failures>=?",
                (lock_until_ms, telegram_id, max_failures),
            )
        return await self.get(telegram_id)

    async def succeeded(self, telegram_id: int) -> None:
        await self.db.execute("UPDATE miniapp_pins SET failures=0 WHERE telegram_id=? AND failures<>0", (telegram_id,))

    async def rehash(self, telegram_id: int, pin_hash: str) -> None:
        await self.db.execute("UPDATE miniapp_pins SET pin_hash=? WHERE telegram_id=?", (pin_hash, telegram_id))


class AllowList:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, telegram_id: int) -> list[AllowedAddress]:
        rows = await self.db.fetchall(
            "SELECT id, telegram_id, address, label, usable_at, created_at FROM miniapp_allowlist "
            "WHERE telegram_id=? ORDER BY created_at, id",
            (telegram_id,),
        )
        return [_row(AllowedAddress, r) for r in rows]

    async def get(self, telegram_id: int, address: str) -> AllowedAddress | None:
        row = await self.db.fetchone(
            "SELECT id, telegram_id, address, label, usable_at, created_at FROM miniapp_allowlist "
            "WHERE telegram_id=? AND address=?",
            (telegram_id, address),
        )
        return _row(AllowedAddress, row) if row is not None else None

    async def add(self, telegram_id: int, address: str, label: str, usable_at: int, now_ms: int) -> AllowedAddress | None:
        """None when the address is already on the list."""
        if await self.get(telegram_id, address) is not None:
            return None
        entry = AllowedAddress(new_id(), telegram_id, address, label, usable_at, now_ms)
        await self.db.execute(
            "INSERT INTO miniapp_allowlist (id, telegram_id, address, label, usable_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (entry.id, telegram_id, address, label, usable_at, now_ms),
        )
        return entry

    async def remove(self, telegram_id: int, entry_id: str) -> bool:
        return await self.db.execute(
            "DELETE FROM miniapp_allowlist WHERE telegram_id=? AND id=?", (telegram_id, entry_id)
        ) > 0


class SecurityChanges:
    def __init__(self, db: Database) -> None:
        self.db = db

    _COLUMNS = "id, telegram_id, kind, value, effective_at, state, created_at"

    async def add(self, telegram_id: int, kind: str, value: str | None, effective_at: int, now_ms: int) -> SecurityChange:
        """A new change of `kind` replaces one still pending."""
        change = SecurityChange(new_id(), telegram_id, kind, value, effective_at, "pending", now_ms)
        async with self.db.transaction():
            await self.db.execute(
                "UPDATE miniapp_security_changes SET state='cancelled' WHERE telegram_id=? AND state='pending'",
                (telegram_id,),
            )
            await self.db.execute(
                f"INSERT INTO miniapp_security_changes ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (change.id, telegram_id, kind, value, effective_at, now_ms),
            )
        return change

    async def pending(self, telegram_id: int) -> list[SecurityChange]:
        rows = await self.db.fetchall(
            f"SELECT {self._COLUMNS} FROM miniapp_security_changes WHERE telegram_id=? AND state='pending' "
            "ORDER BY created_at",
            (telegram_id,),
        )
        return [_row(SecurityChange, r) for r in rows]

    async def due(self, now_ms: int) -> list[SecurityChange]:
        rows = await self.db.fetchall(
            f"SELECT {self._COLUMNS} FROM miniapp_security_changes WHERE state='pending' AND effective_at<=? "
            "ORDER BY effective_at",
            (now_ms,),
        )
        return [_row(SecurityChange, r) for r in rows]

    async def settle(self, change_id: str, state: str) -> bool:
        """Move a pending change to `state` (applied or cancelled); False when it was not pending any more."""
        return await self.db.execute(
            "UPDATE miniapp_security_changes SET state=? WHERE id=? AND state='pending'", (state, change_id)
        ) > 0

    async def cancel_all(self, telegram_id: int) -> int:
        return await self.db.execute(
            "UPDATE miniapp_security_changes SET state='cancelled' WHERE telegram_id=? AND state='pending'",
            (telegram_id,),
        )


class Withdrawals:
    """The withdrawal state machine the executor persists in (see `bot.exits.executor.TradeRecords`)."""

    _COLUMNS = ("id, telegram_id, wallet, destination, lamports, state, signed_tx_b64, signature, error, "
                "created_at, updated_at, mint")
    _SETTABLE = frozenset({"state", "signed_tx_b64", "signature", "error"})

    def __init__(self, db: Database, clock_ms: Any) -> None:
        self.db = db
        self.clock_ms = clock_ms

    async def create(
        self, telegram_id: int, wallet: str, destination: str, lamports: int, mint: str | None = None
    ) -> Withdrawal:
        """A new withdrawal of `lamports` SOL, or (with `mint`) of that many base units of the token."""
        now = self.clock_ms()
        record = Withdrawal(new_id(), telegram_id, wallet, destination, lamports, "approved", None, None, None, now, now,
                            mint)
        await self.db.execute(
            f"INSERT INTO withdrawals ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, 'approved', NULL, NULL, NULL, ?, ?, ?)",
            (record.id, telegram_id, wallet, destination, lamports, now, now, mint),
        )
        return record

    async def get(self, record_id: str) -> Withdrawal | None:
        row = await self.db.fetchone(f"SELECT {self._COLUMNS} FROM withdrawals WHERE id=?", (record_id,))
        return _row(Withdrawal, row) if row is not None else None

    async def for_user(self, telegram_id: int, limit: int = 20) -> list[Withdrawal]:
        rows = await self.db.fetchall(
            f"SELECT {self._COLUMNS} FROM withdrawals WHERE telegram_id=? ORDER BY created_at DESC LIMIT ?",
            (telegram_id, limit),
        )
        return [_row(Withdrawal, r) for r in rows]

    def _assignments(self, values: dict[str, Any]) -> tuple[str, list[Any]]:
        unknown = set(values) - self._SETTABLE
        if unknown:
            raise ValueError(f"not a withdrawal column: {sorted(unknown)}")
        names = [f"{k}=?" for k in values] + ["updated_at=?"]
        return ", ".join(names), [*values.values(), self.clock_ms()]

    async def set(self, record_id: str, **values: Any) -> None:
        sql, params = self._assignments(values)
        await self.db.execute(f"UPDATE withdrawals SET {sql} WHERE id=?", (*params, record_id))

    async def transition(self, record_id: str, from_states: tuple[str, ...], to_state: str, **values: Any) -> bool:
        sql, params = self._assignments({"state": to_state, **values})
        marks = ", ".join("?" for _ in from_states)
        return await self.db.execute(
            f"UPDATE withdrawals SET {sql} WHERE id=? AND state IN ({marks})", (*params, record_id, *from_states)
        ) > 0


__all__ = [
    "AllowList", "AllowedAddress", "PinRecord", "Pins", "SecurityChange", "SecurityChanges", "Withdrawal", "Withdrawals",
]
