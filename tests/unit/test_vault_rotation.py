"""Secrets bound to their rows, a wrong master key refused at start-up, and master key rotation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import base58
import pytest
from solders.keypair import Keypair

from bot.accounts import AccountError, AccountService
from bot.config import ConfigError, Settings, load_settings
from bot.lasersell_api import AccountInfo
from bot.rotation import RotationError, rotate_master_key
from bot.services import open_vault
from bot.vault import Vault, VaultError, WrongMasterKey, load_master_key, write_new_master_key
from storage.db import Database
from storage.users import Users

ROOT = Path(__file__).parents[2]
ANN, BOB = 1001, 1002
TOKEN = "123456:" + "A" * 35


class FakeApi:
    """LaserSell as far as adding keys and wallets needs it: every key is a professional one."""

    def __init__(self) -> None:
        self.registered: list[str] = []

    async def check_key(self, api_key: str) -> AccountInfo:
        return AccountInfo(tier=1, tier_name="tier_1", max_wallets=5)

    async def register_wallet(self, api_key: str, proof: dict[str, Any], label: str | None = None) -> None:
        self.registered.append(proof["wallet_pubkey"])


def settings_for(tmp_path: Path, key_file: Path, base_url: str = "http://127.0.0.1:1") -> Settings:
    return load_settings(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": base_url,
            "BOT_MASTER_KEY_FILE": str(key_file),
            "DATABASE_PATH": str(tmp_path / "bot.db"),
        },
        dotenv=None,
    )


class Seeded:
    def __init__(self, settings: Settings, db: Database, vault: Vault, accounts: AccountService) -> None:
        self.settings, self.db, self.vault, self.accounts = settings, db, vault, accounts
        self.wallets: dict[int, list[Keypair]] = {ANN: [], BOB: []}
        self.api_keys: dict[int, str] = {}


async def seed(tmp_path: Path, key_file: Path) -> Seeded:
    """Two users, each with a LaserSell key and wallets; Ann also with an Astralane key."""
    settings = settings_for(tmp_path, key_file)
    db = await Database.open(settings.database_path)
    vault = await open_vault(settings, db)
    accounts = AccountService(settings, db, vault, FakeApi(), rpc=None)  # type: ignore[arg-type]
    seeded = Seeded(settings, db, vault, accounts)
    users = Users(db)
    for user_id in (ANN, BOB):
        await users.seen(user_id, user_id, f"user{user_id}")
        seeded.api_keys[user_id] = f"ls_test_key_{user_id}_abcdefgh"
        await accounts.set_api_key(user_id, seeded.api_keys[user_id])
        for _ in range(2):
            keypair = Keypair()
            await accounts.import_wallet(user_id, _b58(keypair))
            seeded.wallets[user_id].append(keypair)
    sealed = vault.seal(b"astralane-secret-for-ann", user_id=ANN, kind="astralane_key", identity="astralane_key")
    await accounts.store.update(ANN, astralane_sealed=sealed, send_mode="astralane")
    return seeded


def _b58(keypair: Keypair) -> str:

    return base58.b58encode(bytes(keypair)).decode()


async def assert_all_open(seeded: Seeded, accounts: AccountService) -> None:
    for user_id, keypairs in seeded.wallets.items():
        for keypair in keypairs:
            opened = await accounts.keypair(user_id, str(keypair.pubkey()))
            assert bytes(opened) == bytes(keypair)
        found = await accounts.api_key(user_id)
        assert found is not None and found[0] == seeded.api_keys[user_id]
    settings = await accounts.store.get(ANN)
    assert settings.astralane_sealed is not None
    plain = accounts.vault.open(settings.astralane_sealed, user_id=ANN, kind="astralane_key", identity="astralane_key")
    assert plain == b"astralane-secret-for-ann"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    write_new_master_key(path)
    return path


@pytest.fixture
def new_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "new-master.key"
    write_new_master_key(path)
    return path


# --- a ciphertext belongs to exactly one row ---------------------------------------------------------------


async def test_wallet_ciphertext_moved_to_another_users_row_does_not_open(tmp_path: Path, key_file: Path) -> None:
    s = await seed(tmp_path, key_file)
    try:
        ann_wallet, bob_wallet = str(s.wallets[ANN][0].pubkey()), str(s.wallets[BOB][0].pubkey())
        ann_blob = (await s.accounts.wallets.by_address(ann_wallet)).sealed  # type: ignore[union-attr]
        await s.db.execute("UPDATE wallets SET sealed=? WHERE address=?", (ann_blob, bob_wallet))
        with pytest.raises(AccountError, match=r"cannot be opened: this secret does not belong to this user/wallet"):
            await s.accounts.keypair(BOB, bob_wallet)
        # and Ann's own row still opens
        assert str((await s.accounts.keypair(ANN, ann_wallet)).pubkey()) == ann_wallet
    finally:
        await s.db.close()


async def test_wallet_ciphertext_moved_to_another_wallet_of_the_same_user_does_not_open(
    tmp_path: Path, key_file: Path
) -> None:
    s = await seed(tmp_path, key_file)
    try:
        first, second = (str(k.pubkey()) for k in s.wallets[ANN])
        blob = (await s.accounts.wallets.by_address(first)).sealed  # type: ignore[union-attr]
        await s.db.execute("UPDATE wallets SET sealed=? WHERE address=?", (blob, second))
        with pytest.raises(AccountError, match=r"does not belong to this user/wallet"):
            await s.accounts.keypair(ANN, second)
    finally:
        await s.db.close()


async def test_api_key_ciphertext_moved_to_another_user_does_not_open(tmp_path: Path, key_file: Path) -> None:
    s = await seed(tmp_path, key_file)
    try:
        ann_blob = (await s.accounts.keys.get(ANN)).sealed  # type: ignore[union-attr]
        await s.db.execute("UPDATE lasersell_keys SET sealed=? WHERE telegram_id=?", (ann_blob, BOB))
        with pytest.raises(AccountError, match=r"LaserSell key cannot be opened .*does not belong.*/apikey"):
            await s.accounts.api_key(BOB)
        # a wallet blob pasted into the API key row fails too (another kind)
        wallet_blob = (await s.accounts.wallets.list(ANN))[0].sealed
        with pytest.raises(VaultError, match="does not belong"):
            s.vault.open(wallet_blob, user_id=ANN, kind="api_key", identity="api_key")
    finally:
        await s.db.close()


# --- the wrong master key stops start-up ---------------------------------------------------------------------


async def test_open_vault_refuses_a_wrong_master_key(tmp_path: Path, key_file: Path, new_key_file: Path) -> None:
    s = await seed(tmp_path, key_file)
    await s.db.close()
    db = await Database.open(s.settings.database_path)
    try:
        with pytest.raises(ConfigError, match=r"BOT_MASTER_KEY_FILE: this master key does not open the secrets"):
            await open_vault(settings_for(tmp_path, new_key_file), db)
        assert (await open_vault(s.settings, db)).key_id == s.vault.key_id
    finally:
        await db.close()


def _run_cli(tmp_path: Path, *args: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TELEGRAM_", "LASERSELL_", "DATABASE_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL="http://127.0.0.1:1",  # nothing listens: reaching it would fail differently
        BOT_MASTER_KEY_FILE=str(key_file),
        DATABASE_PATH=str(tmp_path / "bot.db"),
        PYTHONPATH=str(ROOT),  # this checkout's code, whatever the installed copy points at
    )
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )


async def test_run_with_a_wrong_master_key_exits_2_before_anything_starts(
    tmp_path: Path, key_file: Path, new_key_file: Path
) -> None:
    s = await seed(tmp_path, key_file)
    await s.db.close()
    proc = _run_cli(tmp_path, "run", key_file=new_key_file)
    assert proc.returncode == 2, proc.stderr
    assert "configuration error: BOT_MASTER_KEY_FILE: this master key does not open the secrets" in proc.stderr
    # the vault check came first: no attempt to reach Telegram was made
    assert "127.0.0.1:1" not in proc.stderr and "NetworkError" not in proc.stderr


# --- rotation -------------------------------------------------------------------------------------------------


async def test_rotation_reseals_everything_and_the_old_key_opens_nothing(
    tmp_path: Path, key_file: Path, new_key_file: Path
) -> None:
    s = await seed(tmp_path, key_file)
    old = s.vault
    new = Vault(load_master_key(None, new_key_file))
    try:
        report = await rotate_master_key(s.db, old, new, now_ms=1_700_000_000_000)
        assert report.resealed == {"wallets": 4, "lasersell_keys": 2, "user_settings": 1}
        after = AccountService(s.settings, s.db, new, FakeApi(), rpc=None)  # type: ignore[arg-type]
        await assert_all_open(s, after)
        for user_id, keypairs in s.wallets.items():
            with pytest.raises(AccountError, match="another master key"):
                await s.accounts.keypair(user_id, str(keypairs[0].pubkey()))
            with pytest.raises(AccountError, match="another master key"):
                await s.accounts.api_key(user_id)
        row = await s.db.fetchone("SELECT value FROM meta WHERE key='vault_check'")
        with pytest.raises(WrongMasterKey):
            old.verify_check(bytes(row[0]))
        new.verify_check(bytes(row[0]))
        with pytest.raises(ConfigError, match=r"re-sealed on .* by `rotate-master-key`.*Use the NEW master key"):
            await open_vault(s.settings, s.db)
    finally:
        await s.db.close()


async def test_interrupted_rotation_leaves_every_secret_readable_with_the_old_key(
    tmp_path: Path, key_file: Path, new_key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await seed(tmp_path, key_file)
    new = Vault(load_master_key(None, new_key_file))
    calls = 0
    real_reseal = Vault.reseal

    def failing_reseal(self: Vault, blob: bytes, new_vault: Vault, **kw: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C halfway
        return real_reseal(self, blob, new_vault, **kw)

    monkeypatch.setattr(Vault, "reseal", failing_reseal)
    try:
        with pytest.raises(KeyboardInterrupt):
            await rotate_master_key(s.db, s.vault, new, now_ms=1)
        monkeypatch.setattr(Vault, "reseal", real_reseal)
        assert calls == 3
        await assert_all_open(s, s.accounts)
        await open_vault(s.settings, s.db)  # the check value still belongs to the old key
        # a secret that does not open stops the rotation the same way, with words
        await s.db.execute(
            "UPDATE wallets SET sealed=? WHERE address=?",
            (b"\x01" + b"\x00" * 40, str(s.wallets[BOB][1].pubkey())),
        )
        with pytest.raises(RotationError, match=r"a secret in wallets \(user 1002\) does not open"):
            await rotate_master_key(s.db, s.vault, new, now_ms=1)
        assert bytes(await s.accounts.keypair(ANN, str(s.wallets[ANN][0].pubkey()))) == bytes(s.wallets[ANN][0])
        with pytest.raises(RotationError, match="same key"):
            await rotate_master_key(s.db, s.vault, s.vault, now_ms=1)
    finally:
        await s.db.close()


async def test_rotate_master_key_command(tmp_path: Path, key_file: Path, new_key_file: Path) -> None:
    s = await seed(tmp_path, key_file)
    await s.db.close()
    proc = _run_cli(tmp_path, "rotate-master-key", "--new-key-file", str(new_key_file), key_file=key_file)
    assert proc.returncode == 0, proc.stderr
    assert "Re-sealed 7 secret(s)" in proc.stdout and "4 wallet key(s), 2 LaserSell key(s), 1 Astralane key(s)" in proc.stdout
    assert f"BOT_MASTER_KEY_FILE={new_key_file}" in proc.stdout
    # the old key is now refused at start-up, with a message pointing to the new key
    proc = _run_cli(tmp_path, "run", key_file=key_file)
    assert proc.returncode == 2
    assert "rotate-master-key" in proc.stderr and "Use the NEW master key" in proc.stderr
    # running it again is harmless
    proc = _run_cli(tmp_path, "rotate-master-key", "--new-key-file", str(new_key_file), key_file=key_file)
    assert proc.returncode == 0 and "already sealed with the new key" in proc.stdout
    # and everything opens with the new key
    settings = settings_for(tmp_path, new_key_file)
    db = await Database.open(settings.database_path)
    try:
        vault = await open_vault(settings, db)
        await assert_all_open(s, AccountService(settings, db, vault, FakeApi(), rpc=None))  # type: ignore[arg-type]
    finally:
        await db.close()
