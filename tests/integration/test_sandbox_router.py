"""The sandbox's LaserSell Router: trades by one router instruction, tier fees, tips, lookup tables,
USD1 markets and the hostile transactions a client must catch by simulating them."""

from __future__ import annotations

import pytest
from solders.address_lookup_table_account import ID as LOOKUP_TABLE_PROGRAM
from solders.address_lookup_table_account import AddressLookupTable
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.token.state import TokenAccount
from solders.transaction import VersionedTransaction

from sandbox.chain import (
    HOSTILE_KINDS,
    LAMPORTS_PER_SOL,
    TOKEN_PROGRAM_ID,
    USD1_MINT,
    Chain,
    ChainError,
    RpcError,
    TradeExecuted,
    decode_router_data,
    routing_fee,
)

TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"))


@pytest.fixture
def chain() -> Chain:
    return Chain(seed=21)


@pytest.fixture
def mint(chain: Chain) -> Pubkey:
    return chain.create_mint("PEPE", 6, sol_reserve=60, token_reserve=1_000_000_000, name="Pepe")


def sign(tx: VersionedTransaction, wallet: Keypair) -> VersionedTransaction:
    return VersionedTransaction(tx.message, [wallet])


def holder(chain: Chain, mint: Pubkey, quote_in: float = 1.0, sol: float = 2.0) -> tuple[Keypair, int]:
    wallet = Keypair()
    chain.fund(wallet.pubkey(), sol)
    return wallet, chain.outside_buy(wallet.pubkey(), mint, quote_in)


def all_keys(chain: Chain, tx: VersionedTransaction) -> list[Pubkey]:
    static, writable, readonly = chain.resolve_account_keys(tx)
    return [*static, *writable, *readonly]


def token_amount(account) -> int:
    return TokenAccount.from_bytes(bytes(account.data)[:165]).amount


def test_a_sell_is_one_router_instruction_and_no_top_level_token_transfer(chain: Chain, mint: Pubkey) -> None:
    wallet, tokens = holder(chain, mint)
    tx = chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100, 50_000)
    keys = all_keys(chain, tx)
    programs = [keys[ix.program_id_index] for ix in tx.message.instructions]
    assert programs.count(chain.router_program_id) == 1
    assert not any(p in TOKEN_PROGRAMS for p in programs)  # tokens leave only inside the router
    (router,) = [ix for ix in tx.message.instructions if keys[ix.program_id_index] == chain.router_program_id]
    accounts = [keys[i] for i in bytes(router.accounts)]
    assert accounts[0] == wallet.pubkey() and accounts[1] == chain.ata(wallet.pubkey(), mint)
    assert chain.pool(mint).token_account in accounts and chain.fee_collector in accounts
    order = decode_router_data(bytes(router.data))
    assert order is not None and order.amount_in == tokens
    assert tx.message.header.num_required_signatures == 1 and tx.message.account_keys[0] == wallet.pubkey()
    signature = chain.send_transaction(sign(tx, wallet))
    assert chain.signature_status(signature)["err"] is None
    assert chain.token_balance(wallet.pubkey(), mint) == 0


@pytest.mark.parametrize(("tier", "bps"), [("free", 200), ("professional", 90), ("advanced", 50)])
def test_sell_proceeds_are_net_of_the_tiers_routing_fee(
    chain: Chain, mint: Pubkey, tier: str, bps: int
) -> None:
    wallet, tokens = holder(chain, mint, quote_in=5.0, sol=6.0)
    gross = chain.quote_sell(mint, tokens)
    fee = gross * bps // 10_000
    assert fee > 10_000_000  # above the 0.01 SOL minimum: the percentage decides
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100, tier=tier), wallet)
    before, collected = chain.balance(wallet.pubkey()), chain.balance(chain.fee_collector)
    chain.send_transaction(tx)
    assert chain.balance(wallet.pubkey()) - before == gross - fee - chain.fee_for(tx)
    assert chain.balance(chain.fee_collector) - collected == fee


