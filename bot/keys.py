"""Solana wallet secrets as users paste them: parse, check, generate, export, prove ownership.

Accepted forms of a wallet secret:
- base58 of the 64-byte secret key (what Phantom and Solflare export);
- a JSON array of 64 numbers (a `solana-keygen` key file), or of 32 numbers (an ed25519 seed);
- a 12 or 24 word BIP39 recovery phrase (any valid BIP39 length is accepted), no passphrase,
  derived at m/44'/501'/0'/0' with SLIP-0010 ed25519, the account Phantom and Solflare show first.

A 32-byte base58 string is refused: wallet addresses have exactly that shape and users paste them
by mistake far more often than a raw seed (no common wallet exports a seed as base58). A seed can
still be given explicitly as a 32-number JSON array.

Errors never repeat the pasted text, not even a single word of a phrase: only positions and counts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
import unicodedata
from functools import lru_cache

import base58
from mnemonic import Mnemonic
from solders.keypair import Keypair
from solders.pubkey import Pubkey

PHANTOM_PATH = (44, 501, 0, 0)
PHRASE_LENGTHS = (12, 15, 18, 21, 24)
_HARDENED = 0x8000_0000

ACCEPTED_FORMS = (
    "send the secret key exported from your wallet (base58, 87-88 characters), "
    "a JSON array of 64 numbers, or your 12 or 24 word recovery phrase"
)


class KeyFormatError(ValueError):
    """What the user pasted is not a usable wallet secret; the message says why, never what."""


# ---------------------------------------------------------------------------------------------
# SLIP-0010 for ed25519 (only hardened derivation exists on this curve)


def slip10_master(seed: bytes) -> tuple[bytes, bytes]:
    """Master (private key, chain code) for `seed`."""
    digest = hmac.new(b"ed25519 seed", seed, hashlib.sha512).digest()
    return digest[:32], digest[32:]


def slip10_child(private_key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    """Hardened child `index` (given without the hardened bit) of (private key, chain code)."""
    if not 0 <= index < _HARDENED:
        raise ValueError("a SLIP-0010 ed25519 index must be in 0..2^31-1 (hardened is implied)")
    data = b"\x00" + private_key + struct.pack(">I", index | _HARDENED)
    digest = hmac.new(chain_code, data, hashlib.sha512).digest()
    return digest[:32], digest[32:]


def slip10_derive(seed: bytes, path: tuple[int, ...]) -> tuple[bytes, bytes]:
    """(private key, chain code) at hardened `path`, e.g. (44, 501, 0, 0) for m/44'/501'/0'/0'."""
    key, chain = slip10_master(seed)
    for index in path:
        key, chain = slip10_child(key, chain, index)
    return key, chain


# ---------------------------------------------------------------------------------------------
# Recovery phrases


@lru_cache(maxsize=1)
def _mnemonic() -> Mnemonic:
    return Mnemonic("english")


@lru_cache(maxsize=1)
def bip39_words() -> frozenset[str]:
    """The 2048 words of the BIP39 English list."""
    return frozenset(_mnemonic().wordlist)


def _phrase_words(text: str) -> list[str]:
    # NFKD as BIP39 prescribes; lower-case because phone keyboards capitalise the first word.
    return unicodedata.normalize("NFKD", text).lower().split()


def _check_phrase(words: list[str]) -> str:
    if len(words) not in PHRASE_LENGTHS:
        raise KeyFormatError(f"a recovery phrase has 12 or 24 words (got {len(words)})")
    wordlist = bip39_words()
    for position, word in enumerate(words, start=1):
        if word not in wordlist:
            raise KeyFormatError(f"word {position} is not a BIP39 English word: check its spelling")
    phrase = " ".join(words)
    if not _mnemonic().check(phrase):
        raise KeyFormatError("the phrase's checksum does not match: check the word order and spelling")
    return phrase


def keypair_from_phrase(phrase: str, account: int = 0) -> Keypair:
    """Keypair of a BIP39 phrase (no passphrase) at m/44'/501'/<account>'/0', as Phantom derives it."""
    checked = _check_phrase(_phrase_words(phrase))
    seed = Mnemonic.to_seed(checked, passphrase="")
    key, _chain = slip10_derive(seed, (44, 501, account, 0))
    return Keypair.from_seed(key)


# ---------------------------------------------------------------------------------------------
# Parsing what a user pasted

_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_RE = re.compile(f"^[{_BASE58_ALPHABET}]+$")
_NUMBERING_RE = re.compile(r"^\d{1,2}[.):]?$")


def _phrase_candidate(text: str) -> list[str] | None:
    """The words of `text` if it reads as a phrase (numbering like "1." and commas allowed), else None."""
    tokens = [t for t in text.replace(",", " ").split() if not _NUMBERING_RE.match(t)]
    # BIP39 words are 3 to 8 letters (12 leaves room for typos); base58 chunks are longer and mixed.
    if len(tokens) >= 2 and all(t.isalpha() and len(t) <= 12 for t in tokens):
        return tokens
    return None


def _keypair_from_64(raw: bytes) -> Keypair:
    keypair = Keypair.from_seed(raw[:32])
    if bytes(keypair.pubkey()) != raw[32:]:
        raise KeyFormatError(
            "the second half of this 64-byte key is not the public key of the first half: "
            "the key is damaged or incomplete; export it from your wallet again"
        )
    return keypair


def _parse_json_key(text: str) -> Keypair:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise KeyFormatError("that looks like a JSON key but is not valid JSON; " + ACCEPTED_FORMS) from None
    if not isinstance(value, list):
        raise KeyFormatError("a JSON key must be an array of 64 numbers from 0 to 255")
    for position, item in enumerate(value, start=1):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 255:
            raise KeyFormatError(f"a JSON key needs numbers from 0 to 255 (item {position} is not)")
    if len(value) == 64:
        return _keypair_from_64(bytes(value))
    if len(value) == 32:
        # 32 numbers can only be a seed: nobody shows an address as a byte array.
        return Keypair.from_seed(bytes(value))
    raise KeyFormatError(f"a JSON key needs 64 numbers from 0 to 255 (got {len(value)})")


def _parse_base58_key(compact: str) -> Keypair:
    if not _BASE58_RE.match(compact):
        raise KeyFormatError(
            "that is not base58 (a secret key uses only letters and digits, without 0, O, I and l); "
            + ACCEPTED_FORMS
        )
    raw = base58.b58decode(compact)
    if len(raw) == 64:
        return _keypair_from_64(raw)
    if len(raw) == 32:
        if Pubkey.from_bytes(raw).is_on_curve():
            raise KeyFormatError(
                "that is a wallet ADDRESS (public key), not a secret key; "
                "export the private key from your wallet instead"
            )
        raise KeyFormatError("that is an account address, not a secret key; " + ACCEPTED_FORMS)
    raise KeyFormatError(
        f"a base58 secret key is 64 bytes (that decodes to {len(raw)} bytes); " + ACCEPTED_FORMS
    )


def parse_wallet_secret(text: str) -> Keypair:
    """The Keypair in what a user pasted (base58 key, JSON array, or recovery phrase); see module doc."""
    stripped = text.strip().strip("`'\"").strip()
    if not stripped:
        raise KeyFormatError("that message is empty; " + ACCEPTED_FORMS)
    if stripped.startswith("["):
        return _parse_json_key(stripped)
    words = _phrase_candidate(stripped)
    if words is not None:
        return keypair_from_phrase(" ".join(words))
    # A base58 key broken across lines by a phone's copy/paste is still one key.
    return _parse_base58_key("".join(stripped.split()))


# ---------------------------------------------------------------------------------------------
# Spotting secrets in free text (deleting group messages, redacting logs)

# Start only where a run starts, so a long run is not rescanned from each of its characters.
_B58_RUN_RE = re.compile(f"(?<![{_BASE58_ALPHABET}])[{_BASE58_ALPHABET}]{{80,90}}")
_JSON_RUN_RE = re.compile(r"\[\s*(?:\d{1,3}\s*,\s*){31,63}\d{1,3}\s*\]")
_WORD_RE = re.compile(r"[A-Za-z]+")
# What may sit between words of a pasted phrase: spaces, newlines, numbering "1." "2)", commas, quotes.
_PHRASE_GAP_RE = re.compile(r"^[\s\d.,;:()\[\]\"'\-]*$")
_MIN_PHRASE_CHARS = 12 * 3 + 11
# Cheap pre-check in C: twelve short words in a row (BIP39 words are 3-8 letters; 12 allows a typo).
_PHRASE_HINT_RE = re.compile(r"(?<![A-Za-z])(?:[A-Za-z]{2,12}+[\s\d.,;:()\[\]\"'\-]++){11}[A-Za-z]{2,12}")


def _base58_key_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _B58_RUN_RE.finditer(text):
        # Transaction signatures are 64-byte base58 too, and belong in logs and chats: only a run
        # whose second half is the public key of its first half is a secret key.
        if _is_keypair_bytes(base58.b58decode(match.group())):
            spans.append(match.span())
    return spans


def _is_keypair_bytes(raw: bytes) -> bool:
    return len(raw) == 64 and bytes(Keypair.from_seed(raw[:32]).pubkey()) == raw[32:]


def _json_key_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _JSON_RUN_RE.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", match.group())]
        if any(n > 255 for n in numbers):
            continue
        # 32 numbers: a seed (addresses are never shown as arrays); 64: a key file, if consistent.
        if len(numbers) == 32 or _is_keypair_bytes(bytes(numbers)):
            spans.append(match.span())
    return spans


def _phrase_spans(text: str) -> list[tuple[int, int]]:
    """Runs of 12+ words of which at most one is not a BIP39 word (a typo is still a leaked phrase)."""
    if len(text) < _MIN_PHRASE_CHARS or not _PHRASE_HINT_RE.search(text):
        return []
    wordlist = bip39_words()
    spans: list[tuple[int, int]] = []
    run: list[tuple[int, int, bool]] = []  # (start, end, is_bip39) of the words in the current run

    def close() -> None:
        while len(run) > 12 and not run[-1][2]:
            run.pop()  # like a leading one, a trailing non-word stays only when needed to make 12
        if len(run) > 12 and not run[0][2]:
            run.pop(0)
        hits = sum(1 for _s, _e, ok in run if ok)
        if len(run) >= 12 and hits >= 11:
            spans.append((run[0][0], run[-1][1]))
        run.clear()

    misses = 0
    for match in _WORD_RE.finditer(text):
        start, end = match.span()
        ok = match.group().lower() in wordlist
        if run and not _PHRASE_GAP_RE.match(text[run[-1][1] : start]):
            close()
            misses = 0
        if not ok and misses:
            # Second miss: the run ends before it; the miss may open the next run.
            close()
            misses = 0
        misses += not ok
        run.append((start, end, ok))
    close()
    return spans


def secret_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every secret-shaped part of `text`: base58 secret keys, key arrays, phrases."""
    return _base58_key_spans(text) + _json_key_spans(text) + _phrase_spans(text)


