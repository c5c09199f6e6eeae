"""The transaction guard and the signer, on transactions built the way the stream builds exits."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from lasersell_sdk.tx import sign_unsigned_tx
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, CompiledInstruction, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import (
    AssignParams,
    CreateAccountWithSeedParams,
    TransferParams,
    assign,
    create_account_with_seed,
    transfer,
)
from solders.transaction import VersionedTransaction

from bot.exits.guard import (
    ADDRESS_LOOKUP_TABLE_PROGRAM,
    ASSOCIATED_TOKEN_PROGRAM,
    MEMO_PROGRAM,
    NATIVE_MINT,
    SYSTEM_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    BuyIntent,
    GuardRefusal,
    SellIntent,
    associated_token_address,
    check_buy,
    check_sell,
    format_sol,
    resolve_lookup_tables,
)
from bot.exits.signer import SigningError, decode_unsigned, encode, sign_transaction, signature_of

PUMP_FUN = Pubkey.from_string("6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P")
POSITION_TOKENS = 1_000_000_000
TIP = 1_000_000  # 0.001 SOL


def anchor(name: str) -> bytes:
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


class Scene:
    """A wallet holding a position, a pool to sell into and a tip account."""

    def __init__(self, token_program: Pubkey = TOKEN_PROGRAM) -> None:
        self.keypair = Keypair()
        self.wallet = self.keypair.pubkey()
        self.mint = Pubkey.new_unique()
        self.token_program = token_program
        self.position = associated_token_address(self.wallet, self.mint, token_program)
        self.pool_account = Pubkey.new_unique()
        self.tip_account = Pubkey.new_unique()
        # The LaserSell Router's id is not published: every scene gets a fresh one the guard cannot know.
        self.router = Pubkey.new_unique()
        self.fee_collector = Pubkey.new_unique()

    def intent(self, **changes: object) -> SellIntent:
        fields: dict[str, object] = {
            "wallet": self.wallet,
            "mint": self.mint,
            "token_account": None,
            "max_tokens": POSITION_TOKENS,
            "max_tip_lamports": TIP,
            "token_program": self.token_program,
        }
        fields.update(changes)
        return SellIntent(**fields)  # type: ignore[arg-type]

    def transfer_checked(
        self,
        amount: int = POSITION_TOKENS,
        *,
        source: Pubkey | None = None,
        mint: Pubkey | None = None,
        authority: Pubkey | None = None,
    ) -> Instruction:
        return Instruction(
            self.token_program,
            bytes([12]) + u64(amount) + bytes([6]),
            [
                AccountMeta(source or self.position, False, True),
                AccountMeta(mint or self.mint, False, False),
                AccountMeta(self.pool_account, False, True),
                # Only the wallet can sign; a foreign authority is listed unsigned.
                AccountMeta(authority or self.wallet, authority in (None, self.wallet), False),
            ],
        )

    def router_sell(self, amount: int = POSITION_TOKENS, *, mint: Pubkey | None = None,
                    extra: list[Pubkey] | None = None) -> Instruction:
        """One router instruction that swaps by CPI, shaped like the real exits."""
        accounts = [self.wallet, self.position, mint or self.mint, self.pool_account, self.token_program,
                    SYSTEM_PROGRAM, self.fee_collector, *(extra or [])]
        return Instruction(
            self.router, b"\x02" + u64(amount) + u64(1),
            [AccountMeta(key, key == self.wallet, key not in (mint or self.mint, self.token_program, SYSTEM_PROGRAM))
             for key in accounts],
        )

    def token_ix(self, data: bytes, accounts: list[Pubkey], program: Pubkey | None = None) -> Instruction:
        metas = [AccountMeta(key, key == self.wallet, key != self.wallet) for key in accounts]
        return Instruction(program or self.token_program, data, metas)

    def tip(self, lamports: int = TIP) -> Instruction:
        return transfer(
            TransferParams(from_pubkey=self.wallet, to_pubkey=self.tip_account, lamports=lamports)
        )

    def exit_instructions(self, *, limit: int = 200_000, micro_lamports: int = 50_000) -> list[Instruction]:
        return [
            set_compute_unit_limit(limit),
            set_compute_unit_price(micro_lamports),
            self.router_sell(),
            self.tip(),
            memo(b"lasersell exit"),
        ]

    def pump_fun(
        self, data: bytes, extra: list[Pubkey] | None = None, mint: Pubkey | None = None
    ) -> Instruction:
        accounts = [Pubkey.new_unique(), mint or self.mint, Pubkey.new_unique(), self.position, self.wallet]
        accounts += extra or []
        return Instruction(
            PUMP_FUN,
            data,
            [AccountMeta(key, key == self.wallet, True) for key in accounts],
        )


def memo(text: bytes) -> Instruction:
    return Instruction(MEMO_PROGRAM, text, [])


def unsigned(payer: Pubkey, instructions: list[Instruction], *, legacy: bool = False) -> VersionedTransaction:
    blockhash = Hash.new_unique()
    if legacy:
        message: Message | MessageV0 = Message.new_with_blockhash(instructions, payer, blockhash)
    else:
        message = MessageV0.try_compile(payer, instructions, [], blockhash)
    placeholders = [Signature.default()] * message.header.num_required_signatures
    return VersionedTransaction.populate(message, placeholders)


def refused(rule: str, call: object, *args: object, **kwargs: object) -> GuardRefusal:
    with pytest.raises(GuardRefusal) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.rule == rule, str(caught.value)
    assert str(caught.value).startswith("Refused to sign: ")
    return caught.value


@pytest.fixture
def scene() -> Scene:
    return Scene()


# ---- sells that must pass -------------------------------------------------------------------------


def test_an_exit_whose_only_unknown_program_is_the_router_passes(scene: Scene) -> None:
    tx = unsigned(scene.wallet, scene.exit_instructions())
    report = check_sell(tx, scene.intent())
    assert report.sol_out == TIP
    assert report.priority_fee_lamports == 10_000  # 200k units at 0.05 lamports each
    assert report.programs == ("Compute Budget", "router", "System", "Memo")
    # another run of the router, another unknown id: still not refused for it
    assert check_sell(bytes(unsigned(scene.wallet, scene.exit_instructions())), scene.intent()).sol_out == TIP


def test_benign_legacy_router_exit_passes(scene: Scene) -> None:
    tx = unsigned(scene.wallet, scene.exit_instructions(), legacy=True)
    assert not isinstance(tx.message, MessageV0)
    assert check_sell(tx, scene.intent()).sol_out == TIP


def test_a_top_level_transfer_to_a_stranger_is_refused_even_beside_the_router(scene: Scene) -> None:
    stranger_account = Pubkey.new_unique()
    steal = Instruction(
        scene.token_program, bytes([12]) + u64(POSITION_TOKENS) + bytes([6]),
        [AccountMeta(scene.position, False, True), AccountMeta(scene.mint, False, False),
         AccountMeta(stranger_account, False, True), AccountMeta(scene.wallet, True, False)],
    )
    tx = unsigned(scene.wallet, [*scene.exit_instructions(), steal])
    error = refused("token_transfer_out", check_sell, tx, scene.intent())
    assert str(stranger_account)[:4] in str(error)
    # the same from a position held outside the associated account, and a small plain Transfer too
    account = Pubkey.new_unique()
    refused("token_transfer_out", check_sell, unsigned(scene.wallet, [scene.transfer_checked(source=account)]),
            scene.intent(token_account=account))
    small = scene.token_ix(bytes([3]) + u64(1), [scene.position, stranger_account, scene.wallet])
    refused("token_transfer_out", check_sell, unsigned(scene.wallet, [small]), scene.intent())


def test_token_2022_router_exit_passes() -> None:
    scene = Scene(TOKEN_2022_PROGRAM)
    tx = unsigned(scene.wallet, scene.exit_instructions())
    assert check_sell(tx, scene.intent()).sol_out == TIP
    assert check_sell(tx, scene.intent(token_program=None)).sol_out == TIP


def test_partial_sell_with_wsol_output_and_ata_creation(scene: Scene) -> None:
    wsol = associated_token_address(scene.wallet, NATIVE_MINT)
    create_ata = Instruction(
        ASSOCIATED_TOKEN_PROGRAM,
        bytes([1]),
        [
            AccountMeta(scene.wallet, True, True),
            AccountMeta(wsol, False, True),
            AccountMeta(scene.wallet, False, False),
            AccountMeta(NATIVE_MINT, False, False),
            AccountMeta(SYSTEM_PROGRAM, False, False),
            AccountMeta(TOKEN_PROGRAM, False, False),
        ],
    )
    close = scene.token_ix(bytes([9]), [wsol, scene.wallet, scene.wallet], TOKEN_PROGRAM)
    sync = scene.token_ix(bytes([17]), [wsol], TOKEN_PROGRAM)
    tx = unsigned(scene.wallet, [create_ata, scene.router_sell(400), sync, close, scene.tip()])
    report = check_sell(tx, scene.intent())
    assert report.sol_out == TIP


def test_wrapped_sol_seed_account_rent_comes_back(scene: Scene) -> None:
    seed = "wsol-exit"
    created = Pubkey.create_with_seed(scene.wallet, seed, TOKEN_PROGRAM)
    rent = (128 + 165) * 6960
    create = create_account_with_seed(
        CreateAccountWithSeedParams(
            from_pubkey=scene.wallet,
            to_pubkey=created,
            base=scene.wallet,
            seed=seed,
            lamports=rent,
            space=165,
            owner=TOKEN_PROGRAM,
        )
    )
    init = scene.token_ix(bytes([18]) + bytes(scene.wallet), [created, NATIVE_MINT], TOKEN_PROGRAM)
    close = scene.token_ix(bytes([9]), [created, scene.wallet, scene.wallet], TOKEN_PROGRAM)
    sell = scene.router_sell()
    assert check_sell(unsigned(scene.wallet, [create, init, sell, close]), scene.intent()).sol_out == 0
    # Left open, the rent is SOL that leaves the wallet and counts against the tip.
    refused(
        "sol_transfer_too_large", check_sell, unsigned(scene.wallet, [create, init, sell]), scene.intent()
    )
    # A token account initialised for someone else is refused.
    foreign_init = scene.token_ix(
        bytes([18]) + bytes(Pubkey.new_unique()), [created, NATIVE_MINT], TOKEN_PROGRAM
    )
    refused(
        "token_account_foreign_owner",
        check_sell,
        unsigned(scene.wallet, [create, foreign_init]),
        scene.intent(),
    )


def test_dex_sell_passes_and_counts_tokens(scene: Scene) -> None:
    sell = scene.pump_fun(anchor("sell") + u64(POSITION_TOKENS) + u64(1))
    tx = unsigned(scene.wallet, [set_compute_unit_limit(100_000), sell, scene.tip()])
    report = check_sell(tx, scene.intent())
    assert report.tokens_out == POSITION_TOKENS
    assert "pump.fun" in report.programs


def test_unknown_programs_are_left_to_the_simulation_unless_the_operator_lists_them(scene: Scene) -> None:
    other = Pubkey.new_unique()
    ix = Instruction(
        other, b"\x01", [AccountMeta(scene.wallet, True, True), AccountMeta(scene.mint, False, False)]
    )
    tx = unsigned(scene.wallet, [scene.router_sell(), ix])
    # no id list decides: both are judged by what the simulated transaction does (check_effect)
    assert set(check_sell(tx, scene.intent()).unknown_programs) == {scene.router, other}
    assert check_sell(tx, scene.intent(), extra_programs=frozenset({other})).unknown_programs == (scene.router,)


def test_the_router_may_not_trade_another_token_of_the_wallet(scene: Scene) -> None:
    other_mint = Pubkey.new_unique()
    other_account = associated_token_address(scene.wallet, other_mint)
    wrong = unsigned(scene.wallet, [scene.router_sell(extra=[other_mint, other_account])])
    refused("dex_foreign_token_account", check_sell, wrong, scene.intent())
    refused("dex_wrong_mint", check_sell, unsigned(scene.wallet, [scene.router_sell(mint=other_mint)]), scene.intent())


# ---- hostile sells, one per rule ---------------------------------------------------------------


def test_wrong_fee_payer(scene: Scene) -> None:
    other = Keypair().pubkey()
    refused("fee_payer", check_sell, unsigned(other, scene.exit_instructions()), scene.intent())


def test_extra_signer(scene: Scene) -> None:
    other = Keypair().pubkey()
    steal = transfer(TransferParams(from_pubkey=other, to_pubkey=scene.tip_account, lamports=1))
    error = refused(
        "extra_signer",
        check_sell,
        unsigned(scene.wallet, [*scene.exit_instructions(), steal]),
        scene.intent(),
    )
    assert str(other)[:4] in str(error)


def test_an_unknown_program_handed_the_wallet_but_not_the_token_is_refused(scene: Scene) -> None:
    rogue = Instruction(Pubkey.new_unique(), b"\x00", [AccountMeta(scene.wallet, True, True)])
    refused(
        "dex_wrong_mint",
        check_sell,
        unsigned(scene.wallet, [*scene.exit_instructions(), rogue]),
        scene.intent(),
    )


def test_approve(scene: Scene) -> None:
    approve = scene.token_ix(bytes([4]) + u64(1), [scene.position, Pubkey.new_unique(), scene.wallet])
    refused("token_approve", check_sell, unsigned(scene.wallet, [approve]), scene.intent())


def test_approve_checked(scene: Scene) -> None:
    approve = scene.token_ix(
        bytes([13]) + u64(1) + bytes([6]), [scene.position, scene.mint, Pubkey.new_unique(), scene.wallet]
    )
    refused("token_approve", check_sell, unsigned(scene.wallet, [approve]), scene.intent())


def test_set_authority(scene: Scene) -> None:
    data = bytes([6, 2, 1]) + bytes(Pubkey.new_unique())  # AccountOwner -> attacker
    ix = scene.token_ix(data, [scene.position, scene.wallet])
    refused("set_authority", check_sell, unsigned(scene.wallet, [ix]), scene.intent())


def test_burn_and_unknown_token_instruction(scene: Scene) -> None:
    burn = scene.token_ix(bytes([8]) + u64(5), [scene.position, scene.mint, scene.wallet])
    refused("token_burn", check_sell, unsigned(scene.wallet, [burn]), scene.intent())
    revoke = scene.token_ix(bytes([5]), [scene.position, scene.wallet])
    refused("token_instruction_not_allowed", check_sell, unsigned(scene.wallet, [revoke]), scene.intent())


def test_close_account_to_foreign_destination(scene: Scene) -> None:
    close = scene.token_ix(bytes([9]), [scene.position, Pubkey.new_unique(), scene.wallet])
    refused(
        "close_account_foreign",
        check_sell,
        unsigned(scene.wallet, [scene.router_sell(), close]),
        scene.intent(),
    )


def test_transfer_from_another_token_account(scene: Scene) -> None:
    other_position = associated_token_address(scene.wallet, Pubkey.new_unique())
    ix = scene.token_ix(bytes([3]) + u64(10), [other_position, scene.pool_account, scene.wallet])
    refused("token_transfer_foreign_account", check_sell, unsigned(scene.wallet, [ix]), scene.intent())


def test_transfer_authorised_by_someone_else(scene: Scene) -> None:
    ix = scene.transfer_checked(authority=Pubkey.new_unique())
    refused("token_transfer_foreign_authority", check_sell, unsigned(scene.wallet, [ix]), scene.intent())


def test_transfer_checked_of_another_mint(scene: Scene) -> None:
    ix = scene.transfer_checked(mint=Pubkey.new_unique())
    refused("token_transfer_wrong_mint", check_sell, unsigned(scene.wallet, [ix]), scene.intent())


def test_sol_transfer_above_the_tip(scene: Scene) -> None:
    drain = [scene.router_sell(), scene.tip(2_500_000_000)]
    error = refused("sol_transfer_too_large", check_sell, unsigned(scene.wallet, drain), scene.intent())
    assert str(error) == (
        "Refused to sign: the transaction would send 2.5 SOL out of your wallet, more than your 0.001 SOL tip"
    )
    # Many small transfers add up.
    dribble = [scene.tip(TIP // 2), scene.tip(TIP // 2 + 1)]
    refused("sol_transfer_too_large", check_sell, unsigned(scene.wallet, dribble), scene.intent())


def test_assign(scene: Scene) -> None:
    ix = assign(AssignParams(pubkey=scene.wallet, owner=Pubkey.new_unique()))
    refused("assign", check_sell, unsigned(scene.wallet, [ix]), scene.intent())


def test_create_account_for_foreign_owner(scene: Scene) -> None:
    seed = "x"
    create = create_account_with_seed(
        CreateAccountWithSeedParams(
            from_pubkey=scene.wallet,
            to_pubkey=Pubkey.create_with_seed(scene.wallet, seed, PUMP_FUN),
            base=scene.wallet,
            seed=seed,
            lamports=1,
            space=0,
            owner=PUMP_FUN,
        )
    )
    refused("create_account_foreign_owner", check_sell, unsigned(scene.wallet, [create]), scene.intent())


def _table_data(addresses: list[Pubkey]) -> bytes:
    """An address lookup table account's bytes: the 56-byte LookupTableMeta, then the addresses."""
    meta = (1).to_bytes(4, "little") + (2**64 - 1).to_bytes(8, "little") + (0).to_bytes(8, "little") + bytes([0])
    meta += bytes([0]) + bytes(32) + bytes(2)  # no authority (+ the unused 32 bytes) and padding
    assert len(meta) == 56
    return meta + b"".join(bytes(a) for a in addresses)