@pytest.mark.parametrize(
    ("tier", "minimum"), [("free", 10_000_000), ("professional", 10_000_000), ("advanced", 0)]
)
def test_a_small_sol_sell_pays_the_tiers_minimum_fee(
    chain: Chain, mint: Pubkey, tier: str, minimum: int
) -> None:
    wallet, tokens = holder(chain, mint, quote_in=0.2)
    gross = chain.quote_sell(mint, tokens)
    percentage = gross * {"free": 200, "professional": 90, "advanced": 50}[tier] // 10_000
    fee = max(percentage, minimum)
    assert routing_fee(tier, "SOL", gross) == fee
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100, tier=tier), wallet)
    before = chain.balance(wallet.pubkey())
    chain.send_transaction(tx)
    assert chain.balance(wallet.pubkey()) - before == gross - fee - chain.fee_for(tx)


def test_a_usd1_sell_pays_usd1_net_of_the_percentage_only(chain: Chain) -> None:
    mint = chain.create_mint("BUCK", 6, sol_reserve=500_000, token_reserve=1_000_000_000, quote="USD1")
    pool = chain.pool(mint)
    assert pool.quote == "USD1" and pool.quote_mint == USD1_MINT and pool.quote_decimals == 6
    wallet = Keypair()
    chain.fund(wallet.pubkey(), 0.5)
    chain.fund_usd1(wallet.pubkey(), 20)
    tokens = chain.outside_buy(wallet.pubkey(), mint, 20)  # 20 USD1 of tokens
    assert chain.usd1_balance(wallet.pubkey()) == 0
    gross = chain.quote_sell(mint, tokens)
    fee = gross * 90 // 10_000
    assert 0 < fee < 10_000_000  # a SOL trade this size would pay the 0.01 SOL minimum
    assert routing_fee("professional", "USD1", gross) == fee
    lamports = chain.balance(wallet.pubkey())
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100), wallet)
    signature = chain.send_transaction(tx)
    assert chain.signature_status(signature)["err"] is None
    assert chain.usd1_balance(wallet.pubkey()) == gross - fee
    assert chain.usd1_balance(chain.fee_collector) == fee
    assert chain.balance(wallet.pubkey()) == lamports - chain.fee_for(tx)  # no SOL proceeds
    assert chain.token_balance(pool.address, USD1_MINT) == pool.sol_reserve


def test_a_usd1_buy_spends_usd1_into_a_new_position(chain: Chain) -> None:
    mint = chain.create_mint("BUCK", 6, sol_reserve=500_000, token_reserve=1_000_000_000, quote="USD1")
    wallet = Keypair()
    chain.fund(wallet.pubkey(), 0.5)
    chain.fund_usd1(wallet.pubkey(), 100)
    fee = routing_fee("advanced", "USD1", 100_000_000)
    expected = chain.quote_buy(mint, 100_000_000 - fee)
    tx = sign(chain.build_buy_tx(wallet.pubkey(), mint, 100_000_000, 100, tier="advanced"), wallet)
    signature = chain.send_transaction(tx)
    assert chain.signature_status(signature)["err"] is None
    assert chain.token_balance(wallet.pubkey(), mint) == expected
    assert chain.usd1_balance(wallet.pubkey()) == 0 and chain.usd1_balance(chain.fee_collector) == fee


def test_the_tip_goes_to_a_tip_account(chain: Chain, mint: Pubkey) -> None:
    wallet, tokens = holder(chain, mint)
    assert chain.tip_account == chain.tip_accounts[0] and len(set(chain.tip_accounts)) > 1
    chosen = chain.tip_accounts[2]
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100, 1_000_000, chosen), wallet)
    keys = all_keys(chain, tx)
    tips = [
        ix
        for ix in tx.message.instructions
        if keys[ix.program_id_index] == SYSTEM_PROGRAM and keys[bytes(ix.accounts)[1]] in chain.tip_accounts
    ]
    assert len(tips) == 1
    before = {account: chain.balance(account) for account in chain.tip_accounts}
    chain.send_transaction(tx)
    assert chain.balance(chosen) - before[chosen] == 1_000_000
    assert all(chain.balance(a) == before[a] for a in chain.tip_accounts if a != chosen)


