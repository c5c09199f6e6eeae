"""The state machine every signed trade is kept in (exit signals, buy orders): one implementation.

States move only through `transition`, an `UPDATE ... WHERE state IN (...)`: atomic, so of two callers
exactly one wins (a double tap signs once). The signed bytes and signature are stored before anything is
sent, and `in_states` finds what a crash left in flight.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from storage.db import Database
from storage.users import now_ms

Row = TypeVar("Row")


class TradeStates(Generic[Row]):
    """Rows of `table` (with `id`, `state` and `updated_at` columns) read as `Row` by `read`."""

    table: str = ""
    order_by: str = "updated_at"

    def __init__(self, db: Database, read: Callable[[sqlite3.Row], Row]) -> None:
        self.db = db
        self._read = read

    async def _settled(self, record_id: str | None = None) -> None:
        """Wait until the record (or, without an id, every record) being written in the background is in the table."""

    async def get(self, record_id: str) -> Row | None:
        await self._settled(record_id)
        row = await self.db.fetchone(f"SELECT * FROM {self.table} WHERE id=?", (record_id,))
        return self._read(row) if row else None

    async def set(self, record_id: str, **values: Any) -> None:
        await self._settled(record_id)
        await self.db.write(*self._set_sql(record_id, values))

    def _set_sql(self, record_id: str, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        if "outcome" in values:
            values = {**values, "outcome_json": json.dumps(values["outcome"], separators=(",", ":"))}
            del values["outcome"]
        assignments = ", ".join(f"{k}=?" for k in values)
        return f"UPDATE {self.table} SET {assignments}, updated_at=? WHERE id=?", (*values.values(), now_ms(), record_id)

    async def transition(self, record_id: str, from_states: tuple[str, ...], to_state: str, **values: Any) -> bool:
        """Move the record to `to_state` only if it is in one of `from_states`: atomic, so one caller wins."""
        await self._settled(record_id)
        marks = ",".join("?" for _ in from_states)
        extra = "".join(f", {k}=?" for k in values)
        changed = await self.db.write(
            f"UPDATE {self.table} SET state=?{extra}, updated_at=? WHERE id=? AND state IN ({marks})",
            (to_state, *values.values(), now_ms(), record_id, *from_states),
        )
        return changed == 1

    async def in_states(self, states: tuple[str, ...]) -> list[Row]:
        await self._settled()
        marks = ",".join("?" for _ in states)
        rows = await self.db.fetchall(
            f"SELECT * FROM {self.table} WHERE state IN ({marks}) ORDER BY {self.order_by}", states
        )
        return [self._read(r) for r in rows]