def _chain(tables: dict[Pubkey, list[Pubkey]], owner: str = str(ADDRESS_LOOKUP_TABLE_PROGRAM)):  # type: ignore[no-untyped-def]
    async def fetch(address: str) -> tuple[str, bytes] | None:
        found = tables.get(Pubkey.from_string(address))
        return None if found is None else (owner, _table_data(found))
    return fetch


def test_lookup_tables_are_resolved_from_the_chain_and_checked(scene: Scene) -> None:
    table_key = Pubkey.new_unique()
    addresses = [scene.pool_account, scene.tip_account, scene.fee_collector, scene.mint]
    table = AddressLookupTableAccount(table_key, addresses)
    message = MessageV0.try_compile(scene.wallet, scene.exit_instructions(), [table], Hash.new_unique())
    assert message.address_table_lookups
    tx = VersionedTransaction.populate(message, [Signature.default()])
    # without the tables read, nothing is signed blind
    refused("address_lookup_table", check_sell, tx, scene.intent())
    loaded = asyncio.run(resolve_lookup_tables(tx, _chain({table_key: addresses})))
    assert loaded is not None
    assert check_sell(tx, scene.intent(), loaded=loaded).sol_out == TIP
    # a tip hidden behind the table is still counted against the cap
    refused("sol_transfer_too_large", check_sell, tx, scene.intent(max_tip_lamports=0), loaded=loaded)
    # a missing table, a foreign-owned account, or a table too short is refused
    with pytest.raises(GuardRefusal, match="does not exist"):
        asyncio.run(resolve_lookup_tables(tx, _chain({})))
    with pytest.raises(GuardRefusal, match="not an address lookup table"):
        asyncio.run(resolve_lookup_tables(tx, _chain({table_key: addresses}, owner=str(SYSTEM_PROGRAM))))
    with pytest.raises(GuardRefusal, match="missing"):
        asyncio.run(resolve_lookup_tables(tx, _chain({table_key: addresses[:1]})))


