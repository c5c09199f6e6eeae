"""What /healthz and /metrics read from the database (bot/metrics.py)."""

from __future__ import annotations

from storage.db import Database


class HealthReads:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ping(self) -> None:
        """Raises when the database does not answer."""
        await self.db.fetchone("SELECT 1")

    async def signals_by_state(self) -> dict[str, int]:
        """Exit signals by state (landed, failed, skipped, ...), over every instance."""
        rows = await self.db.fetchall("SELECT state, COUNT(*) FROM exit_signals GROUP BY state")
        return {str(r[0]): int(r[1]) for r in rows}
