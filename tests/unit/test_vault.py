"""Envelope encryption of users' secrets: binding, tampering, wrong keys, master key loading."""

from __future__ import annotations

import base64
import os
import pickle
import stat
from pathlib import Path

import pytest

from bot.vault import (
    BLOB_VERSION,
    Vault,
    VaultError,
    WrongMasterKey,
    load_master_key,
    write_new_master_key,
)

SECRET = b"wallet-secret-bytes-for-a-test-only"


@pytest.fixture
def vault() -> Vault:
    return Vault(os.urandom(32))


def test_seal_and_open_round_trip(vault: Vault) -> None:
    blob = vault.seal(SECRET, user_id=42, kind="wallet", identity="WalletAddr1")
    assert SECRET not in blob
    assert blob[0] == BLOB_VERSION
    assert blob[1:5].hex() == vault.key_id
    assert vault.open(blob, user_id=42, kind="wallet", identity="WalletAddr1") == SECRET


def test_fresh_nonce_every_time(vault: Vault) -> None:
    first = vault.seal(SECRET, user_id=1, kind="api_key", identity="api_key")
    second = vault.seal(SECRET, user_id=1, kind="api_key", identity="api_key")
    assert first != second
    assert first[5:17] != second[5:17]


@pytest.mark.parametrize(
    ("user_id", "kind", "identity"),
    [(43, "wallet", "WalletAddr1"), (42, "api_key", "WalletAddr1"), (42, "wallet", "WalletAddr2")],
)
def test_blob_moved_to_another_row_refuses_to_open(
    vault: Vault, user_id: int, kind: str, identity: str
) -> None:
    blob = vault.seal(SECRET, user_id=42, kind="wallet", identity="WalletAddr1")
    with pytest.raises(VaultError, match="does not belong to this user/wallet or was altered"):
        vault.open(blob, user_id=user_id, kind=kind, identity=identity)


def test_field_boundaries_cannot_be_shifted(vault: Vault) -> None:
    blob = vault.seal(SECRET, user_id=1, kind="ab", identity="c")
    with pytest.raises(VaultError):
        vault.open(blob, user_id=1, kind="a", identity="bc")


def test_every_tampered_byte_is_detected(vault: Vault) -> None:
    blob = vault.seal(SECRET, user_id=7, kind="wallet", identity="W")
    for index in range(5, len(blob)):
        altered = bytearray(blob)
        altered[index] ^= 0x01
        with pytest.raises(VaultError) as info:
            vault.open(bytes(altered), user_id=7, kind="wallet", identity="W")
        assert "altered" in str(info.value)
    with pytest.raises(VaultError, match="too short"):
        vault.open(blob[:20], user_id=7, kind="wallet", identity="W")
    with pytest.raises(VaultError, match="unknown format"):
        vault.open(b"\x09" + blob[1:], user_id=7, kind="wallet", identity="W")


def test_other_master_key_is_named_by_id(vault: Vault) -> None:
    other = Vault(os.urandom(32))
    blob = other.seal(SECRET, user_id=1, kind="wallet", identity="W")
    with pytest.raises(WrongMasterKey) as info:
        vault.open(blob, user_id=1, kind="wallet", identity="W")
    assert f"another master key (id {other.key_id})" in str(info.value)
    # Forging the header with our key id still fails: the key id is authenticated data.
    forged = blob[:1] + bytes.fromhex(vault.key_id) + blob[5:]
    with pytest.raises(VaultError, match="altered"):
        vault.open(forged, user_id=1, kind="wallet", identity="W")


def test_key_id_is_stable_and_reveals_nothing() -> None:
    key = os.urandom(32)
    assert Vault(key).key_id == Vault(key).key_id
    assert len(Vault(key).key_id) == 8
    assert Vault(key).key_id not in (key.hex(), base64.b64encode(key).decode())
    assert Vault(key).key_id != Vault(os.urandom(32)).key_id


