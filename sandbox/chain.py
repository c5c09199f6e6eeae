"""The sandbox Solana chain: LiteSVM with a slot clock, token pools and LaserSell exit settlement.

`Chain` wraps `solders.litesvm.LiteSVM` (System, SPL Token, Token-2022, Associated Token Account,
Memo and Compute Budget programs) and adds what a trading bot sees of a cluster:

- A slot clock. Sandbox time is `epoch_ms + slot * 400 ms` and only moves when `advance_slots` is
  called (or `run_clock` runs), so tests advance it instead of sleeping. Every slot has a new
  blockhash; a blockhash is valid for 150 slots (`last_valid_block_height = slot + 150`, block
  height == slot here). LiteSVM's own blockhash check is off: ours is the table of recent blockhashes.
- Sending: with preflight, a bad signature is refused (-32003) and a failing simulation is refused
  with -32002 "Transaction simulation failed: <error>" and the simulation result as `data`, exactly
  as a node does. With `skip_preflight`, a transaction with an unknown or expired blockhash or a bad
  signature is accepted and never lands: its status stays null, as on a cluster. Landed transactions
  are final at once ("confirmed", "finalized" 32 slots later). Resending landed bytes is a no-op.
- Mints and pools. `create_mint` makes an SPL mint (the sandbox holds the mint authority) and a
  constant-product pool: a sandbox-owned system account holding the SOL reserve (above its rent
  reserve) and its associated token account holding the token reserve. Curve:
  `sol_out = sol_reserve * tokens / (token_reserve + tokens)`,
  `tokens_out = token_reserve * lamports / (sol_reserve + lamports)` (no pool fee).
- The outside market (`outside_buy`, `market_move`, `drain`, `graduate`) writes balances directly
  with `set_account`, the way a test validator lets you, and emits the same events a trade would.

EXIT SETTLEMENT. The pool program is not on chain; the sandbox settles LaserSell transactions by
their memo, so the transactions themselves are real and signable:

- `build_sell_tx` builds an unsigned v0 transaction (all-zero signature): wallet as fee payer and
  only signer, ComputeBudget SetComputeUnitLimit + SetComputeUnitPrice, SPL Token `TransferChecked`
  of the tokens from the wallet's associated token account to the pool's token account, an optional
  System transfer tip, and the Memo
  `lasersell:sell mint=<mint> tokens=<n> min_out=<lamports> [<memo_tag>]`,
  `min_out = curve proceeds * (1 - slippage_bps / 10000)` at build time.
- When a sell lands the chain prices the transferred tokens on the curve NOW. If the proceeds are at
  least `min_out`, LiteSVM executes the transaction (tokens move, fees and tip are paid) and the
  sandbox then pays the proceeds from the pool account to the wallet and updates the reserves. If
  not, nothing moves except the fee (5000 lamports per signature + priority fee) and the transaction
  is recorded as failed with `InstructionError(<memo instruction index>, Custom(6003))`, the
  slippage error, visible in statuses, `get_transaction` and preflight simulation.
- `build_buy_tx` is the mirror: CreateIdempotent of the wallet's token account, a System transfer of
  the SOL to the pool account, an optional tip and the memo
  `lasersell:buy mint=<mint> sol=<lamports> min_tokens=<n> [<memo_tag>]`. On landing the tokens are
  delivered from the pool's token account to the wallet's, or it fails with Custom(6003) likewise.

Events (`subscribe(callback)`, called synchronously, in order): `TradeExecuted` before the
`TokenBalanceChanged` it causes, then `PoolChanged`; `TransactionLanded` for every landed
transaction.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from solders.account import Account
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0
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

LAMPORTS_PER_SOL = 1_000_000_000
LAMPORTS_PER_SIGNATURE = 5000
EPOCH_MS = 1_700_000_000_000
SLOT_MS = 400
BLOCKHASH_VALID_SLOTS = 150
FINALIZED_AFTER_SLOTS = 32
SLIPPAGE_ERROR_CODE = 6003
DEFAULT_COMPUTE_UNIT_LIMIT = 120_000
DEFAULT_COMPUTE_UNIT_PRICE = 50_000  # micro-lamports per CU: a 6000-lamport priority fee at the limit
TRANSFER_CHECKED = 12
TOKEN_ACCOUNT_SIZE = 165
MINT_SIZE = 82

MEMO_PREFIX = "lasersell:"
_MEMO_FIELD = re.compile(r"(\w+)=(\S+)")

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
    """A constant-product pool: SOL reserve in `address`, token reserve in `token_account`."""

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

    @property
    def price(self) -> float:
        """Lamports per whole token at the spot price."""
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
    sol_reserve: int
    token_reserve: int
    market_type: str
    graduated: bool
    reason: str  # created, trade, market_move, drain, graduation, settlement
    slot: int


@dataclass(frozen=True)
class TradeExecuted:
    mint: Pubkey
    side: str  # "buy" or "sell", from the maker's side
    token_amount: int
    sol_amount: int
    price: float  # lamports per whole token paid or received
    maker: Pubkey
    signature: Signature | None
    slot: int = 0

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
    """A landed transaction (ok or failed), as getTransaction reports it."""

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


@dataclass
class _Settlement:
    side: str
    pool: Pool
    memo_index: int
    tokens: int  # tokens sold (sell) or the minimum tokens asked (buy)
    lamports: int  # SOL paid in (buy) or the minimum proceeds asked (sell)


def _pk(value: PubkeyLike) -> Pubkey:
    return value if isinstance(value, Pubkey) else Pubkey.from_string(str(value))


def error_json(err: Any) -> Any:
    """The node's JSON form of a solders TransactionError ("BlockhashNotFound", {"InstructionError": ..})."""
    if err is None or isinstance(err, str | dict):
        return err
    return json.loads(RpcSimulateTransactionResult(err=err, logs=[]).to_json())["err"]


