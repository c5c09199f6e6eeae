"""Copy trading's rules a trader meets in words: amounts and limits typed in /copy, the slots of each plan,
and the risk flags read from a mint's bytes."""

from __future__ import annotations

import struct

import pytest
from solders.pubkey import Pubkey

from bot.copy import SLOTS, plan_of
from bot.risk import mint_risk_flags
from bot.solana_rpc import TOKEN_2022_PROGRAM
from handlers.copy import CopyInputError, parse_amount, parse_limit

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"


def mint_bytes(*, mint_authority: bool = False, freeze_authority: bool = False,
               extensions: list[tuple[int, bytes]] | None = None) -> bytes:
    key = bytes(Pubkey.new_unique())
    some = struct.pack("<I", 1) + key
    none = bytes(36)
    data = (some if mint_authority else none) + struct.pack("<Q", 10**15) + bytes([6, 1]) + (
        some if freeze_authority else none)
    if extensions:
        data += bytes(165 - 82) + bytes([1])
        for kind, value in extensions:
            data += struct.pack("<HH", kind, len(value)) + value
    return data


def test_a_clean_mint_has_no_flags() -> None:
    assert mint_risk_flags(mint_bytes(), TOKEN_PROGRAM) == []


def test_kept_authorities_are_flagged_in_words() -> None:
    flags = mint_risk_flags(mint_bytes(mint_authority=True, freeze_authority=True), TOKEN_PROGRAM)
    assert any("mint authority kept" in f for f in flags) and any("frozen" in f for f in flags)


def test_token_2022_permanent_delegate_transfer_hook_and_fee_are_flagged() -> None:
    delegate = bytes(Pubkey.new_unique())
    hook = bytes(Pubkey.new_unique()) + bytes(Pubkey.new_unique())
    fee = bytes(108)
    flags = mint_risk_flags(mint_bytes(extensions=[(1, fee), (12, delegate), (14, hook)]), TOKEN_2022_PROGRAM)
    assert len(flags) == 3
    assert any("permanent delegate" in f for f in flags)
    assert any("transfer hook" in f for f in flags) and any("transfer fee" in f for f in flags)


def test_an_empty_permanent_delegate_is_not_a_flag() -> None:
    assert mint_risk_flags(mint_bytes(extensions=[(12, bytes(32))]), TOKEN_2022_PROGRAM) == []


def test_bytes_too_short_for_a_mint_are_flagged() -> None:
    assert mint_risk_flags(b"\x00" * 10, TOKEN_PROGRAM) == ["the mint account is not a token mint"]


def test_slots_follow_the_plan() -> None:
    assert SLOTS[plan_of({"tier_name": "free"})] == 2
    assert SLOTS[plan_of({"tier_name": "tier_1", "plan": "Professional"})] == 10
    assert SLOTS[plan_of({"tier_name": "tier_2"})] == 25
    assert SLOTS[plan_of({"max_wallets": 5})] == 10


def test_amounts_in_sol_and_usd1() -> None:
    assert parse_amount(["0.25"]) == (250_000_000, "SOL")
    assert parse_amount(["25", "usd1"]) == (25_000_000, "USD1")
    for bad, words in ((["lots"], "not an amount"), (["0"], "more than 0"), (["1", "btc"], "not SOL or USD1"),
                       ([], "write the amount")):
        with pytest.raises(CopyInputError, match=words):
            parse_amount(bad)


def test_limits_are_checked_with_words() -> None:
    assert parse_limit("cooldown_sec", "45") == 45
    assert parse_limit("max_active_sol", "2.5") == 2.5
    assert parse_limit("max_consecutive_losses", "off") is None
    assert parse_limit("skip_creator_tokens", "on") is True
    for name, value, words in (("cooldown_sec", "-1", "0 or more"), ("cooldown_sec", "1.5", "whole number"),
                               ("buy_slippage_bps", "20000", "between 1 and 10000"), ("speed", "1", "no limit"),
                               ("skip_creator_tokens", "maybe", "on or off"), ("cooldown_sec", "off", "0 or more")):
        with pytest.raises(CopyInputError, match=words):
            parse_limit(name, value)
