"""The sandbox Solana chain: LiteSVM with a slot clock, token pools and the LaserSell Router.

`Chain` wraps `solders.litesvm.LiteSVM` (System, SPL Token, Token-2022, Associated Token Account,
Memo and Compute Budget programs) and adds what a trading bot sees of a cluster:

- A slot clock. Sandbox time is `epoch_ms + slot * 400 ms` and only moves when `advance_slots` is
  called (or `run_clock` runs), so tests advance it instead of sleeping. Every slot has a new
  blockhash; a blockhash is valid for 150 slots (`last_valid_block_height = slot + 150`, block
  height == slot here). LiteSVM's own blockhash check is off: ours is the table of recent blockhashes.
- Sending: with preflight, a bad signature is refused (-32003) and a failing simulation is refused
  with -32002 "Transaction simulation failed: <error>" and the simulation result as `data`, exactly
  as a node does. With `skip_preflight`, a transaction with an unknown or expired blockhash, a bad
  signature, a fee payer that cannot pay or an unresolvable lookup table is accepted and never
  lands: its status stays null, as on a cluster. Landed transactions are final at once
  ("confirmed", "finalized" 32 slots later). Resending landed bytes is a no-op.
- Mints and pools. `create_mint` makes an SPL mint (the sandbox holds the mint authority) and a
  constant-product pool quoted in SOL or in USD1. A SOL pool's quote reserve is the lamports of a
  sandbox-owned system account (`Pool.address`, above its rent reserve); a USD1 pool's is the USD1
  token account of that address (`Pool.quote_account`). The token reserve is the address's token
  account. Curve, in the pool's quote atomic units (lamports, or USD1 base units with 6 decimals):
  `quote_out = quote_reserve * tokens / (token_reserve + tokens)`,
  `tokens_out = token_reserve * quote_in / (quote_reserve + quote_in)` (no pool fee).
  `Pool.sol_reserve` keeps its old name and holds the quote reserve in those units.
- USD1 is an SPL mint (6 decimals) created at start at its real public address
  (`USD1_MINT`); `fund_usd1` gives a wallet some.
- The outside market (`outside_buy`, `market_move`, `drain`, `graduate`) writes balances directly
  with `set_account`, the way a test validator lets you, and emits the same events a trade would.

THE LASERSELL ROUTER. Every LaserSell trade goes through an on-chain router whose program id is not
published. Here `Chain.router_program_id` is a fresh random key on every Chain, so nothing outside
the sandbox can know it.

- `build_sell_tx` / `build_buy_tx` return unsigned v0 transactions (all-zero signatures), the
  wallet as fee payer and only signer: ComputeBudget SetComputeUnitLimit + SetComputeUnitPrice,
  (buys, and sells into USD1) an Associated Token Account CreateIdempotent of the wallet's account
  that receives, ONE router instruction, and with a tip a System transfer to a tip account
  (`tip_accounts`; `tip_account` is the first and the default). Tokens leave the wallet only inside
  the router instruction: there is no top-level token transfer.
- Router accounts, in order: wallet (signer, writable), wallet token account (w), mint, pool
  address (w), pool token account (w), token program, system program, fee collector (w); for USD1
  markets then USD1 mint, wallet USD1 account (w), pool USD1 account (w), fee collector USD1
  account (w). Router data (little endian): 8-byte discriminator `ROUTER_DISCRIMINATOR`, u8 side
  (0 sell, 1 buy), u64 amount in, u64 minimum out, u16 fee bps, u64 fee minimum (lamports), u8 tag
  length and the UTF-8 `memo_tag` (callers use it to make transactions distinct; no Memo
  instruction is added).
- Non-signer accounts (pool, fee collector, mint, token programs, tip accounts) are loaded from the
  pool's address lookup table (`Pool.lookup_table`) unless `use_lookup_table=False`. Tables are
  real accounts owned by AddressLookupTab1e1111111111111111111111111 with the on-chain layout
  (56-byte LookupTableMeta header, then 32-byte addresses); every address is active at once.
- Routing fee (`routing_fee`, docs pricing/fee-structure): free 2 % with a 0.01 SOL minimum,
  professional 0.9 % with a 0.01 SOL minimum, advanced 0.5 % with none; USD1 trades pay the
  percentage only. Never more than the amount it is taken from. A sell pays it out of the proceeds,
  a buy out of the quote paid in before the swap; it goes to `fee_collector` (its USD1 account for
  USD1 trades). The builders put the fee rate and minimum of their `tier` in the router data and
  the router applies what the data says. `min_out` is the net amount at build time less slippage.

RUNNING THE ROUTER. LiteSVM cannot run a program we do not have, so for a transaction that invokes
the router the chain itself verifies the signatures, checks the blockhash, resolves the lookup
tables, then runs every other instruction in LiteSVM (the same message without the router
instruction, same signatures; LiteSVM's own signature check off, ours already ran) and applies the
router's swap on top of the result with `set_account`: pool reserves and token accounts, proceeds
net of the fee to the wallet, the fee to the collector. The router's effects are applied after the
other instructions have run, whatever their position; the wallet token account's owner is checked
against its state before the transaction. All or nothing: if the swap fails (net proceeds below
`min_out` -> `InstructionError(<router index>, Custom(6003))`; fewer tokens or quote than the
amount in -> `Custom(1)`, as the token program's insufficient funds comes out of the CPI; wrong
accounts -> `Custom(6001)`), nothing moves but the fee (5000 lamports per signature + priority fee)
and the transaction is recorded as failed with router logs. Simulation runs the same code without
writing, so `simulate(..., accounts=[...])` shows each account's state after the router.
Transactions without a router instruction take the same path (LiteSVM on a copy, then the accounts
it wrote are stored), so every landed transaction's record covers static and lookup-table keys.

HOSTILE TRANSACTIONS (`build_hostile_tx`, kinds in `HOSTILE_KINDS`) look like exits but do harm;
they land when signed and their harm shows in a simulation's `accounts`: see the method.

Events (`subscribe(callback)`, called synchronously, in order): `TradeExecuted` before the
`TokenBalanceChanged` it causes, then `PoolChanged`; `TransactionLanded` for every landed
transaction. Amounts named `sol_*` are in the pool's quote units (`quote` says which). A router
trade's `TradeExecuted.sol_amount` is the pool's side (gross proceeds of a sell, the quote swapped
in by a buy) and `fee` the routing fee: a buyer paid `sol_amount + fee`, a seller got
`sol_amount - fee`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import base58
from solders.account import Account
from solders.address_lookup_table_account import (
    ID as ADDRESS_LOOKUP_TABLE_PROGRAM_ID,
)
from solders.address_lookup_table_account import (
    LOOKUP_TABLE_META_SIZE,
    AddressLookupTable,
    AddressLookupTableAccount,
    derive_lookup_table_address,
)
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, CompiledInstruction, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.token.associated import get_associated_token_address
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import InstructionErrorCustom, TransactionErrorInstructionError

TOKEN_PROGRAM_ID = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM_ID = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
COMPUTE_BUDGET_PROGRAM_ID = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
NATIVE_MINT = Pubkey.from_string("So11111111111111111111111111111111111111112")
# The official crate publishes USD1's mint (src/market/mod.rs), so a client may know it too.
USD1_MINT = Pubkey.from_string("USD1ttGY1N17NEEHLmELoaybftRBUSErhqYiQzvEmuB")
USD1_DECIMALS = 6

LAMPORTS_PER_SOL = 1_000_000_000
LAMPORTS_PER_SIGNATURE = 5000
EPOCH_MS = 1_700_000_000_000
SLOT_MS = 400
BLOCKHASH_VALID_SLOTS = 150
FINALIZED_AFTER_SLOTS = 32
SLIPPAGE_ERROR_CODE = 6003
ROUTER_ACCOUNTS_ERROR_CODE = 6001
INSUFFICIENT_FUNDS_CODE = 1  # SPL Token's and the System program's "insufficient funds"
ROUTER_COMPUTE_UNITS = 48_000
DEFAULT_COMPUTE_UNIT_LIMIT = 120_000
DEFAULT_COMPUTE_UNIT_PRICE = 50_000  # micro-lamports per CU: a 6000-lamport priority fee at the limit
TRANSFER_CHECKED = 12
TOKEN_ACCOUNT_SIZE = 165
MINT_SIZE = 82
U64_MAX = 2**64 - 1

ROUTER_DISCRIMINATOR = hashlib.sha256(b"global:route").digest()[:8]
ROUTER_SELL = 0
ROUTER_BUY = 1
ROUTER_DRAIN = 7  # hostile variant: looks like a sell, pays the tokens to account 4 and nothing back
# Hostile variants that sell genuinely and then, inside the same router instruction, harm the wallet on
# behalf of the router's LAST account (the stranger): its SOL by a System CPI, a delegate, a new owner.
ROUTER_SOL_CPI = 8
ROUTER_APPROVE = 9
ROUTER_SET_OWNER = 10
_HARMFUL_SELLS = (ROUTER_SOL_CPI, ROUTER_APPROVE, ROUTER_SET_OWNER)
_ROUTER_HEAD = struct.Struct("<8sBQQHQB")

# Routing fee per tier (docs pricing/fee-structure.mdx): (basis points, minimum in lamports on SOL trades).
ROUTING_FEES: dict[str, tuple[int, int]] = {
    "free": (200, 10_000_000),
    "professional": (90, 10_000_000),
    "advanced": (50, 0),
}
TIP_ACCOUNT_COUNT = 4

HOSTILE_KINDS = (
    "steal_position",
    "steal_sol",
    "steal_other_token",
    "set_authority",
    "approve",
    "cpi_drain",
    "tip_over_cap",
    "cpi_sol",
    "router_approve",
    "router_set_authority",
    "second_signer",
    "lookup_table_destination",
)

# Errors a node returns before executing anything: such a transaction is never in a block.
_NOT_EXECUTED = (
    "AccountNotFound",
    "InsufficientFundsForFee",
    "BlockhashNotFound",
    "AlreadyProcessed",
    "AddressLookupTableNotFound",
    "InvalidAddressLookupTableOwner",
    "InvalidAddressLookupTableData",
    "InvalidAddressLookupTableIndex",
    "SignatureFailure",
    "SanitizeFailure",
)

PubkeyLike = Pubkey | str


class RpcError(Exception):
    """A JSON-RPC error exactly as a node reports it: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ChainError(ValueError):
    """A sandbox operation the chain cannot do (unknown mint, bad amount)."""


class UnknownMint(ChainError):
    pass


@dataclass
class MintInfo:
    mint: Pubkey
    symbol: str
    name: str
    decimals: int
    supply: int
    token_program: Pubkey
    mint_authority: Pubkey


@dataclass
class Pool:
    """A constant-product pool. `sol_reserve` is the QUOTE reserve in quote atomic units (lamports
    for SOL pools, USD1 base units for USD1 pools); the token reserve sits in `token_account`."""

    mint: Pubkey
    symbol: str
    name: str
    decimals: int
    address: Pubkey
    token_account: Pubkey
    sol_reserve: int
    token_reserve: int
    token_program: Pubkey = TOKEN_PROGRAM_ID
    market_type: str = "pump_fun"
    graduated: bool = False
    history: list[tuple[int, int, int]] = field(default_factory=list)
    quote: str = "SOL"  # "SOL" or "USD1"
    quote_mint: Pubkey = NATIVE_MINT
    quote_decimals: int = 9
    quote_account: Pubkey | None = None  # the pool's USD1 token account (USD1 pools)
    lookup_table: Pubkey | None = None

    @property
    def quote_reserve(self) -> int:
        return self.sol_reserve

    @property
    def price(self) -> float:
        """Quote atomic units (lamports for SOL pools) per whole token at the spot price."""
        if self.token_reserve <= 0:
            return 0.0
        return self.sol_reserve * 10**self.decimals / self.token_reserve


