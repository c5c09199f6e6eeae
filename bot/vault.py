"""Secrets at rest: envelope encryption of wallet secret keys and users' LaserSell API keys.

A 32-byte master key (from BOT_MASTER_KEY or BOT_MASTER_KEY_FILE, never stored in the database)
seals each secret with AES-256-GCM under a fresh 96-bit nonce. The associated data binds the
ciphertext to its user, its kind ("wallet", "api_key", ...) and its identity (a wallet address, or
"api_key"), so a blob copied onto another user's or wallet's row refuses to open.

Blob layout (version 1)::

    version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext + GCM tag (16 bytes)

Plaintext returned by `Vault.open` is ordinary `bytes`; Python cannot wipe it reliably, so callers
should use it at once (sign, then drop the reference) and never keep it on long-lived objects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
import struct
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_BYTES = 32
BLOB_VERSION = 1
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = 1 + _KEY_ID_BYTES + _NONCE_BYTES

# Domain-separation labels: the key id and the cipher key come from the master key by different
# derivations, so publishing the key id reveals nothing usable about the cipher key.
_KEY_ID_LABEL = b"lasersell-bot/vault/key-id/v1\x00"
_CIPHER_KEY_INFO = b"lasersell-bot/vault/aes-256-gcm/v1"
_AAD_LABEL = b"lasersell-bot/vault/aad/v1"

_CHECK_PLAINTEXT = b"lasersell-bot master key check v1"
_CHECK_USER_ID = 0
_CHECK_KIND = "check"
_CHECK_IDENTITY = "master-key"

_GEN_HINT = "generate one with `lasersell-bot gen-master-key`"


class VaultError(Exception):
    """A secret could not be sealed or opened, or the master key is unusable. Never carries secrets."""


class WrongMasterKey(VaultError):
    """The configured master key is not the one that sealed the stored secrets."""


def _decode_master_key(text: str, variable: str) -> bytes:
    cleaned = "".join(text.split())
    if not cleaned:
        raise VaultError(f"{variable} is empty; it must be base64 of {MASTER_KEY_BYTES} bytes; {_GEN_HINT}")
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        # Never echo the value: a near-miss key is still key material.
        raise VaultError(
            f"{variable} is not valid base64; it must be base64 of {MASTER_KEY_BYTES} bytes; {_GEN_HINT}"
        ) from None
    if len(raw) != MASTER_KEY_BYTES:
        raise VaultError(
            f"{variable} must be base64 of {MASTER_KEY_BYTES} bytes (got {len(raw)} bytes); {_GEN_HINT}"
        )
    return raw


def load_master_key(b64_value: str | None, file_path: str | os.PathLike[str] | None) -> bytes:
    """Return the 32-byte master key from BOT_MASTER_KEY (base64) or the file BOT_MASTER_KEY_FILE names.

    Exactly one source must be given. Errors name the variable at fault and how to fix it.
    """
    has_value = bool(b64_value and b64_value.strip())
    has_file = file_path is not None and str(file_path).strip() != ""
    if has_value and has_file:
        raise VaultError("set only one of BOT_MASTER_KEY and BOT_MASTER_KEY_FILE, not both")
    if not has_value and not has_file:
        raise VaultError(
            "no master key: set BOT_MASTER_KEY_FILE to a key file (or BOT_MASTER_KEY to its base64); "
            + _GEN_HINT
        )
    if has_value:
        assert b64_value is not None
        return _decode_master_key(b64_value, "BOT_MASTER_KEY")
    path = Path(str(file_path))
    _refuse_shared_key_file(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise VaultError(f"BOT_MASTER_KEY_FILE points to {path}, which does not exist; {_GEN_HINT}") from None
    except UnicodeDecodeError:
        raise VaultError(
            f"BOT_MASTER_KEY_FILE ({path}) must hold base64 of {MASTER_KEY_BYTES} bytes as text; {_GEN_HINT}"
        ) from None
    except OSError as exc:
        raise VaultError(f"BOT_MASTER_KEY_FILE ({path}) cannot be read: {exc.strerror or exc}") from None
    return _decode_master_key(text, f"BOT_MASTER_KEY_FILE ({path})")


def _refuse_shared_key_file(path: Path) -> None:
    """A key file other users can read is refused: they could open every secret in the database."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise VaultError(f"BOT_MASTER_KEY_FILE points to {path}, which does not exist; {_GEN_HINT}") from None
    except OSError as exc:
        raise VaultError(f"BOT_MASTER_KEY_FILE ({path}) cannot be read: {exc.strerror or exc}") from None
    if mode & 0o077:
        who = "group and others" if mode & 0o070 and mode & 0o007 else "its group" if mode & 0o070 else "other users"
        raise VaultError(
            f"BOT_MASTER_KEY_FILE ({path}) is readable by {who} (mode {stat.S_IMODE(mode):04o}); "
            f"only the bot's user may read it: run `chmod 600 {path}`"
        )


