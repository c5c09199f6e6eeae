"""Files holding secrets: the database and its side files are the owner's alone, freed pages are wiped,
a key file others can read stops the bot with the fix, and the bot and a key rotation exclude each other."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.vault import write_new_master_key
from storage.db import Database, DatabaseBusy, ProcessLock

ROOT = Path(__file__).parents[2]
TOKEN = "123456:" + "A" * 35


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_a_new_database_and_its_wal_and_shm_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files would be 0644 without care
    try:
        db = await Database.open(tmp_path / "bot.db")
        try:
            await db.execute("INSERT INTO meta (key, value) VALUES ('probe', 'x')")
            for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
                assert mode(tmp_path / name) == 0o600, name
        finally:
            await db.close()
    finally:
        os.umask(old)


async def test_a_database_left_world_readable_by_an_older_install_is_narrowed(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    await db.close()
    (tmp_path / "bot.db").chmod(0o644)
    db = await Database.open(tmp_path / "bot.db")
    try:
        assert mode(tmp_path / "bot.db") == 0o600
        assert mode(tmp_path / "bot.db-wal") == 0o600
    finally:
        await db.close()


class SecureDeleteOff(sqlite3.Connection):
    """A connection as an SQLite built without SQLITE_SECURE_DELETE opens it: freed pages keep their bytes.
    (Debian's SQLite turns secure_delete on by default; other builds, Python's own on some systems, do not.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA secure_delete=OFF")


@pytest.fixture
def secure_delete_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection opened from here on (the bot's writer and reader too) starts with secure_delete off."""
    connect = sqlite3.connect

    def connect_off(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, factory=SecureDeleteOff, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect_off)


def write_then_delete(db: sqlite3.Connection, marker: str) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    db.execute("INSERT INTO t VALUES (?)", (marker,))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("DELETE FROM t")
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_without_secure_delete_a_deleted_value_stays_in_the_file(tmp_path: Path, secure_delete_off_by_default: None) -> None:
    """The case below can fail: where the default is off and nobody asks, the bytes stay."""
    marker = os.urandom(24).hex()
    db = sqlite3.connect(tmp_path / "plain.db")
    try:
        assert db.execute("PRAGMA secure_delete").fetchone()[0] == 0
        write_then_delete(db, marker)
    finally:
        db.close()
    assert marker.encode() in (tmp_path / "plain.db").read_bytes()


async def test_a_deleted_secret_leaves_no_bytes_in_the_database_file(
    tmp_path: Path, secure_delete_off_by_default: None
) -> None:
    """Even where SQLite's default is off, the bot's connections ask for secure_delete: /forget leaves nothing."""
    marker = os.urandom(24).hex()
    db = await Database.open(tmp_path / "bot.db")
    try:
        cursor = await db.conn.execute("PRAGMA secure_delete")
        assert (await cursor.fetchone())[0] == 1
        assert db.reader is not None and db.reader.execute("PRAGMA secure_delete").fetchone()[0] == 1
        await db.execute("INSERT INTO meta (key, value) VALUES ('gone', ?)", (marker,))
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert marker.encode() in (tmp_path / "bot.db").read_bytes()
        await db.execute("DELETE FROM meta WHERE key='gone'")
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await db.close()
    for name in ("bot.db", "bot.db-wal"):
        path = tmp_path / name
        if path.exists():
            assert marker.encode() not in path.read_bytes(), name


def run_cli(tmp_path: Path, *args: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TELEGRAM_", "LASERSELL_", "DATABASE_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL="http://127.0.0.1:1", BOT_MASTER_KEY_FILE=str(key_file),
        DATABASE_PATH=str(tmp_path / "bot.db"), PYTHONPATH=str(ROOT),
    )
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )


def test_a_world_readable_key_file_stops_the_bot_with_the_fix(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    write_new_master_key(key_file)
    key_file.chmod(0o644)
    proc = run_cli(tmp_path, "run", key_file=key_file)
    assert proc.returncode == 2
    assert str(key_file) in proc.stderr and f"chmod 600 {key_file}" in proc.stderr and "0644" in proc.stderr
    assert key_file.read_text().strip() not in proc.stderr + proc.stdout
    assert not (tmp_path / "bot.db").exists()  # refused before anything was opened


def test_gen_master_key_writes_a_file_only_the_owner_can_read(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    proc = run_cli(tmp_path, "gen-master-key", "--out", str(key_file), key_file=key_file)
    assert proc.returncode == 0, proc.stderr
    assert mode(key_file) == 0o600


def test_the_bot_and_a_rotation_never_hold_the_database_at_once(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    bot = ProcessLock.acquire(database, "the running bot")
    try:
        with pytest.raises(DatabaseBusy, match=r"in use by the running bot \(pid \d+\)"):
            ProcessLock.acquire(database, "rotate-master-key")
        assert mode(Path(f"{database}.lock")) == 0o600
    finally:
        bot.release()
    rotation = ProcessLock.acquire(database, "rotate-master-key")
    rotation.release()