class TokenAccountEntry(NamedTuple):
    ata: Pubkey
    mint: Pubkey
    amount: int
    token_program: Pubkey


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenBalanceChanged:
    owner: Pubkey
    mint: Pubkey
    token_account: Pubkey
    amount: int
    slot: int

    @property
    def wallet(self) -> Pubkey:
        return self.owner


@dataclass(frozen=True)
class PoolChanged:
    mint: Pubkey
    sol_reserve: int  # quote reserve in quote units
    token_reserve: int
    market_type: str
    graduated: bool
    reason: str  # created, trade, market_move, drain, graduation, settlement
    slot: int
    quote: str = "SOL"


@dataclass(frozen=True)
class TradeExecuted:
    mint: Pubkey
    side: str  # "buy" or "sell", from the maker's side
    token_amount: int
    sol_amount: int  # quote units the pool paid (sell) or received (buy), before/after the routing fee
    price: float  # quote units per whole token paid or received
    maker: Pubkey
    signature: Signature | None
    slot: int = 0
    fee: int = 0  # routing fee in quote units (router trades)
    quote: str = "SOL"

    @property
    def wallet(self) -> Pubkey:
        return self.maker


@dataclass(frozen=True)
class TransactionLanded:
    signature: Signature
    ok: bool
    err: Any  # the node's JSON form of the error, None when ok
    slot: int = 0


ChainEvent = TokenBalanceChanged | PoolChanged | TradeExecuted | TransactionLanded


@dataclass
class TxRecord:
    """A landed transaction (ok or failed), as getTransaction reports it. Balances are indexed
    like `account_keys`: static keys, then lookup-table writable, then lookup-table readonly."""

    signature: Signature
    transaction: VersionedTransaction
    slot: int
    block_time: int
    err: Any
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    pre_token_balances: list[dict[str, Any]]
    post_token_balances: list[dict[str, Any]]
    logs: list[str]
    compute_units: int
    loaded_writable: list[Pubkey] = field(default_factory=list)
    loaded_readonly: list[Pubkey] = field(default_factory=list)
    inner_instructions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def account_keys(self) -> list[Pubkey]:
        return [*self.transaction.message.account_keys, *self.loaded_writable, *self.loaded_readonly]


@dataclass(frozen=True)
class RouterOrder:
    """A decoded router instruction's data."""

    side: int  # ROUTER_SELL, ROUTER_BUY (ROUTER_DRAIN: the hostile variant)
    amount_in: int  # tokens (sell) or quote units (buy)
    min_out: int  # net quote units (sell) or tokens (buy)
    fee_bps: int
    fee_min: int  # lamports; 0 on USD1 trades and for advanced
    tag: str


@dataclass
class _Swap:
    """What one router instruction did, for the events after commit."""

    pool: Pool
    side: str
    tokens: int
    quote_amount: int  # the pool's side: gross proceeds (sell) or quote swapped in (buy)
    fee: int
    wallet: Pubkey


@dataclass
class _Outcome:
    """A transaction executed without writing: what committing it would do."""

    rejected: bool  # never executed (fee payer, lookup tables ...): a sender's tx is dropped
    err: Any
    logs: list[str]
    units: int
    fee: int
    keys: list[Pubkey]
    loaded: tuple[list[Pubkey], list[Pubkey]]
    writes: dict[Pubkey, Account]
    swaps: list[_Swap]
    inner: list[dict[str, Any]]


class _RouterFailure(Exception):
    def __init__(self, code: int, logs: list[str]) -> None:
        super().__init__(code)
        self.code = code
        self.logs = logs


class _Rejected(Exception):
    def __init__(self, err: str) -> None:
        super().__init__(err)
        self.err = err


def _pk(value: PubkeyLike) -> Pubkey:
    return value if isinstance(value, Pubkey) else Pubkey.from_string(str(value))


def routing_fee(tier: str, quote: str, gross_quote_units: int) -> int:
    """The LaserSell routing fee, in quote units, on `gross_quote_units` of a trade (docs
    pricing/fee-structure): the tier's percentage, at least the tier's 0.01 SOL minimum on SOL
    trades (none on USD1 trades), never more than the amount itself."""
    bps, minimum = _fee_params(tier, quote)
    return _fee(bps, minimum, gross_quote_units)


def _fee_params(tier: str, quote: str) -> tuple[int, int]:
    if tier not in ROUTING_FEES:
        raise ChainError(f"unknown tier {tier!r}; use one of {', '.join(ROUTING_FEES)}")
    if quote not in ("SOL", "USD1"):
        raise ChainError("quote must be SOL or USD1")
    bps, minimum = ROUTING_FEES[tier]
    return bps, minimum if quote == "SOL" else 0


