"""The sandbox chain: clock and blockhashes, pools and the outside market, LaserSell Router trades."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.transaction import VersionedTransaction

from sandbox.chain import (
    BLOCKHASH_VALID_SLOTS,
    EPOCH_MS,
    SLOT_MS,
    Chain,
    ChainError,
    PoolChanged,
    RpcError,
    TokenBalanceChanged,
    TradeExecuted,
    TransactionLanded,
    decode_router_data,
    routing_fee,
)

# Compute unit limit, compute unit price, then the router instruction.
SLIPPAGE_ERR_AT_2 = {"InstructionError": [2, {"Custom": 6003}]}


@pytest.fixture
def chain() -> Chain:
    return Chain(seed=7)


@pytest.fixture
def mint(chain: Chain):
    return chain.create_mint("PEPE", 6, sol_reserve=30, token_reserve=1_000_000_000, name="Pepe")


def sign(tx: VersionedTransaction, wallet: Keypair) -> VersionedTransaction:
    return VersionedTransaction(tx.message, [wallet])


def holder(chain: Chain, mint, sol_in: float = 1.0, funds: float = 2.0) -> tuple[Keypair, int]:
    wallet = Keypair()
    chain.fund(wallet.pubkey(), funds)
    return wallet, chain.outside_buy(wallet.pubkey(), mint, sol_in)


def assert_pool_matches_accounts(chain: Chain, mint) -> None:
    pool = chain.pool(mint)
    assert chain.balance(pool.address) - chain.rent_exempt_minimum(0) == pool.sol_reserve
    assert chain.token_balance(pool.address, mint) == pool.token_reserve


def test_same_seed_same_sandbox_and_other_seed_differs() -> None:
    a, b, c = Chain(seed=3), Chain(seed=3), Chain(seed=4)
    mints = [x.create_mint("X", 6, 10, 1000) for x in (a, b, c)]
    assert mints[0] == mints[1] != mints[2]
    assert a.latest_blockhash() == b.latest_blockhash() != c.latest_blockhash()
    assert a.keypair("w").pubkey() == b.keypair("w").pubkey()
    # The router's id is unpublished: not even the same seed gives it away.
    assert a.router_program_id != b.router_program_id
    assert a.router_program_id not in (a.keypair(label).pubkey() for label in ("router", "router-program"))


def test_clock_moves_time_and_blockhashes(chain: Chain) -> None:
    first, last_valid = chain.latest_blockhash()
    assert chain.now_ms() == EPOCH_MS and last_valid == chain.block_height + BLOCKHASH_VALID_SLOTS
    chain.advance_slots(10)
    assert chain.slot == 10 and chain.now_ms() == EPOCH_MS + 10 * SLOT_MS
    assert chain.latest_blockhash()[0] != first
    assert chain.svm.get_clock().slot == 10
    chain.advance_slots(BLOCKHASH_VALID_SLOTS - 10)
    assert chain.is_blockhash_valid(first)  # the last slot of its window
    chain.advance_slots(1)
    assert not chain.is_blockhash_valid(first)
    with pytest.raises(ChainError):
        chain.advance_slots(-1)


def test_outside_buy_moves_sol_and_tokens_and_reports_in_order(chain: Chain, mint) -> None:
    events: list[object] = []
    chain.subscribe(events.append)
    wallet = Keypair()  # empty: the sandbox funds the buy
    expected = chain.quote_buy(mint, 500_000_000)
    tokens = chain.outside_buy(wallet.pubkey(), mint, 0.5)
    assert tokens == expected > 0
    assert chain.token_balance(wallet.pubkey(), mint) == tokens
    assert chain.balance(wallet.pubkey()) == 0
    assert chain.token_accounts(wallet.pubkey()) == [
        (chain.ata(wallet.pubkey(), mint), mint, tokens, chain.token_program(mint))
    ]
    assert_pool_matches_accounts(chain, mint)
    trade = next(e for e in events if isinstance(e, TradeExecuted))
    assert (trade.side, trade.wallet, trade.token_amount, trade.sol_amount) == (
        "buy",
        wallet.pubkey(),
        tokens,
        500_000_000,
    )
    mine = [e for e in events if isinstance(e, TokenBalanceChanged) and e.wallet == wallet.pubkey()]
    assert [e.amount for e in mine] == [tokens]
    assert events.index(trade) < events.index(mine[0]) < len(events) - 1
    assert isinstance(events[-1], PoolChanged) and events[-1].reason == "trade"


def test_market_move_drain_and_graduation(chain: Chain, mint) -> None:
    start = chain.price(mint)
    chain.market_move(mint, 50)
    assert chain.price(mint) == pytest.approx(start * 1.5, rel=1e-6)
    chain.market_move(mint, -40)
    assert chain.price(mint) == pytest.approx(start * 0.9, rel=1e-6)
    assert_pool_matches_accounts(chain, mint)
    before = chain.pool(mint)
    sol, tokens = before.sol_reserve, before.token_reserve
    chain.drain(mint, 25)
    pool = chain.pool(mint)
    assert pool.sol_reserve == pytest.approx(sol * 0.75, rel=1e-9)
    assert pool.token_reserve == pytest.approx(tokens * 0.75, rel=1e-9)
    assert chain.price(mint) == pytest.approx(start * 0.9, rel=1e-6)  # a drain keeps the price
    assert_pool_matches_accounts(chain, mint)
    assert chain.market_cap(mint) > 0
    events: list[object] = []
    chain.subscribe(events.append)
    chain.graduate(mint)
    assert pool.graduated and pool.market_type == "pump_swap"
    assert isinstance(events[-1], PoolChanged) and events[-1].graduated
    assert len(pool.history) >= 5


def router_order(chain: Chain, tx: VersionedTransaction):
    keys = list(tx.message.account_keys)
    (ix,) = [ix for ix in tx.message.instructions if keys[ix.program_id_index] == chain.router_program_id]
    return decode_router_data(bytes(ix.data))


def test_sell_lands_and_pays_the_curve_less_the_routing_fee(chain: Chain, mint) -> None:
    wallet, tokens = holder(chain, mint, sol_in=3.0, funds=4.0)
    tip_account = Keypair().pubkey()
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100, 10_000, tip_account, "exit:7"), wallet)
    order = router_order(chain, tx)
    assert order.amount_in == tokens and order.tag == "exit:7"
    gross = chain.quote_sell(mint, tokens)
    fee = routing_fee("professional", "SOL", gross)
    assert fee == gross * 90 // 10_000 > 10_000_000
    assert order.min_out == (gross - fee) * 9900 // 10_000
    before = chain.balance(wallet.pubkey())
    collector_before = chain.balance(chain.fee_collector)
    events: list[object] = []
    chain.subscribe(events.append)
    signature = chain.send_transaction(tx)
    network_fee = chain.fee_for(tx)
    assert chain.balance(wallet.pubkey()) == before + gross - fee - network_fee - 10_000
    assert chain.balance(chain.fee_collector) - collector_before == fee
    assert chain.balance(tip_account) >= 10_000
    assert chain.token_balance(wallet.pubkey(), mint) == 0
    assert_pool_matches_accounts(chain, mint)
    status = chain.signature_status(signature)
    assert status == {"slot": chain.slot, "confirmations": 0, "err": None, "confirmationStatus": "confirmed"}
    record = chain.get_transaction(signature)
    assert record is not None and record.fee == network_fee and record.err is None
    assert record.post_balances[0] - record.pre_balances[0] == gross - fee - network_fee - 10_000
    wallet_ata = record.account_keys.index(chain.ata(wallet.pubkey(), mint))
    post_tokens = {entry["accountIndex"]: entry for entry in record.post_token_balances}
    assert post_tokens[wallet_ata]["uiTokenAmount"]["amount"] == "0"
    assert any(str(chain.router_program_id) in line and "success" in line for line in record.logs)
    landed = [e for e in events if isinstance(e, TransactionLanded)]
    assert landed and landed[0].ok
    sells = [e for e in events if isinstance(e, TradeExecuted)]
    assert sells[0].side == "sell" and sells[0].sol_amount == gross and sells[0].fee == fee
    assert sells[0].signature == signature
    assert any(
        isinstance(e, TokenBalanceChanged) and e.wallet == wallet.pubkey() and e.amount == 0 for e in events
    )
    chain.advance_slots(32)
    assert chain.signature_status(signature)["confirmationStatus"] == "finalized"
    # Resending the same bytes lands nothing twice.
    assert chain.send_transaction(tx, skip_preflight=True) == signature
    with pytest.raises(RpcError) as refused:
        chain.send_transaction(tx)
    assert refused.value.code == -32002 and "already been processed" in refused.value.message


def test_slippage_failure_moves_nothing_but_the_fee(chain: Chain, mint) -> None:
    wallet, tokens = holder(chain, mint)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 300), wallet)
    chain.market_move(mint, -10)  # the price falls past the 3 % allowed
    assert chain.simulate(tx)["err"] == SLIPPAGE_ERR_AT_2
    with pytest.raises(RpcError) as refused:
        chain.send_transaction(tx)
    assert refused.value.code == -32002
    assert (
        refused.value.message
        == "Transaction simulation failed: Error processing Instruction 2: custom program error: 0x1773"
    )
    assert refused.value.data["err"] == SLIPPAGE_ERR_AT_2
    before = chain.balance(wallet.pubkey())
    signature = chain.send_transaction(tx, skip_preflight=True)
    assert chain.signature_status(signature)["err"] == SLIPPAGE_ERR_AT_2
    assert chain.token_balance(wallet.pubkey(), mint) == tokens
    assert chain.balance(wallet.pubkey()) == before - chain.fee_for(tx)
    record = chain.get_transaction(signature)
    assert record.err == SLIPPAGE_ERR_AT_2 and any("0x1773" in line for line in record.logs)
    assert record.post_balances[0] == record.pre_balances[0] - chain.fee_for(tx)
    assert_pool_matches_accounts(chain, mint)


def test_priced_within_slippage_still_lands(chain: Chain, mint) -> None:
    wallet, tokens = holder(chain, mint)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 500), wallet)
    chain.market_move(mint, -2)
    signature = chain.send_transaction(tx)
    assert chain.signature_status(signature)["err"] is None
    assert chain.token_balance(wallet.pubkey(), mint) == 0


def test_buy_lands_creates_the_token_account(chain: Chain, mint) -> None:
    wallet = Keypair()
    chain.fund(wallet.pubkey(), 1)
    collector_before = chain.balance(chain.fee_collector)
    tx = sign(chain.build_buy_tx(wallet.pubkey(), mint, 200_000_000, 100), wallet)
    fee = routing_fee("professional", "SOL", 200_000_000)
    expected = chain.quote_buy(mint, 200_000_000 - fee)
    signature = chain.send_transaction(tx)
    assert chain.signature_status(signature)["err"] is None
    assert chain.token_balance(wallet.pubkey(), mint) == expected
    assert chain.balance(chain.fee_collector) - collector_before == fee
    rent = chain.rent_exempt_minimum(165)
    assert chain.balance(wallet.pubkey()) == 1_000_000_000 - 200_000_000 - chain.fee_for(tx) - rent
    assert_pool_matches_accounts(chain, mint)
    # A buy whose price ran away fails the same way a sell does (CreateIdempotent comes first).
    late = sign(chain.build_buy_tx(wallet.pubkey(), mint, 100_000_000, 50), wallet)
    chain.market_move(mint, 20)
    sig2 = chain.send_transaction(late, skip_preflight=True)
    assert chain.signature_status(sig2)["err"] == {"InstructionError": [3, {"Custom": 6003}]}
    assert chain.token_balance(wallet.pubkey(), mint) == expected


def test_expired_blockhash_refused_with_preflight_and_never_lands_without(chain: Chain, mint) -> None:
    wallet, tokens = holder(chain, mint)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100), wallet)
    chain.advance_slots(BLOCKHASH_VALID_SLOTS + 1)
    assert not chain.is_blockhash_valid(tx.message.recent_blockhash)
    with pytest.raises(RpcError) as refused:
        chain.send_transaction(tx)
    assert refused.value.code == -32002
    assert refused.value.message == "Transaction simulation failed: Blockhash not found"
    assert refused.value.data["err"] == "BlockhashNotFound"
    before = chain.balance(wallet.pubkey())
    signature = chain.send_transaction(tx, skip_preflight=True)
    chain.advance_slots(5)
    assert chain.signature_status(signature) is None and chain.was_dropped(signature)
    assert chain.balance(wallet.pubkey()) == before
    assert chain.token_balance(wallet.pubkey(), mint) == tokens


def test_signatures_are_verified(chain: Chain, mint) -> None:
    wallet, tokens = holder(chain, mint)
    unsigned = chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100)
    with pytest.raises(RpcError) as refused:
        chain.send_transaction(unsigned)
    assert refused.value.code == -32003
    signature = chain.send_transaction(unsigned, skip_preflight=True)
    assert chain.signature_status(signature) is None
    # Signed by someone else: refused with preflight, never lands without.
    forged = VersionedTransaction.populate(
        unsigned.message, [Keypair().sign_message(to_bytes_versioned(unsigned.message))]
    )
    with pytest.raises(RpcError) as refused:
        chain.send_transaction(forged)
    assert refused.value.code == -32003
    assert chain.signature_status(chain.send_transaction(forged, skip_preflight=True)) is None
    assert chain.token_balance(wallet.pubkey(), mint) == tokens


def test_selling_more_than_held_fails_in_the_routers_token_transfer(chain: Chain, mint) -> None:
    wallet, tokens = holder(chain, mint)
    tx = sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens + 1, 100), wallet)
    with pytest.raises(RpcError) as refused:
        chain.send_transaction(tx)
    assert refused.value.data["err"] == {"InstructionError": [2, {"Custom": 1}]}
    assert any("insufficient funds" in line for line in refused.value.data["logs"])
    before = chain.balance(wallet.pubkey())
    signature = chain.send_transaction(tx, skip_preflight=True)
    assert chain.signature_status(signature)["err"] == {"InstructionError": [2, {"Custom": 1}]}
    assert chain.token_balance(wallet.pubkey(), mint) == tokens
    assert chain.balance(wallet.pubkey()) == before - chain.fee_for(tx)
    assert_pool_matches_accounts(chain, mint)


def test_token_2022_mint_trades_too(chain: Chain) -> None:
    mint = chain.create_mint("T22", 9, 50, 1_000_000, token_2022=True)
    assert str(chain.token_program(mint)).startswith("Tokenz")
    wallet, tokens = holder(chain, mint)
    signature = chain.send_transaction(
        sign(chain.build_sell_tx(wallet.pubkey(), mint, tokens // 2, 100), wallet)
    )
    assert chain.signature_status(signature)["err"] is None
    assert chain.token_balance(wallet.pubkey(), mint) == tokens - tokens // 2


def test_bad_inputs_are_domain_errors(chain: Chain, mint) -> None:
    with pytest.raises(ChainError):
        chain.build_sell_tx(Keypair().pubkey(), mint, 0, 100)
    with pytest.raises(ChainError):
        chain.build_sell_tx(Keypair().pubkey(), mint, 10, 20_000)
    with pytest.raises(ChainError):
        chain.pool(Keypair().pubkey())
    with pytest.raises(ChainError):
        chain.drain(mint, 100)
