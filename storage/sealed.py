"""Every sealed secret in the database, re-sealed in one transaction (master key rotation).

The vault work (opening with the old key, sealing with the new) is the caller's `reseal`; this module
only reads and writes the rows, so an exception from `reseal` rolls the whole rotation back.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.accounts import all_sealed
from storage.db import Database
from storage.meta import UPSERT, VAULT_CHECK, VAULT_ROTATED

# table -> (vault kind, SQL that stores the re-sealed blob for one row key)
SEALED_TABLES: dict[str, tuple[str, str]] = {
    "wallets": ("wallet", "UPDATE wallets SET sealed=? WHERE id=?"),
    "lasersell_keys": ("api_key", "UPDATE lasersell_keys SET sealed=? WHERE telegram_id=?"),
    "user_settings": ("astralane_key", "UPDATE user_settings SET astralane_sealed=? WHERE telegram_id=?"),
}

# (table, vault kind, telegram id, sealed blob, identity) -> the blob sealed under the new key
Reseal = Callable[[str, str, int, bytes, str], bytes]


async def reseal_all(db: Database, reseal: Reseal, *, check: bytes, rotated: str) -> dict[str, int]:
    """Re-seal every secret and store the new check value and the rotation note, all or nothing.

    Returns how many secrets each table held. Freed pages are overwritten and the write-ahead log is
    emptied afterwards, so old-key ciphertexts do not linger in the file.
    """
    counts = {table: 0 for table in SEALED_TABLES}
    await db.execute("PRAGMA secure_delete=ON")
    async with db.transaction() as conn:
        for table, row_key, user_id, blob, identity in await all_sealed(db):
            kind, update = SEALED_TABLES[table]
            await conn.execute(update, (reseal(table, kind, user_id, blob, identity), row_key))
            counts[table] += 1
        await conn.execute(UPSERT, (VAULT_CHECK, check))
        await conn.execute(UPSERT, (VAULT_ROTATED, rotated))
    # Move the committed pages into the main file and empty the WAL, which still held old blobs.
    await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return counts
