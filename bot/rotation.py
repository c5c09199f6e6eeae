"""Master key rotation: re-seal every stored secret and the vault check value under a new master key.

Everything happens in one SQLite transaction, so an interruption (a crash, a secret that will not
open, Ctrl-C) rolls back to the state before: every secret still opens with the old key. After the
commit the old key opens nothing: each blob carries the id of the key that sealed it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from bot.vault import Vault, VaultError, WrongMasterKey
from storage.db import Database
from storage.meta import VAULT_CHECK, VAULT_ROTATED, Meta
from storage.sealed import SEALED_TABLES, reseal_all

CHECK_KEY = VAULT_CHECK


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
    check = await Meta(db).get(VAULT_CHECK)
    if check is not None:
        try:
            old.verify_check(check)
        except WrongMasterKey as exc:
            raise RotationError(f"the current master key does not open this database ({exc})") from None

    def reseal(table: str, kind: str, user_id: int, blob: bytes, identity: str) -> bytes:
        try:
            return old.reseal(blob, new, user_id=user_id, kind=kind, identity=identity)
        except VaultError as exc:
            raise RotationError(f"a secret in {table} (user {user_id}) does not open with the current key: {exc}") from None

    try:
        resealed = await reseal_all(
            db, reseal, check=new.check_blob(), rotated=f"{now_ms}:{old.key_id}:{new.key_id}"
        )
    except RotationError:
        raise
    except Exception as exc:
        raise RotationError(f"rotation stopped and was rolled back, nothing changed ({type(exc).__name__}: {exc})") from exc
    return RotationReport(old.key_id, new.key_id, {table: resealed.get(table, 0) for table in SEALED_TABLES})


async def rotation_note(db: Database) -> str | None:
    """When the database was last rotated, in words, for the start-up error on a wrong key."""
    note = await Meta(db).get_text(VAULT_ROTATED)
    if note is None:
        return None
    at_ms, old_id, new_id = note.split(":")
    when = dt.datetime.fromtimestamp(int(at_ms) / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"it was re-sealed on {when} by `rotate-master-key` from key id {old_id} to key id {new_id}"
