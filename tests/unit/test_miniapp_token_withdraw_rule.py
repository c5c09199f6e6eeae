"""A token withdrawal's guard rule: one TransferChecked of the chosen mint and amount to the allow-listed address's
token account, and a simulated effect of exactly that move; anything else is refused before signing."""

import pytest
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.token.state import TokenAccount, TokenAccountState
from solders.transaction import VersionedTransaction

from bot.exits.guard import (
    SYSTEM_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    AccountView,
    GuardRefusal,
    SellIntent,
    Simulated,
    TokenWithdrawIntent,
    check_sell,
    check_token_withdrawal,
    check_withdrawal_effect,
)
from bot.exits.withdraw import WithdrawalError, build_token_transfer, token_units

WALLET, DEST, THIEF = Keypair().pubkey(), Keypair().pubkey(), Keypair().pubkey()
MINT, OTHER_MINT = Keypair().pubkey(), Keypair().pubkey()
BLOCKHASH = Hash.default()
AMOUNT = 1_500_000
RENT = 2_039_280


def intent(amount: int = AMOUNT, mint: Pubkey = MINT, destination: Pubkey = DEST,
           program: Pubkey = TOKEN_PROGRAM) -> TokenWithdrawIntent:
    return TokenWithdrawIntent(WALLET, mint, program, destination, amount, 6)


def tx_of(*ixs: Instruction) -> VersionedTransaction:
    return VersionedTransaction.populate(MessageV0.try_compile(WALLET, list(ixs), [], BLOCKHASH), [Signature.default()])


def instructions(tx: VersionedTransaction) -> list[Instruction]:
    """The built transaction's instructions, to rebuild it with one part changed."""
    keys = list(tx.message.account_keys)
    out = []
    for ix in tx.message.instructions:
        metas = [AccountMeta(keys[i], tx.message.is_signer(i), tx.message.is_maybe_writable(i)) for i in bytes(ix.accounts)]
        out.append(Instruction(keys[ix.program_id_index], bytes(ix.data), metas))
    return out


def test_the_built_withdrawal_passes_under_both_token_programs() -> None:
    for program in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        chosen = intent(program=program)
        report = check_token_withdrawal(build_token_transfer(chosen, BLOCKHASH), chosen)
        assert report.tokens_out == AMOUNT and report.sol_out == 0
        assert set(report.writable) == {WALLET, chosen.source_account, chosen.destination_account}


def test_a_wrong_mint_a_bigger_amount_or_another_destination_is_refused() -> None:
    chosen = intent()
    _create, other_mint_move = instructions(build_token_transfer(intent(mint=OTHER_MINT), BLOCKHASH))
    with pytest.raises(GuardRefusal, match="another token") as wrong_mint:
        check_token_withdrawal(tx_of(other_mint_move), chosen)
    with pytest.raises(GuardRefusal, match="other than the one of the address you chose"):
        check_token_withdrawal(build_token_transfer(intent(mint=OTHER_MINT), BLOCKHASH), chosen)
    with pytest.raises(GuardRefusal, match="not the 1,500,000 you chose") as bigger:
        check_token_withdrawal(build_token_transfer(intent(amount=AMOUNT + 1), BLOCKHASH), chosen)
    with pytest.raises(GuardRefusal, match="other than the one of the address you chose") as elsewhere:
        check_token_withdrawal(build_token_transfer(intent(destination=THIEF), BLOCKHASH), chosen)
    assert (wrong_mint.value.rule, bigger.value.rule, elsewhere.value.rule) == (
        "withdrawal_wrong_mint", "withdrawal_amount", "withdrawal_destination")


def test_the_transfer_alone_to_a_strangers_account_is_refused() -> None:
    create, move = instructions(build_token_transfer(intent(destination=THIEF), BLOCKHASH))
    with pytest.raises(GuardRefusal, match="not the token account of the address you chose"):
        check_token_withdrawal(tx_of(move), intent())


