"""Users' LaserSell keys, wallets and settings. Secrets arrive here sealed; this module never sees plaintext."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from storage.db import Database, user_written
from storage.users import now_ms


class DuplicateWallet(Exception):
    """That wallet is already stored (for this user or another)."""

    def __init__(self, mine: bool) -> None:
        self.mine = mine
        super().__init__("wallet already added" if mine else "wallet belongs to another user of this bot")


class KeyInUse(Exception):
    """That LaserSell key is already used by another user of this bot."""


@dataclass(frozen=True)
class Wallet:
    id: int
    telegram_id: int
    address: str
    label: str
    sealed: bytes
    is_default: bool
    registered_at: int | None
    created_at: int


@dataclass(frozen=True)
class StoredKey:
    telegram_id: int
    sealed: bytes
    key_hint: str
    key_hash: str
    tier: str | None


# Send modes and their tips (the server builds the tip into every transaction from these). New users get the
# official CLI's defaults. A stored row is read through `normalized_tip`, which is how earlier rows are migrated:
# their send mode is kept as chosen (moving someone onto a paid sender unasked would cost them a tip per trade),
# rpc gets no tip, and a tip under its mode's floor is raised to the floor (a sender drops an under-tipped
# transaction, so such a row could never have landed a trade).
SEND_MODES = ("helius_sender", "astralane", "rpc")
DEFAULT_SEND_MODE = "helius_sender"
DEFAULT_TIP_LAMPORTS = 1_000_000
TIP_FLOOR_LAMPORTS = {"helius_sender": 200_000, "astralane": 10_000, "rpc": 0}
MAX_TIP_LAMPORTS = 100_000_000


def normalized_tip(send_mode: str, tip_lamports: int) -> int:
    """The tip a mode really uses: none over plain RPC, at least the sender's floor otherwise."""
    if send_mode not in TIP_FLOOR_LAMPORTS or send_mode == "rpc":
        return 0
    return max(int(tip_lamports), TIP_FLOOR_LAMPORTS[send_mode])


SETTINGS_FIELDS = (
    "strategy_json",
    "send_mode",
    "astralane_sealed",
    "tip_lamports",
    "slippage_bps",
    "slippage_cap_bps",
    "retry_count",
    "auto_sell",
    "alerts_json",
    "paused",
    "onboarding_step",
    "skipped_steps",
)


@dataclass(frozen=True)
class UserSettings:
    telegram_id: int
    strategy_json: str | None
    send_mode: str
    astralane_sealed: bytes | None
    tip_lamports: int
    slippage_bps: int
    slippage_cap_bps: int
    retry_count: int
    auto_sell: bool
    alerts: dict[str, str]
    paused: bool
    onboarding_step: str
    skipped_steps: frozenset[str]


def _wallet(row: sqlite3.Row) -> Wallet:
    return Wallet(
        id=row["id"],
        telegram_id=row["telegram_id"],
        address=row["address"],
        label=row["label"],
        sealed=bytes(row["sealed"]),
        is_default=bool(row["is_default"]),
        registered_at=row["registered_at"],
        created_at=row["created_at"],
    )