def test_a_transfer_to_a_stranger_hidden_in_a_lookup_table_is_refused(scene: Scene) -> None:
    stranger_account = Pubkey.new_unique()
    steal = scene.token_ix(bytes([3]) + u64(POSITION_TOKENS), [scene.position, stranger_account, scene.wallet])
    table_key = Pubkey.new_unique()
    addresses = [stranger_account, scene.pool_account, scene.fee_collector]
    table = AddressLookupTableAccount(table_key, addresses)
    message = MessageV0.try_compile(scene.wallet, [*scene.exit_instructions(), steal], [table], Hash.new_unique())
    tx = VersionedTransaction.populate(message, [Signature.default()])
    loaded = asyncio.run(resolve_lookup_tables(tx, _chain({table_key: addresses})))
    error = refused("token_transfer_out", check_sell, tx, scene.intent(), loaded=loaded)
    assert str(stranger_account)[:4] in str(error)


def test_excessive_priority_fee(scene: Scene) -> None:
    greedy = unsigned(scene.wallet, scene.exit_instructions(limit=1_400_000, micro_lamports=10_000_000))
    error = refused("priority_fee_too_high", check_sell, greedy, scene.intent())
    assert "0.014 SOL" in str(error)
    # Without a unit limit the runtime default (200k per instruction) still makes the price count.
    no_limit = unsigned(scene.wallet, [set_compute_unit_price(60_000_000), scene.router_sell()])
    refused("priority_fee_too_high", check_sell, no_limit, scene.intent())
    # The cap is configurable.
    fine = unsigned(scene.wallet, scene.exit_instructions())
    refused("priority_fee_too_high", check_sell, fine, scene.intent(), max_priority_fee_lamports=9_999)


