"""Token risk flags read from the mint account on chain: shown on every new position and checked before any
copy buy (a flagged token is never bought without the trader's say)."""

from __future__ import annotations

import base64
import struct

from bot.solana_rpc import TOKEN_2022_PROGRAM, RpcError, SolanaRpc

UNREADABLE = "its mint account could not be read, so its risks are unknown"

_EXTENSION_FLAGS = {
    1: "transfer fee: every transfer of it pays a fee",
    12: "permanent delegate: someone can move or burn your tokens at any time",
    14: "transfer hook: a program the creator chose runs on every transfer",
}


def mint_risk_flags(data: bytes, owner: str) -> list[str]:
    """Risk flags of a mint account's bytes (SPL Token layout, Token-2022 extensions as TLV)."""
    if len(data) < 82:
        return ["the mint account is not a token mint"]
    flags = []
    if struct.unpack_from("<I", data, 0)[0] == 1 and any(data[4:36]):
        flags.append("mint authority kept: more of it can be minted")
    if struct.unpack_from("<I", data, 46)[0] == 1 and any(data[50:82]):
        flags.append("freeze authority kept: your tokens can be frozen")
    if owner == TOKEN_2022_PROGRAM and len(data) > 166:
        offset = 166  # after the base mint padded to a token account's size and the account-type byte
        while offset + 4 <= len(data):
            kind, length = struct.unpack_from("<HH", data, offset)
            value = data[offset + 4: offset + 4 + length]
            offset += 4 + length
            if kind == 0:
                break
            if kind == 12 and not any(value[:32]):
                continue  # a permanent delegate of nobody
            if kind == 14 and not any(value[32:64]):
                continue  # a hook that runs no program
            if kind in _EXTENSION_FLAGS:
                flags.append(_EXTENSION_FLAGS[kind])
    return flags


async def read_risk_flags(rpc: SolanaRpc, mint: str) -> list[str]:
    """The mint's flags as the chain has them now; a mint that cannot be read counts as flagged."""
    try:
        result = await rpc.call("getAccountInfo", [mint, {"encoding": "base64"}])
        value = result["value"]
        data = base64.b64decode(value["data"][0])
        return mint_risk_flags(data, str(value["owner"]))
    except (RpcError, KeyError, TypeError, ValueError, IndexError):
        return [UNREADABLE]
