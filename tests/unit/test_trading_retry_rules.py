"""Which failures a sell retries, and with how much slippage: any on-chain failure of the trade instruction on
any market (not only the pump programs' two codes), never a fee or tip shortfall; the official CLI's steps."""

from __future__ import annotations

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from bot.exits.sell import explain, next_slippage

METEORA_DAMM_V2 = Pubkey.from_string("cpamdpZCGKUy5JxQXB4dcpGPiikHawvSWAd6mEn1sGG")


def exit_tx(trade_program: Pubkey) -> VersionedTransaction:
    wallet = Keypair().pubkey()
    trade = Instruction(trade_program, b"\x02", [AccountMeta(wallet, True, True)])
    tip = transfer(TransferParams(from_pubkey=wallet, to_pubkey=Pubkey.new_unique(), lamports=1_000_000))
    ixs = [set_compute_unit_limit(200_000), set_compute_unit_price(1), trade, tip]
    message = MessageV0.try_compile(wallet, ixs, [], Hash.new_unique())
    return VersionedTransaction.populate(message, [Signature.default()])


def test_a_failed_swap_on_a_router_or_any_market_is_retried() -> None:
    for program in (Pubkey.new_unique(), METEORA_DAMM_V2):  # the unpublished router, a non-pump DEX
        tx = exit_tx(program)
        kind, words = explain({"InstructionError": [2, {"Custom": 6001}]}, tx)
        assert kind == "slippage" and "swap failed" in words
        kind, _ = explain({"InstructionError": [2, "InvalidAccountData"]}, tx)
        assert kind == "slippage"
    # without the transaction at hand a program's own error code is still taken as the swap failing
    assert explain({"InstructionError": [0, {"Custom": 40}]})[0] == "slippage"
    assert explain({"InstructionError": [2, {"Custom": 6003}]})[0] == "slippage"


def test_fee_tip_and_blockhash_failures_are_not_slippage() -> None:
    tx = exit_tx(Pubkey.new_unique())
    assert explain({"InstructionError": [3, {"Custom": 1}]}, tx)[0] == "fees"  # the tip: too little SOL
    assert explain({"InstructionError": [0, "InvalidInstructionData"]}, tx)[0] == "other"  # compute budget
    assert explain("BlockhashNotFound", tx)[0] == "expired"
    assert explain("InsufficientFundsForFee", tx)[0] == "fees"


def test_slippage_steps_are_the_official_clis_up_to_the_cap() -> None:
    steps, current = [], 500
    for attempt in range(4):
        current = next_slippage(current, attempt, 640)
        steps.append(current)
    assert steps == [520, 560, 600, 640]
    assert next_slippage(630, 1, 640) == 640