def test_malformed_bytes(scene: Scene) -> None:
    refused("malformed", check_sell, b"\x01\x02 not a transaction", scene.intent())
    good = unsigned(scene.wallet, scene.exit_instructions())
    refused("malformed", check_sell, bytes(good)[:-7], scene.intent())


def test_malformed_indices_and_data(scene: Scene) -> None:
    base = MessageV0.try_compile(scene.wallet, [scene.transfer_checked()], [], Hash.new_unique())
    keys = base.account_keys
    out_of_range = CompiledInstruction(
        base.instructions[0].program_id_index, bytes([12]) + u64(1) + b"\x06", bytes([0, 40])
    )
    message = MessageV0(base.header, keys, base.recent_blockhash, [out_of_range], [])
    refused(
        "malformed", check_sell, VersionedTransaction.populate(message, [Signature.default()]), scene.intent()
    )
    short_data = CompiledInstruction(
        base.instructions[0].program_id_index, bytes([12, 1]), base.instructions[0].accounts
    )
    message = MessageV0(base.header, keys, base.recent_blockhash, [short_data], [])
    refused(
        "malformed", check_sell, VersionedTransaction.populate(message, [Signature.default()]), scene.intent()
    )


def test_dex_buy_inside_a_sell(scene: Scene) -> None:
    buy = scene.pump_fun(anchor("buy") + u64(1) + u64(5_000_000_000))
    refused("dex_buy_in_sell", check_sell, unsigned(scene.wallet, [buy]), scene.intent())