def test_a_sell_is_v0_with_a_lookup_table_and_lands(chain: Chain, mint: Pubkey) -> None:
    wallet, tokens = holder(chain, mint)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens // 2, 100, 10_000), wallet)
    assert isinstance(tx.message, MessageV0)
    (lookup,) = tx.message.address_table_lookups
    pool = chain.pool(mint)
    assert lookup.account_key == pool.lookup_table
    table_account = chain.account(pool.lookup_table)
    assert table_account.owner == LOOKUP_TABLE_PROGRAM
    table = AddressLookupTable.deserialize(bytes(table_account.data))
    assert table.meta.deactivation_slot == 2**64 - 1
    assert pool.token_account in table.addresses and pool.address in table.addresses
    static = list(tx.message.account_keys)
    assert pool.token_account not in static and chain.fee_collector not in static
    signature = chain.send_transaction(tx)
    record = chain.get_transaction(signature)
    assert record.err is None and pool.token_account in record.loaded_writable
    assert chain.token_balance(wallet.pubkey(), mint) == tokens - tokens // 2
    # Without the table everything is static, and it lands the same.
    plain = sign(
        chain.build_sell_tx(wallet.pubkey(), mint, tokens - tokens // 2, 100, use_lookup_table=False), wallet
    )
    assert list(plain.message.address_table_lookups) == []
    assert chain.signature_status(chain.send_transaction(plain))["err"] is None
    assert chain.token_balance(wallet.pubkey(), mint) == 0


def test_a_transaction_whose_lookup_table_is_missing_never_lands(chain: Chain, mint: Pubkey) -> None:
    wallet, tokens = holder(chain, mint)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100), wallet)
    elsewhere = Chain(seed=21)  # same keys and blockhashes, but no pool and so no lookup table
    elsewhere.fund(wallet.pubkey(), 1)
    assert elsewhere.simulate(tx)["err"] == "AddressLookupTableNotFound"
    signature = elsewhere.send_transaction(tx, skip_preflight=True)
    assert elsewhere.signature_status(signature) is None and elsewhere.was_dropped(signature)
    assert elsewhere.balance(wallet.pubkey()) == LAMPORTS_PER_SOL


def test_a_wallet_without_sol_for_the_fee_is_refused_and_never_lands(chain: Chain, mint: Pubkey) -> None:
    wallet, tokens = holder(chain, mint, quote_in=0.5, sol=0)  # the buy spent every lamport it had
    assert chain.balance(wallet.pubkey()) == 0
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100), wallet)
    with pytest.raises(RpcError) as refused:
        chain.send_transaction(tx)
    assert refused.value.data["err"] == "AccountNotFound"
    signature = chain.send_transaction(tx, skip_preflight=True)
    assert chain.signature_status(signature) is None and chain.was_dropped(signature)
    assert chain.token_balance(wallet.pubkey(), mint) == tokens


def test_simulation_shows_the_state_after_the_router(chain: Chain, mint: Pubkey) -> None:
    wallet, tokens = holder(chain, mint)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100), wallet)
    ata = chain.ata(wallet.pubkey(), mint)
    stranger = Keypair().pubkey()
    before = chain.balance(wallet.pubkey())
    result = chain.simulate(tx, accounts=[ata, wallet.pubkey(), stranger])
    after_ata, after_wallet, nothing = result["accounts"]
    assert result["err"] is None and nothing is None
    assert token_amount(after_ata) == 0
    gross = chain.quote_sell(mint, tokens)
    assert after_wallet.lamports == before + gross - routing_fee(
        "professional", "SOL", gross
    ) - chain.fee_for(tx)
    # Nothing was written.
    assert chain.token_balance(wallet.pubkey(), mint) == tokens and chain.balance(wallet.pubkey()) == before
    unsigned = chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100)
    assert chain.simulate(unsigned)["err"] is None  # a preview needs no signature
    assert chain.simulate(unsigned, sig_verify=True)["err"] == "SignatureFailure"


def test_a_buy_without_enough_sol_fails_in_the_router_and_costs_only_the_fee(
    chain: Chain, mint: Pubkey
) -> None:
    wallet = Keypair()
    chain.fund(wallet.pubkey(), 0.1)
    tx = sign(chain.build_buy_tx(wallet.pubkey(), mint, LAMPORTS_PER_SOL, 100), wallet)
    before = chain.balance(wallet.pubkey())
    signature = chain.send_transaction(tx, skip_preflight=True)
    assert chain.signature_status(signature)["err"] == {"InstructionError": [3, {"Custom": 1}]}
    assert chain.balance(wallet.pubkey()) == before - chain.fee_for(tx)
    assert chain.token_balance(wallet.pubkey(), mint) == 0