def looks_like_secret(text: str) -> bool:
    """True when `text` contains something shaped like a wallet secret (cheap; no checksum needed)."""
    return bool(_base58_key_spans(text) or _json_key_spans(text) or _phrase_spans(text))


# ---------------------------------------------------------------------------------------------
# The lenient detector: what people paste, damaged by phones, keyboards and hurry.
#
# A 64-byte key in base58 is 85-90 characters; split over lines, with a stray space, or with one
# character wrong it is still the key (a one-character typo leaves ~500 of its 512 bits: brute force
# recovers it at once). So any run of base58 pieces, joined across whitespace, of 85-90 characters
# that decodes to 63-65 bytes counts. A transaction signature has that shape too and cannot be told
# apart from a key with a typo; in a chat the bot deletes it as well (a signature is public, so
# deleting it costs nothing, and missing a key would cost the wallet), except inside an explorer
# link ("/tx/<signature>"), the way people share transactions. Addresses (32 bytes, 32-44
# characters) are never joined into a key unless the pieces form an exact keypair.

# LaserSell API keys start with "ls_" (docs: onboarding/example-configuration).
LASERSELL_KEY_RE = re.compile(r"(?<![A-Za-z0-9])ls_[A-Za-z0-9_-]{16,}")
_B58_PIECE_RE = re.compile(f"[{_BASE58_ALPHABET}]+")
_MAX_PIECES = 8
_KEY_CHARS = range(85, 91)
_KEY_BYTES = range(63, 66)
# ed25519 signatures end with S < 2^252 + small, little-endian: the last byte is at most 0x10.
_SIG_LAST_BYTE_MAX = 0x10