class Wallets:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, telegram_id: int, address: str, label: str, sealed: bytes) -> Wallet:
        existing = await self.db.fetchone("SELECT telegram_id FROM wallets WHERE address=?", (address,))
        if existing is not None:
            raise DuplicateWallet(mine=existing[0] == telegram_id)
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT COUNT(*) FROM wallets WHERE telegram_id=?", (telegram_id,))
            counted = await cur.fetchone()
            count = counted[0] if counted is not None else 0
            cur = await conn.execute(
                "INSERT INTO wallets (telegram_id, address, label, sealed, is_default, created_at) VALUES (?,?,?,?,?,?)",
                (telegram_id, address, label, sealed, int(count == 0), now_ms()),
            )
            wallet_id = cur.lastrowid
        wallet = await self.get(telegram_id, int(wallet_id or 0))
        assert wallet is not None
        return wallet

    async def list(self, telegram_id: int) -> list[Wallet]:
        rows = await self.db.fetchall(
            "SELECT * FROM wallets WHERE telegram_id=? ORDER BY is_default DESC, id", (telegram_id,)
        )
        return [_wallet(r) for r in rows]

    async def get(self, telegram_id: int, wallet_id: int) -> Wallet | None:
        row = await self.db.fetchone("SELECT * FROM wallets WHERE telegram_id=? AND id=?", (telegram_id, wallet_id))
        return _wallet(row) if row else None

    async def by_address(self, address: str) -> Wallet | None:
        row = await self.db.fetchone("SELECT * FROM wallets WHERE address=?", (address,))
        return _wallet(row) if row else None

    async def rename(self, telegram_id: int, wallet_id: int, label: str) -> bool:
        return await self.db.execute(
            "UPDATE wallets SET label=? WHERE telegram_id=? AND id=?", (label, telegram_id, wallet_id)
        ) == 1

    async def set_default(self, telegram_id: int, wallet_id: int) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT 1 FROM wallets WHERE telegram_id=? AND id=?", (telegram_id, wallet_id))
            if await cur.fetchone() is None:
                return False
            await conn.execute("UPDATE wallets SET is_default=CASE WHEN id=? THEN 1 ELSE 0 END WHERE telegram_id=?", (wallet_id, telegram_id))
        return True

    async def remove(self, telegram_id: int, wallet_id: int) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute("DELETE FROM wallets WHERE telegram_id=? AND id=?", (telegram_id, wallet_id))
            if cur.rowcount != 1:
                return False
            # keep exactly one default while any wallet is left
            await conn.execute(
                """UPDATE wallets SET is_default=1 WHERE id=(SELECT MIN(id) FROM wallets WHERE telegram_id=?)
                   AND NOT EXISTS (SELECT 1 FROM wallets WHERE telegram_id=? AND is_default=1)""",
                (telegram_id, telegram_id),
            )
        return True

    async def mark_registered(self, wallet_id: int) -> None:
        await self.db.execute("UPDATE wallets SET registered_at=? WHERE id=?", (now_ms(), wallet_id))


class LaserSellKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, telegram_id: int, sealed: bytes, key_hint: str, key_hash: str, tier: str | None) -> None:
        owner = await self.db.fetchone("SELECT telegram_id FROM lasersell_keys WHERE key_hash=?", (key_hash,))
        if owner is not None and owner[0] != telegram_id:
            raise KeyInUse()
        await self.db.execute(
            """INSERT INTO lasersell_keys (telegram_id, sealed, key_hint, key_hash, tier, created_at)
               VALUES (?,?,?,?,?,?)
               ON CONFLICT(telegram_id) DO UPDATE SET sealed=excluded.sealed, key_hint=excluded.key_hint,
                 key_hash=excluded.key_hash, tier=excluded.tier, created_at=excluded.created_at""",
            (telegram_id, sealed, key_hint, key_hash, tier, now_ms()),
        )

    async def get(self, telegram_id: int) -> StoredKey | None:
        row = await self.db.fetchone("SELECT * FROM lasersell_keys WHERE telegram_id=?", (telegram_id,))
        if row is None:
            return None
        return StoredKey(row["telegram_id"], bytes(row["sealed"]), row["key_hint"], row["key_hash"], row["tier"])

    async def owner_of(self, key_hash: str) -> int | None:
        row = await self.db.fetchone("SELECT telegram_id FROM lasersell_keys WHERE key_hash=?", (key_hash,))
        return int(row[0]) if row else None

    async def delete(self, telegram_id: int) -> None:
        await self.db.execute("DELETE FROM lasersell_keys WHERE telegram_id=?", (telegram_id,))


class SettingsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, telegram_id: int) -> UserSettings:
        row = await self.db.fetchone("SELECT * FROM user_settings WHERE telegram_id=?", (telegram_id,))
        if row is None:
            await self.db.execute(
                "INSERT INTO user_settings (telegram_id, send_mode, tip_lamports, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(telegram_id) DO NOTHING",
                (telegram_id, DEFAULT_SEND_MODE, DEFAULT_TIP_LAMPORTS, now_ms()),
            )
            row = await self.db.fetchone("SELECT * FROM user_settings WHERE telegram_id=?", (telegram_id,))
        assert row is not None
        return UserSettings(
            telegram_id=row["telegram_id"],
            strategy_json=row["strategy_json"],
            send_mode=row["send_mode"],
            astralane_sealed=bytes(row["astralane_sealed"]) if row["astralane_sealed"] is not None else None,
            tip_lamports=normalized_tip(row["send_mode"], row["tip_lamports"]),
            slippage_bps=row["slippage_bps"],
            slippage_cap_bps=row["slippage_cap_bps"],
            retry_count=row["retry_count"],
            auto_sell=bool(row["auto_sell"]),
            alerts=json.loads(row["alerts_json"] or "{}"),
            paused=bool(row["paused"]),
            onboarding_step=row["onboarding_step"],
            skipped_steps=frozenset(s for s in row["skipped_steps"].split(",") if s),
        )

    async def unpaused_ids(self) -> list[int]:
        """Every user whose streaming is not paused (the streams to resume at start-up)."""
        rows = await self.db.fetchall("SELECT telegram_id FROM user_settings WHERE paused=0")
        return [int(row[0]) for row in rows]

    async def update(self, telegram_id: int, **fields: Any) -> UserSettings:
        unknown = set(fields) - set(SETTINGS_FIELDS)
        if unknown:
            raise ValueError(f"unknown settings fields {sorted(unknown)}")
        await self.get(telegram_id)  # make sure the row exists
        if fields:
            values = []
            for name, value in fields.items():
                if name == "alerts_json" and isinstance(value, dict):
                    value = json.dumps(value, separators=(",", ":"))
                if name == "skipped_steps" and not isinstance(value, str):
                    value = ",".join(sorted(value))
                if isinstance(value, bool):
                    value = int(value)
                values.append(value)
            assignments = ", ".join(f"{name}=?" for name in fields)
            user_written(self.db, telegram_id)  # before and after: a read between them may see either row
            try:
                await self.db.execute(
                    f"UPDATE user_settings SET {assignments}, updated_at=? WHERE telegram_id=?",
                    (*values, now_ms(), telegram_id),
                )
            finally:
                user_written(self.db, telegram_id)
        return await self.get(telegram_id)


async def forget_user(db: Database, telegram_id: int) -> None:
    """Delete everything held for the user (keys, wallets, settings, and the user row) in one transaction."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM users WHERE telegram_id=?", (telegram_id,))


async def all_sealed(db: Database) -> list[tuple[str, Any, int, bytes, str]]:
    """Every sealed secret as (table, row key, telegram_id, blob, identity) for master-key rotation."""
    out: list[tuple[str, Any, int, bytes, str]] = []
    for row in await db.fetchall("SELECT id, telegram_id, address, sealed FROM wallets"):
        out.append(("wallets", row["id"], row["telegram_id"], bytes(row["sealed"]), row["address"]))
    for row in await db.fetchall("SELECT telegram_id, sealed FROM lasersell_keys"):
        out.append(("lasersell_keys", row["telegram_id"], row["telegram_id"], bytes(row["sealed"]), "api_key"))
    for row in await db.fetchall("SELECT telegram_id, astralane_sealed FROM user_settings WHERE astralane_sealed IS NOT NULL"):
        out.append(("user_settings", row["telegram_id"], row["telegram_id"], bytes(row["astralane_sealed"]), "astralane_key"))
    return out