def test_router_trades_emit_the_trade_with_its_fee(chain: Chain, mint: Pubkey) -> None:
    wallet, tokens = holder(chain, mint)
    events: list[object] = []
    chain.subscribe(events.append)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100, tier="free"), wallet)
    gross = chain.quote_sell(mint, tokens)
    chain.send_transaction(tx)
    (trade,) = [e for e in events if isinstance(e, TradeExecuted)]
    assert (trade.side, trade.token_amount, trade.sol_amount) == ("sell", tokens, gross)
    assert trade.fee == routing_fee("free", "SOL", gross) and trade.quote == "SOL"


def test_unknown_tier_is_refused_with_the_tiers_named(chain: Chain, mint: Pubkey) -> None:
    with pytest.raises(ChainError, match="free, professional, advanced"):
        chain.build_sell_tx(Keypair().pubkey(), mint, 10, 100, tier="gold")
    with pytest.raises(ChainError, match="unknown hostile kind"):
        chain.build_hostile_tx("nice", Keypair().pubkey(), mint, amount_tokens=1)


# -- hostile transactions --------------------------------------------------------------------


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_each_hostile_kind_simulates_with_its_harm_and_lands(chain: Chain, mint: Pubkey, kind: str) -> None:
    other = chain.create_mint("WIF", 6, sol_reserve=40, token_reserve=1_000_000_000)
    wallet, tokens = holder(chain, mint, sol=3.0)
    other_tokens = chain.outside_buy(wallet.pubkey(), other, 0.5)
    thief_key = Keypair()
    thief = thief_key.pubkey()
    owner = wallet.pubkey()
    tip = 400_000_000 if kind == "tip_over_cap" else 0
    unsigned = chain.build_hostile_tx(kind, owner, mint, tip_lamports=tip, attacker=thief)
    if kind == "second_signer":
        assert unsigned.message.header.num_required_signatures == 2
        tx = VersionedTransaction(unsigned.message, [wallet, thief_key])
    else:
        tx = sign(unsigned, wallet)
    ata, other_ata = chain.ata(owner, mint), chain.ata(owner, other)
    thief_ata, thief_other = chain.ata(thief, mint), chain.ata(thief, other)
    watched = [ata, owner, thief_ata, thief, other_ata, thief_other, chain.tip_account]
    sol_before, tip_before = chain.balance(owner), chain.balance(chain.tip_account)
    result = chain.simulate(tx, accounts=watched)
    assert result["err"] is None, result["logs"]
    after = dict(zip(watched, result["accounts"], strict=True))
    state = TokenAccount.from_bytes(bytes(after[ata].data)[:165])
    if kind in ("steal_position", "cpi_drain", "lookup_table_destination"):
        assert state.amount == 0 and token_amount(after[thief_ata]) == tokens
        assert after[owner].lamports < sol_before  # paid fees, got nothing for the tokens
    elif kind == "steal_sol":
        assert after[thief].lamports >= sol_before * 9 // 10
    elif kind == "steal_other_token":
        assert token_amount(after[other_ata]) == 0 and token_amount(after[thief_other]) == other_tokens
    elif kind == "set_authority":
        assert state.owner == thief
    elif kind == "approve":
        assert state.delegate == thief and state.delegated_amount == 2**64 - 1
    elif kind == "tip_over_cap":
        assert after[chain.tip_account].lamports - tip_before == tip
    elif kind == "cpi_sol":
        assert after[thief].lamports >= sol_before * 8 // 10
    elif kind == "router_approve":
        assert state.delegate == thief and state.amount > 0
    elif kind == "router_set_authority":
        assert state.owner == thief
    if kind == "lookup_table_destination":
        assert thief_ata not in tx.message.account_keys  # only a lookup table names it
    if kind in ("cpi_sol", "router_approve", "router_set_authority"):
        keys = all_keys(chain, tx)
        programs = [keys[ix.program_id_index] for ix in tx.message.instructions]
        assert chain.router_program_id in programs and not any(p in TOKEN_PROGRAMS for p in programs)
    if kind == "cpi_drain":
        keys = all_keys(chain, tx)
        programs = [keys[ix.program_id_index] for ix in tx.message.instructions]
        assert chain.router_program_id in programs and not any(p in TOKEN_PROGRAMS for p in programs)
    signature = chain.send_transaction(tx)
    assert chain.signature_status(signature)["err"] is None
    landed = dict(zip(watched, (chain.account(k) for k in watched), strict=True))
    assert {k: (v.lamports, bytes(v.data)) if v else None for k, v in landed.items()} == {
        k: (v.lamports, bytes(v.data)) if v else None for k, v in after.items()
    }