def _b58_bytes(text: str) -> bytes | None:
    try:
        return base58.b58decode(text)
    except ValueError:
        return None


def _is_address(piece: str) -> bool:
    raw = _b58_bytes(piece) if 32 <= len(piece) <= 44 else None
    return raw is not None and len(raw) == 32


def could_be_signature(compact: str) -> bool:
    """True when a 64-byte base58 run has the shape of an ed25519 signature (R a point, S < L)."""
    raw = _b58_bytes(compact)
    if raw is None or len(raw) != 64 or raw[63] > _SIG_LAST_BYTE_MAX:
        return False
    return Pubkey.from_bytes(raw[:32]).is_on_curve()


def _loose_base58_spans(text: str, *, spare_signatures: bool) -> list[tuple[int, int]]:
    pieces = [m.span() for m in _B58_PIECE_RE.finditer(text)]
    spans: list[tuple[int, int]] = []
    group: list[tuple[int, int]] = []

    def scan() -> None:
        i = 0
        while i < len(group):
            total = 0
            found = None
            for j in range(i, min(len(group), i + _MAX_PIECES)):
                total += group[j][1] - group[j][0]
                if total > _KEY_CHARS[-1]:
                    break
                if total in _KEY_CHARS and _loose_key(text, group[i : j + 1], spare_signatures):
                    found = j
                    break
            if found is None:
                i += 1
            else:
                spans.append((group[i][0], group[found][1]))
                i = found + 1

    for span in pieces:
        if group and not text[group[-1][1] : span[0]].isspace():
            scan()
            group = []
        group.append(span)
    scan()
    return spans


