"""Master key rotation: re-seal every stored secret and the vault check value under a new master key.

Everything happens in one SQLite transaction, so an interruption (a crash, a secret that will not
open, Ctrl-C) rolls back to the state before: every secret still opens with the old key. After the
commit the old key opens nothing: each blob carries the id of the key that sealed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.vault import Vault, VaultError, WrongMasterKey
from storage.accounts import all_sealed
from storage.db import Database

CHECK_KEY = "vault_check"
ROTATED_KEY = "vault_rotated_at"

# table -> (vault kind, SQL that stores the re-sealed blob for one row key)
_TABLES: dict[str, tuple[str, str]] = {
    "wallets": ("wallet", "UPDATE wallets SET sealed=? WHERE id=?"),
    "lasersell_keys": ("api_key", "UPDATE lasersell_keys SET sealed=? WHERE telegram_id=?"),
    "user_settings": ("astralane_key", "UPDATE user_settings SET astralane_sealed=? WHERE telegram_id=?"),
}


class RotationError(Exception):
    """The rotation was refused or rolled back; nothing was changed. The message says why."""


@dataclass
class RotationReport:
    old_key_id: str
    new_key_id: str
    resealed: dict[str, int] = field(default_factory=dict)  # table -> number of secrets

    @property
    def total(self) -> int:
        return sum(self.resealed.values())


async def rotate_master_key(db: Database, old: Vault, new: Vault, *, now_ms: int) -> RotationReport:
    """Re-seal every secret from `old` to `new` in one transaction; raise RotationError (rolled back) on any failure."""
    if old.key_id == new.key_id:
        raise RotationError(f"the new master key is the same key (id {new.key_id}) as the current one")
    row = await db.fetchone("SELECT value FROM meta WHERE key=?", (CHECK_KEY,))
    if row is not None:
        try:
            old.verify_check(bytes(row[0]))
        except WrongMasterKey as exc:
            raise RotationError(f"the current master key does not open this database ({exc})") from None
    report = RotationReport(old.key_id, new.key_id, {table: 0 for table in _TABLES})
    # secure_delete overwrites freed pages, so old-key ciphertexts do not linger in the file.
    await db.execute("PRAGMA secure_delete=ON")
    try:
        async with db.transaction() as conn:
            for table, row_key, user_id, blob, identity in await all_sealed(db):
                kind, update = _TABLES[table]
                try:
                    resealed = old.reseal(blob, new, user_id=user_id, kind=kind, identity=identity)
                except VaultError as exc:
                    raise RotationError(
                        f"a secret in {table} (user {user_id}) does not open with the current key: {exc}"
                    ) from None
                await conn.execute(update, (resealed, row_key))
                report.resealed[table] += 1
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (CHECK_KEY, new.check_blob()),
            )
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (ROTATED_KEY, f"{now_ms}:{old.key_id}:{new.key_id}"),
            )
    except RotationError:
        raise
    except Exception as exc:
        raise RotationError(f"rotation stopped and was rolled back, nothing changed ({type(exc).__name__}: {exc})") from exc
    # Move the committed pages into the main file and empty the WAL, which still held old blobs.
    await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return report


async def rotation_note(db: Database) -> str | None:
    """When the database was last rotated, in words, for the start-up error on a wrong key."""
    row = await db.fetchone("SELECT value FROM meta WHERE key=?", (ROTATED_KEY,))
    if row is None:
        return None
    value = row[0]
    text = bytes(value).decode() if isinstance(value, bytes | bytearray | memoryview) else str(value)
    at_ms, old_id, new_id = text.split(":")
    import datetime as dt

    when = dt.datetime.fromtimestamp(int(at_ms) / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"it was re-sealed on {when} by `rotate-master-key` from key id {old_id} to key id {new_id}"