def error_message(err: Any) -> str:
    """The Display text a node puts after "Transaction simulation failed: "."""
    if isinstance(err, str):
        words = re.sub(r"(?<!^)(?=[A-Z])", " ", err).lower()
        special = {
            "BlockhashNotFound": "Blockhash not found",
            "AlreadyProcessed": "This transaction has already been processed",
            "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
            "InsufficientFundsForFee": "Insufficient funds for fee",
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


def parse_memo(text: str) -> tuple[str, dict[str, str]] | None:
    """`lasersell:sell mint=.. tokens=.. min_out=..` -> ("sell", {...}); None for other memos."""
    if not text.startswith(MEMO_PREFIX):
        return None
    head, _, rest = text[len(MEMO_PREFIX) :].partition(" ")
    return head, dict(_MEMO_FIELD.findall(rest))


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
        self._mints: dict[Pubkey, MintInfo] = {}
        self._holdings: dict[Pubkey, set[Pubkey]] = {}  # owner -> mints it has a token account for
        self._records: dict[Signature, TxRecord] = {}
        self._dropped: set[Signature] = set()  # accepted without preflight, will never land
        self.mint_authority = self.keypair("mint-authority")
        self.market_maker = self.keypair("market-maker")
        self.drainer = self.keypair("drainer")
        self.tip_account = self.keypair("tip-account").pubkey()
        self._ensure_rent_exempt(self.tip_account)
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

    # -- SOL -----------------------------------------------------------------------------------

    def fund(self, pubkey: PubkeyLike, sol: float) -> int:
        """Adds `sol` SOL to an account (creating it); returns the new balance in lamports."""
        return self.fund_lamports(pubkey, round(sol * LAMPORTS_PER_SOL))

    def fund_lamports(self, pubkey: PubkeyLike, lamports: int) -> int:
        key = _pk(pubkey)
        self._add_lamports(key, lamports)
        return self.balance(key)

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
    ) -> Pubkey:
        """A new mint whose whole supply (`token_reserve` whole tokens) sits in a fresh pool."""
        if sol_reserve <= 0 or token_reserve <= 0:
            raise ChainError("a pool needs positive SOL and token reserves")
        if not 0 <= decimals <= 12:
            raise ChainError("decimals must be between 0 and 12")
        label = f"mint:{len(self._mints)}:{symbol}"
        mint = self.keypair(label).pubkey()
        program = TOKEN_2022_PROGRAM_ID if token_2022 else TOKEN_PROGRAM_ID
        supply = round(token_reserve * 10**decimals)
        sol_lamports = round(sol_reserve * LAMPORTS_PER_SOL)
        info = MintInfo(mint, symbol, name or symbol, decimals, supply, program, self.mint_authority.pubkey())
        self._mints[mint] = info
        self._write_mint(info)
        address = self.keypair(f"pool:{mint}").pubkey()
        pool = Pool(
            mint=mint,
            symbol=symbol,
            name=info.name,
            decimals=decimals,
            address=address,
            token_account=get_associated_token_address(address, mint, program),
            sol_reserve=sol_lamports,
            token_reserve=supply,
            token_program=program,
        )
        self._pools[mint] = pool
        self.svm.set_account(
            address,
            Account(
                lamports=self.rent_exempt_minimum(0) + sol_lamports,
                data=b"",
                owner=SYSTEM_PROGRAM_ID,
                executable=False,
                rent_epoch=0,
            ),
        )
        self._set_token_amount(address, mint, supply, emit=False)
        self._pool_changed(pool, "created")
        return mint

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
            if state is not None:
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
        state = TokenAccount(mint, owner, amount, None, TokenAccountState.Initialized, None, 0, None)
        self.svm.set_account(
            ata,
            Account(
                lamports=lamports, data=bytes(state), owner=info.token_program, executable=False, rent_epoch=0
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
        """Lamports the pool pays right now for `tokens` atomic units."""
        pool = self.pool(mint)
        if tokens <= 0:
            return 0
        return pool.sol_reserve * tokens // (pool.token_reserve + tokens)

    def quote_buy(self, mint: PubkeyLike, lamports: int) -> int:
        """Atomic token units the pool gives right now for `lamports`."""
        pool = self.pool(mint)
        if lamports <= 0:
            return 0
        return pool.token_reserve * lamports // (pool.sol_reserve + lamports)

    def price(self, mint: PubkeyLike) -> float:
        """Spot price in lamports per whole token."""
        return self.pool(mint).price

    def market_cap(self, mint: PubkeyLike) -> int:
        """Supply times spot price, in lamports."""
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
            )
        )

    def _trade_price(self, pool: Pool, tokens: int, lamports: int) -> float:
        return lamports * 10**pool.decimals / tokens if tokens else 0.0

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
        """Moves SOL and tokens between the pool and the maker's accounts and reports it."""
        if side == "buy":
            self._add_lamports(maker, -lamports)
            self._add_lamports(pool.address, lamports)
            pool.sol_reserve += lamports
            pool.token_reserve -= tokens
            trade = TradeExecuted(
                pool.mint,
                side,
                tokens,
                lamports,
                self._trade_price(pool, tokens, lamports),
                maker,
                sig,
                self._slot,
            )
            self._emit(trade)
            self._move_tokens(pool.address, maker, pool.mint, tokens)
        else:
            self._add_lamports(pool.address, -lamports)
            self._add_lamports(maker, lamports)
            pool.sol_reserve -= lamports
            pool.token_reserve += tokens
            trade = TradeExecuted(
                pool.mint,
                side,
                tokens,
                lamports,
                self._trade_price(pool, tokens, lamports),
                maker,
                sig,
                self._slot,
            )
            self._emit(trade)
            self._move_tokens(maker, pool.address, pool.mint, tokens)
        self._pool_changed(pool, reason)
        return trade

    # -- the outside market --------------------------------------------------------------------

    def outside_buy(self, wallet: PubkeyLike, mint: PubkeyLike, sol: float) -> int:
        """A buy made elsewhere landing in `wallet`: SOL to the pool (funded if the wallet lacks it),
        tokens to the wallet's associated token account. Returns the tokens bought."""
        key, pool = _pk(wallet), self.pool(mint)
        lamports = round(sol * LAMPORTS_PER_SOL)
        if lamports <= 0:
            raise ChainError("a buy needs a positive SOL amount")
        shortfall = lamports - self.balance(key)
        if shortfall > 0:
            self._add_lamports(key, shortfall)
        tokens = self.quote_buy(pool.mint, lamports)
        self._pool_trade(pool, key, "buy", tokens, lamports, None, "trade")
        return tokens

    def market_move(self, mint: PubkeyLike, pct: float) -> TradeExecuted:
        """A third party trades against the pool so the spot price moves by `pct` percent."""
        pool = self.pool(mint)
        if pct <= -100:
            raise ChainError("a price cannot fall by 100% or more")
        factor = math.sqrt(1 + pct / 100)
        maker = self.market_maker.pubkey()
        if pct >= 0:
            lamports = round(pool.sol_reserve * factor) - pool.sol_reserve
            tokens = self.quote_buy(pool.mint, lamports)
            self._add_lamports(maker, max(0, lamports - self.balance(maker)))
            return self._pool_trade(pool, maker, "buy", tokens, lamports, None, "market_move")
        tokens = round(pool.token_reserve / factor) - pool.token_reserve
        lamports = self.quote_sell(pool.mint, tokens)
        held = self.token_balance(maker, pool.mint)
        if held < tokens:
            # The seller brings tokens from elsewhere: mint them so balances stay consistent.
            self._set_supply(pool.mint, self.mint_info(pool.mint).supply + tokens - held)
            self._set_token_amount(maker, pool.mint, tokens, emit=False)
        return self._pool_trade(pool, maker, "sell", tokens, lamports, None, "market_move")

    def drain(self, mint: PubkeyLike, drain_pct: float) -> tuple[int, int]:
        """Pulls `drain_pct` percent of both reserves out of the pool; returns (lamports, tokens)."""
        pool = self.pool(mint)
        if not 0 < drain_pct < 100:
            raise ChainError("drain_pct must be between 0 and 100 (exclusive)")
        lamports = int(pool.sol_reserve * drain_pct / 100)
        tokens = int(pool.token_reserve * drain_pct / 100)
        drainer = self.drainer.pubkey()
        self._add_lamports(pool.address, -lamports)
        self._add_lamports(drainer, lamports)
        pool.sol_reserve -= lamports
        pool.token_reserve -= tokens
        self._move_tokens(pool.address, drainer, pool.mint, tokens)
        self._pool_changed(pool, "drain")
        return lamports, tokens

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
    ) -> VersionedTransaction:
        """An unsigned v0 sell of `amount_tokens` to the pool (see the module docstring)."""
        owner, pool = _pk(wallet), self.pool(mint)
        if amount_tokens <= 0:
            raise ChainError("amount_tokens must be positive")
        if not 0 <= slippage_bps <= 10_000:
            raise ChainError("slippage_bps must be between 0 and 10000")
        min_out = self.quote_sell(pool.mint, amount_tokens) * (10_000 - slippage_bps) // 10_000
        data = struct.pack("<BQB", TRANSFER_CHECKED, amount_tokens, pool.decimals)
        transfer_ix = Instruction(
            pool.token_program,
            data,
            [
                AccountMeta(self.ata(owner, pool.mint), is_signer=False, is_writable=True),
                AccountMeta(pool.mint, is_signer=False, is_writable=False),
                AccountMeta(pool.token_account, is_signer=False, is_writable=True),
                AccountMeta(owner, is_signer=True, is_writable=True),
            ],
        )
        memo = f"lasersell:sell mint={pool.mint} tokens={amount_tokens} min_out={min_out}"
        return self._unsigned_tx(
            owner,
            [transfer_ix],
            memo,
            memo_tag,
            tip_lamports,
            tip_account,
            compute_unit_limit,
            compute_unit_price,
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
    ) -> VersionedTransaction:
        """An unsigned v0 buy of tokens for `sol_lamports` (see the module docstring)."""
        owner, pool = _pk(wallet), self.pool(mint)
        if sol_lamports <= 0:
            raise ChainError("sol_lamports must be positive")
        if not 0 <= slippage_bps <= 10_000:
            raise ChainError("slippage_bps must be between 0 and 10000")
        min_tokens = self.quote_buy(pool.mint, sol_lamports) * (10_000 - slippage_bps) // 10_000
        create_ata = Instruction(
            ASSOCIATED_TOKEN_PROGRAM_ID,
            bytes([1]),  # CreateIdempotent
            [
                AccountMeta(owner, is_signer=True, is_writable=True),
                AccountMeta(self.ata(owner, pool.mint), is_signer=False, is_writable=True),
                AccountMeta(owner, is_signer=False, is_writable=False),
                AccountMeta(pool.mint, is_signer=False, is_writable=False),
                AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
                AccountMeta(pool.token_program, is_signer=False, is_writable=False),
            ],
        )
        pay = transfer(TransferParams(from_pubkey=owner, to_pubkey=pool.address, lamports=sol_lamports))
        memo = f"lasersell:buy mint={pool.mint} sol={sol_lamports} min_tokens={min_tokens}"
        return self._unsigned_tx(
            owner,
            [create_ata, pay],
            memo,
            memo_tag,
            tip_lamports,
            tip_account,
            compute_unit_limit,
            compute_unit_price,
        )

    def _unsigned_tx(
        self,
        payer: Pubkey,
        body: list[Instruction],
        memo: str,
        memo_tag: str,
        tip_lamports: int,
        tip_account: PubkeyLike | None,
        compute_unit_limit: int,
        compute_unit_price: int,
    ) -> VersionedTransaction:
        if tip_lamports < 0:
            raise ChainError("tip_lamports cannot be negative")
        ixs = [set_compute_unit_limit(compute_unit_limit), set_compute_unit_price(compute_unit_price), *body]
        if tip_lamports:
            tip_to = _pk(tip_account) if tip_account is not None else self.tip_account
            # A tip to an empty account would fail on rent; tip accounts are always funded on a cluster.
            self._ensure_rent_exempt(tip_to)
            ixs.append(transfer(TransferParams(from_pubkey=payer, to_pubkey=tip_to, lamports=tip_lamports)))
        text = f"{memo} {memo_tag}".strip()
        ixs.append(Instruction(MEMO_PROGRAM_ID, text.encode(), []))
        message = MessageV0.try_compile(payer, ixs, [], self.latest_blockhash()[0])
        return VersionedTransaction.populate(
            message, [Signature.default()] * message.header.num_required_signatures
        )

    # -- sending -------------------------------------------------------------------------------

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

    def simulate(self, tx: VersionedTransaction) -> dict[str, Any]:
        """simulateTransaction's value: {"err", "logs", "accounts", "unitsConsumed", "returnData"}."""
        result: dict[str, Any] = {
            "err": None,
            "logs": [],
            "accounts": None,
            "unitsConsumed": 0,
            "returnData": None,
        }
        if tx.signatures[0] in self._records:
            result["err"] = "AlreadyProcessed"
            return result
        if not self.is_blockhash_valid(tx.message.recent_blockhash):
            result["err"] = "BlockhashNotFound"
            return result
        settlement = self._settlement(tx)
        if settlement is not None:
            shortfall = self._slippage_shortfall(settlement)
            if shortfall is not None:
                result["err"] = self._slippage_err(settlement)
                result["logs"] = self._slippage_logs(tx, settlement, shortfall)
                return result
        # simulateTransaction does not verify signatures unless asked (the RPC layer does that).
        self.svm.with_sigverify(False)
        try:
            sim = self.svm.simulate_transaction(tx)
        finally:
            self.svm.with_sigverify(True)
        if isinstance(sim, FailedTransactionMetadata):
            meta = sim.meta()
            result["err"] = error_json(sim.err())
        else:
            meta = sim.meta()
        result["logs"] = list(meta.logs())
        result["unitsConsumed"] = meta.compute_units_consumed()
        return result

    def _settlement(self, tx: VersionedTransaction) -> _Settlement | None:
        """The LaserSell trade a transaction's memo asks for, checked against its instructions."""
        msg = tx.message
        keys = list(msg.account_keys)
        for index, ix in enumerate(msg.instructions):
            if keys[ix.program_id_index] != MEMO_PROGRAM_ID:
                continue
            parsed = parse_memo(bytes(ix.data).decode(errors="replace"))
            if parsed is None:
                continue
            side, fields = parsed
            try:
                pool = self.pool(fields.get("mint", ""))
            except (UnknownMint, ValueError):
                continue
            if side == "sell":
                tokens = self._tokens_sent_to(msg, keys, pool)
                return _Settlement("sell", pool, index, tokens, int(fields.get("min_out", "0")))
            if side == "buy":
                lamports = self._lamports_sent_to(msg, keys, pool.address)
                return _Settlement("buy", pool, index, int(fields.get("min_tokens", "0")), lamports)
        return None

    @staticmethod
    def _tokens_sent_to(msg: Any, keys: list[Pubkey], pool: Pool) -> int:
        total = 0
        for ix in msg.instructions:
            data = bytes(ix.data)
            if keys[ix.program_id_index] != pool.token_program or len(ix.accounts) < 3:
                continue
            if (
                data[:1] == bytes([TRANSFER_CHECKED])
                and len(data) >= 9
                and keys[ix.accounts[2]] == pool.token_account
            ):
                total += struct.unpack_from("<Q", data, 1)[0]
        return total

    @staticmethod
    def _lamports_sent_to(msg: Any, keys: list[Pubkey], to: Pubkey) -> int:
        total = 0
        for ix in msg.instructions:
            data = bytes(ix.data)
            if keys[ix.program_id_index] != SYSTEM_PROGRAM_ID or len(ix.accounts) < 2:
                continue
            if data[:4] == struct.pack("<I", 2) and len(data) >= 12 and keys[ix.accounts[1]] == to:
                total += struct.unpack_from("<Q", data, 4)[0]
        return total

    def _slippage_shortfall(self, s: _Settlement) -> tuple[int, int] | None:
        """(what the curve gives now, the minimum asked) when the curve falls short, else None."""
        if s.side == "sell":
            proceeds = self.quote_sell(s.pool.mint, s.tokens)
            return (proceeds, s.lamports) if proceeds < s.lamports else None
        tokens = self.quote_buy(s.pool.mint, s.lamports)
        return (tokens, s.tokens) if tokens < s.tokens else None

    @staticmethod
    def _slippage_err(s: _Settlement) -> Any:
        return error_json(
            TransactionErrorInstructionError(s.memo_index, InstructionErrorCustom(SLIPPAGE_ERROR_CODE))
        )

    @staticmethod
    def _slippage_logs(tx: VersionedTransaction, s: _Settlement, shortfall: tuple[int, int]) -> list[str]:
        keys = list(tx.message.account_keys)
        logs = []
        for ix in tx.message.instructions[: s.memo_index]:
            program = keys[ix.program_id_index]
            logs += [f"Program {program} invoke [1]", f"Program {program} success"]
        got, wanted = shortfall
        unit = "lamports" if s.side == "sell" else "tokens"
        logs += [
            f"Program {MEMO_PROGRAM_ID} invoke [1]",
            f"Program log: Error: SlippageExceeded: {got} {unit} out, minimum {wanted}",
            f"Program {MEMO_PROGRAM_ID} failed: custom program error: {SLIPPAGE_ERROR_CODE:#x}",
        ]
        return logs

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

    def _land(self, tx: VersionedTransaction) -> None:
        msg = tx.message
        keys = list(msg.account_keys)
        signature = tx.signatures[0]
        pre = [self.balance(k) for k in keys]
        pre_tokens = self._token_snapshot(keys)
        settlement = self._settlement(tx)
        shortfall = self._slippage_shortfall(settlement) if settlement else None
        if settlement is not None and shortfall is not None:
            fee = self.fee_for(tx)
            if self.balance(keys[0]) < fee:
                self._dropped.add(signature)  # cannot pay its fee: never lands
                return
            self._add_lamports(keys[0], -fee)
            self._record(
                tx,
                self._slippage_err(settlement),
                fee,
                pre,
                pre_tokens,
                self._slippage_logs(tx, settlement, shortfall),
                0,
            )
            return
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            meta, err = result.meta(), error_json(result.err())
            if err in ("AccountNotFound", "InsufficientFundsForFee", "BlockhashNotFound", "AlreadyProcessed"):
                self._dropped.add(signature)  # rejected before execution: never in a block
                return
        else:
            meta, err = result, None
        if err is None and settlement is not None:
            self._settle(settlement, keys[0], signature)
        self._record(tx, err, meta.fee(), pre, pre_tokens, list(meta.logs()), meta.compute_units_consumed())
        if err is None:
            self._report_token_changes(keys, pre_tokens, settlement)

    def _settle(self, s: _Settlement, wallet: Pubkey, signature: Signature) -> None:
        """Completes the pool's side of a landed LaserSell trade."""
        pool = s.pool
        if s.side == "sell":
            proceeds = self.quote_sell(pool.mint, s.tokens)
            self._add_lamports(pool.address, -proceeds)
            self._add_lamports(wallet, proceeds)
            pool.sol_reserve -= proceeds
            pool.token_reserve += s.tokens
            self._emit(
                TradeExecuted(
                    pool.mint,
                    "sell",
                    s.tokens,
                    proceeds,
                    self._trade_price(pool, s.tokens, proceeds),
                    wallet,
                    signature,
                    self._slot,
                )
            )
        else:
            tokens = self.quote_buy(pool.mint, s.lamports)
            # The transfer already put the SOL in the pool account.
            pool.sol_reserve += s.lamports
            pool.token_reserve -= tokens
            self._emit(
                TradeExecuted(
                    pool.mint,
                    "buy",
                    tokens,
                    s.lamports,
                    self._trade_price(pool, tokens, s.lamports),
                    wallet,
                    signature,
                    self._slot,
                )
            )
            self._set_token_amount(
                pool.address, pool.mint, self.token_balance(pool.address, pool.mint) - tokens, emit=False
            )
            self._set_token_amount(
                wallet, pool.mint, self.token_balance(wallet, pool.mint) + tokens, emit=False
            )

    def _token_snapshot(self, keys: list[Pubkey]) -> dict[int, TokenAccount]:
        snapshot = {}
        for index, key in enumerate(keys):
            state = self._read_token_account(key)
            if state is not None:
                snapshot[index] = state
        return snapshot

    def _report_token_changes(
        self, keys: list[Pubkey], pre: dict[int, TokenAccount], settlement: Any
    ) -> None:
        for index, state in sorted(self._token_snapshot(keys).items()):
            self._holdings.setdefault(state.owner, set()).add(state.mint)
            before = pre.get(index)
            if before is None or before.amount != state.amount:
                self._emit(
                    TokenBalanceChanged(state.owner, state.mint, keys[index], state.amount, self._slot)
                )
        if settlement is not None:
            self._pool_changed(settlement.pool, "settlement")

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
        err: Any,
        fee: int,
        pre: list[int],
        pre_tokens: dict[int, TokenAccount],
        logs: list[str],
        units: int,
    ) -> None:
        keys = list(tx.message.account_keys)
        record = TxRecord(
            signature=tx.signatures[0],
            transaction=tx,
            slot=self._slot,
            block_time=self.now_ms() // 1000,
            err=err,
            fee=fee,
            pre_balances=pre,
            post_balances=[self.balance(k) for k in keys],
            pre_token_balances=self._token_balance_entries(keys, pre_tokens),
            post_token_balances=self._token_balance_entries(keys, self._token_snapshot(keys)),
            logs=logs,
            compute_units=units,
        )
        self._records[record.signature] = record
        self._emit(TransactionLanded(record.signature, err is None, err, self._slot))

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


def ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    """The `uiTokenAmount` object a node returns for a token balance."""
    ui = amount / 10**decimals
    whole, frac = divmod(amount, 10**decimals)
    text = f"{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(amount)
    return {"amount": str(amount), "decimals": decimals, "uiAmount": ui, "uiAmountString": text}


def encode_tx(tx: VersionedTransaction) -> str:
    """Standard base64 of the serialized transaction, as the Exit API and stream send it."""
    return base64.b64encode(bytes(tx)).decode()
