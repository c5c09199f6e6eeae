"""Positions and exit signals as the stream reported them.

`Position.position_id` is the bot's own number for a position: stable for its whole life, what the
trader sees as #n, and what exit signals, callbacks and charts refer to. The stream's position_id
is valid only within one stream session, so the position is matched across sessions (and bot
restarts) by its token account; `stream_position_id` is the id the latest session gave it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from storage.db import Database, user_written
from storage.signal_journal import SignalJournal
from storage.trades import TradeStates
from storage.users import now_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    telegram_id: int
    position_id: int
    wallet: str
    mint: str
    token_account: str | None
    token_program: str | None
    symbol: str | None
    name: str | None
    decimals: int | None
    tokens: int
    entry_quote_units: int
    market_type: str | None
    opened_at_ms: int | None
    first_seen_ms: int
    watched: bool
    status: str
    closed_reason: str | None
    profit_units: int | None
    proceeds_units: int | None
    price_quote: int | None
    market_cap_quote: int | None
    liquidity_trend: str | None
    bands_json: str | None
    card_message_id: int | None
    waiting_exit: bool
    deadline_fired: bool
    strategy_json: str | None
    updated_at: int
    stream_position_id: int | None = None  # the stream's id for it in the latest session that announced it
    quote: str = "SOL"  # "USD1" in a USD1-quoted market: quote units are then USD1 base units (6 decimals)
    risk_flags: str | None = None  # JSON list of the token's risk flags, read when the position opened

    @property
    def label(self) -> str:
        return self.symbol or self.name or f"{self.mint[:4]}…{self.mint[-4:]}"

    @property
    def bands(self) -> list[dict[str, Any]]:
        return json.loads(self.bands_json) if self.bands_json else []

    @property
    def risks(self) -> list[str]:
        return [str(flag) for flag in json.loads(self.risk_flags)] if self.risk_flags else []


@dataclass(frozen=True)
class ExitSignal:
    id: str
    telegram_id: int
    position_id: int
    wallet: str
    mint: str
    token_account: str | None
    reason: str
    profit_units: int
    position_tokens: int
    sell_tokens: int | None
    level_index: int | None
    triggered_at_ms: int
    received_at_ms: int
    market_type: str | None
    unsigned_tx_b64: str
    state: str
    chat_id: int | None
    message_id: int | None
    slippage_bps: int | None
    attempt: int
    signed_tx_b64: str | None
    signature: str | None
    submitted_at_ms: int | None
    tapped_at_ms: int | None
    outcome_json: str | None
    error: str | None
    updated_at: int

    @property
    def tokens_to_sell(self) -> int:
        return self.sell_tokens if self.sell_tokens else self.position_tokens

    @property
    def outcome(self) -> dict[str, Any]:
        return json.loads(self.outcome_json) if self.outcome_json else {}


WRITE_CHUNK = 100
# what a sell of the position is built and checked on (the rest, a card's id or a flag, is not): a write of
# any of these is counted by `user_written`
_SOLD_ON = frozenset({"status", "wallet", "mint", "token_account", "token_program", "tokens", "quote"})

_BOOL_FIELDS = {"watched", "waiting_exit", "deadline_fired"}


def _position(row: sqlite3.Row) -> Position:
    data = {f.name: row[f.name] for f in fields(Position)}
    for name in _BOOL_FIELDS:
        data[name] = bool(data[name])
    return Position(**data)


def _signal(row: sqlite3.Row) -> ExitSignal:
    return ExitSignal(**{f.name: row[f.name] for f in fields(ExitSignal)})


class Positions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def opened(self, telegram_id: int, msg: dict[str, Any], quote: str | None = None) -> tuple[Position, bool]:
        """Record a position_opened; returns (position, is_new). `quote` is the market's quote asset
        ("SOL" / "USD1", read from market_context by the caller; None when the message had no context).

        An open position in the same token account (or, without one, the same wallet and mint) is the
        same position announced again, after a reconnect with a new session id or a bot restart: it
        keeps its number, first-seen time, card and per-position strategy, and learns the new id.
        """
        stream_id = int(msg["position_id"])
        account = msg.get("token_account")
        context = msg.get("market_context")
        existing = await self.open_by_account(telegram_id, account, str(msg["wallet_pubkey"]), str(msg["mint"]))
        if existing is not None:
            values: dict[str, Any] = {"tokens": int(msg["tokens"]), "stream_position_id": stream_id}
            if account:
                values["token_account"] = account
            if quote is not None:
                values["quote"] = quote
            if isinstance(context, dict) and isinstance(context.get("market_type"), str):
                values["market_type"] = context["market_type"]
            # announced again after a reconnect: counted as written only if what a sell depends on changed
            changed = {k for k, v in values.items() if getattr(existing, k, None) != v}
            await self.update(telegram_id, existing.position_id, _counted=bool(_SOLD_ON & changed), **values)
            position = await self.get(telegram_id, existing.position_id)
            assert position is not None
            return position, False
        number = await self._new_number(telegram_id, stream_id)
        user_written(self.db, telegram_id)  # and again below: a read in between may see the row or not
        now = now_ms()
        market = context.get("market_type") if isinstance(context, dict) else None
        await self.db.execute(
            """INSERT INTO positions (telegram_id, position_id, stream_position_id, wallet, mint, token_account,
                 token_program, symbol, name, decimals, tokens, entry_quote_units, market_type, quote, opened_at_ms,
                 first_seen_ms, watched, price_quote, market_cap_quote, updated_at)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (
                telegram_id, number, stream_id, msg["wallet_pubkey"], msg["mint"], account,
                msg.get("token_program"), msg.get("token_symbol"), msg.get("token_name"), msg.get("token_decimals"),
                int(msg["tokens"]), int(msg["entry_quote_units"]), market, quote or "SOL", msg.get("opened_at_ms"),
                now, int(bool(msg.get("watched"))), msg.get("token_price_quote"), msg.get("market_cap_quote"), now,
            ),
        )
        user_written(self.db, telegram_id)
        position = await self.get(telegram_id, number)
        assert position is not None
        return position, True

    async def _new_number(self, telegram_id: int, stream_id: int) -> int:
        """The stream's id when this user has no position with that number yet, else the next free one."""
        row = await self.db.fetchone(
            "SELECT 1 FROM positions WHERE telegram_id=? AND position_id=?", (telegram_id, stream_id)
        )
        if row is None and stream_id > 0:
            return stream_id
        row = await self.db.fetchone("SELECT MAX(position_id) FROM positions WHERE telegram_id=?", (telegram_id,))
        return int(row[0] or 0) + 1 if row else 1

    async def open_by_account(
        self, telegram_id: int, token_account: str | None, wallet: str | None = None, mint: str | None = None
    ) -> Position | None:
        """The open position in this token account (or, when there is none given, of this wallet and mint)."""
        if token_account:
            row = await self.db.fetchone(
                "SELECT * FROM positions WHERE telegram_id=? AND token_account=? AND status='open'",
                (telegram_id, token_account),
            )
        elif wallet and mint:
            row = await self.db.fetchone(
                "SELECT * FROM positions WHERE telegram_id=? AND wallet=? AND mint=? AND status='open' "
                "ORDER BY position_id LIMIT 1",
                (telegram_id, wallet, mint),
            )
        else:
            return None
        return _position(row) if row else None

    async def get(self, telegram_id: int, position_id: int) -> Position | None:
        row = await self.db.fetchone(
            "SELECT * FROM positions WHERE telegram_id=? AND position_id=?", (telegram_id, position_id)
        )
        return _position(row) if row else None

    async def open_for(self, telegram_id: int) -> list[Position]:
        rows = await self.db.fetchall(
            "SELECT * FROM positions WHERE telegram_id=? AND status='open' ORDER BY position_id", (telegram_id,)
        )
        return [_position(r) for r in rows]

    async def count_open(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM positions WHERE status='open'")
        return int(row[0]) if row else 0

    async def update(self, telegram_id: int, position_id: int, *, _counted: bool | None = None, **values: Any) -> None:
        if not values:
            return
        for key, value in list(values.items()):
            if isinstance(value, bool):
                values[key] = int(value)
        assignments = ", ".join(f"{k}=?" for k in values)
        counted = _counted if _counted is not None else bool(_SOLD_ON.intersection(values))
        if counted:
            user_written(self.db, telegram_id)  # before and after: a read between them may see either row
        try:
            await self.db.write(
                f"UPDATE positions SET {assignments}, updated_at=? WHERE telegram_id=? AND position_id=?",
                (*values.values(), now_ms(), telegram_id, position_id),
            )
        finally:
            if counted:
                user_written(self.db, telegram_id)

    async def tokens_changed(self, telegram_id: int, wallet: str, mint: str, tokens: int) -> int | None:
        """The wallet now holds `tokens` of the position's mint (a balance_update). After a partial sell the
        cost basis shrinks with the tokens, so the next PnL is measured against what is still held.
        Returns the position id that changed, if any."""
        row = await self.db.fetchone(
            "SELECT position_id, tokens, entry_quote_units FROM positions "
            "WHERE telegram_id=? AND wallet=? AND mint=? AND status='open'",
            (telegram_id, wallet, mint),
        )
        if row is None or tokens <= 0 or int(row["tokens"]) == tokens:
            return None
        old_tokens, entry = int(row["tokens"]), int(row["entry_quote_units"])
        if tokens < old_tokens and old_tokens > 0:
            entry = entry * tokens // old_tokens
        await self.update(telegram_id, int(row["position_id"]), tokens=tokens, entry_quote_units=entry)
        return int(row["position_id"])

    async def apply_live(self, batch: dict[tuple[int, int], dict[str, Any]]) -> None:
        """Write many positions' latest PnL / liquidity in one transaction (the stream's noisy updates)."""
        if not batch:
            return
        now = now_ms()
        rows = [
            (
                v.get("profit_units"), v.get("proceeds_units"), v.get("price_quote"), v.get("market_cap_quote"),
                v.get("liquidity_trend"), v.get("bands_json"), now, user_id, position_id,
            )
            for (user_id, position_id), v in batch.items()
        ]
        # in chunks, so an exit signal's writes wait for one chunk at most, never for the whole batch
        for start in range(0, len(rows), WRITE_CHUNK):
            async with self.db.transaction() as conn:
                await conn.executemany(
                    """UPDATE positions SET profit_units=COALESCE(?, profit_units),
                         proceeds_units=COALESCE(?, proceeds_units), price_quote=COALESCE(?, price_quote),
                         market_cap_quote=COALESCE(?, market_cap_quote), liquidity_trend=COALESCE(?, liquidity_trend),
                         bands_json=COALESCE(?, bands_json), updated_at=?
                       WHERE telegram_id=? AND position_id=?""",
                    rows[start : start + WRITE_CHUNK],
                )

    async def closed(self, telegram_id: int, position_id: int, reason: str) -> Position | None:
        await self.update(telegram_id, position_id, status="closed", closed_reason=reason, waiting_exit=False)
        return await self.get(telegram_id, position_id)


_SIGNAL_COLUMNS = (
    "id", "telegram_id", "position_id", "wallet", "mint", "token_account", "reason", "profit_units", "position_tokens",
    "sell_tokens", "level_index", "triggered_at_ms", "received_at_ms", "market_type", "unsigned_tx_b64",
    "slippage_bps", "updated_at",
)
_INSERT_SIGNAL = (
    f"INSERT INTO exit_signals ({', '.join(_SIGNAL_COLUMNS)}) VALUES ({','.join('?' for _ in _SIGNAL_COLUMNS)})"
)
# what the table's defaults give a new signal
_NEW_SIGNAL: dict[str, Any] = {
    "state": "pending", "chat_id": None, "message_id": None, "attempt": 0, "signed_tx_b64": None, "signature": None,
    "submitted_at_ms": None, "tapped_at_ms": None, "outcome_json": None, "error": None,
}


_INSERT_KEEPING = _INSERT_SIGNAL.replace("INSERT", "INSERT OR IGNORE", 1)  # a row already there stays as it is


def _refused_for_good(exc: BaseException) -> bool:
    """The database refused the row itself (a constraint), not the attempt: writing it again cannot help."""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    # asyncpg's IntegrityConstraintViolationError and its kinds, by name: PostgreSQL's driver stays unloaded here
    return any(cls.__name__ == "IntegrityConstraintViolationError" for cls in type(exc).__mro__)


HOLD_MAX_S = 2.0  # the longest a write behind the journal waits for the hold


def _transition_sql(op: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE a journaled transition stands for (a no-op once the row has moved on)."""
    values: dict[str, Any] = op.get("values") or {}
    unknown = set(values) - _TRANSITION_VALUES
    if unknown:
        raise ValueError(f"a journaled transition names unknown columns: {sorted(unknown)}")
    from_states = list(op["from"])
    extra = "".join(f", {k}=?" for k in values)
    marks = ",".join("?" for _ in from_states)
    return (
        f"UPDATE exit_signals SET state=?{extra}, updated_at=? WHERE id=? AND state IN ({marks})",
        (op["to"], *values.values(), int(op.get("at") or now_ms()), op["id"], *from_states),
    )


# the columns a transition may set besides the state (read back from journals: never a name from elsewhere)
_TRANSITION_VALUES = frozenset({"tapped_at_ms", "signed_tx_b64", "signature", "error", "chat_id", "message_id",
                                "slippage_bps", "attempt", "submitted_at_ms", "outcome_json"})


def _signal_params(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(column) for column in _SIGNAL_COLUMNS)


@dataclass
class _Lane:
    """One database's exit-signal journal and the rows being written behind it (shared by every ExitSignals)."""

    journal: SignalJournal | None = None
    writing: dict[str, asyncio.Future[None]] = field(default_factory=dict)  # id -> its latest write behind
    states: dict[str, str] = field(default_factory=dict)  # id -> its state as journaled, until that is written
    rush: dict[str, asyncio.Event] = field(default_factory=dict)  # id -> set when someone waits for its writes
    failed: bool = False  # a row could not be written: the journal is kept for the next start
    # what writes behind wait for before they start (the seller's: until a burst of tapped sells is sent, so the
    # database's thread takes no turns from the sells; bounded by whoever supplies it)
    hold: Callable[[], Awaitable[None] | None] | None = None
    one_process: bool = False  # SQLite: this process is the only writer (its lock), so a journaled
    # transition decides against `states` and the rows; several PostgreSQL instances decide in the database

    def settle(self) -> None:
        """Called when a write behind finishes: with nothing left behind, the journal is emptied."""
        if not self.writing and not self.failed and self.journal is not None:
            self.journal.clear()


_LANES: weakref.WeakKeyDictionary[Database, _Lane] = weakref.WeakKeyDictionary()


def _lane(db: Database) -> _Lane:
    lane = _LANES.get(db)
    if lane is None:
        lane = _LANES[db] = _Lane()
    return lane


class ExitSignals(TradeStates[ExitSignal]):
    table = "exit_signals"
    order_by = "received_at_ms"

    def __init__(self, db: Database) -> None:
        super().__init__(db, _signal)

    @classmethod
    async def recover(cls, db: Database, journal_base: Path) -> int:
        """Take this process's exit-signal journal and write what a crashed run left in journals to the
        database; from now on `store` journals each signal and writes its row in the background. Returns
        how many journaled rows were written (rows already in the database are left as they are; a row the
        database refuses for good, a signal of a user forgotten meanwhile, is logged and dropped)."""
        journal, rows = SignalJournal.open(journal_base)
        written = 0
        try:
            for row in rows:
                try:
                    if row.get("op") == "transition":
                        await db.write(*_transition_sql(row))
                        continue
                    await db.write(_INSERT_KEEPING, _signal_params(row))
                    written += 1
                except Exception as exc:
                    if not _refused_for_good(exc):
                        raise  # the database is not there: start-up stops, the journal stays for the next one
                    log.warning("a journaled exit signal was refused by the database (%s); dropped", type(exc).__name__)
        except BaseException:
            journal.close()
            raise
        journal.clear()
        lane = _lane(db)
        if lane.journal is not None:
            lane.journal.close()
        lane.journal = journal
        lane.failed = False
        lane.one_process = db.backend == "sqlite"
        return written

    @classmethod
    def hold_writes(cls, db: Database, hold: Callable[[], Awaitable[None] | None] | None) -> None:
        """Writes behind the journal wait (at most HOLD_MAX_S) for what `hold()` returns before they start;
        a hold that returns None, or no hold, lets them start at once."""
        _lane(db).hold = hold

    @classmethod
    async def release(cls, db: Database) -> None:
        """Wait for the rows being written, then give the journal up (before the database closes)."""
        lane = _lane(db)
        if lane.writing:
            await asyncio.gather(*lane.writing.values(), return_exceptions=True)
        if lane.journal is not None:
            lane.journal.close()
            lane.journal = None

    async def store(self, telegram_id: int, msg: dict[str, Any], received_at_ms: int, slippage_bps: int | None = None) -> ExitSignal:
        """Keep a new exit signal; returns it as stored, state `pending`.

        With a journal (`recover`), the signal is on disk when this returns without waiting for the
        database, whose row follows in the background; every read or write of the signal here waits for that row.
        """
        now = now_ms()
        row = {
            "id": secrets.token_urlsafe(9),  # 12 characters: callback data stays short and unguessable
            "telegram_id": telegram_id, "position_id": int(msg["position_id"]), "wallet": msg["wallet_pubkey"],
            "mint": msg["mint"], "token_account": msg.get("token_account"), "reason": str(msg.get("reason", "")),
            "profit_units": int(msg["profit_units"]), "position_tokens": int(msg["position_tokens"]),
            "sell_tokens": msg.get("sell_tokens"), "level_index": msg.get("level_index"),
            "triggered_at_ms": int(msg["triggered_at_ms"]), "received_at_ms": received_at_ms,
            "market_type": (msg.get("market_context") or {}).get("market_type"),
            "unsigned_tx_b64": msg["unsigned_tx_b64"], "slippage_bps": slippage_bps, "updated_at": now,
        }
        lane = _lane(self.db)
        journal = lane.journal
        if journal is not None:
            try:
                journal.append(row)
            except OSError:
                log.exception("the exit-signal journal could not be written; the signal goes to the database first")
                journal = None
        if journal is None:
            await self.db.write(_INSERT_SIGNAL, _signal_params(row))
        else:
            self._behind(lane, row["id"], self._write_row(lane, row))
        return ExitSignal(**{**_NEW_SIGNAL, **row})

    def _behind(self, lane: _Lane, record_id: str, write: Coroutine[Any, Any, bool]) -> asyncio.Future[None]:
        """Run `write` (True once written) after the record's earlier writes behind, as its latest one. It waits
        for the lane's hold (SQLite, one process) unless someone waits for the record (`_rush`)."""
        earlier = lane.writing.get(record_id)
        rush = lane.rush.setdefault(record_id, asyncio.Event())

        async def in_turn() -> None:
            written = False
            try:
                if earlier is not None:
                    await asyncio.gather(asyncio.shield(earlier), return_exceptions=True)
                held = lane.hold() if lane.hold is not None and lane.one_process and not rush.is_set() else None
                if held is not None:
                    rushed = asyncio.ensure_future(rush.wait())
                    try:
                        await asyncio.wait([asyncio.ensure_future(held), rushed], timeout=HOLD_MAX_S,
                                           return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        rushed.cancel()
                written = await write
            finally:
                write.close()  # never started (cancelled while waiting): not left unawaited
                if lane.writing.get(record_id) is task:
                    del lane.writing[record_id]
                    lane.rush.pop(record_id, None)
                    if written:  # the table has the record's journaled state now; if not, the state stays decided here
                        lane.states.pop(record_id, None)
                lane.settle()

        task = asyncio.ensure_future(in_turn())
        lane.writing[record_id] = task
        return task

    def _rush(self, record_id: str | None = None) -> None:
        """Someone waits for the record's writes (every record's, without an id): they stop waiting for the hold."""
        lane = _lane(self.db)
        events = lane.rush.values() if record_id is None else [lane.rush[record_id]] if record_id in lane.rush else []
        for event in events:
            event.set()

    async def _write_row(self, lane: _Lane, row: dict[str, Any]) -> bool:
        try:
            await self.db.write(_INSERT_KEEPING, _signal_params(row))
            return True
        except Exception as exc:
            if _refused_for_good(exc):
                # its user (or position) is gone: nothing will ever read it
                log.warning("an exit signal was refused by the database (%s); dropped", type(exc).__name__)
            else:
                # kept in the journal, which is no longer emptied in this run: the next start writes it
                lane.failed = True
                log.exception("an exit signal could not be written to the database; it stays in the journal")
            return False

    async def transition(self, record_id: str, from_states: tuple[str, ...], to_state: str, **values: Any) -> bool:
        """As `TradeStates.transition`. With a journal and this process the only writer (SQLite), the move is
        decided here and journaled, and the row is updated behind: a tap's approve and the signed bytes
        before a send wait for no commit. The state it is decided on is the last one journaled for the
        record, or else the row's once every write behind for it has landed."""
        lane = _lane(self.db)
        if lane.journal is None or not lane.one_process:
            return await super().transition(record_id, from_states, to_state, **values)
        state = lane.states.get(record_id)
        if state is None:
            await self._settled(record_id)
            state = lane.states.get(record_id)  # another transition journaled while this one waited
            if state is None:
                row = await self.db.fetchone("SELECT state FROM exit_signals WHERE id=?", (record_id,))
                if row is None:
                    return False
                state = str(row[0])
        if state not in from_states:
            return False
        op = {"op": "transition", "id": record_id, "from": list(from_states), "to": to_state, "values": values,
              "at": now_ms()}
        try:
            lane.journal.append(op)
        except OSError:
            log.exception("the exit-signal journal could not be written; the transition goes to the database")
            return await super().transition(record_id, from_states, to_state, **values)
        lane.states[record_id] = to_state
        self._behind(lane, record_id, self._write_transition(lane, op))
        return True

    async def set(self, record_id: str, **values: Any) -> None:
        """As `TradeStates.set`; with journaled transitions (`transition`) it is written in turn behind them, and
        a state it sets is the one the next transition decides on."""
        lane = _lane(self.db)
        if lane.journal is None or not lane.one_process:
            await super().set(record_id, **values)
            return
        sql, params = self._set_sql(record_id, values)
        failure: list[BaseException] = []

        async def write() -> bool:
            try:
                await self.db.write(sql, params)
                return True
            except Exception as exc:
                failure.append(exc)
                return False

        if "state" in values:
            lane.states[record_id] = str(values["state"])
        task = self._behind(lane, record_id, write())
        self._rush(record_id)  # awaited here: no hold
        await asyncio.shield(task)
        if failure:
            raise failure[0]

    async def _write_transition(self, lane: _Lane, op: dict[str, Any]) -> bool:
        try:
            changed = await self.db.write(*_transition_sql(op))
        except Exception:
            lane.failed = True  # the journal keeps it for the next start
            log.exception("an exit signal's new state could not be written; it stays in the journal")
            return False
        if changed != 1:
            log.warning("exit signal %s was not in %s when its journaled move to %s was written",
                        op["id"], op["from"], op["to"])
        return True

    async def get_tapped(self, signal_id: str, wait_s: float = 0.5) -> ExitSignal | None:
        """The signal behind a tapped button. Its message goes out before its row is written, so a tap that
        reaches another instance (several behind one webhook) can come before the row: look once more."""
        signal = await self.get(signal_id)
        if signal is None and wait_s > 0:
            await asyncio.sleep(wait_s)
            signal = await self.get(signal_id)
        return signal

    async def _settled(self, record_id: str | None = None) -> None:
        writing = _lane(self.db).writing
        if not writing:
            return
        self._rush(record_id)
        tasks = list(writing.values()) if record_id is None else [writing[record_id]] if record_id in writing else []
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True)

    async def for_user(self, telegram_id: int, states: tuple[str, ...] | None = None, limit: int = 50) -> list[ExitSignal]:
        await self._settled()
        if states:
            marks = ",".join("?" for _ in states)
            rows = await self.db.fetchall(
                f"SELECT * FROM exit_signals WHERE telegram_id=? AND state IN ({marks}) ORDER BY received_at_ms DESC LIMIT ?",
                (telegram_id, *states, limit),
            )
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM exit_signals WHERE telegram_id=? ORDER BY received_at_ms DESC LIMIT ?", (telegram_id, limit)
            )
        return [_signal(r) for r in rows]

    async def supersede_pending(self, telegram_id: int, position_id: int, keep: str) -> list[ExitSignal]:
        """A newer signal for the same position replaces older pending ones (their buttons then say so)."""
        await self._settled()
        rows = await self.db.fetchall(
            "SELECT * FROM exit_signals WHERE telegram_id=? AND position_id=? AND state='pending' AND id<>?",
            (telegram_id, position_id, keep),
        )
        old = [_signal(r) for r in rows]
        for signal in old:
            await self.transition(signal.id, ("pending",), "superseded")
        return old
