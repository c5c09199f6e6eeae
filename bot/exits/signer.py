"""Signing exit transactions with the wallet key.

As the official SDK's ``sign_unsigned_tx``: decode the base64, parse the ``VersionedTransaction`` and
sign its message bytes with the keypair. The guard (``bot.exits.guard``) must have passed the transaction before it gets here;
this module only makes sure the key is the one the transaction asks for.
"""

from __future__ import annotations

import base64
import binascii

from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

_UNSIGNED = Signature.default()


class SigningError(Exception):
    """The transaction could not be read or signed; ``str()`` is a sentence for the trader."""


def decode_unsigned(b64: str) -> VersionedTransaction:
    """Parse the stream's ``unsigned_tx_b64`` into a transaction, with errors a trader can act on."""
    text = b64.strip() if isinstance(b64, str) else ""
    if not text:
        raise SigningError("The exit transaction is empty; ask for a fresh one.")
    try:
        # validate=True refuses characters outside the alphabet instead of silently skipping them.
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SigningError("The exit transaction is not valid base64; ask for a fresh one.") from error
    try:
        return VersionedTransaction.from_bytes(raw)
    except Exception as error:  # solders raises its own error types for bad bytes
        raise SigningError("The exit transaction could not be read as a Solana transaction.") from error


def sign_transaction(tx: VersionedTransaction, keypair: Keypair) -> VersionedTransaction:
    """Sign ``tx`` with ``keypair``, which must be its fee payer and only signer.

    The message bytes are signed once and the signature put in place (``populate``): building the transaction
    from the message and the keypair, as the SDK does, costs twice as much for the same bytes."""
    message = tx.message
    keys = message.account_keys
    if message.header.num_required_signatures != 1 or not keys:
        raise SigningError("The transaction asks for more than one signature; the bot signs only for your wallet.")
    signer = Pubkey.from_bytes(bytes(keypair)[32:])  # the keypair's public half, as kept (pubkey() derives it again)
    if keys[0] != signer:
        raise SigningError(f"This wallet key ({signer}) is not the one the transaction must be signed by ({keys[0]}).")
    try:
        return VersionedTransaction.populate(message, [keypair.sign_message(to_bytes_versioned(message))])
    except Exception as error:  # solders raises its own error types
        raise SigningError(f"Signing failed: {error}") from error


def encode(tx: VersionedTransaction) -> str:
    """Standard base64 of the serialized transaction, as ``sendTransaction`` expects."""
    return base64.b64encode(bytes(tx)).decode("ascii")


def signature_of(tx: VersionedTransaction) -> str:
    """The transaction's id on chain: its first (fee payer's) signature in base58."""
    if not tx.signatures or tx.signatures[0] == _UNSIGNED:
        raise SigningError("The transaction is not signed yet, so it has no signature.")
    return str(tx.signatures[0])


__all__ = ["SigningError", "decode_unsigned", "encode", "sign_transaction", "signature_of"]
