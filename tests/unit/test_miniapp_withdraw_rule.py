"""A withdrawal's own rule in front of the guard: one transfer of the amount to the chosen address, nothing else."""

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from bot.exits.guard import NATIVE_MINT, BuyIntent, GuardRefusal, check_buy
from bot.exits.withdraw import WithdrawalError, build_transfer, check_withdrawal, parse_address

WALLET, DEST, THIEF = Keypair().pubkey(), Keypair().pubkey(), Keypair().pubkey()
BLOCKHASH = Hash.default()


def tx_of(*ixs) -> VersionedTransaction:
    return VersionedTransaction.populate(MessageV0.try_compile(WALLET, list(ixs), [], BLOCKHASH), [Signature.default()])


def test_the_built_transfer_passes_the_rule_and_the_guards_structure() -> None:
    tx = build_transfer(WALLET, DEST, 250_000_000, BLOCKHASH)
    check_withdrawal(tx, WALLET, DEST, 250_000_000)
    report = check_buy(tx, BuyIntent(WALLET, NATIVE_MINT, 250_000_000, 0))
    assert report.sol_out == 250_000_000


def test_another_destination_or_amount_is_refused() -> None:
    with pytest.raises(GuardRefusal, match="does not go to the address you chose"):
        check_withdrawal(build_transfer(WALLET, THIEF, 250_000_000, BLOCKHASH), WALLET, DEST, 250_000_000)
    with pytest.raises(GuardRefusal, match="does not go to the address you chose"):
        check_withdrawal(build_transfer(WALLET, DEST, 260_000_000, BLOCKHASH), WALLET, DEST, 250_000_000)


def test_a_second_transfer_is_refused_by_the_rule_and_by_the_guard() -> None:
    tx = tx_of(transfer(TransferParams(from_pubkey=WALLET, to_pubkey=DEST, lamports=100)),
               transfer(TransferParams(from_pubkey=WALLET, to_pubkey=THIEF, lamports=100)))
    with pytest.raises(GuardRefusal):
        check_withdrawal(tx, WALLET, DEST, 100)
    with pytest.raises(GuardRefusal, match="more than your"):
        check_buy(tx, BuyIntent(WALLET, NATIVE_MINT, 100, 0))


def test_a_bad_address_is_refused_with_words() -> None:
    with pytest.raises(WithdrawalError, match="not a Solana address"):
        parse_address("0xdeadbeef")