def test_dex_sell_larger_than_position(scene: Scene) -> None:
    sell = scene.pump_fun(anchor("sell") + u64(POSITION_TOKENS * 2) + u64(1))
    refused("token_transfer_too_large", check_sell, unsigned(scene.wallet, [sell]), scene.intent())


def test_dex_trading_another_token(scene: Scene) -> None:
    other_mint = Pubkey.new_unique()
    sell_other = scene.pump_fun(anchor("sell") + u64(1) + u64(1), mint=other_mint)
    refused("dex_wrong_mint", check_sell, unsigned(scene.wallet, [sell_other]), scene.intent())
    # Naming our mint but passing the wallet's account of another token it also names.
    other_ata = associated_token_address(scene.wallet, other_mint)
    sneaky = scene.pump_fun(anchor("sell") + u64(1) + u64(1), extra=[other_mint, other_ata])
    refused("dex_foreign_token_account", check_sell, unsigned(scene.wallet, [sneaky]), scene.intent())


def test_ata_created_for_someone_else(scene: Scene) -> None:
    stranger = Pubkey.new_unique()
    create = Instruction(
        ASSOCIATED_TOKEN_PROGRAM,
        b"",
        [
            AccountMeta(scene.wallet, True, True),
            AccountMeta(associated_token_address(stranger, scene.mint), False, True),
            AccountMeta(stranger, False, False),
            AccountMeta(scene.mint, False, False),
            AccountMeta(SYSTEM_PROGRAM, False, False),
            AccountMeta(TOKEN_PROGRAM, False, False),
        ],
    )
    refused("ata_foreign_owner", check_sell, unsigned(scene.wallet, [create]), scene.intent())