def test_an_extra_instruction_is_refused() -> None:
    create, move = instructions(build_token_transfer(intent(), BLOCKHASH))
    tip = transfer(TransferParams(from_pubkey=WALLET, to_pubkey=THIEF, lamports=1))
    memo = Instruction(Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"), b"hi", [])
    for extra in (tip, memo):
        with pytest.raises(GuardRefusal, match="a token withdrawal is one token transfer") as refusal:
            check_token_withdrawal(tx_of(create, move, extra), intent())
        assert refusal.value.rule == "withdrawal_shape"
    with pytest.raises(GuardRefusal, match="exactly one token transfer"):
        check_token_withdrawal(tx_of(create, move, move), intent())
    check_token_withdrawal(tx_of(move), intent())  # the destination's account may already exist


def test_a_sells_guard_still_refuses_a_plain_token_transfer() -> None:
    tx = build_token_transfer(intent(), BLOCKHASH)
    with pytest.raises(GuardRefusal) as refusal:
        check_sell(tx, SellIntent(WALLET, MINT, None, AMOUNT, 0))
    assert refusal.value.rule in ("ata_foreign_owner", "token_transfer_out")


def token(owner: Pubkey, amount: int, mint: Pubkey = MINT, delegate: Pubkey | None = None) -> AccountView:
    state = TokenAccount(mint, owner, amount, delegate, TokenAccountState.Initialized, None, 0, None)
    return AccountView(RENT, TOKEN_PROGRAM, bytes(state))


Transfers = tuple[tuple[Pubkey, Pubkey, int], ...]


def simulated(changes: dict[Pubkey, AccountView | None] | None = None, transfers: Transfers | None = None) -> Simulated:
    """The simulated withdrawal: 1.5 tokens out, into the destination's new account; `changes` alter the after."""
    chosen = intent()
    src, dst = chosen.source_account, chosen.destination_account
    before: dict[Pubkey, AccountView | None] = {
        WALLET: AccountView(1_000_000_000, SYSTEM_PROGRAM, b""), src: token(WALLET, 5_000_000), dst: None}
    after: dict[Pubkey, AccountView | None] = {
        WALLET: AccountView(1_000_000_000 - 5000 - RENT, SYSTEM_PROGRAM, b""), src: token(WALLET, 5_000_000 - AMOUNT),
        dst: token(DEST, AMOUNT)}
    after.update(changes or {})
    for key in after:
        before.setdefault(key, None)
    return Simulated(None, before, after, transfers if transfers is not None else ((WALLET, dst, RENT),))


def check(sim: Simulated) -> None:
    chosen = intent()
    check_withdrawal_effect(sim, chosen, check_token_withdrawal(build_token_transfer(chosen, BLOCKHASH), chosen))


def test_the_effect_of_exactly_the_withdrawal_passes() -> None:
    check(simulated())


def test_an_effect_beyond_the_withdrawal_is_refused() -> None:
    chosen = intent()
    src, dst = chosen.source_account, chosen.destination_account
    cases: list[tuple[dict[Pubkey, AccountView | None], Transfers | None, str]] = [
        ({src: token(WALLET, 5_000_000 - AMOUNT - 1)}, None, "take 1,500,001 units of this token, not the 1,500,000"),
        ({dst: token(DEST, AMOUNT - 1)}, None, "would not receive"),
        ({dst: token(THIEF, AMOUNT)}, None, "would not arrive"),
        ({src: token(WALLET, 5_000_000 - AMOUNT, delegate=THIEF)}, None, "who may spend or close"),
        ({src: None}, None, "close or hand over"),
        ({WALLET: AccountView(1_000_000_000 - 5000 - RENT - 1, SYSTEM_PROGRAM, b"")}, None, "fee and rent"),
        ({}, ((WALLET, dst, RENT), (WALLET, THIEF, 1)), "would send 0.000000001 SOL to"),
        ({THIEF: token(THIEF, 7, mint=OTHER_MINT)}, None, "also change the account"),
    ]
    for changes, transfers, words in cases:
        with pytest.raises(GuardRefusal, match=words):
            check(simulated(changes, transfers))
    with pytest.raises(GuardRefusal, match="fails when simulated"):
        check(Simulated({"InstructionError": [1, "InsufficientFunds"]}, {}, {}))


def test_token_amounts_are_read_as_typed() -> None:
    assert token_units("12.5", 6) == 12_500_000
    assert token_units(3, 0) == 3
    for bad, words in (("-1", "above 0"), ("abc", "above 0"), ("0.0000001", "6 decimal places"), (True, "above 0")):
        with pytest.raises(WithdrawalError, match=words):
            token_units(bad, 6)
