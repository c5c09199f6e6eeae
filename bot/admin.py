"""What the operator's commands read and write besides broadcasts: the audit log and the numbers behind /stats."""

from __future__ import annotations

from storage.admin import AuditLog, OperatorNumbers, SellNumbers, UserNumbers
from storage.db import Database


class Admin:
    """Every admin action is recorded here; /stats and the broadcast preview count users through it."""

    def __init__(self, db: Database) -> None:
        self._audit = AuditLog(db)
        self._numbers = OperatorNumbers(db)

    async def record(self, admin_id: int, action: str, detail: str = "") -> None:
        """Audit one admin action (who, what, a short detail)."""
        await self._audit.record(admin_id, action, detail)

    async def users(self, now_ms: int | None = None) -> UserNumbers:
        """Users in total, set up, active in 7 days and blocked."""
        return await self._numbers.users(now_ms)

    async def open_positions(self) -> int:
        return await self._numbers.open_positions()

    async def sells_since(self, since_ms: int) -> SellNumbers:
        """Exit signals and sells since a moment (landed, failed, skipped, auto, median tap to submit)."""
        return await self._numbers.sells_since(since_ms)