# ---- buys -------------------------------------------------------------------------------------


def buy_intent(scene: Scene, max_sol: int = 100_000_000) -> BuyIntent:
    return BuyIntent(wallet=scene.wallet, mint=scene.mint, max_sol_lamports=max_sol, max_tip_lamports=TIP)


def test_benign_buy_passes(scene: Scene) -> None:
    buy = scene.pump_fun(anchor("buy") + u64(123_456) + u64(100_000_000))
    tx = unsigned(
        scene.wallet, [set_compute_unit_limit(150_000), set_compute_unit_price(1_000), buy, scene.tip()]
    )
    report = check_buy(tx, buy_intent(scene))
    assert report.dex_quote_in_max == 100_000_000
    assert report.sol_out == TIP


def test_oversized_buy_is_refused(scene: Scene) -> None:
    buy = scene.pump_fun(anchor("buy") + u64(123_456) + u64(100_000_001))
    refused("dex_spend_too_large", check_buy, unsigned(scene.wallet, [buy]), buy_intent(scene))
    # SOL wrapped straight out of the wallet counts against spend plus tip.
    wsol = associated_token_address(scene.wallet, NATIVE_MINT)
    wrap = transfer(TransferParams(from_pubkey=scene.wallet, to_pubkey=wsol, lamports=100_000_000 + TIP + 1))
    error = refused("sol_transfer_too_large", check_buy, unsigned(scene.wallet, [wrap]), buy_intent(scene))
    assert "0.1 SOL buy plus 0.001 SOL tip" in str(error)