def test_check_value(vault: Vault) -> None:
    check = vault.check_blob()
    vault.verify_check(check)
    other = Vault(os.urandom(32))
    with pytest.raises(WrongMasterKey):
        other.verify_check(check)
    altered = bytearray(check)
    altered[-1] ^= 0xFF
    with pytest.raises(WrongMasterKey):
        vault.verify_check(bytes(altered))


def test_reseal_moves_a_secret_to_a_new_master_key(vault: Vault) -> None:
    new = Vault(os.urandom(32))
    blob = vault.seal(SECRET, user_id=5, kind="wallet", identity="W")
    moved = vault.reseal(blob, new, user_id=5, kind="wallet", identity="W")
    assert new.open(moved, user_id=5, kind="wallet", identity="W") == SECRET
    with pytest.raises(WrongMasterKey):
        vault.open(moved, user_id=5, kind="wallet", identity="W")


def test_nothing_secret_in_repr_or_pickle() -> None:
    key = os.urandom(32)
    vault = Vault(key)
    for text in (repr(vault), str(vault)):
        assert vault.key_id in text
        assert key.hex() not in text and base64.b64encode(key).decode() not in text
    with pytest.raises(TypeError):
        pickle.dumps(vault)


def test_errors_never_carry_the_plaintext(vault: Vault) -> None:
    blob = vault.seal(SECRET, user_id=1, kind="wallet", identity="W")
    with pytest.raises(VaultError) as info:
        vault.open(blob, user_id=2, kind="wallet", identity="W")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert SECRET.decode() not in str(info.value)


def test_vault_rejects_a_short_master_key() -> None:
    with pytest.raises(VaultError, match="32 bytes"):
        Vault(b"short")


# --- master key loading -----------------------------------------------------------------------


def test_load_from_value_and_file(tmp_path: Path) -> None:
    key = os.urandom(32)
    encoded = base64.b64encode(key).decode()
    assert load_master_key(f"  {encoded}\n", None) == key
    path = tmp_path / "master.key"
    path.write_text(encoded + "\n\n")
    path.chmod(0o600)  # a key file others can read is refused (see below)
    assert load_master_key(None, str(path)) == key
    assert load_master_key("", path) == key


def test_load_errors_name_the_variable_and_never_the_key(tmp_path: Path) -> None:
    short = base64.b64encode(os.urandom(12)).decode()
    with pytest.raises(VaultError) as info:
        load_master_key(short, None)
    message = str(info.value)
    assert "BOT_MASTER_KEY must be base64 of 32 bytes (got 12 bytes)" in message
    assert "lasersell-bot gen-master-key" in message
    assert short not in message

    with pytest.raises(VaultError, match="BOT_MASTER_KEY is not valid base64"):
        load_master_key("not base64 at all!!", None)
    with pytest.raises(VaultError, match="only one of"):
        load_master_key(short, str(tmp_path / "x"))
    with pytest.raises(VaultError, match="no master key"):
        load_master_key(None, None)
    with pytest.raises(VaultError, match="does not exist"):
        load_master_key(None, str(tmp_path / "missing.key"))
    bad_file = tmp_path / "bad.key"
    bad_file.write_text(short)
    bad_file.chmod(0o600)
    with pytest.raises(VaultError) as info:
        load_master_key(None, str(bad_file))
    assert "BOT_MASTER_KEY_FILE" in str(info.value) and "(got 12 bytes)" in str(info.value)
    assert short not in str(info.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    encoded = base64.b64encode(os.urandom(32)).decode()
    path.write_text(encoded)
    path.chmod(mode)
    with pytest.raises(VaultError) as info:
        load_master_key(None, str(path))
    message = str(info.value)
    assert str(path) in message and f"chmod 600 {path}" in message and f"{mode:04o}" in message
    assert encoded not in message
    path.chmod(0o600)
    assert len(load_master_key(None, str(path))) == 32


def test_write_new_master_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    write_new_master_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_master_key(None, str(path))
    assert len(key) == 32
    with pytest.raises(VaultError, match="refusing to overwrite"):
        write_new_master_key(path)
    assert load_master_key(None, str(path)) == key
    other = tmp_path / "other.key"
    write_new_master_key(str(other))
    assert load_master_key(None, str(other)) != key