def _fee(bps: int, minimum: int, gross: int) -> int:
    if gross <= 0:
        return 0
    return min(gross, max(gross * bps // 10_000, minimum))


def encode_router_data(order: RouterOrder) -> bytes:
    tag = order.tag.encode()
    if len(tag) > 255:
        raise ChainError("memo_tag is limited to 255 bytes")
    head = _ROUTER_HEAD.pack(
        ROUTER_DISCRIMINATOR,
        order.side,
        order.amount_in,
        order.min_out,
        order.fee_bps,
        order.fee_min,
        len(tag),
    )
    return head + tag


def decode_router_data(data: bytes) -> RouterOrder | None:
    """The order in a router instruction's data; None when it is not router data."""
    if len(data) < _ROUTER_HEAD.size or data[:8] != ROUTER_DISCRIMINATOR:
        return None
    _, side, amount_in, min_out, fee_bps, fee_min, tag_len = _ROUTER_HEAD.unpack_from(data)
    tag = data[_ROUTER_HEAD.size : _ROUTER_HEAD.size + tag_len].decode(errors="replace")
    return RouterOrder(side, amount_in, min_out, fee_bps, fee_min, tag)


def lookup_table_data(authority: Pubkey | None, addresses: Sequence[Pubkey], slot: int = 0) -> bytes:
    """An address lookup table account's data, in the on-chain layout: LookupTableMeta (u32 type 1,
    u64 deactivation slot = u64::MAX, u64 last extended slot, u8 start index, Option<Pubkey>
    authority, u16 padding; 56 bytes) then the addresses. The start index equals the address count,
    so every address is usable in the slot it was written (a warmed-up table)."""
    meta = struct.pack("<IQQB", 1, U64_MAX, slot, min(len(addresses), 255))
    meta += (b"\x01" + bytes(authority)) if authority is not None else b"\x00" + bytes(32)
    meta += b"\x00\x00"
    assert len(meta) == LOOKUP_TABLE_META_SIZE
    return meta + b"".join(bytes(a) for a in addresses)


def error_json(err: Any) -> Any:
    """The node's JSON form of a solders TransactionError ("BlockhashNotFound", {"InstructionError": ..})."""
    if err is None or isinstance(err, str | dict):
        return err
    return json.loads(RpcSimulateTransactionResult(err=err, logs=[]).to_json())["err"]


def _custom_err(index: int, code: int) -> Any:
    return error_json(TransactionErrorInstructionError(index, InstructionErrorCustom(code)))


def error_message(err: Any) -> str:
    """The Display text a node puts after "Transaction simulation failed: "."""
    if isinstance(err, str):
        words = re.sub(r"(?<!^)(?=[A-Z])", " ", err).lower()
        special = {
            "BlockhashNotFound": "Blockhash not found",
            "AlreadyProcessed": "This transaction has already been processed",
            "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
            "InsufficientFundsForFee": "Insufficient funds for fee",
            "SignatureFailure": "Transaction did not pass signature verification",
            "AddressLookupTableNotFound": "Transaction loads an address table account that doesn't exist",
            "InvalidAddressLookupTableIndex": "Transaction address table lookup uses an invalid index",
        }
        return special.get(err, words[:1].upper() + words[1:])
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        if isinstance(inner, dict) and "Custom" in inner:
            detail = f"custom program error: {inner['Custom']:#x}"
        else:
            detail = str(inner)
        return f"Error processing Instruction {index}: {detail}"
    if isinstance(err, dict) and "InsufficientFundsForRent" in err:
        index = err["InsufficientFundsForRent"].get("account_index")
        return f"Transaction results in an account ({index}) with insufficient funds for rent"
    return json.dumps(err)


def _token_account_bytes(mint: Pubkey, owner: Pubkey, amount: int, base: TokenAccount | None = None) -> bytes:
    if base is not None:
        state = TokenAccount(
            base.mint,
            base.owner,
            amount,
            base.delegate,
            base.state,
            base.is_native,
            base.delegated_amount,
            base.close_authority,
        )
    else:
        state = TokenAccount(mint, owner, amount, None, TokenAccountState.Initialized, None, 0, None)
    return bytes(state)


class _State:
    """Accounts as a transaction leaves them: changes over the chain's current accounts."""

    def __init__(self, chain: Chain, changed: dict[Pubkey, Account]) -> None:
        self.chain = chain
        self.changed = dict(changed)
        self.reserves: dict[Pubkey, list[int]] = {}  # mint -> [quote, tokens] as trades in this tx leave them

    def get(self, key: Pubkey) -> Account | None:
        if key in self.changed:
            acc = self.changed[key]
            return None if acc.lamports == 0 and not acc.data else acc
        return self.chain.svm.get_account(key)

    def lamports(self, key: Pubkey) -> int:
        acc = self.get(key)
        return acc.lamports if acc else 0

    def add_lamports(self, key: Pubkey, delta: int) -> None:
        acc = self.get(key)
        if acc is None:
            acc = Account(lamports=0, data=b"", owner=SYSTEM_PROGRAM_ID, executable=False, rent_epoch=0)
        self.changed[key] = Account(
            lamports=acc.lamports + delta,
            data=bytes(acc.data),
            owner=acc.owner,
            executable=acc.executable,
            rent_epoch=acc.rent_epoch,
        )

    def token(self, key: Pubkey) -> TokenAccount | None:
        acc = self.get(key)
        if acc is None or acc.owner not in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
            return None
        if len(acc.data) < TOKEN_ACCOUNT_SIZE:
            return None
        return TokenAccount.from_bytes(bytes(acc.data[:TOKEN_ACCOUNT_SIZE]))

    def add_tokens(self, key: Pubkey, delta: int, *, mint: Pubkey, owner: Pubkey) -> None:
        """Moves a token account's amount; creates the account (rent from the router) if missing."""
        acc = self.get(key)
        state = self.token(key)
        if acc is None or state is None:
            program = self.chain.token_program(mint)
            lamports = self.chain.rent_exempt_minimum(TOKEN_ACCOUNT_SIZE)
            data = _token_account_bytes(mint, owner, delta)
        else:
            program, lamports = acc.owner, acc.lamports
            data = _token_account_bytes(mint, owner, state.amount + delta, state) + bytes(
                acc.data[TOKEN_ACCOUNT_SIZE:]
            )
        self.changed[key] = Account(
            lamports=lamports, data=data, owner=program, executable=False, rent_epoch=0
        )



@dataclass
class _RouterCall:
    """One router instruction being applied: its accounts, the state it changes, the inner
    instructions it makes, and the helpers that write its logs the way the program does."""

    program: Pubkey
    limit: int
    head: list[str]
    keys: list[Pubkey]
    accounts: list[Pubkey]
    state: _State
    legs: list[dict[str, Any] | None] = field(default_factory=list)
    order: RouterOrder | None = None
    pool: Any = None
    usd1: bool = False
    wallet: Any = None
    wallet_tokens: Any = None
    mint: Any = None
    pool_address: Any = None
    pool_tokens: Any = None
    collector: Any = None
    wallet_quote: Any = None
    fee_quote: Any = None
    reserves: list[int] = field(default_factory=list)
    unit: str = "lamports"
    held_before: Any = None
    held: Any = None

    def fail(self, code: int, line: str, inner: list[str] | None = None) -> _RouterFailure:
        return _RouterFailure(
            code,
            self.head
            + (inner or [f"Program log: {line}"])
            + [
                f"Program {self.program} consumed {ROUTER_COMPUTE_UNITS // 4} of {self.limit} compute units",
                f"Program {self.program} failed: custom program error: {code:#x}",
            ],
        )

    def leg(self, program_id: Pubkey, metas: list[Pubkey], data: bytes) -> dict[str, Any] | None:
        keys = self.keys
        if program_id not in keys or any(m not in keys for m in metas):
            return None
        return {
            "programIdIndex": keys.index(program_id),
            "accounts": [keys.index(m) for m in metas],
            "data": base58.b58encode(data).decode(),
            "stackHeight": 2,
        }

    def token_leg_logs(self, token: Pubkey) -> list[str]:
        return [
            f"Program {token} invoke [2]",
            "Program log: Instruction: TransferChecked",
            f"Program {token} consumed 6200 of {self.limit} compute units",
            f"Program {token} success",
        ]

    def insufficient(self, token: Pubkey, have: int, need: int) -> _RouterFailure:
        return self.fail(
            INSUFFICIENT_FUNDS_CODE,
            "",
            [
                *self.head[1:],
                f"Program {token} invoke [2]",
                "Program log: Instruction: TransferChecked",
                f"Program log: Error: insufficient funds ({have} held, {need} needed)",
                f"Program {token} consumed 4100 of {self.limit} compute units",
                f"Program {token} failed: custom program error: 0x1",
            ],
        )

class Chain:
    """The sandbox cluster. Synchronous; safe to share inside one asyncio loop."""

    def __init__(self, seed: int = 0, epoch_ms: int = EPOCH_MS) -> None:
        self.seed = seed
        self.epoch_ms = epoch_ms
        self.svm = LiteSVM().with_blockhash_check(False).with_sigverify(True)
        self._slot = 0
        self._blockhash_slot: dict[Hash, int] = {}
        self._slot_blockhash: dict[int, Hash] = {}
        self._add_blockhash(0)
        self._callbacks: list[Callable[[Any], None]] = []
        self._pools: dict[Pubkey, Pool] = {}
        self._hidden_tables = 0  # lookup tables made for hostile transactions
        self._mints: dict[Pubkey, MintInfo] = {}
        self._holdings: dict[Pubkey, set[Pubkey]] = {}  # owner -> mints it has a token account for
        self._records: dict[Signature, TxRecord] = {}
        self._dropped: set[Signature] = set()  # accepted without preflight, will never land
        self._accepted: list[VersionedTransaction] = []  # accepted (`accept`), landing at the next `settle`
        self._accepted_signatures: set[Signature] = set()
        self.mint_authority = self.keypair("mint-authority")
        self.market_maker = self.keypair("market-maker")
        self.drainer = self.keypair("drainer")
        # Not derived from the seed: the router's id is unpublished, nothing outside may know it.
        self.router_program_id: Pubkey = Keypair().pubkey()
        self.lookup_table_authority = self.keypair("lookup-table-authority").pubkey()
        self.fee_collector: Pubkey = self.keypair("fee-collector").pubkey()
        self.tip_accounts: list[Pubkey] = [self.keypair("tip-account").pubkey()] + [
            self.keypair(f"tip-account:{n}").pubkey() for n in range(1, TIP_ACCOUNT_COUNT)
        ]
        self.tip_account = self.tip_accounts[0]
        for key in (self.fee_collector, *self.tip_accounts):
            self._ensure_rent_exempt(key)
        self.usd1_mint: Pubkey = USD1_MINT
        usd1 = MintInfo(
            USD1_MINT,
            "USD1",
            "World Liberty Financial USD",
            USD1_DECIMALS,
            0,
            TOKEN_PROGRAM_ID,
            self.mint_authority.pubkey(),
        )
        self._mints[USD1_MINT] = usd1
        self._write_mint(usd1)
        self._set_token_amount(self.fee_collector, USD1_MINT, 0, emit=False)
        self._sync_clock()

    # -- keys, events --------------------------------------------------------------------------

    def keypair(self, label: str) -> Keypair:
        """A keypair derived from the seed and a label: the same sandbox gets the same keys."""
        digest = hashlib.sha256(f"lasersell-sandbox:{self.seed}:{label}".encode()).digest()
        return Keypair.from_seed(digest)

    def subscribe(self, callback: Callable[[Any], None]) -> None:
        """Calls `callback(event)` synchronously for every chain event, in order."""
        self._callbacks.append(callback)

    def unsubscribe(self, callback: Callable[[Any], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def _emit(self, event: ChainEvent) -> None:
        for callback in list(self._callbacks):
            callback(event)

    # -- clock and blockhashes -----------------------------------------------------------------

    @property
    def slot(self) -> int:
        return self._slot

    @property
    def block_height(self) -> int:
        return self._slot

    def now_ms(self) -> int:
        """Sandbox time: a fixed epoch plus 400 ms per slot."""
        return self.epoch_ms + self._slot * SLOT_MS

    def advance_slots(self, n: int = 1) -> int:
        """Moves the clock n slots forward (a new blockhash each slot); returns the new slot."""
        if n < 0:
            raise ChainError("the clock only moves forward")
        for _ in range(n):
            self._slot += 1
            self._add_blockhash(self._slot)
        # Forget blockhashes long expired so the table stays small.
        for old in [s for s in self._slot_blockhash if s < self._slot - 2 * BLOCKHASH_VALID_SLOTS]:
            del self._blockhash_slot[self._slot_blockhash.pop(old)]
        if n:
            self._sync_clock()
        return self._slot

    async def run_clock(self, slot_ms: int = SLOT_MS) -> None:
        """Advances one slot every `slot_ms` of real time until cancelled (the demo)."""
        while True:
            await asyncio.sleep(slot_ms / 1000)
            self.advance_slots(1)

    def latest_blockhash(self) -> tuple[Hash, int]:
        """(blockhash of the current slot, last block height at which it is valid)."""
        return self._slot_blockhash[self._slot], self._slot + BLOCKHASH_VALID_SLOTS

    def is_blockhash_valid(self, blockhash: Hash | str) -> bool:
        h = blockhash if isinstance(blockhash, Hash) else Hash.from_string(blockhash)
        slot = self._blockhash_slot.get(h)
        return slot is not None and self._slot <= slot + BLOCKHASH_VALID_SLOTS

    def _add_blockhash(self, slot: int) -> None:
        h = Hash(hashlib.sha256(f"lasersell-sandbox-blockhash:{self.seed}:{slot}".encode()).digest())
        self._blockhash_slot[h] = slot
        self._slot_blockhash[slot] = h

    def _sync_clock(self) -> None:
        self.svm.warp_to_slot(self._slot)
        clock = self.svm.get_clock()
        self.svm.set_clock(
            Clock(
                slot=self._slot,
                epoch_start_timestamp=clock.epoch_start_timestamp,
                epoch=clock.epoch,
                leader_schedule_epoch=clock.leader_schedule_epoch,
                unix_timestamp=self.now_ms() // 1000,
            )
        )

    # -- SOL and USD1 --------------------------------------------------------------------------

    def fund(self, pubkey: PubkeyLike, sol: float) -> int:
        """Adds `sol` SOL to an account (creating it); returns the new balance in lamports."""
        return self.fund_lamports(pubkey, round(sol * LAMPORTS_PER_SOL))

    def fund_lamports(self, pubkey: PubkeyLike, lamports: int) -> int:
        key = _pk(pubkey)
        self._add_lamports(key, lamports)
        return self.balance(key)

    def fund_usd1(self, owner: PubkeyLike, amount_usd1: float) -> int:
        """Mints `amount_usd1` whole USD1 into the owner's USD1 account (creating it); returns the
        new balance in USD1 base units."""
        key = _pk(owner)
        units = round(amount_usd1 * 10**USD1_DECIMALS)
        if units <= 0:
            raise ChainError("amount_usd1 must be positive")
        self._set_supply(USD1_MINT, self.mint_info(USD1_MINT).supply + units)
        self._set_token_amount(key, USD1_MINT, self.token_balance(key, USD1_MINT) + units)
        return self.token_balance(key, USD1_MINT)

    def usd1_balance(self, owner: PubkeyLike) -> int:
        """The owner's USD1 in base units (6 decimals)."""
        return self.token_balance(owner, USD1_MINT)

    def balance(self, pubkey: PubkeyLike) -> int:
        return self.svm.get_balance(_pk(pubkey)) or 0

    def account(self, pubkey: PubkeyLike) -> Account | None:
        return self.svm.get_account(_pk(pubkey))

    def rent_exempt_minimum(self, size: int) -> int:
        return self.svm.minimum_balance_for_rent_exemption(size)

    def _add_lamports(self, key: Pubkey, delta: int) -> None:
        acc = self.svm.get_account(key)
        if acc is None:
            if delta < 0:
                raise ChainError(f"{key} has no lamports to take")
            acc = Account(lamports=0, data=b"", owner=SYSTEM_PROGRAM_ID, executable=False, rent_epoch=0)
        if acc.lamports + delta < 0:
            raise ChainError(f"{key} holds {acc.lamports} lamports, {-delta} needed")
        self.svm.set_account(
            key,
            Account(
                lamports=acc.lamports + delta,
                data=bytes(acc.data),
                owner=acc.owner,
                executable=acc.executable,
                rent_epoch=acc.rent_epoch,
            ),
        )

    def _ensure_rent_exempt(self, key: Pubkey) -> None:
        need = self.rent_exempt_minimum(0) - self.balance(key)
        if need > 0:
            self._add_lamports(key, need)

    # -- mints, pools, token accounts ----------------------------------------------------------

    def create_mint(
        self,
        symbol: str,
        decimals: int,
        sol_reserve: float,
        token_reserve: float,
        name: str | None = None,
        *,
        token_2022: bool = False,
        quote: str = "SOL",
    ) -> Pubkey:
        """A new mint whose whole supply (`token_reserve` whole tokens) sits in a fresh pool quoted
        in `quote` ("SOL", or "USD1": `sol_reserve` is then whole USD1)."""
        if sol_reserve <= 0 or token_reserve <= 0:
            raise ChainError("a pool needs positive quote and token reserves")
        if not 0 <= decimals <= 12:
            raise ChainError("decimals must be between 0 and 12")
        if quote not in ("SOL", "USD1"):
            raise ChainError("quote must be SOL or USD1")
        # Numbered by pool so mint addresses stay what they were before USD1 existed.
        index = len(self._pools)
        mint = self.keypair(f"mint:{index}:{symbol}").pubkey()
        program = TOKEN_2022_PROGRAM_ID if token_2022 else TOKEN_PROGRAM_ID
        supply = round(token_reserve * 10**decimals)
        info = MintInfo(mint, symbol, name or symbol, decimals, supply, program, self.mint_authority.pubkey())
        self._mints[mint] = info
        self._write_mint(info)
        address = self.keypair(f"pool:{mint}").pubkey()
        if quote == "SOL":
            quote_units = round(sol_reserve * LAMPORTS_PER_SOL)
            quote_fields: dict[str, Any] = {}
        else:
            quote_units = round(sol_reserve * 10**USD1_DECIMALS)
            quote_fields = {
                "quote": "USD1",
                "quote_mint": USD1_MINT,
                "quote_decimals": USD1_DECIMALS,
                "quote_account": get_associated_token_address(address, USD1_MINT, TOKEN_PROGRAM_ID),
            }
        pool = Pool(
            mint=mint,
            symbol=symbol,
            name=info.name,
            decimals=decimals,
            address=address,
            token_account=get_associated_token_address(address, mint, program),
            sol_reserve=quote_units,
            token_reserve=supply,
            token_program=program,
            **quote_fields,
        )
        self._pools[mint] = pool
        self.svm.set_account(
            address,
            Account(
                lamports=self.rent_exempt_minimum(0) + (quote_units if quote == "SOL" else 0),
                data=b"",
                owner=SYSTEM_PROGRAM_ID,
                executable=False,
                rent_epoch=0,
            ),
        )
        self._set_token_amount(address, mint, supply, emit=False)
        if quote == "USD1":
            self._set_supply(USD1_MINT, self.mint_info(USD1_MINT).supply + quote_units)
            self._set_token_amount(address, USD1_MINT, quote_units, emit=False)
        pool.lookup_table = self._create_lookup_table(index, self._table_addresses(pool))
        self._pool_changed(pool, "created")
        return mint

    def _table_addresses(self, pool: Pool) -> list[Pubkey]:
        addresses = [
            SYSTEM_PROGRAM_ID,
            TOKEN_PROGRAM_ID,
            TOKEN_2022_PROGRAM_ID,
            ASSOCIATED_TOKEN_PROGRAM_ID,
            self.fee_collector,
            *self.tip_accounts,
            pool.mint,
            pool.address,
            pool.token_account,
        ]
        if pool.quote == "USD1" and pool.quote_account is not None:
            addresses += [USD1_MINT, pool.quote_account, self.ata(self.fee_collector, USD1_MINT)]
        return addresses

    def _create_lookup_table(self, index: int, addresses: list[Pubkey]) -> Pubkey:
        address, _bump = derive_lookup_table_address(self.lookup_table_authority, index)
        data = lookup_table_data(self.lookup_table_authority, addresses, self._slot)
        self.svm.set_account(
            address,
            Account(
                lamports=self.rent_exempt_minimum(len(data)),
                data=data,
                owner=ADDRESS_LOOKUP_TABLE_PROGRAM_ID,
                executable=False,
                rent_epoch=0,
            ),
        )
        return address

    def lookup_table(self, address: PubkeyLike) -> AddressLookupTableAccount | None:
        """The lookup table stored at `address`, as `MessageV0.try_compile` takes it."""
        key = _pk(address)
        acc = self.svm.get_account(key)
        if acc is None or acc.owner != ADDRESS_LOOKUP_TABLE_PROGRAM_ID:
            return None
        table = AddressLookupTable.deserialize(bytes(acc.data))
        return AddressLookupTableAccount(key, list(table.addresses))

    def mint_info(self, mint: PubkeyLike) -> MintInfo:
        key = _pk(mint)
        info = self._mints.get(key)
        if info is None:
            raise UnknownMint(f"unknown mint {key}")
        return info

    def pool(self, mint: PubkeyLike) -> Pool:
        key = _pk(mint)
        pool = self._pools.get(key)
        if pool is None:
            raise UnknownMint(f"unknown mint {key}")
        return pool

    def pools(self) -> list[Pool]:
        return list(self._pools.values())

    def has_mint(self, mint: PubkeyLike) -> bool:
        try:
            return _pk(mint) in self._mints
        except ValueError:
            return False

    def token_program(self, mint: PubkeyLike) -> Pubkey:
        return self.mint_info(mint).token_program

    def ata(self, owner: PubkeyLike, mint: PubkeyLike) -> Pubkey:
        """The owner's associated token account for the mint."""
        return get_associated_token_address(_pk(owner), _pk(mint), self.token_program(mint))

    token_account = ata

    def token_balance(self, owner: PubkeyLike, mint: PubkeyLike) -> int:
        state = self._read_token_account(self.ata(owner, mint))
        return state.amount if state else 0

    def token_accounts(self, owner: PubkeyLike) -> list[TokenAccountEntry]:
        """The owner's associated token accounts that exist, with their amounts."""
        key = _pk(owner)
        entries = []
        for mint in sorted(self._holdings.get(key, ()), key=str):
            ata = self.ata(key, mint)
            state = self._read_token_account(ata)
            if state is not None and state.owner == key:
                entries.append(TokenAccountEntry(ata, mint, state.amount, self.token_program(mint)))
        return entries

    def token_balances(self, owner: PubkeyLike) -> dict[Pubkey, int]:
        return {entry.mint: entry.amount for entry in self.token_accounts(owner)}

    def read_token_account(self, address: PubkeyLike) -> TokenAccount | None:
        """The decoded SPL token account at `address`, or None if it is not one."""
        return self._read_token_account(_pk(address))

    def _read_token_account(self, address: Pubkey) -> TokenAccount | None:
        acc = self.svm.get_account(address)
        if acc is None or acc.owner not in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
            return None
        if len(acc.data) < TOKEN_ACCOUNT_SIZE:
            return None
        return TokenAccount.from_bytes(bytes(acc.data[:TOKEN_ACCOUNT_SIZE]))

    def _write_mint(self, info: MintInfo) -> None:
        data = bytes(Mint(info.mint_authority, info.supply, info.decimals, True, None))
        self.svm.set_account(
            info.mint,
            Account(
                lamports=self.rent_exempt_minimum(MINT_SIZE),
                data=data,
                owner=info.token_program,
                executable=False,
                rent_epoch=0,
            ),
        )

    def _set_token_amount(self, owner: Pubkey, mint: Pubkey, amount: int, emit: bool = True) -> None:
        """Writes the owner's associated token account balance, creating the account if needed."""
        if amount < 0:
            raise ChainError("a token balance cannot go below zero")
        info = self.mint_info(mint)
        ata = get_associated_token_address(owner, mint, info.token_program)
        existing = self.svm.get_account(ata)
        lamports = existing.lamports if existing else self.rent_exempt_minimum(TOKEN_ACCOUNT_SIZE)
        base = self._read_token_account(ata)
        self.svm.set_account(
            ata,
            Account(
                lamports=lamports,
                data=_token_account_bytes(mint, owner, amount, base),
                owner=info.token_program,
                executable=False,
                rent_epoch=0,
            ),
        )
        self._holdings.setdefault(owner, set()).add(mint)
        if emit:
            self._emit(TokenBalanceChanged(owner, mint, ata, amount, self._slot))

    def _move_tokens(self, source_owner: Pubkey, dest_owner: Pubkey, mint: Pubkey, amount: int) -> None:
        self._set_token_amount(source_owner, mint, self.token_balance(source_owner, mint) - amount)
        self._set_token_amount(dest_owner, mint, self.token_balance(dest_owner, mint) + amount)

    def _set_supply(self, mint: Pubkey, supply: int) -> None:
        info = self.mint_info(mint)
        info.supply = supply
        self._write_mint(info)

    # -- the curve -----------------------------------------------------------------------------

    def quote_sell(self, mint: PubkeyLike, tokens: int) -> int:
        """Quote units (lamports for SOL pools) the pool pays right now for `tokens` atomic units,
        before the routing fee."""
        pool = self.pool(mint)
        return _curve(pool.sol_reserve, pool.token_reserve, tokens)

    def quote_buy(self, mint: PubkeyLike, lamports: int) -> int:
        """Atomic token units the pool gives right now for `lamports` quote units (no routing fee)."""
        pool = self.pool(mint)
        return _curve(pool.token_reserve, pool.sol_reserve, lamports)

    def quote_sell_net(self, mint: PubkeyLike, tokens: int, tier: str = "professional") -> int:
        """What a router sell of `tokens` pays the wallet right now: proceeds less the routing fee."""
        pool = self.pool(mint)
        gross = self.quote_sell(mint, tokens)
        return gross - routing_fee(tier, pool.quote, gross)

    def quote_buy_net(self, mint: PubkeyLike, quote_in: int, tier: str = "professional") -> int:
        """Tokens a router buy paying `quote_in` gets right now, the routing fee taken first."""
        pool = self.pool(mint)
        return self.quote_buy(mint, quote_in - routing_fee(tier, pool.quote, quote_in))

    def price(self, mint: PubkeyLike) -> float:
        """Spot price in quote units (lamports for SOL pools) per whole token."""
        return self.pool(mint).price

    def market_cap(self, mint: PubkeyLike) -> int:
        """Supply times spot price, in quote units."""
        info = self.mint_info(mint)
        return int(self.price(mint) * info.supply / 10**info.decimals)

    def _pool_changed(self, pool: Pool, reason: str) -> None:
        pool.history.append((self._slot, pool.sol_reserve, pool.token_reserve))
        self._emit(
            PoolChanged(
                pool.mint,
                pool.sol_reserve,
                pool.token_reserve,
                pool.market_type,
                pool.graduated,
                reason,
                self._slot,
                pool.quote,
            )
        )

    def _trade_price(self, pool: Pool, tokens: int, lamports: int) -> float:
        return lamports * 10**pool.decimals / tokens if tokens else 0.0

    def _quote_balance(self, pool: Pool, owner: Pubkey) -> int:
        return self.balance(owner) if pool.quote == "SOL" else self.token_balance(owner, USD1_MINT)

    def _move_quote(self, pool: Pool, source: Pubkey, dest: Pubkey, amount: int) -> None:
        if pool.quote == "SOL":
            self._add_lamports(source, -amount)
            self._add_lamports(dest, amount)
        else:
            self._set_token_amount(
                source, USD1_MINT, self.token_balance(source, USD1_MINT) - amount, emit=False
            )
            self._set_token_amount(dest, USD1_MINT, self.token_balance(dest, USD1_MINT) + amount, emit=False)

    def _ensure_quote(self, pool: Pool, owner: Pubkey, amount: int) -> None:
        """Gives `owner` enough quote for `amount` (outside traders bring their own money)."""
        shortfall = amount - self._quote_balance(pool, owner)
        if shortfall <= 0:
            return
        if pool.quote == "SOL":
            self._add_lamports(owner, shortfall)
        else:
            self._set_supply(USD1_MINT, self.mint_info(USD1_MINT).supply + shortfall)
            self._set_token_amount(owner, USD1_MINT, amount, emit=False)

    def _pool_trade(
        self,
        pool: Pool,
        maker: Pubkey,
        side: str,
        tokens: int,
        lamports: int,
        sig: Signature | None,
        reason: str,
    ) -> TradeExecuted:
        """Moves quote and tokens between the pool and the maker's accounts and reports it."""
        trade = TradeExecuted(
            pool.mint,
            side,
            tokens,
            lamports,
            self._trade_price(pool, tokens, lamports),
            maker,
            sig,
            self._slot,
            0,
            pool.quote,
        )
        if side == "buy":
            self._move_quote(pool, maker, pool.address, lamports)
            pool.sol_reserve += lamports
            pool.token_reserve -= tokens
            self._emit(trade)
            self._move_tokens(pool.address, maker, pool.mint, tokens)
        else:
            self._move_quote(pool, pool.address, maker, lamports)
            pool.sol_reserve -= lamports
            pool.token_reserve += tokens
            self._emit(trade)
            self._move_tokens(maker, pool.address, pool.mint, tokens)
        self._pool_changed(pool, reason)
        return trade

    # -- the outside market --------------------------------------------------------------------

    def outside_buy(self, wallet: PubkeyLike, mint: PubkeyLike, sol: float) -> int:
        """A buy made elsewhere landing in `wallet`: `sol` whole units of the pool's quote (SOL, or
        USD1 for USD1 pools; funded if the wallet lacks them) to the pool, tokens to the wallet's
        associated token account. Returns the tokens bought."""
        key, pool = _pk(wallet), self.pool(mint)
        amount = round(sol * 10**pool.quote_decimals)
        if amount <= 0:
            raise ChainError("a buy needs a positive amount")
        self._ensure_quote(pool, key, amount)
        tokens = self.quote_buy(pool.mint, amount)
        self._pool_trade(pool, key, "buy", tokens, amount, None, "trade")
        return tokens

    def market_move(self, mint: PubkeyLike, pct: float) -> TradeExecuted:
        """A third party trades against the pool so the spot price moves by `pct` percent."""
        pool = self.pool(mint)
        if pct <= -100:
            raise ChainError("a price cannot fall by 100% or more")
        factor = math.sqrt(1 + pct / 100)
        maker = self.market_maker.pubkey()
        if pct >= 0:
            amount = round(pool.sol_reserve * factor) - pool.sol_reserve
            tokens = self.quote_buy(pool.mint, amount)
            self._ensure_quote(pool, maker, amount)
            return self._pool_trade(pool, maker, "buy", tokens, amount, None, "market_move")
        tokens = round(pool.token_reserve / factor) - pool.token_reserve
        amount = self.quote_sell(pool.mint, tokens)
        held = self.token_balance(maker, pool.mint)
        if held < tokens:
            # The seller brings tokens from elsewhere: mint them so balances stay consistent.
            self._set_supply(pool.mint, self.mint_info(pool.mint).supply + tokens - held)
            self._set_token_amount(maker, pool.mint, tokens, emit=False)
        return self._pool_trade(pool, maker, "sell", tokens, amount, None, "market_move")

    def drain(self, mint: PubkeyLike, drain_pct: float) -> tuple[int, int]:
        """Pulls `drain_pct` percent of both reserves out of the pool; returns (quote units, tokens)."""
        pool = self.pool(mint)
        if not 0 < drain_pct < 100:
            raise ChainError("drain_pct must be between 0 and 100 (exclusive)")
        amount = int(pool.sol_reserve * drain_pct / 100)
        tokens = int(pool.token_reserve * drain_pct / 100)
        drainer = self.drainer.pubkey()
        self._move_quote(pool, pool.address, drainer, amount)
        pool.sol_reserve -= amount
        pool.token_reserve -= tokens
        self._move_tokens(pool.address, drainer, pool.mint, tokens)
        self._pool_changed(pool, "drain")
        return amount, tokens

    def graduate(self, mint: PubkeyLike) -> Pool:
        """The bonding curve completes: the market becomes a PumpSwap pool (same reserves)."""
        pool = self.pool(mint)
        pool.graduated = True
        pool.market_type = "pump_swap"
        self._pool_changed(pool, "graduation")
        return pool

    # -- building LaserSell transactions -------------------------------------------------------

    def build_sell_tx(
        self,
        wallet: PubkeyLike,
        mint: PubkeyLike,
        amount_tokens: int,
        slippage_bps: int,
        tip_lamports: int = 0,
        tip_account: PubkeyLike | None = None,
        memo_tag: str = "",
        *,
        compute_unit_limit: int = DEFAULT_COMPUTE_UNIT_LIMIT,
        compute_unit_price: int = DEFAULT_COMPUTE_UNIT_PRICE,
        tier: str = "professional",
        use_lookup_table: bool = True,
    ) -> VersionedTransaction:
        """An unsigned v0 router sell of `amount_tokens` (see the module docstring). `min_out` is
        today's proceeds net of the `tier`'s routing fee, less `slippage_bps`."""
        owner, pool = _pk(wallet), self.pool(mint)
        if amount_tokens <= 0:
            raise ChainError("amount_tokens must be positive")
        self._check_slippage(slippage_bps)
        fee_bps, fee_min = _fee_params(tier, pool.quote)
        gross = self.quote_sell(pool.mint, amount_tokens)
        min_out = (gross - _fee(fee_bps, fee_min, gross)) * (10_000 - slippage_bps) // 10_000
        order = RouterOrder(ROUTER_SELL, amount_tokens, min_out, fee_bps, fee_min, memo_tag)
        body = []
        if pool.quote == "USD1":
            body.append(self._create_ata_ix(owner, owner, USD1_MINT))
        body.append(self._router_ix(owner, pool, order))
        return self._unsigned_tx(
            owner,
            pool,
            body,
            tip_lamports,
            tip_account,
            compute_unit_limit,
            compute_unit_price,
            use_lookup_table,
        )

    def build_buy_tx(
        self,
        wallet: PubkeyLike,
        mint: PubkeyLike,
        sol_lamports: int,
        slippage_bps: int,
        tip_lamports: int = 0,
        tip_account: PubkeyLike | None = None,
        memo_tag: str = "",
        *,
        compute_unit_limit: int = DEFAULT_COMPUTE_UNIT_LIMIT,
        compute_unit_price: int = DEFAULT_COMPUTE_UNIT_PRICE,
        tier: str = "professional",
        use_lookup_table: bool = True,
    ) -> VersionedTransaction:
        """An unsigned v0 router buy paying `sol_lamports` quote units (USD1 base units in USD1
        pools), the routing fee included (see the module docstring)."""
        owner, pool = _pk(wallet), self.pool(mint)
        if sol_lamports <= 0:
            raise ChainError("sol_lamports must be positive")
        self._check_slippage(slippage_bps)
        fee_bps, fee_min = _fee_params(tier, pool.quote)
        swapped = sol_lamports - _fee(fee_bps, fee_min, sol_lamports)
        min_tokens = self.quote_buy(pool.mint, swapped) * (10_000 - slippage_bps) // 10_000
        order = RouterOrder(ROUTER_BUY, sol_lamports, min_tokens, fee_bps, fee_min, memo_tag)
        body = [self._create_ata_ix(owner, owner, pool.mint), self._router_ix(owner, pool, order)]
        return self._unsigned_tx(
            owner,
            pool,
            body,
            tip_lamports,
            tip_account,
            compute_unit_limit,
            compute_unit_price,
            use_lookup_table,
        )

    def build_hostile_tx(
        self,
        kind: str,
        wallet: PubkeyLike,
        mint: PubkeyLike,
        *,
        amount_tokens: int | None = None,
        tip_lamports: int = 0,
        attacker: Pubkey | None = None,
        tier: str = "professional",
    ) -> VersionedTransaction:
        """An unsigned transaction shaped like an exit of `mint` (compute budget, lookup table,
        router) that harms the wallet. `amount_tokens` defaults to the whole position; the
        stranger is `attacker` or the sandbox's own.

        - steal_position: the whole position by a top-level TransferChecked to the stranger's
          token account (created idempotently, the wallet paying rent); no router instruction.
        - steal_sol: a genuine router sell plus a System transfer of 90 % of the wallet's SOL.
        - steal_other_token: a genuine router sell plus a TransferChecked draining another token
          account of the wallet (the first other one holding tokens; ChainError if none).
        - set_authority: a genuine router sell, then SPL SetAuthority (AccountOwner) of the
          wallet's token account to the stranger.
        - approve: a genuine router sell, then SPL Approve of u64::MAX to the stranger as delegate.
        - cpi_drain: ONE router instruction, data like a sell's but side `ROUTER_DRAIN`: executed,
          it moves the tokens to the stranger's token account (account 4) and pays nothing.
        - tip_over_cap: a genuine router sell with a tip of `tip_lamports`.
        - cpi_sol: ONE router instruction (side `ROUTER_SOL_CPI`, the stranger as its last account):
          a genuine sell, then a System transfer by CPI of 90 % of the wallet's SOL to the stranger.
        - router_approve / router_set_authority: ONE router instruction (sides `ROUTER_APPROVE` /
          `ROUTER_SET_OWNER`) selling half the position, then making the stranger the delegate
          (u64::MAX) or the owner of the wallet's token account, inside the router.
        - second_signer: a genuine router sell plus a 1-lamport System transfer from the stranger,
          so the transaction needs the stranger's signature too.
        - lookup_table_destination: the whole position by a top-level TransferChecked to the
          stranger's token account (created by the sandbox beforehand), which the transaction loads
          only from a lookup table of its own: the destination is not among the static keys.
        """
        if kind not in HOSTILE_KINDS:
            raise ChainError(f"unknown hostile kind {kind!r}; use one of {', '.join(HOSTILE_KINDS)}")
        owner, pool = _pk(wallet), self.pool(mint)
        thief = attacker if attacker is not None else self.keypair("attacker").pubkey()
        self._ensure_rent_exempt(thief)
        held = self.token_balance(owner, pool.mint)
        amount = amount_tokens if amount_tokens is not None else held
        if amount <= 0:
            raise ChainError("the wallet holds none of this token; give amount_tokens")
        fee_bps, fee_min = _fee_params(tier, pool.quote)
        gross = self.quote_sell(pool.mint, amount)
        min_out = (gross - _fee(fee_bps, fee_min, gross)) * 9_900 // 10_000
        sell = RouterOrder(ROUTER_SELL, amount, min_out, fee_bps, fee_min, f"hostile:{kind}")
        body: list[Instruction] = []
        if pool.quote == "USD1" and kind not in ("cpi_drain", "lookup_table_destination"):
            body.append(self._create_ata_ix(owner, owner, USD1_MINT))
        harmful = {"cpi_sol": ROUTER_SOL_CPI, "router_approve": ROUTER_APPROVE, "router_set_authority": ROUTER_SET_OWNER}
        if kind == "steal_position":
            body += self._steal_tokens_ixs(owner, thief, pool.mint, amount)
        elif kind == "lookup_table_destination":
            return self._table_hidden_theft(owner, thief, pool, amount)
        elif kind == "cpi_drain":
            drain = RouterOrder(ROUTER_DRAIN, amount, min_out, fee_bps, fee_min, sell.tag)
            body.append(self._router_ix(owner, pool, drain, destination=thief))
        elif kind in harmful:
            part = amount if kind == "cpi_sol" else max(1, amount // 2)
            part_gross = self.quote_sell(pool.mint, part)
            part_min = (part_gross - _fee(fee_bps, fee_min, part_gross)) * 9_900 // 10_000
            order = RouterOrder(harmful[kind], part, part_min, fee_bps, fee_min, sell.tag)
            ix = self._router_ix(owner, pool, order)
            metas = [*ix.accounts, AccountMeta(thief, is_signer=False, is_writable=True)]
            body.append(Instruction(ix.program_id, bytes(ix.data), metas))
        else:
            body.append(self._router_ix(owner, pool, sell))
            if kind == "steal_sol":
                stolen = self.balance(owner) * 9 // 10
                body.append(transfer(TransferParams(from_pubkey=owner, to_pubkey=thief, lamports=stolen)))
            elif kind == "second_signer":
                self._add_lamports(thief, 1)  # the stranger can pay it and stay rent exempt
                body.append(transfer(TransferParams(from_pubkey=thief, to_pubkey=owner, lamports=1)))
            elif kind == "steal_other_token":
                other = next(
                    (e for e in self.token_accounts(owner) if e.mint != pool.mint and e.amount > 0), None
                )
                if other is None:
                    raise ChainError("the wallet holds no other token to drain")
                body += self._steal_tokens_ixs(owner, thief, other.mint, other.amount)
            elif kind == "set_authority":
                data = bytes([6, 2, 1]) + bytes(thief)  # SetAuthority, AccountOwner, Some(new)
                body.append(
                    Instruction(
                        pool.token_program,
                        data,
                        [
                            AccountMeta(self.ata(owner, pool.mint), is_signer=False, is_writable=True),
                            AccountMeta(owner, is_signer=True, is_writable=False),
                        ],
                    )
                )
            elif kind == "approve":
                body.append(
                    Instruction(
                        pool.token_program,
                        struct.pack("<BQ", 4, U64_MAX),  # Approve
                        [
                            AccountMeta(self.ata(owner, pool.mint), is_signer=False, is_writable=True),
                            AccountMeta(thief, is_signer=False, is_writable=False),
                            AccountMeta(owner, is_signer=True, is_writable=False),
                        ],
                    )
                )
        return self._unsigned_tx(
            owner,
            pool,
            body,
            tip_lamports,
            None,
            DEFAULT_COMPUTE_UNIT_LIMIT,
            DEFAULT_COMPUTE_UNIT_PRICE,
            True,
        )

    def _table_hidden_theft(self, owner: Pubkey, thief: Pubkey, pool: Pool, amount: int) -> VersionedTransaction:
        info = self.mint_info(pool.mint)
        stash = self.ata(thief, pool.mint)
        if self._read_token_account(stash) is None:
            self._set_token_amount(thief, pool.mint, 0, emit=False)
        self._hidden_tables += 1
        table = self._create_lookup_table(10_000 + self._hidden_tables, [*self._table_addresses(pool), stash])
        steal = Instruction(
            info.token_program,
            struct.pack("<BQB", TRANSFER_CHECKED, amount, info.decimals),
            [
                AccountMeta(self.ata(owner, pool.mint), is_signer=False, is_writable=True),
                AccountMeta(pool.mint, is_signer=False, is_writable=False),
                AccountMeta(stash, is_signer=False, is_writable=True),
                AccountMeta(owner, is_signer=True, is_writable=True),
            ],
        )
        ixs = [
            set_compute_unit_limit(DEFAULT_COMPUTE_UNIT_LIMIT),
            set_compute_unit_price(DEFAULT_COMPUTE_UNIT_PRICE),
            steal,
        ]
        found = self.lookup_table(table)
        assert found is not None
        message = MessageV0.try_compile(owner, ixs, [found], self.latest_blockhash()[0])
        return VersionedTransaction.populate(message, [Signature.default()] * message.header.num_required_signatures)

    def _steal_tokens_ixs(self, owner: Pubkey, thief: Pubkey, mint: Pubkey, amount: int) -> list[Instruction]:
        info = self.mint_info(mint)
        return [
            self._create_ata_ix(owner, thief, mint),
            Instruction(
                info.token_program,
                struct.pack("<BQB", TRANSFER_CHECKED, amount, info.decimals),
                [
                    AccountMeta(self.ata(owner, mint), is_signer=False, is_writable=True),
                    AccountMeta(mint, is_signer=False, is_writable=False),
                    AccountMeta(self.ata(thief, mint), is_signer=False, is_writable=True),
                    AccountMeta(owner, is_signer=True, is_writable=True),
                ],
            ),
        ]

    @staticmethod
    def _check_slippage(slippage_bps: int) -> None:
        if not 0 <= slippage_bps <= 10_000:
            raise ChainError("slippage_bps must be between 0 and 10000")

    def _create_ata_ix(self, payer: Pubkey, owner: Pubkey, mint: Pubkey) -> Instruction:
        program = self.token_program(mint)
        return Instruction(
            ASSOCIATED_TOKEN_PROGRAM_ID,
            bytes([1]),  # CreateIdempotent
            [
                AccountMeta(payer, is_signer=True, is_writable=True),
                AccountMeta(self.ata(owner, mint), is_signer=False, is_writable=True),
                AccountMeta(owner, is_signer=False, is_writable=False),
                AccountMeta(mint, is_signer=False, is_writable=False),
                AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
                AccountMeta(program, is_signer=False, is_writable=False),
            ],
        )

    def _router_ix(
        self, owner: Pubkey, pool: Pool, order: RouterOrder, destination: Pubkey | None = None
    ) -> Instruction:
        # `destination` replaces the pool's accounts (the hostile drain variant).
        pool_address = destination if destination is not None else pool.address
        pool_tokens = (
            get_associated_token_address(destination, pool.mint, pool.token_program)
            if destination is not None
            else pool.token_account
        )
        metas = [
            AccountMeta(owner, is_signer=True, is_writable=True),
            AccountMeta(self.ata(owner, pool.mint), is_signer=False, is_writable=True),
            AccountMeta(pool.mint, is_signer=False, is_writable=False),
            AccountMeta(pool_address, is_signer=False, is_writable=True),
            AccountMeta(pool_tokens, is_signer=False, is_writable=True),
            AccountMeta(pool.token_program, is_signer=False, is_writable=False),
            AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
            AccountMeta(self.fee_collector, is_signer=False, is_writable=True),
        ]
        if pool.quote == "USD1" and pool.quote_account is not None:
            metas += [
                AccountMeta(USD1_MINT, is_signer=False, is_writable=False),
                AccountMeta(self.ata(owner, USD1_MINT), is_signer=False, is_writable=True),
                AccountMeta(pool.quote_account, is_signer=False, is_writable=True),
                AccountMeta(self.ata(self.fee_collector, USD1_MINT), is_signer=False, is_writable=True),
            ]
        return Instruction(self.router_program_id, encode_router_data(order), metas)

    def _unsigned_tx(
        self,
        payer: Pubkey,
        pool: Pool,
        body: list[Instruction],
        tip_lamports: int,
        tip_account: PubkeyLike | None,
        compute_unit_limit: int,
        compute_unit_price: int,
        use_lookup_table: bool,
    ) -> VersionedTransaction:
        if tip_lamports < 0:
            raise ChainError("tip_lamports cannot be negative")
        ixs = [set_compute_unit_limit(compute_unit_limit), set_compute_unit_price(compute_unit_price), *body]
        if tip_lamports:
            tip_to = _pk(tip_account) if tip_account is not None else self.tip_account
            # A tip to an empty account would fail on rent; tip accounts are always funded on a cluster.
            self._ensure_rent_exempt(tip_to)
            ixs.append(transfer(TransferParams(from_pubkey=payer, to_pubkey=tip_to, lamports=tip_lamports)))
        tables = []
        if use_lookup_table and pool.lookup_table is not None:
            table = self.lookup_table(pool.lookup_table)
            if table is not None:
                tables.append(table)
        message = MessageV0.try_compile(payer, ixs, tables, self.latest_blockhash()[0])
        return VersionedTransaction.populate(
            message, [Signature.default()] * message.header.num_required_signatures
        )

    # -- sending -------------------------------------------------------------------------------

    def accept(self, tx: VersionedTransaction) -> None:
        """Take a transaction as a node takes a skipPreflight send: it lands at the next `settle`, which every
        public method of the chain runs first, so nothing that reads or changes the chain can see it missing."""
        self._accepted.append(tx)
        self._accepted_signatures.add(tx.signatures[0])

    def settle(self) -> None:
        """Land the accepted transactions, in the order they came."""
        accepted, self._accepted = self._accepted, []
        self._accepted_signatures.clear()
        for tx in accepted:
            self.send_transaction(tx, skip_preflight=True)

    def seen(self, signature: Signature) -> bool:
        """Whether a transaction with this signature was accepted or landed already (settles nothing)."""
        return signature in self._records or signature in self._accepted_signatures

    def send_transaction(self, tx: VersionedTransaction, skip_preflight: bool = False) -> Signature:
        """Submits a signed transaction as a node's sendTransaction does; raises RpcError."""
        signature = tx.signatures[0]
        if signature in self._records:
            if not skip_preflight:
                self._raise_preflight("AlreadyProcessed", [], 0)
            return signature
        if not skip_preflight:
            if not all(tx.verify_with_results()):
                raise RpcError(-32003, "Transaction signature verification failure")
            result = self.simulate(tx)
            if result["err"] is not None:
                self._raise_preflight(result["err"], result["logs"], result["unitsConsumed"])
        if not self.is_blockhash_valid(tx.message.recent_blockhash) or not all(tx.verify_with_results()):
            self._dropped.add(signature)  # a leader drops it; nobody tells the sender
            return signature
        self._land(tx)
        return signature

    def _raise_preflight(self, err: Any, logs: list[str], units: int | None) -> None:
        data = {
            "err": err,
            "logs": logs,
            "accounts": None,
            "unitsConsumed": units,
            "returnData": None,
            "innerInstructions": None,
            "replacementBlockhash": None,
        }
        raise RpcError(-32002, f"Transaction simulation failed: {error_message(err)}", data)

    def simulate(
        self,
        tx: VersionedTransaction,
        *,
        sig_verify: bool = False,
        replace_recent_blockhash: bool = False,
        accounts: Sequence[PubkeyLike] | None = None,
        inner_instructions: bool = False,
    ) -> dict[str, Any]:
        """simulateTransaction's value: {"err", "logs", "accounts", "unitsConsumed", "returnData",
        "innerInstructions", "replacementBlockhash"}. Nothing is written. `accounts` lists the
        post-simulation `Account` (None for one that would not exist) of each address asked for,
        router effects included; `sig_verify` reports a bad signature as "SignatureFailure";
        `replace_recent_blockhash` simulates with the latest blockhash and says which."""
        result: dict[str, Any] = {
            "err": None,
            "logs": [],
            "accounts": None,
            "unitsConsumed": 0,
            "returnData": None,
            "innerInstructions": None,
            "replacementBlockhash": None,
        }
        if replace_recent_blockhash:
            blockhash, last_valid = self.latest_blockhash()
            tx = _with_blockhash(tx, blockhash)
            result["replacementBlockhash"] = {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid}
        if tx.signatures[0] in self._records:
            result["err"] = "AlreadyProcessed"
            return result
        if sig_verify and not all(tx.verify_with_results()):
            result["err"] = "SignatureFailure"
            return result
        if not self.is_blockhash_valid(tx.message.recent_blockhash):
            result["err"] = "BlockhashNotFound"
            return result
        outcome = self._execute(tx)
        result["err"] = outcome.err
        result["logs"] = outcome.logs
        result["unitsConsumed"] = outcome.units
        if accounts is not None and not outcome.rejected:
            state = _State(self, outcome.writes)
            result["accounts"] = [state.get(_pk(a)) for a in accounts]
        if inner_instructions:
            result["innerInstructions"] = outcome.inner
        return result

    @staticmethod
    def fee_for(tx: VersionedTransaction) -> int:
        """5000 lamports per signature plus the priority fee (CU price x CU limit)."""
        msg = tx.message
        keys = list(msg.account_keys)
        limit, price = 200_000, 0
        for ix in msg.instructions:
            if keys[ix.program_id_index] != COMPUTE_BUDGET_PROGRAM_ID:
                continue
            data = bytes(ix.data)
            if data[:1] == b"\x02" and len(data) >= 5:
                limit = struct.unpack_from("<I", data, 1)[0]
            elif data[:1] == b"\x03" and len(data) >= 9:
                price = struct.unpack_from("<Q", data, 1)[0]
        priority = (price * limit + 999_999) // 1_000_000
        return LAMPORTS_PER_SIGNATURE * msg.header.num_required_signatures + priority

    # -- executing -----------------------------------------------------------------------------

    def resolve_account_keys(
        self, tx: VersionedTransaction
    ) -> tuple[list[Pubkey], list[Pubkey], list[Pubkey]]:
        """(static keys, lookup-table writable, lookup-table readonly), as a node loads them.
        Raises ChainError naming the node's error (AddressLookupTableNotFound ...)."""
        try:
            return self._resolve(tx)
        except _Rejected as exc:
            raise ChainError(exc.err) from exc

    def _resolve(self, tx: VersionedTransaction) -> tuple[list[Pubkey], list[Pubkey], list[Pubkey]]:
        msg = tx.message
        static = list(msg.account_keys)
        writable: list[Pubkey] = []
        readonly: list[Pubkey] = []
        for lookup in getattr(msg, "address_table_lookups", None) or []:
            acc = self.svm.get_account(lookup.account_key)
            if acc is None:
                raise _Rejected("AddressLookupTableNotFound")
            if acc.owner != ADDRESS_LOOKUP_TABLE_PROGRAM_ID:
                raise _Rejected("InvalidAddressLookupTableOwner")
            try:
                addresses = list(AddressLookupTable.deserialize(bytes(acc.data)).addresses)
            except Exception as exc:  # solders raises its own error types on bad bytes
                raise _Rejected("InvalidAddressLookupTableData") from exc
            for indexes, into in ((lookup.writable_indexes, writable), (lookup.readonly_indexes, readonly)):
                for index in bytes(indexes):
                    if index >= len(addresses):
                        raise _Rejected("InvalidAddressLookupTableIndex")
                    into.append(addresses[index])
        return static, writable, readonly

    def _execute(self, tx: VersionedTransaction) -> _Outcome:
        """Runs `tx` on a copy of the state (signatures and blockhash are the caller's business)."""
        msg = tx.message
        try:
            static, writable, readonly = self._resolve(tx)
        except _Rejected as exc:
            return _Outcome(True, exc.err, [], 0, 0, list(msg.account_keys), ([], []), {}, [], [])
        keys = [*static, *writable, *readonly]
        instructions = list(msg.instructions)
        router_at = [
            i for i, ix in enumerate(instructions) if keys[ix.program_id_index] == self.router_program_id
        ]
        rest = [i for i in range(len(instructions)) if i not in router_at]
        run = tx if not router_at else _without_instructions(tx, rest)
        self.svm.with_sigverify(False)  # verified by the caller where a node would
        try:
            sim = self.svm.simulate_transaction(run)
        finally:
            self.svm.with_sigverify(True)
        if isinstance(sim, FailedTransactionMetadata):
            err = error_json(sim.err())
            meta = sim.meta()
            if isinstance(err, str) and err in _NOT_EXECUTED:
                return _Outcome(True, err, [], 0, 0, keys, (writable, readonly), {}, [], [])
            if isinstance(err, dict) and "InstructionError" in err:
                index, detail = err["InstructionError"]
                err = {"InstructionError": [rest[index], detail]}
            return self._failed(
                keys,
                (writable, readonly),
                err,
                list(meta.logs()),
                meta.compute_units_consumed(),
                meta.fee() or self.fee_for(tx),
            )
        meta = sim.meta()
        state = _State(self, dict(sim.post_accounts()))
        chunks = _split_logs(list(meta.logs()), len(rest))
        inner: list[dict[str, Any]] = [
            {"index": rest[i], "instructions": group}
            for i, group in enumerate(_inner_json(meta.inner_instructions()))
            if group
        ]
        logs: list[str] = []
        units = meta.compute_units_consumed()
        swaps: list[_Swap] = []
        payer = keys[0]
        for index in range(len(instructions)):
            if index not in router_at:
                logs += chunks[rest.index(index)]
                continue
            ix = instructions[index]
            try:
                swap, router_logs, legs = self._route(
                    index, ix, keys, msg, state, decode_router_data(bytes(ix.data))
                )
            except _RouterFailure as failure:
                logs += failure.logs
                return self._failed(
                    keys,
                    (writable, readonly),
                    _custom_err(index, failure.code),
                    logs,
                    units + ROUTER_COMPUTE_UNITS // 4,
                    meta.fee(),
                )
            logs += router_logs
            units += ROUTER_COMPUTE_UNITS
            if swap is not None:
                swaps.append(swap)
            if legs:
                inner.append({"index": index, "instructions": legs})
        if payer not in state.changed:
            state.add_lamports(payer, 0)
        inner.sort(key=lambda entry: entry["index"])
        return _Outcome(
            False, None, logs, units, meta.fee(), keys, (writable, readonly), state.changed, swaps, inner
        )

    def _failed(
        self,
        keys: list[Pubkey],
        loaded: tuple[list[Pubkey], list[Pubkey]],
        err: Any,
        logs: list[str],
        units: int,
        fee: int,
    ) -> _Outcome:
        """A failed transaction: only the fee leaves the fee payer."""
        state = _State(self, {})
        state.add_lamports(keys[0], -min(fee, state.lamports(keys[0])))
        return _Outcome(False, err, logs, units, fee, keys, loaded, state.changed, [], [])

    def _route(
        self,
        index: int,
        ix: CompiledInstruction,
        keys: list[Pubkey],
        msg: Any,
        state: _State,
        order: RouterOrder | None,
    ) -> tuple[_Swap | None, list[str], list[dict[str, Any]]]:
        """The router instruction at `index`, applied to `state`: (swap, logs, inner instructions).
        Raises _RouterFailure (code, logs) and then `state` must be thrown away."""
        program = self.router_program_id
        limit = _compute_unit_limit(msg)
        head = [f"Program {program} invoke [1]"]
        accounts = [keys[i] for i in bytes(ix.accounts)]
        call = _RouterCall(program, limit, head, keys, accounts, state)
        fail = call.fail
        if order is None or order.side not in (ROUTER_SELL, ROUTER_BUY, ROUTER_DRAIN, *_HARMFUL_SELLS):
            raise fail(6000, "Error: InvalidInstructionData")
        if len(accounts) < 8:
            raise fail(ROUTER_ACCOUNTS_ERROR_CODE, "Error: NotEnoughAccountKeys")
        wallet, wallet_tokens, mint, pool_address, pool_tokens, token_program, _system, collector = accounts[
            :8
        ]
        pool = self._pools.get(mint)
        if pool is None:
            raise fail(ROUTER_ACCOUNTS_ERROR_CODE, "Error: UnknownMarket")
        signer = wallet in keys[: msg.header.num_required_signatures]
        if not signer or token_program != pool.token_program or collector != self.fee_collector:
            raise fail(ROUTER_ACCOUNTS_ERROR_CODE, "Error: ConstraintAddress")
        if order.side != ROUTER_DRAIN and (pool_address != pool.address or pool_tokens != pool.token_account):
            raise fail(ROUTER_ACCOUNTS_ERROR_CODE, "Error: ConstraintAddress (pool)")
        usd1 = pool.quote == "USD1"
        if usd1:
            fee_quote = self.ata(self.fee_collector, USD1_MINT)
            if (
                len(accounts) < 12
                or accounts[8] != USD1_MINT
                or accounts[9] != self.ata(wallet, USD1_MINT)
                or accounts[10] != pool.quote_account
                or accounts[11] != fee_quote
            ):
                raise fail(ROUTER_ACCOUNTS_ERROR_CODE, "Error: ConstraintAddress (USD1 accounts)")
            call.wallet_quote, call.fee_quote = accounts[9], fee_quote
        call.order, call.pool, call.usd1 = order, pool, usd1
        call.wallet, call.wallet_tokens, call.mint = wallet, wallet_tokens, mint
        call.pool_address, call.pool_tokens, call.collector = pool_address, pool_tokens, collector
        call.reserves = state.reserves.setdefault(pool.mint, [pool.sol_reserve, pool.token_reserve])
        call.unit = "lamports" if not usd1 else "USD1 units"
        head.append(f"Program log: Instruction: {'Buy' if order.side == ROUTER_BUY else 'Sell'}")
        call.held_before = self._read_token_account(wallet_tokens)
        call.held = state.token(wallet_tokens)
        if order.side in (ROUTER_SELL, ROUTER_DRAIN, *_HARMFUL_SELLS):
            swap, summary = self._route_sell(call)
        else:
            swap, summary = self._route_buy(call)
        logs = [*head, *call.token_leg_logs(pool.token_program), *([summary] if summary else [])]
        logs += [
            f"Program {program} consumed {ROUTER_COMPUTE_UNITS} of {limit} compute units",
            f"Program {program} success",
        ]
        return swap, logs, [x for x in call.legs if x]

    def _route_sell(self, r: _RouterCall) -> tuple[_Swap | None, str | None]:
        """A sell (or a hostile variant): tokens in, the quote out net of the routing fee; the
        log's summary line (None for the drain, which only moves the tokens)."""
        assert r.order is not None and r.pool is not None
        owner_then = r.held_before.owner if r.held_before is not None else (r.held.owner if r.held else None)
        if r.held is None or r.held.mint != r.mint or owner_then != r.wallet:
            raise r.fail(ROUTER_ACCOUNTS_ERROR_CODE, "Error: InvalidTokenAccount")
        amount = r.order.amount_in
        if r.held.amount < amount:
            raise r.insufficient(r.pool.token_program, r.held.amount, amount)
        transfer_data = struct.pack("<BQB", TRANSFER_CHECKED, amount, r.pool.decimals)
        r.legs.append(r.leg(r.pool.token_program, [r.wallet_tokens, r.mint, r.pool_tokens, r.wallet], transfer_data))
        if r.order.side == ROUTER_DRAIN:
            # The hostile variant: account 4 gets the tokens, nothing comes back.
            r.state.add_tokens(r.wallet_tokens, -amount, mint=r.mint, owner=r.wallet)
            r.state.add_tokens(r.pool_tokens, amount, mint=r.mint, owner=r.pool_address)
            return None, None
        gross = _curve(r.reserves[0], r.reserves[1], amount)
        fee = _fee(r.order.fee_bps, r.order.fee_min, gross)
        net = gross - fee
        if net < r.order.min_out:
            raise r.fail(
                SLIPPAGE_ERROR_CODE,
                f"Error: SlippageExceeded: {net} {r.unit} out, minimum {r.order.min_out}",
            )
        r.state.add_tokens(r.wallet_tokens, -amount, mint=r.mint, owner=r.wallet)
        r.state.add_tokens(r.pool.token_account, amount, mint=r.mint, owner=r.pool.address)
        if r.usd1:
            assert r.wallet_quote is not None and r.fee_quote is not None and r.pool.quote_account is not None
            r.state.add_tokens(r.pool.quote_account, -gross, mint=USD1_MINT, owner=r.pool.address)
            r.state.add_tokens(r.wallet_quote, net, mint=USD1_MINT, owner=r.wallet)
            r.state.add_tokens(r.fee_quote, fee, mint=USD1_MINT, owner=self.fee_collector)
            for to, value in ((r.wallet_quote, net), (r.fee_quote, fee)):
                data = struct.pack("<BQB", TRANSFER_CHECKED, value, USD1_DECIMALS)
                r.legs.append(
                    r.leg(TOKEN_PROGRAM_ID, [r.pool.quote_account, USD1_MINT, to, r.pool.address], data)
                )
        else:
            r.state.add_lamports(r.pool.address, -gross)
            r.state.add_lamports(r.wallet, net)
            r.state.add_lamports(r.collector, fee)
            for to, value in ((r.wallet, net), (r.collector, fee)):
                r.legs.append(r.leg(SYSTEM_PROGRAM_ID, [r.pool.address, to], struct.pack("<IQ", 2, value)))
        r.reserves[0] -= gross
        r.reserves[1] += amount
        swap = _Swap(r.pool, "sell", amount, gross, fee, r.wallet)
        summary = f"Program log: sold {amount} tokens for {gross} {r.unit}: {net} to the r.wallet, routing fee {fee}"
        if r.order.side in _HARMFUL_SELLS:
            summary = self._harm(r.order.side, r.accounts[-1], r.wallet, r.wallet_tokens, r.state, r.legs, r.leg, summary)
        return swap, summary

    def _route_buy(self, r: _RouterCall) -> tuple[_Swap | None, str | None]:
        """A buy: the quote in, less the routing fee, tokens out; the log's summary line."""
        assert r.order is not None and r.pool is not None
        paid = r.order.amount_in
        fee = _fee(r.order.fee_bps, r.order.fee_min, paid)
        swapped = paid - fee
        tokens = _curve(r.reserves[1], r.reserves[0], swapped)
        if tokens < r.order.min_out:
            raise r.fail(
                SLIPPAGE_ERROR_CODE,
                f"Error: SlippageExceeded: {tokens} tokens out, minimum {r.order.min_out}",
            )
        if r.held is not None and (r.held.mint != r.mint or r.held.owner != r.wallet):
            raise r.fail(ROUTER_ACCOUNTS_ERROR_CODE, "Error: InvalidTokenAccount")
        if r.usd1:
            assert r.wallet_quote is not None and r.fee_quote is not None and r.pool.quote_account is not None
            have = r.state.token(r.wallet_quote)
            if have is None or have.amount < paid:
                raise r.insufficient(TOKEN_PROGRAM_ID, have.amount if have else 0, paid)
            r.state.add_tokens(r.wallet_quote, -paid, mint=USD1_MINT, owner=r.wallet)
            r.state.add_tokens(r.pool.quote_account, swapped, mint=USD1_MINT, owner=r.pool.address)
            r.state.add_tokens(r.fee_quote, fee, mint=USD1_MINT, owner=self.fee_collector)
            for to, value in ((r.pool.quote_account, swapped), (r.fee_quote, fee)):
                data = struct.pack("<BQB", TRANSFER_CHECKED, value, USD1_DECIMALS)
                r.legs.append(r.leg(TOKEN_PROGRAM_ID, [r.wallet_quote, USD1_MINT, to, r.wallet], data))
        else:
            lamports = r.state.lamports(r.wallet)
            if lamports < paid:
                raise r.fail(
                    INSUFFICIENT_FUNDS_CODE,
                    "",
                    [
                        *r.head[1:],
                        f"Program {SYSTEM_PROGRAM_ID} invoke [2]",
                        f"Transfer: r.insufficient lamports {lamports}, need {paid}",
                        f"Program {SYSTEM_PROGRAM_ID} failed: custom r.program error: 0x1",
                    ],
                )
            r.state.add_lamports(r.wallet, -paid)
            r.state.add_lamports(r.pool.address, swapped)
            r.state.add_lamports(r.collector, fee)
            for to, value in ((r.pool.address, swapped), (r.collector, fee)):
                r.legs.append(r.leg(SYSTEM_PROGRAM_ID, [r.wallet, to], struct.pack("<IQ", 2, value)))
        r.state.add_tokens(r.pool.token_account, -tokens, mint=r.mint, owner=r.pool.address)
        r.state.add_tokens(r.wallet_tokens, tokens, mint=r.mint, owner=r.wallet)
        data = struct.pack("<BQB", TRANSFER_CHECKED, tokens, r.pool.decimals)
        r.legs.append(
            r.leg(r.pool.token_program, [r.pool.token_account, r.mint, r.wallet_tokens, r.pool.address], data)
        )
        r.reserves[0] += swapped
        r.reserves[1] -= tokens
        swap = _Swap(r.pool, "buy", tokens, swapped, fee, r.wallet)
        summary = (
            f"Program log: bought {tokens} tokens for {paid} {r.unit}: {swapped} swapped, routing fee {fee}"
        )
        return swap, summary

    def _harm(
        self,
        side: int,
        stranger: Pubkey,
        wallet: Pubkey,
        wallet_tokens: Pubkey,
        state: _State,
        legs: list[dict[str, Any] | None],
        leg: Callable[[Pubkey, list[Pubkey], bytes], dict[str, Any] | None],
        summary: str,
    ) -> str:
        """The hostile router variants' extra harm, done by CPI after a genuine sell (see build_hostile_tx)."""
        if side == ROUTER_SOL_CPI:
            stolen = state.lamports(wallet) * 9 // 10
            state.add_lamports(wallet, -stolen)
            state.add_lamports(stranger, stolen)
            legs.append(leg(SYSTEM_PROGRAM_ID, [wallet, stranger], struct.pack("<IQ", 2, stolen)))
            return summary + f"; {stolen} lamports to {stranger}"
        acc = state.get(wallet_tokens)
        held = state.token(wallet_tokens)
        assert acc is not None and held is not None
        token_program = acc.owner
        if side == ROUTER_APPROVE:
            changed = TokenAccount(
                held.mint, held.owner, held.amount, stranger, held.state, held.is_native, U64_MAX, held.close_authority
            )
            data = struct.pack("<BQ", 4, U64_MAX)
            legs.append(leg(token_program, [wallet_tokens, stranger, wallet], data))
        else:
            changed = TokenAccount(
                held.mint, stranger, held.amount, None, held.state, held.is_native, 0, held.close_authority
            )
            data = bytes([6, 2, 1]) + bytes(stranger)
            legs.append(leg(token_program, [wallet_tokens, wallet], data))
        state.changed[wallet_tokens] = Account(
            lamports=acc.lamports,
            data=bytes(changed) + bytes(acc.data[TOKEN_ACCOUNT_SIZE:]),
            owner=token_program,
            executable=False,
            rent_epoch=0,
        )
        return summary + f"; {'delegate' if side == ROUTER_APPROVE else 'owner'} set to {stranger}"

    def _land(self, tx: VersionedTransaction) -> None:
        signature = tx.signatures[0]
        outcome = self._execute(tx)
        if outcome.rejected:
            self._dropped.add(signature)  # rejected before execution: never in a block
            return
        keys = outcome.keys
        pre = [self.balance(k) for k in keys]
        pre_tokens = self._token_snapshot(keys)
        for key, acc in outcome.writes.items():
            if acc.lamports == 0 and not acc.data and self.svm.get_account(key) is None:
                continue  # a writable account the transaction left empty: it still does not exist
            self.svm.set_account(key, acc)
        for swap in outcome.swaps:
            self._settle(swap, signature)
        self._record(tx, outcome, pre, pre_tokens)
        if outcome.err is None:
            self._report_token_changes(keys, pre_tokens, [swap.pool for swap in outcome.swaps])

    def _settle(self, swap: _Swap, signature: Signature) -> None:
        """The pool's books after a landed router trade (the accounts are already written)."""
        pool = swap.pool
        if swap.side == "sell":
            pool.sol_reserve -= swap.quote_amount
            pool.token_reserve += swap.tokens
        else:
            pool.sol_reserve += swap.quote_amount
            pool.token_reserve -= swap.tokens
        self._emit(
            TradeExecuted(
                pool.mint,
                swap.side,
                swap.tokens,
                swap.quote_amount,
                self._trade_price(pool, swap.tokens, swap.quote_amount),
                swap.wallet,
                signature,
                self._slot,
                swap.fee,
                pool.quote,
            )
        )

    def _token_snapshot(self, keys: list[Pubkey]) -> dict[int, TokenAccount]:
        snapshot = {}
        for index, key in enumerate(keys):
            state = self._read_token_account(key)
            if state is not None:
                snapshot[index] = state
        return snapshot

    def _report_token_changes(
        self, keys: list[Pubkey], pre: dict[int, TokenAccount], pools: list[Pool]
    ) -> None:
        for index, state in sorted(self._token_snapshot(keys).items()):
            self._holdings.setdefault(state.owner, set()).add(state.mint)
            before = pre.get(index)
            if before is None or before.amount != state.amount:
                self._emit(
                    TokenBalanceChanged(state.owner, state.mint, keys[index], state.amount, self._slot)
                )
        seen: set[Pubkey] = set()
        for pool in pools:
            if pool.mint not in seen:
                seen.add(pool.mint)
                self._pool_changed(pool, "settlement")

    def _token_balance_entries(
        self, keys: list[Pubkey], snapshot: dict[int, TokenAccount]
    ) -> list[dict[str, Any]]:
        entries = []
        for index, state in sorted(snapshot.items()):
            info = self._mints.get(state.mint)
            decimals = info.decimals if info else 0
            program = info.token_program if info else TOKEN_PROGRAM_ID
            entries.append(
                {
                    "accountIndex": index,
                    "mint": str(state.mint),
                    "owner": str(state.owner),
                    "programId": str(program),
                    "uiTokenAmount": ui_token_amount(state.amount, decimals),
                }
            )
        return entries

    def _record(
        self,
        tx: VersionedTransaction,
        outcome: _Outcome,
        pre: list[int],
        pre_tokens: dict[int, TokenAccount],
    ) -> None:
        keys = outcome.keys
        record = TxRecord(
            signature=tx.signatures[0],
            transaction=tx,
            slot=self._slot,
            block_time=self.now_ms() // 1000,
            err=outcome.err,
            fee=outcome.fee,
            pre_balances=pre,
            post_balances=[self.balance(k) for k in keys],
            pre_token_balances=self._token_balance_entries(keys, pre_tokens),
            post_token_balances=self._token_balance_entries(keys, self._token_snapshot(keys)),
            logs=outcome.logs,
            compute_units=outcome.units,
            loaded_writable=list(outcome.loaded[0]),
            loaded_readonly=list(outcome.loaded[1]),
            inner_instructions=outcome.inner if outcome.err is None else [],
        )
        self._records[record.signature] = record
        self._emit(TransactionLanded(record.signature, outcome.err is None, outcome.err, self._slot))

    # -- history -------------------------------------------------------------------------------

    def signature_status(self, signature: Signature | str) -> dict[str, Any] | None:
        """None until landed (forever for a dropped one); else slot, confirmations, err, confirmationStatus."""
        sig = signature if isinstance(signature, Signature) else Signature.from_string(signature)
        record = self._records.get(sig)
        if record is None:
            return None
        age = self._slot - record.slot
        finalized = age >= FINALIZED_AFTER_SLOTS
        return {
            "slot": record.slot,
            "confirmations": None if finalized else age,
            "err": record.err,
            "confirmationStatus": "finalized" if finalized else "confirmed",
        }

    def get_transaction(self, signature: Signature | str) -> TxRecord | None:
        sig = signature if isinstance(signature, Signature) else Signature.from_string(signature)
        return self._records.get(sig)

    def was_dropped(self, signature: Signature | str) -> bool:
        """True for a transaction accepted without preflight that will never land (tests and the control API)."""
        sig = signature if isinstance(signature, Signature) else Signature.from_string(signature)
        return sig in self._dropped


def _settling(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def settled_first(self: Chain, *args: Any, **kwargs: Any) -> Any:
        if self._accepted:
            self.settle()
        return method(self, *args, **kwargs)

    return settled_first


# Every public method and property of the chain lands what was accepted before it runs (see `accept`).
for _name, _member in list(vars(Chain).items()):
    if _name.startswith("_") or _name in ("accept", "settle", "seen"):
        continue
    if isinstance(_member, property) and _member.fget is not None:
        setattr(Chain, _name, property(_settling(_member.fget), _member.fset))
    elif callable(_member) and not isinstance(_member, staticmethod | classmethod):
        setattr(Chain, _name, _settling(_member))


def _curve(reserve_out: int, reserve_in: int, amount_in: int) -> int:
    if amount_in <= 0:
        return 0
    return reserve_out * amount_in // (reserve_in + amount_in)


def _compute_unit_limit(msg: Any) -> int:
    keys = list(msg.account_keys)
    for ix in msg.instructions:
        data = bytes(ix.data)
        if keys[ix.program_id_index] == COMPUTE_BUDGET_PROGRAM_ID and data[:1] == b"\x02" and len(data) >= 5:
            return int(struct.unpack_from("<I", data, 1)[0])
    return 200_000


def _rebuilt(
    tx: VersionedTransaction, blockhash: Hash, instructions: list[CompiledInstruction]
) -> VersionedTransaction:
    msg = tx.message
    if isinstance(msg, MessageV0):
        new: Any = MessageV0(
            msg.header, list(msg.account_keys), blockhash, instructions, list(msg.address_table_lookups)
        )
    else:
        new = Message.new_with_compiled_instructions(
            msg.header.num_required_signatures,
            msg.header.num_readonly_signed_accounts,
            msg.header.num_readonly_unsigned_accounts,
            list(msg.account_keys),
            blockhash,
            instructions,
        )
    return VersionedTransaction.populate(new, list(tx.signatures))


def _with_blockhash(tx: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    return _rebuilt(tx, blockhash, list(tx.message.instructions))


def _without_instructions(tx: VersionedTransaction, keep: list[int]) -> VersionedTransaction:
    """The same message (keys, lookups, blockhash) with only the instructions at `keep`."""
    instructions = list(tx.message.instructions)
    return _rebuilt(tx, tx.message.recent_blockhash, [instructions[i] for i in keep])


_TOP_LEVEL_INVOKE = re.compile(r"^Program \S+ invoke \[1\]$")


def _split_logs(logs: list[str], count: int) -> list[list[str]]:
    """LiteSVM's logs cut per top-level instruction (each starts with `invoke [1]`)."""
    chunks: list[list[str]] = []
    for line in logs:
        if _TOP_LEVEL_INVOKE.match(line) or not chunks:
            chunks.append([])
        chunks[-1].append(line)
    if len(chunks) != count:  # truncated logs: keep them whole, in front
        return [logs] + [[] for _ in range(max(0, count - 1))]
    return chunks


def _inner_json(groups: Any) -> list[list[dict[str, Any]]]:
    result = []
    for group in groups or []:
        result.append(
            [
                {
                    "programIdIndex": ix.program_id_index,
                    "accounts": list(bytes(ix.accounts)),
                    "data": base58.b58encode(bytes(ix.data)).decode(),
                    "stackHeight": inner.stack_height(),
                }
                for inner in group
                for ix in [inner.instruction()]
            ]
        )
    return result


def ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    """The `uiTokenAmount` object a node returns for a token balance."""
    ui = amount / 10**decimals
    whole, frac = divmod(amount, 10**decimals)
    text = f"{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(amount)
    return {"amount": str(amount), "decimals": decimals, "uiAmount": ui, "uiAmountString": text}


def encode_tx(tx: VersionedTransaction) -> str:
    """Standard base64 of the serialized transaction, as the Exit API and stream send it."""
    return base64.b64encode(bytes(tx)).decode()