def test_buy_may_not_move_or_sell_tokens(scene: Scene) -> None:
    refused(
        "token_transfer_in_buy",
        check_buy,
        unsigned(scene.wallet, [scene.transfer_checked(1)]),
        buy_intent(scene),
    )
    sell = scene.pump_fun(anchor("sell") + u64(1) + u64(1))
    refused("dex_sell_in_buy", check_buy, unsigned(scene.wallet, [sell]), buy_intent(scene))


# ---- signer -----------------------------------------------------------------------------------


def test_sign_round_trip_matches_the_official_sdk(scene: Scene) -> None:
    tx = unsigned(scene.wallet, scene.exit_instructions())
    b64 = encode(tx)
    decoded = decode_unsigned(b64)
    signed = sign_transaction(decoded, scene.keypair)
    assert all(signed.verify_with_results())
    assert bytes(signed) == bytes(sign_unsigned_tx(b64, scene.keypair))
    assert signature_of(signed) == str(signed.signatures[0])
    assert decode_unsigned(encode(signed)) == signed


def test_signer_rejects_a_keypair_that_is_not_the_signer(scene: Scene) -> None:
    tx = unsigned(scene.wallet, scene.exit_instructions())
    with pytest.raises(SigningError, match="not the one the transaction must be signed by"):
        sign_transaction(tx, Keypair())


def test_signer_rejects_multi_signer_and_unsigned(scene: Scene) -> None:
    other = Keypair().pubkey()
    steal = transfer(TransferParams(from_pubkey=other, to_pubkey=scene.tip_account, lamports=1))
    with pytest.raises(SigningError, match="more than one signature"):
        sign_transaction(unsigned(scene.wallet, [steal]), scene.keypair)
    with pytest.raises(SigningError, match="not signed yet"):
        signature_of(unsigned(scene.wallet, scene.exit_instructions()))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not base64!!", "not valid base64"),
        ("QUJD", "could not be read"),  # valid base64, not a transaction
        (base64.b64encode(b"\x00" * 10).decode(), "could not be read"),
    ],
)
def test_decode_unsigned_errors(payload: str, message: str) -> None:
    with pytest.raises(SigningError, match=message):
        decode_unsigned(payload)


def test_format_sol() -> None:
    assert format_sol(2_500_000_000) == "2.5 SOL"
    assert format_sol(1_000_000) == "0.001 SOL"
    assert format_sol(0) == "0 SOL"
    assert format_sol(1) == "0.000000001 SOL"
