"""When the effect check cannot run, nothing is signed blind; and a sell's intent comes from the bot's records
and the chain, so a signal that disagrees with the position is refused with the reason. The RPC here is a
stand-in object whose simulateTransaction is down."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from bot.exits.executor import Executor, Trade, TradeHooks
from bot.exits.guard import (
    DEX_PROGRAMS,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
    GuardRefusal,
    SellIntent,
    Unverifiable,
)
from bot.exits.sell import Seller
from bot.solana_rpc import RpcError, TokenHolding
from storage.positions import ExitSignal, Position

PUMP_FUN = next(p for p, name in DEX_PROGRAMS.items() if name == "pump.fun")
TOKENS = 1_000_000


class DownRpc:
    """A node that answers balances and blockhashes but cannot simulate; holdings are what the wallet holds."""

    def __init__(self, holdings: list[TokenHolding] | None = None) -> None:
        self.simulations = 0
        self.holdings = holdings or []

    async def simulate(self, tx: Any, addresses: list[str]) -> dict[str, Any]:
        self.simulations += 1
        raise RpcError("the Solana RPC did not answer simulateTransaction: ClientConnectorError")

    async def get_accounts(self, addresses: list[str]) -> list[Any]:
        return [None for _ in addresses]

    async def get_balance_batched(self, wallet: str) -> int:
        return 10**9

    async def is_blockhash_valid(self, blockhash: Any) -> bool:
        return True

    async def get_token_holdings(self, owner: str) -> list[TokenHolding]:
        return list(self.holdings)


class Keys:
    def __init__(self) -> None:
        self.decrypted = 0

    async def keypair(self, user_id: int, address: str) -> Any:
        self.decrypted += 1
        raise AssertionError("a key was decrypted for a transaction that could not be verified")


class Records:
    async def set(self, record_id: str, **values: Any) -> None:
        raise AssertionError("nothing may be persisted as signed")

    async def transition(self, record_id: str, from_states: tuple[str, ...], to_state: str, **values: Any) -> bool:
        raise AssertionError("nothing may be persisted as signed")


class Told(TradeHooks):
    def __init__(self) -> None:
        self.why: str | None = None

    async def unverified(self, reason: str) -> str:
        self.why = reason
        return "unverified"


@pytest.fixture
def wallet() -> Pubkey:
    return Pubkey.new_unique()


def services(rpc: DownRpc) -> Any:
    return SimpleNamespace(rpc=rpc, settings=SimpleNamespace(), accounts=Keys())


def unsigned(payer: Pubkey, instructions: list[Instruction]) -> VersionedTransaction:
    message = MessageV0.try_compile(payer, instructions, [], Hash.new_unique())
    return VersionedTransaction.populate(message, [Signature.default()] * message.header.num_required_signatures)


def trade(wallet: Pubkey, mint: Pubkey, instructions: list[Instruction]) -> Trade:
    intent = SellIntent(wallet=wallet, mint=mint, token_account=None, max_tokens=TOKENS, max_tip_lamports=1_000_000)
    return Trade(user_id=1, wallet=str(wallet), tx=unsigned(wallet, instructions), intent=intent, send_mode="rpc",
                 records=Records(), record_id="r1")


def router_sell(wallet: Pubkey, mint: Pubkey) -> Instruction:
    metas = [AccountMeta(wallet, True, True), AccountMeta(Pubkey.new_unique(), False, True),
             AccountMeta(mint, False, False), AccountMeta(TOKEN_PROGRAM, False, False)]
    return Instruction(Pubkey.new_unique(), b"\x00" + TOKENS.to_bytes(8, "little"), metas)


async def test_a_router_exit_that_cannot_be_simulated_is_not_signed_and_says_so(wallet: Pubkey) -> None:
    rpc = DownRpc()
    keys_and_all = services(rpc)
    executor = Executor(keys_and_all)
    mint = Pubkey.new_unique()
    told = Told()
    try:
        with pytest.raises(Unverifiable):
            await executor.check(trade(wallet, mint, [set_compute_unit_limit(100_000), router_sell(wallet, mint)]))
        outcome = await executor.execute(trade(wallet, mint, [router_sell(wallet, mint)]), told)
    finally:
        await executor.close()
    assert outcome == "unverified"
    assert told.why is not None and "simulateTransaction" in told.why
    assert keys_and_all.accounts.decrypted == 0
    assert rpc.simulations == 2


async def test_known_programs_pass_on_the_strict_structural_check_when_simulation_is_down(wallet: Pubkey) -> None:
    rpc = DownRpc()
    executor = Executor(services(rpc))
    mint = Pubkey.new_unique()
    pump_sell = Instruction(
        PUMP_FUN,
        bytes.fromhex("33e685a4017f83ad") + TOKENS.to_bytes(8, "little") + (1).to_bytes(8, "little"),
        [AccountMeta(k, k == wallet, True) for k in (Pubkey.new_unique(), mint, Pubkey.new_unique(), wallet)],
    )
    tip = transfer(TransferParams(from_pubkey=wallet, to_pubkey=Pubkey.new_unique(), lamports=1_000_000))
    try:
        checked = await executor.check(trade(wallet, mint, [pump_sell, tip]))
    finally:
        await executor.close()
    assert checked.effect is None  # no simulation vouched for it: only known programs, so structure decides
    assert checked.report.tokens_out == TOKENS
    assert SYSTEM_PROGRAM not in checked.report.unknown_programs


def _position(wallet: str, mint: str, account: str) -> Position:
    values: dict[str, Any] = {f.name: None for f in dataclasses.fields(Position)}
    values.update(telegram_id=1, position_id=3, wallet=wallet, mint=mint, token_account=account, symbol="PEPE",
                  tokens=TOKENS, entry_quote_units=1, first_seen_ms=0, watched=False, status="open",
                  waiting_exit=False, deadline_fired=False, updated_at=0)
    return Position(**values)


def _signal(wallet: str, mint: str, account: str | None, tokens: int = TOKENS) -> ExitSignal:
    values: dict[str, Any] = {f.name: None for f in dataclasses.fields(ExitSignal)}
    values.update(id="s1", telegram_id=1, position_id=3, wallet=wallet, mint=mint, token_account=account,
                  reason="stop_loss", profit_units=0, position_tokens=tokens, triggered_at_ms=0, received_at_ms=0,
                  unsigned_tx_b64="", state="approved", attempt=0, updated_at=0)
    return ExitSignal(**values)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"mint": str(Pubkey.new_unique())}, "the signal is for token"),
        ({"token_account": str(Pubkey.new_unique())}, "the signal names token account"),
        ({"tokens": TOKENS * 5}, "but your wallet holds 1,000,000"),
    ],
)
async def test_a_signal_that_disagrees_with_the_position_is_refused_with_the_reason(
    wallet: Pubkey, change: dict[str, Any], words: str
) -> None:
    mint, account = str(Pubkey.new_unique()), str(Pubkey.new_unique())
    rpc = DownRpc([TokenHolding(account, mint, TOKENS, 6, str(TOKEN_PROGRAM))])
    stand_in = services(rpc)
    stand_in.db = None
    stand_in.outbox = None
    executor = Executor(stand_in)
    seller = Seller(stand_in, executor, streams=None)  # type: ignore[arg-type]
    signal = _signal(str(wallet), change.get("mint", mint), change.get("token_account", account),
                     change.get("tokens", TOKENS))
    try:
        with pytest.raises(GuardRefusal) as refused:
            await seller.intent(signal, _position(str(wallet), mint, account), SimpleNamespace(tip_lamports=0))
        honest = await seller.intent(_signal(str(wallet), mint, account), _position(str(wallet), mint, account),
                                     SimpleNamespace(tip_lamports=0))
    finally:
        await executor.close()
    assert words in refused.value.detail
    assert honest.token_account == Pubkey.from_string(account) and honest.max_tokens == TOKENS


async def test_a_trade_that_left_approved_before_its_bytes_were_stored_is_not_sent(wallet: Pubkey) -> None:
    """The signed bytes go to the record (approved -> signing) before the send; a record that moved on meanwhile
    (handled elsewhere) refuses the move, and the bytes are dropped unsent."""
    signer = Keypair()
    wallet = signer.pubkey()
    sent: list[bytes] = []

    class SendingRpc(DownRpc):
        async def send_transaction(self, tx: Any, *, skip_preflight: bool = True) -> str:
            sent.append(bytes(tx))
            return "sig"

    class OwnKeys:
        async def keypair(self, user_id: int, address: str) -> Keypair:
            return signer

    class MovedOn:
        def __init__(self) -> None:
            self.asked: list[tuple[tuple[str, ...], str]] = []

        async def set(self, record_id: str, **values: Any) -> None:
            raise AssertionError("nothing else is written")

        async def transition(self, record_id: str, from_states: tuple[str, ...], to_state: str, **values: Any) -> bool:
            self.asked.append((from_states, to_state))
            return False  # someone else moved it out of "approved"

    class Hooks(TradeHooks):
        async def moved_on(self) -> str:
            return "moved on"

    mint = Pubkey.new_unique()
    pump_sell = Instruction(
        PUMP_FUN,
        bytes.fromhex("33e685a4017f83ad") + TOKENS.to_bytes(8, "little") + (1).to_bytes(8, "little"),
        [AccountMeta(k, k == wallet, True) for k in (Pubkey.new_unique(), mint, Pubkey.new_unique(), wallet)],
    )
    records = MovedOn()
    executor = Executor(SimpleNamespace(rpc=SendingRpc(), settings=SimpleNamespace(), accounts=OwnKeys()))
    try:
        outcome = await executor.execute(dataclasses.replace(trade(wallet, mint, [pump_sell]), records=records), Hooks())
    finally:
        await executor.close()
    assert outcome == "moved on"
    assert records.asked == [(("approved",), "signing")]
    assert sent == []