def write_new_master_key(path: str | os.PathLike[str]) -> None:
    """Write base64 of 32 fresh random bytes to `path` with mode 0600; refuse to overwrite a file."""
    target = Path(path)
    encoded = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)) + b"\n"
    try:
        # O_EXCL: an existing key may be the only copy that opens the database's secrets.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise VaultError(
            f"{target} already exists; refusing to overwrite a master key (move it away first)"
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _key_id_bytes(master_key: bytes) -> bytes:
    return hashlib.sha256(_KEY_ID_LABEL + master_key).digest()[:_KEY_ID_BYTES]


def _associated_data(key_id: bytes, user_id: int, kind: str, identity: str) -> bytes:
    # Length-prefixed fields so ("ab", "c") and ("a", "bc") can never produce the same bytes.
    parts = [
        _AAD_LABEL,
        bytes([BLOB_VERSION]),
        key_id,
        str(int(user_id)).encode(),
        kind.encode(),
        identity.encode(),
    ]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


class Vault:
    """Seals and opens users' secrets with one master key."""

    __slots__ = ("_aead", "_key_id")

    def __init__(self, master_key: bytes) -> None:
        if not isinstance(master_key, bytes | bytearray) or len(master_key) != MASTER_KEY_BYTES:
            size = len(master_key) if isinstance(master_key, bytes | bytearray) else "not bytes"
            raise VaultError(f"the master key must be {MASTER_KEY_BYTES} bytes (got {size})")
        master = bytes(master_key)
        self._key_id = _key_id_bytes(master)
        cipher_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_CIPHER_KEY_INFO).derive(
            master
        )
        self._aead = AESGCM(cipher_key)

    @property
    def key_id(self) -> str:
        """Short stable id of the master key (8 hex digits), safe to log and store."""
        return self._key_id.hex()

    def __repr__(self) -> str:
        return f"Vault(key_id={self.key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the cipher key wherever the pickle goes.
        raise TypeError("a Vault cannot be pickled")

    def seal(self, plaintext: bytes, *, user_id: int, kind: str, identity: str) -> bytes:
        """Encrypt `plaintext` for one user's row: `kind` like "wallet"/"api_key", `identity` like an address."""
        if not isinstance(plaintext, bytes | bytearray):
            raise VaultError("only bytes can be sealed")
        nonce = os.urandom(_NONCE_BYTES)
        aad = _associated_data(self._key_id, user_id, kind, identity)
        return bytes([BLOB_VERSION]) + self._key_id + nonce + self._aead.encrypt(nonce, bytes(plaintext), aad)

    def open(self, blob: bytes, *, user_id: int, kind: str, identity: str) -> bytes:
        """Decrypt a blob sealed by `seal` for exactly this user, kind and identity."""
        if not isinstance(blob, bytes | bytearray) or len(blob) < _HEADER_BYTES + _TAG_BYTES:
            raise VaultError("this secret is not a sealed vault record (too short or not bytes)")
        blob = bytes(blob)
        version = blob[0]
        if version != BLOB_VERSION:
            raise VaultError(f"this secret was sealed in an unknown format (version {version})")
        key_id = blob[1 : 1 + _KEY_ID_BYTES]
        if key_id != self._key_id:
            raise WrongMasterKey(
                f"this secret was sealed by another master key (id {key_id.hex()}); "
                f"the configured master key is id {self.key_id}"
            )
        nonce = blob[1 + _KEY_ID_BYTES : _HEADER_BYTES]
        aad = _associated_data(key_id, user_id, kind, identity)
        try:
            return self._aead.decrypt(nonce, blob[_HEADER_BYTES:], aad)
        except InvalidTag:
            raise VaultError("this secret does not belong to this user/wallet or was altered") from None

    def check_blob(self) -> bytes:
        """A sealed fixed value to store once; `verify_check` later proves the same master key is loaded."""
        return self.seal(_CHECK_PLAINTEXT, user_id=_CHECK_USER_ID, kind=_CHECK_KIND, identity=_CHECK_IDENTITY)

    def verify_check(self, blob: bytes) -> None:
        """Raise WrongMasterKey unless this master key sealed `blob` (from `check_blob`)."""
        try:
            value = self.open(blob, user_id=_CHECK_USER_ID, kind=_CHECK_KIND, identity=_CHECK_IDENTITY)
        except WrongMasterKey:
            raise
        except VaultError:
            raise WrongMasterKey(
                f"the configured master key (id {self.key_id}) cannot open the stored check value; "
                "it is not the key this database was set up with (or the check value was altered)"
            ) from None
        if value != _CHECK_PLAINTEXT:
            raise WrongMasterKey(f"the stored check value does not match master key id {self.key_id}")

    def reseal(self, blob: bytes, new_vault: Vault, *, user_id: int, kind: str, identity: str) -> bytes:
        """Open with this vault and seal the same secret with `new_vault` (master key rotation)."""
        plaintext = self.open(blob, user_id=user_id, kind=kind, identity=identity)
        try:
            return new_vault.seal(plaintext, user_id=user_id, kind=kind, identity=identity)
        finally:
            del plaintext