def _loose_key(text: str, window: list[tuple[int, int]], spare_signatures: bool) -> bool:
    parts = [text[a:b] for a, b in window]
    compact = "".join(parts)
    raw = _b58_bytes(compact)
    if raw is None or len(raw) not in _KEY_BYTES:
        return False
    if len(parts) == 1:
        if _is_keypair_bytes(raw) if len(raw) == 64 else False:
            return True
        start = window[0][0]
        if text[max(0, start - 4) : start].lower().endswith("tx/"):
            return False  # an explorer link: a transaction, shared on purpose
        return not (spare_signatures and could_be_signature(compact))
    if len(raw) == 64 and _is_keypair_bytes(raw):
        return True
    # Joined pieces: ordinary words next to each other must not add up to a "key".
    if all(_is_address(p) for p in parts):
        return False  # two addresses side by side (an exact keypair was caught above)
    if max(len(p) for p in parts) < 20:
        return False
    if spare_signatures and any(len(p) >= 80 and could_be_signature(p) for p in parts):
        return False  # a signature with short words beside it ("in tx <signature>") is still a signature
    has_digit = any(c.isdigit() for c in compact)
    return has_digit and any(c.isupper() for c in compact) and any(c.islower() for c in compact)


_LOOSE_JSON_RE = re.compile(r"\[\s*(?:\d{1,3}\s*,\s*){30,64}\d{1,3}\s*,?\s*\]")


def _loose_json_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _LOOSE_JSON_RE.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", match.group())]
        # 31-33 numbers: a seed; 63-65: a key file, even with a number lost or added.
        if all(n <= 255 for n in numbers) and (31 <= len(numbers) <= 33 or 63 <= len(numbers) <= 65):
            spans.append(match.span())
    return spans


def loose_secret_spans(text: str, *, spare_signatures: bool = False) -> list[tuple[int, int]]:
    """Spans of everything that is or nearly is a wallet secret (see above), and LaserSell API keys.

    With `spare_signatures`, a single 64-byte base58 run shaped like a signature is left alone (logs
    keep transaction signatures; a typo'd key has about a 3% chance of that shape).
    """
    if len(text) < 16:
        return []
    spans = [m.span() for m in LASERSELL_KEY_RE.finditer(text)]
    if len(text) >= 47:
        spans += _loose_base58_spans(text, spare_signatures=spare_signatures)
        spans += _loose_json_spans(text)
        spans += _phrase_spans(text)
    return spans


def incoming_secret(text: str | None) -> str | None:
    """What secret a message from a user holds: "wallet" (key or phrase), "api_key", or None."""
    if not text or len(text) < 16:
        return None
    if len(text) >= 47 and (
        _loose_base58_spans(text, spare_signatures=False) or _loose_json_spans(text) or _phrase_spans(text)
    ):
        return "wallet"
    if LASERSELL_KEY_RE.search(text):
        return "api_key"
    return None


# ---------------------------------------------------------------------------------------------
# New wallets, export, ownership proof, display


def export_secret(keypair: Keypair) -> str:
    """base58 of the 64-byte secret key: the form Phantom and Solflare import."""
    return base58.b58encode(bytes(keypair)).decode("ascii")


def generate_wallet() -> tuple[Keypair, str]:
    """A fresh keypair and its base58 secret, for a one-time display to its owner."""
    keypair = Keypair()
    return keypair, export_secret(keypair)


def registration_proof(keypair: Keypair, now_s: int) -> dict[str, str]:
    """Body fields for POST /v1/wallets/register: the wallet signs `lasersell-register:<pubkey>:<unix s>`."""
    pubkey = str(keypair.pubkey())
    message = f"lasersell-register:{pubkey}:{int(now_s)}"
    signature = keypair.sign_message(message.encode("utf-8"))
    return {"wallet_pubkey": pubkey, "signature": str(signature), "message": message}


def short_address(pubkey: str) -> str:
    """A wallet or token address shortened for chat, like "7xKX…AsU"."""
    text = str(pubkey)
    if len(text) <= 9:
        return text
    return f"{text[:4]}…{text[-3:]}"
