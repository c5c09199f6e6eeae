"""The transaction guard: never sign what you have not checked, and check what it does, not what it calls.

The LaserSell stream hands the bot ready-made, unsigned transactions. A compromised or spoofed stream
could hand over anything, so before a wallet key is decrypted a transaction passes two checks against an
intent built from the bot's own records and the chain (never from the frame that carried it):

1. The structural check (`check_sell` / `check_buy`), on the decoded message:
   - it decodes (legacy or v0), every index points inside the account list, keys are unique;
   - the fee payer is the wallet and it is the only required signature;
   - v0 address lookup tables are resolved (`resolve_lookup_tables` reads each table from the chain) and
     every rule sees the loaded accounts like inline ones (a program id is never loaded);
   - Compute Budget: the priority fee (unit price x unit limit) is capped;
   - System: no durable-nonce operation, Assign or plain CreateAccount; top-level transfers out of the
     wallet are summed against the tip (sells) or the spend plus tip (buys);
   - SPL Token / Token-2022 at top level: no Approve, SetAuthority, Burn; no transfer out of the
     wallet (an exit swaps inside the router); CloseAccount pays the wallet;
   - Associated Token Account: only accounts the wallet owns and pays for, a few at most;
   - known DEX programs: the decodable pump.fun / PumpSwap / Raydium LaunchLab instructions are counted.
   Programs the guard knows are a fast path only. The LaserSell Router's id is not published, so an
   unknown program is never refused for its id: it is listed in `GuardReport.unknown_programs`, and an
   instruction of it handed the wallet must also be handed the position's mint and no other token
   account of the wallet.
2. The effect check (`check_effect`), on a simulation (`bot.exits.executor` runs it): the wallet and
   every account the transaction may write, before and after. Refused unless the position's token
   account loses at most the intended amount, no other token account of the wallet loses anything or
   gains a delegate, owner or close authority, nothing of the wallet is closed but to the wallet, the
   wallet's SOL falls by at most fee + priority fee + tip cap (+ the spend for a buy) + rent for the
   wallet's new accounts, System transfers out of the wallet (top level and by CPI) stay within the tip
   (or spend plus tip), the wallet stays a plain System account, a sell pays something back, and the
   simulation succeeded. An unknown program therefore passes exactly when its effect is that trade.

A token withdrawal to an allow-listed address has its own intent (`TokenWithdrawIntent`): its structure
(`check_token_withdrawal`) is compute-budget instructions, at most one idempotent creation of the destination's
associated token account paid by the wallet, and exactly one SPL / Token-2022 `TransferChecked` of the stated
mint and amount from the wallet's associated token account to it; its effect (`check_withdrawal_effect`) is
exactly that: the wallet's token balance falls by the amount, the destination's rises by it, the wallet's SOL
falls by no more than the fee and that account's rent, and no other account changes. It is signed only on a
simulation: the executor never waives the effect check for it.

When the simulation cannot run, a transaction that calls only known programs may pass on the structural
check; any other is "could not be verified" and nothing is signed (see the executor).

Residual risk, stated plainly: within the intended amount, a hostile router could sell at a poor price
(the slippage bound is the router's own argument), and a sell's proceeds can hide the rent of a token
account it closes to someone else.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from solders.address_lookup_table_account import AddressLookupTable
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.token.state import TokenAccount
from solders.transaction import VersionedTransaction

from bot.metrics import guard_refused  # /metrics: refusals by rule

COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
MEMO_V1_PROGRAM = Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")
ADDRESS_LOOKUP_TABLE_PROGRAM = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")

NATIVE_MINT = Pubkey.from_string("So11111111111111111111111111111111111111112")
USD1_MINT = Pubkey.from_string("USD1ttGY1N17NEEHLmELoaybftRBUSErhqYiQzvEmuB")

# The DEX programs behind the stream's market types (ids checked against public program registries).
DEX_PROGRAMS: dict[Pubkey, str] = {
    Pubkey.from_string("6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"): "pump.fun",
    Pubkey.from_string("pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA"): "PumpSwap",
    Pubkey.from_string("dbcij3LWUppWqq96dh6gJWwBifmcGfLSB5D4DuSMaqN"): "Meteora DBC",
    Pubkey.from_string("cpamdpZCGKUy5JxQXB4dcpGPiikHawvSWAd6mEn1sGG"): "Meteora DAMM v2",
    Pubkey.from_string("LanMV9sAd7wArD4vJFi2qDdfnVhFxYSUg6eADduJ3uj"): "Raydium LaunchLab",
    Pubkey.from_string("CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C"): "Raydium CPMM",
}

TOKEN_PROGRAMS = frozenset({TOKEN_PROGRAM, TOKEN_2022_PROGRAM})
QUOTE_MINTS = frozenset({NATIVE_MINT, USD1_MINT})

PROGRAM_NAMES: dict[Pubkey, str] = {
    COMPUTE_BUDGET_PROGRAM: "Compute Budget",
    SYSTEM_PROGRAM: "System",
    TOKEN_PROGRAM: "SPL Token",
    TOKEN_2022_PROGRAM: "Token-2022",
    ASSOCIATED_TOKEN_PROGRAM: "Associated Token Account",
    MEMO_PROGRAM: "Memo",
    MEMO_V1_PROGRAM: "Memo",
    **DEX_PROGRAMS,
}

# 0.01 SOL: far above any sane priority fee, far below what a fee-burning attack would want.
DEFAULT_MAX_PRIORITY_FEE_LAMPORTS = 10_000_000
# An exit needs at most its token account and a wrapped-SOL account; a few more is harmless.
MAX_NEW_ACCOUNTS = 3
# Token accounts with extensions are bigger than 165 bytes, but nothing we sign needs more than this.
MAX_TOKEN_ACCOUNT_SPACE = 1024

_LAMPORTS_PER_SOL = Decimal(1_000_000_000)
LAMPORTS_PER_SIGNATURE = 5000
# Rent-exempt reserve: (128 bytes of metadata + data) x 3480 lamports per byte-year x 2 years.
_RENT_LAMPORTS_PER_BYTE = 3480 * 2
_ACCOUNT_STORAGE_OVERHEAD = 128

# Compute budget defaults applied by the runtime when the transaction does not set a limit.
_DEFAULT_UNITS_PER_INSTRUCTION = 200_000
_MAX_COMPUTE_UNITS = 1_400_000


def _anchor_discriminator(name: str) -> bytes:
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


# Anchor instructions of pump.fun / PumpSwap / Raydium LaunchLab, with the byte offset of the u64
# argument that carries the tokens sold (sells) or the most quote the trade may spend (buys).
_DEX_SELLS: dict[bytes, tuple[str, int]] = {
    _anchor_discriminator("sell"): ("sell", 8),  # (amount, min_quote_out)
    _anchor_discriminator("sell_exact_in"): ("sell_exact_in", 8),  # (amount_in, min_out, fee)
    _anchor_discriminator("sell_exact_out"): ("sell_exact_out", 16),  # (amount_out, max_in, fee)
}
_DEX_BUYS: dict[bytes, tuple[str, int]] = {
    _anchor_discriminator("buy"): ("buy", 16),  # (amount_out, max_quote_in)
    _anchor_discriminator("buy_exact_in"): ("buy_exact_in", 8),  # (amount_in, min_out, fee)
    _anchor_discriminator("buy_exact_out"): ("buy_exact_out", 16),  # (amount_out, max_in, fee)
    _anchor_discriminator("buy_exact_sol_in"): ("buy_exact_sol_in", 8),  # (sol_in, min_tokens)
    _anchor_discriminator("buy_exact_quote_in"): ("buy_exact_quote_in", 8),  # (quote_in, min_base)
}

_SYSTEM_REFUSED = {
    0: "create an account that would need a second signature",
    4: "advance a durable nonce",
    5: "withdraw from a nonce account",
    6: "initialize a nonce account",
    7: "change a nonce account's authority",
    8: "allocate account space",
    9: "allocate account space",
    12: "upgrade a nonce account",
}


class GuardRefusal(Exception):
    """The guard would not sign: ``rule`` is a stable code, ``str()`` a sentence for the trader."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"Refused to sign: {detail}")
        self.rule = rule

        guard_refused(rule)
        self.detail = detail


@dataclass(frozen=True)
class SellIntent:
    """What the trader agreed to: sell at most ``max_tokens`` of ``mint`` held by ``wallet``."""

    wallet: Pubkey
    mint: Pubkey
    token_account: Pubkey | None
    max_tokens: int
    max_tip_lamports: int
    token_program: Pubkey | None = None


@dataclass(frozen=True)
class BuyIntent:
    """What the trader agreed to: spend at most ``max_sol_lamports`` (plus tip) on ``mint``."""

    wallet: Pubkey
    mint: Pubkey
    max_sol_lamports: int
    max_tip_lamports: int


@dataclass(frozen=True)
class TokenWithdrawIntent:
    """What the user agreed to: send exactly ``amount`` base units of ``mint`` from the wallet's associated token
    account to ``destination``'s (an allow-listed owner), creating that account if it is missing."""

    wallet: Pubkey
    mint: Pubkey
    token_program: Pubkey
    destination: Pubkey
    amount: int
    decimals: int

    @property
    def source_account(self) -> Pubkey:
        return associated_token_address(self.wallet, self.mint, self.token_program)

    @property
    def destination_account(self) -> Pubkey:
        return associated_token_address(self.destination, self.mint, self.token_program)


@dataclass(frozen=True)
class GuardReport:
    """What a checked transaction does, for display and logging."""

    tokens_out: int
    sol_out: int
    priority_fee_lamports: int
    programs: tuple[str, ...]
    dex_quote_in_max: int = 0
    unknown_programs: tuple[Pubkey, ...] = ()  # only a simulation can vouch for these
    fee_lamports: int = 0  # signatures plus priority fee
    writable: tuple[Pubkey, ...] = ()  # every account the transaction may write, lookup-table ones included


@functools.lru_cache(maxsize=8192)
def associated_token_address(wallet: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM) -> Pubkey:
    """The wallet's associated token account for ``mint`` under ``token_program``.

    Remembered: a derivation is a search over bumps with a SHA-256 each, and the guard asks for the same
    few a dozen times per transaction (a burst of a hundred sells paid about 1,200 of them)."""
    address, _bump = Pubkey.find_program_address(
        [bytes(wallet), bytes(token_program), bytes(mint)], ASSOCIATED_TOKEN_PROGRAM
    )
    return address


def _wallet_token_accounts(wallet: Pubkey, mint: Pubkey, listed: set[Pubkey]) -> Iterator[tuple[Pubkey, Pubkey]]:
    """(other mint, the wallet's associated token account for it) for every account of an instruction that could
    be another token's mint, under both token programs."""
    for other_mint in listed - QUOTE_MINTS - {mint, wallet}:
        for token_program in TOKEN_PROGRAMS:
            yield other_mint, associated_token_address(wallet, other_mint, token_program)


_NOT_DEX = frozenset({COMPUTE_BUDGET_PROGRAM, SYSTEM_PROGRAM, *TOKEN_PROGRAMS, ASSOCIATED_TOKEN_PROGRAM, MEMO_PROGRAM,
                      MEMO_V1_PROGRAM})


async def derive_ahead(tx: VersionedTransaction, wallet: Pubkey, mint: Pubkey, fetch: AccountFetcher) -> None:
    """Work out now, into `associated_token_address`'s cache, the addresses the structural check derives for the
    instructions of `tx` that are handed `wallet` (two per other account they list, a SHA-256 search each):
    run while the trader reads the message, the check at the tap finds them ready. This checks nothing and
    refuses nothing (the check does, at the tap); a table it cannot read or decode just leaves less derived."""
    message = tx.message
    static = list(message.account_keys)
    keys = list(static)
    if isinstance(message, MessageV0) and message.address_table_lookups:
        writable: list[Pubkey] = []
        readonly: list[Pubkey] = []
        for lookup in message.address_table_lookups:
            found = await fetch(str(lookup.account_key))
            if found is None or found[0] != str(ADDRESS_LOOKUP_TABLE_PROGRAM):
                return
            try:
                addresses = list(AddressLookupTable.deserialize(found[1]).addresses)
            except Exception:  # solders raises its own error types for bad bytes: nothing to derive from it
                return
            for indexes, out in ((lookup.writable_indexes, writable), (lookup.readonly_indexes, readonly)):
                out.extend(addresses[index] for index in bytes(indexes) if index < len(addresses))
        keys += writable + readonly
    for instruction in message.instructions:
        if instruction.program_id_index >= len(static) or static[instruction.program_id_index] in _NOT_DEX:
            continue
        accounts = {keys[index] for index in bytes(instruction.accounts) if index < len(keys)}
        if wallet in accounts:
            for _derived in _wallet_token_accounts(wallet, mint, accounts):
                pass


def format_sol(lamports: int) -> str:
    """Lamports as a trader reads them: ``2.5 SOL``."""
    text = format(Decimal(lamports) / _LAMPORTS_PER_SOL, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} SOL"


def _short(key: Pubkey) -> str:
    text = str(key)
    return f"{text[:4]}…{text[-4:]}"


def _rent_exempt(space: int) -> int:
    return (_ACCOUNT_STORAGE_OVERHEAD + space) * _RENT_LAMPORTS_PER_BYTE


def _u64(data: bytes, offset: int, what: str) -> int:
    if len(data) < offset + 8:
        raise GuardRefusal("malformed", f"the {what} instruction is cut short")
    return int.from_bytes(data[offset : offset + 8], "little")


def _u32(data: bytes, offset: int, what: str) -> int:
    if len(data) < offset + 4:
        raise GuardRefusal("malformed", f"the {what} instruction is cut short")
    return int.from_bytes(data[offset : offset + 4], "little")


@dataclass
class _SeedAccount:
    lamports: int
    space: int


@dataclass
class _Review:
    """One pass over the instructions; ``side`` is ``"sell"`` or ``"buy"``."""

    side: str
    wallet: Pubkey
    mint: Pubkey
    extra_programs: frozenset[Pubkey]
    position_account: Pubkey | None = None
    position_token_program: Pubkey | None = None
    tokens_out: int = 0
    sol_out: int = 0
    dex_quote_in: int = 0
    new_accounts: int = 0
    unit_limit: int | None = None
    unit_price: int | None = None
    budget_seen: set[int] = field(default_factory=set)
    seed_accounts: dict[Pubkey, _SeedAccount] = field(default_factory=dict)
    closed_to_wallet: set[Pubkey] = field(default_factory=set)
    programs: list[str] = field(default_factory=list)
    other_instructions: int = 0
    router: Pubkey | None = None
    unknown: list[Pubkey] = field(default_factory=list)
    foreign_account: GuardRefusal | None = None

    # Compute Budget -------------------------------------------------------------------------
    def compute_budget(self, data: bytes) -> None:
        if not data:
            raise GuardRefusal("malformed", "a compute budget instruction is empty")
        kind = data[0]
        if kind in self.budget_seen:
            raise GuardRefusal("malformed", "the transaction sets the same compute budget twice")
        self.budget_seen.add(kind)
        if kind == 1:  # RequestHeapFrame
            _u32(data, 1, "compute budget")
        elif kind == 2:  # SetComputeUnitLimit
            self.unit_limit = _u32(data, 1, "compute budget")
        elif kind == 3:  # SetComputeUnitPrice, micro-lamports per unit
            self.unit_price = _u64(data, 1, "compute budget")
        elif kind == 4:  # SetLoadedAccountsDataSizeLimit
            _u32(data, 1, "compute budget")
        else:
            raise GuardRefusal("compute_budget", "the transaction uses an unknown compute budget instruction")

    def priority_fee(self) -> int:
        default_limit = _DEFAULT_UNITS_PER_INSTRUCTION * self.other_instructions
        limit = min(self.unit_limit if self.unit_limit is not None else default_limit, _MAX_COMPUTE_UNITS)
        price = self.unit_price or 0
        return -(-price * limit // 1_000_000)  # the runtime rounds up

    # System -------------------------------------------------------------------------------
    def system(self, data: bytes, accounts: list[Pubkey]) -> None:
        kind = _u32(data, 0, "System")
        if kind == 2:  # Transfer
            lamports = _u64(data, 4, "System transfer")
            source, destination = self._need(accounts, 2, "System transfer")[:2]
            self._sol_from_wallet(source, destination, lamports)
        elif kind == 11:  # TransferWithSeed: from an address derived from the base (the signer)
            lamports = _u64(data, 4, "System transfer")
            _source, base, destination = self._need(accounts, 3, "System transfer")[:3]
            self._sol_from_wallet(base, destination, lamports)
        elif kind == 3:  # CreateAccountWithSeed
            self._create_with_seed(data, accounts)
        elif kind in (1, 10):
            raise GuardRefusal("assign", "the transaction would hand an account over to another program")
        elif kind in _SYSTEM_REFUSED:
            raise GuardRefusal(
                "system_instruction_not_allowed",
                f"the transaction would {_SYSTEM_REFUSED[kind]}, which an exit never needs",
            )
        else:
            raise GuardRefusal(
                "system_instruction_not_allowed", "the transaction uses an unknown System instruction"
            )

    def _sol_from_wallet(self, source: Pubkey, destination: Pubkey, lamports: int) -> None:
        if source != self.wallet:
            raise GuardRefusal(
                "sol_transfer_foreign_account",
                f"the transaction moves SOL out of {_short(source)}, not your wallet",
            )
        if destination != self.wallet:
            self.sol_out += lamports

    def _create_with_seed(self, data: bytes, accounts: list[Pubkey]) -> None:
        funder, created = self._need(accounts, 2, "create account")[:2]
        seed_len = _u64(data, 36, "create account")
        offset = 44 + seed_len
        lamports = _u64(data, offset, "create account")
        space = _u64(data, offset + 8, "create account")
        if len(data) < offset + 48:
            raise GuardRefusal("malformed", "the create account instruction is cut short")
        owner = Pubkey.from_bytes(data[offset + 16 : offset + 48])
        if funder != self.wallet:
            raise GuardRefusal(
                "sol_transfer_foreign_account",
                f"the transaction funds an account from {_short(funder)}, not your wallet",
            )
        if owner not in TOKEN_PROGRAMS:
            raise GuardRefusal(
                "create_account_foreign_owner",
                f"the transaction would create an account owned by {_short(owner)}, not a token account",
            )
        if space > MAX_TOKEN_ACCOUNT_SPACE:
            raise GuardRefusal(
                "create_account_foreign_owner", "the transaction would create an oversized account"
            )
        self._count_new_account()
        self.seed_accounts[created] = _SeedAccount(lamports, space)

    # SPL Token / Token-2022 ---------------------------------------------------------------------
    def token(self, program: Pubkey, data: bytes, accounts: list[Pubkey]) -> None:
        if not data:
            raise GuardRefusal("malformed", "a token instruction is empty")
        kind = data[0]
        if kind == 3:  # Transfer
            amount = _u64(data, 1, "token transfer")
            source, destination, authority = self._need(accounts, 3, "token transfer")[:3]
            self._token_out(program, source, destination, authority, None, amount)
        elif kind == 12:  # TransferChecked
            amount = _u64(data, 1, "token transfer")
            if len(data) < 10:
                raise GuardRefusal("malformed", "the token transfer instruction is cut short")
            source, mint, destination, authority = self._need(accounts, 4, "token transfer")[:4]
            self._token_out(program, source, destination, authority, mint, amount)
        elif kind == 9:  # CloseAccount
            account, destination = self._need(accounts, 3, "close account")[:2]
            if destination != self.wallet:
                raise GuardRefusal(
                    "close_account_foreign",
                    f"the transaction would close a token account and send its SOL to {_short(destination)}, "
                    "not your wallet",
                )
            self.closed_to_wallet.add(account)
        elif kind == 17:  # SyncNative only refreshes a wrapped-SOL balance
            self._need(accounts, 1, "sync native")
        elif kind == 1:  # InitializeAccount: owner is the third account
            self._own_account(self._need(accounts, 3, "initialize account")[2])
        elif kind in (16, 18):  # InitializeAccount2/3: owner is in the data
            if len(data) < 33:
                raise GuardRefusal("malformed", "the initialize account instruction is cut short")
            self._need(accounts, 2, "initialize account")
            self._own_account(Pubkey.from_bytes(data[1:33]))
        elif kind in (4, 13):
            raise GuardRefusal(
                "token_approve", "the transaction would let someone else spend your tokens (token approval)"
            )
        elif kind == 6:
            raise GuardRefusal(
                "set_authority", "the transaction would change who controls one of your token accounts"
            )
        elif kind in (8, 15):
            raise GuardRefusal("token_burn", "the transaction would burn tokens")
        else:
            raise GuardRefusal(
                "token_instruction_not_allowed",
                f"the transaction uses a token instruction ({kind}) that an exit never needs",
            )

    def _own_account(self, owner: Pubkey) -> None:
        if owner != self.wallet:
            raise GuardRefusal(
                "token_account_foreign_owner",
                f"the transaction would set up a token account owned by {_short(owner)}, not your wallet",
            )

    def _position_account_for(self, program: Pubkey) -> Pubkey:
        if self.position_account is not None:
            return self.position_account
        return associated_token_address(self.wallet, self.mint, self.position_token_program or program)

    def _token_out(
        self,
        program: Pubkey,
        source: Pubkey,
        destination: Pubkey,
        authority: Pubkey,
        mint: Pubkey | None,
        amount: int,
    ) -> None:
        if self.side == "buy":
            raise GuardRefusal(
                "token_transfer_in_buy",
                "the buy would move tokens out of your wallet, which a buy never does",
            )
        if source != self._position_account_for(program):
            raise GuardRefusal(
                "token_transfer_foreign_account",
                f"the transaction would move tokens out of {_short(source)}, not the account of this position",
            )
        if authority != self.wallet:
            raise GuardRefusal(
                "token_transfer_foreign_authority",
                f"the token transfer is authorised by {_short(authority)}, not your wallet",
            )
        if mint is not None and mint != self.mint:
            raise GuardRefusal(
                "token_transfer_wrong_mint",
                f"the transaction would move a different token ({_short(mint)}) than this position's",
            )
        if destination != source:
            # Every LaserSell exit swaps inside the router's own instruction; a plain top-level transfer out of
            # the wallet is never part of one, whoever receives it.
            raise GuardRefusal(
                "token_transfer_out",
                f"the transaction would hand {amount:,} token units straight to {_short(destination)} with a plain "
                "transfer; a LaserSell exit never does that",
            )

    # Associated Token Account --------------------------------------------------------------------
    def associated_token(self, data: bytes, accounts: list[Pubkey]) -> None:
        if data and data[0] not in (0, 1):
            raise GuardRefusal(
                "ata_instruction_not_allowed",
                "the transaction uses a token account instruction an exit never needs",
            )
        payer, _account, owner, _mint, _system, token_program = self._need(
            accounts, 6, "create token account"
        )[:6]
        if (payer != self.wallet or owner != self.wallet) and self.foreign_account is None:
            # refused once every instruction was read: what the account is for (a theft) says more
            self.foreign_account = GuardRefusal(
                "ata_foreign_owner",
                f"the transaction would create a token account for {_short(owner)} paid by {_short(payer)}; "
                "only your own accounts are expected",
            )
        if token_program not in TOKEN_PROGRAMS:
            raise GuardRefusal(
                "malformed", "the token account would be created under an unknown token program"
            )
        self._count_new_account()

    def _count_new_account(self) -> None:
        self.new_accounts += 1
        if self.new_accounts > MAX_NEW_ACCOUNTS:
            raise GuardRefusal(
                "too_many_new_accounts",
                f"the transaction would create more than {MAX_NEW_ACCOUNTS} accounts and spend your SOL on rent",
            )

    # DEX programs ------------------------------------------------------------------------------
    def dex(self, program: Pubkey, data: bytes, accounts: list[Pubkey]) -> None:
        if self.wallet in accounts:
            self._dex_accounts(program, accounts)
        if program not in DEX_PROGRAMS:
            return  # caller-approved program: nothing more we can decode
        head = data[:8]
        if head in _DEX_BUYS:
            name, offset = _DEX_BUYS[head]
            if self.side == "sell":
                raise GuardRefusal(
                    "dex_buy_in_sell", f"the sell contains a {PROGRAM_NAMES[program]} buy ({name})"
                )
            self.dex_quote_in += _u64(data, offset, f"{PROGRAM_NAMES[program]} {name}")
        elif head in _DEX_SELLS:
            name, offset = _DEX_SELLS[head]
            if self.side == "buy":
                raise GuardRefusal(
                    "dex_sell_in_buy", f"the buy contains a {PROGRAM_NAMES[program]} sell ({name})"
                )
            self.tokens_out += _u64(data, offset, f"{PROGRAM_NAMES[program]} {name}")

    def _dex_accounts(self, program: Pubkey, accounts: list[Pubkey]) -> None:
        name = PROGRAM_NAMES.get(program, _short(program))
        listed = set(accounts)
        if self.mint not in listed:
            raise GuardRefusal(
                "dex_wrong_mint", f"the {name} instruction uses your wallet to trade a different token"
            )
        for other_mint, address in _wallet_token_accounts(self.wallet, self.mint, listed):
            if address in listed:
                raise GuardRefusal(
                    "dex_foreign_token_account",
                    f"the {name} instruction touches your token account for another token ({_short(other_mint)})",
                )

    # Helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _need(accounts: list[Pubkey], count: int, what: str) -> list[Pubkey]:
        if len(accounts) < count:
            raise GuardRefusal("malformed", f"the {what} instruction is missing accounts")
        return accounts

    def note_program(self, program: Pubkey) -> None:
        name = PROGRAM_NAMES.get(program) or ("router" if program == self.router else str(program))
        if name not in self.programs:
            self.programs.append(name)

    def settle_seed_accounts(self) -> None:
        # Rent parked in a wrapped-SOL account comes back when it is closed to the wallet.
        for account, created in self.seed_accounts.items():
            if account in self.closed_to_wallet:
                self.sol_out += max(0, created.lamports - _rent_exempt(created.space))
            else:
                self.sol_out += created.lamports


def _decode(tx: VersionedTransaction | bytes) -> VersionedTransaction:
    if isinstance(tx, VersionedTransaction):
        return tx
    try:
        return VersionedTransaction.from_bytes(bytes(tx))
    except Exception as error:  # solders raises its own error types for bad bytes
        raise GuardRefusal("malformed", "the transaction could not be decoded") from error


@dataclass(frozen=True)
class LoadedAddresses:
    """The accounts a v0 transaction loads from its lookup tables, as read from the chain."""

    writable: tuple[Pubkey, ...] = ()
    readonly: tuple[Pubkey, ...] = ()


AccountFetcher = Callable[[str], Awaitable[tuple[str, bytes] | None]]


async def resolve_lookup_tables(tx: VersionedTransaction | bytes, fetch: AccountFetcher) -> LoadedAddresses | None:
    """Read every lookup table the transaction uses (``fetch`` is getAccountInfo: owner and raw data) and return
    the addresses it loads; None for a transaction without tables. Raises GuardRefusal when a table is missing,
    is not a lookup table, or lacks an index the transaction uses."""
    tx = _decode(tx)
    message = tx.message
    if not isinstance(message, MessageV0) or not message.address_table_lookups:
        return None
    writable: list[Pubkey] = []
    readonly: list[Pubkey] = []
    for lookup in message.address_table_lookups:
        found = await fetch(str(lookup.account_key))
        if found is None:
            raise GuardRefusal("address_lookup_table", f"the lookup table {_short(lookup.account_key)} does not exist")
        owner, data = found
        if owner != str(ADDRESS_LOOKUP_TABLE_PROGRAM):
            raise GuardRefusal(
                "address_lookup_table", f"the account {_short(lookup.account_key)} is not an address lookup table"
            )
        try:
            addresses = list(AddressLookupTable.deserialize(data).addresses)
        except Exception as error:  # solders raises its own error types for bad bytes
            raise GuardRefusal("address_lookup_table", "a lookup table could not be decoded") from error
        for indexes, out in ((lookup.writable_indexes, writable), (lookup.readonly_indexes, readonly)):
            for index in bytes(indexes):
                if index >= len(addresses):
                    raise GuardRefusal(
                        "address_lookup_table", f"the transaction uses an entry missing from {_short(lookup.account_key)}"
                    )
                out.append(addresses[index])
    return LoadedAddresses(tuple(writable), tuple(readonly))


def _review(
    tx: VersionedTransaction | bytes,
    review: _Review,
    max_priority_fee_lamports: int,
    loaded: LoadedAddresses | None = None,
) -> list[Pubkey]:
    tx = _decode(tx)
    message = tx.message
    if not isinstance(message, Message | MessageV0):
        raise GuardRefusal("malformed", "the transaction message is of an unknown kind")
    static = list(message.account_keys)
    keys = _account_keys(message, static, loaded)
    _check_signers(tx, message, static, keys, review)
    for program, data, accounts in _instructions(message, static, keys, review):
        _review_instruction(review, program, data, accounts)
    if review.foreign_account is not None:
        raise review.foreign_account
    review.settle_seed_accounts()

    _check_priority_fee(review, max_priority_fee_lamports)
    return keys


def _account_keys(message: Message | MessageV0, static: list[Pubkey], loaded: LoadedAddresses | None) -> list[Pubkey]:
    """Every account the transaction uses, in the runtime's order (static keys, then lookup table entries)."""
    keys = list(static)
    if isinstance(message, MessageV0) and message.address_table_lookups:
        if loaded is None:
            raise GuardRefusal(
                "address_lookup_table",
                "the transaction loads accounts from lookup tables that were not read from the chain",
            )
        expected = sum(len(t.writable_indexes) + len(t.readonly_indexes) for t in message.address_table_lookups)
        if len(loaded.writable) + len(loaded.readonly) != expected:
            raise GuardRefusal("address_lookup_table", "the lookup tables read do not match the transaction")
        # the runtime's order: static keys, then every table's writable entries, then every readonly entry
        keys += list(loaded.writable) + list(loaded.readonly)
    elif loaded is not None and (loaded.writable or loaded.readonly):
        raise GuardRefusal("address_lookup_table", "accounts were loaded for a transaction without lookup tables")
    return keys


def _check_signers(
    tx: VersionedTransaction, message: Message | MessageV0, static: list[Pubkey], keys: list[Pubkey], review: _Review
) -> None:
    """The wallet pays and is the only signer; the header and signatures agree with the message."""
    header = message.header
    required = header.num_required_signatures
    if not static or required == 0 or required > len(static):
        raise GuardRefusal("malformed", "the transaction has no valid fee payer")
    if len(set(keys)) != len(keys):
        raise GuardRefusal("malformed", "the transaction lists the same account twice")
    if len(tx.signatures) != required:
        raise GuardRefusal("malformed", "the transaction's signature count does not match its message")
    if keys[0] != review.wallet:
        raise GuardRefusal(
            "fee_payer",
            f"the transaction is paid for by {_short(keys[0])}, not your wallet {_short(review.wallet)}",
        )
    if required != 1:
        others = ", ".join(_short(key) for key in keys[1:required])
        raise GuardRefusal("extra_signer", f"the transaction also needs the signature of {others}")
    if header.num_readonly_signed_accounts != 0 or header.num_readonly_unsigned_accounts > len(keys) - 1:
        raise GuardRefusal("malformed", "the transaction's account header is inconsistent")


def _instructions(
    message: Message | MessageV0, static: list[Pubkey], keys: list[Pubkey], review: _Review
) -> list[tuple[Pubkey, bytes, list[Pubkey]]]:
    """(program, data, accounts) of every instruction, each index checked; unknown programs noted."""
    instructions = []
    for instruction in message.instructions:
        index = instruction.program_id_index
        if index == 0 or index >= len(static):  # a program is never loaded from a lookup table
            raise GuardRefusal("malformed", "an instruction points at a program outside the transaction")
        raw_accounts = instruction.accounts
        if any(position >= len(keys) for position in raw_accounts):
            raise GuardRefusal("malformed", "an instruction points at an account outside the transaction")
        program = keys[index]
        if program not in PROGRAM_NAMES and program not in review.extra_programs:
            # The LaserSell Router's id is not published: an unknown program is judged by its simulated effect
            # (check_effect), never by its id. Without a simulation it cannot pass (see GuardReport.unknown_programs).
            if program not in review.unknown:
                review.unknown.append(program)
            if review.router is None:
                review.router = program
        instructions.append((program, bytes(instruction.data), [keys[position] for position in raw_accounts]))
    return instructions


def _review_instruction(review: _Review, program: Pubkey, data: bytes, accounts: list[Pubkey]) -> None:
    review.note_program(program)
    if program == COMPUTE_BUDGET_PROGRAM:
        review.compute_budget(data)
        return
    review.other_instructions += 1
    if program == SYSTEM_PROGRAM:
        review.system(data, accounts)
    elif program in TOKEN_PROGRAMS:
        review.token(program, data, accounts)
    elif program == ASSOCIATED_TOKEN_PROGRAM:
        review.associated_token(data, accounts)
    elif program in (MEMO_PROGRAM, MEMO_V1_PROGRAM):
        pass  # a memo only records text
    else:
        review.dex(program, data, accounts)


def _writable(tx: VersionedTransaction | bytes, keys: list[Pubkey], loaded: LoadedAddresses | None) -> tuple[Pubkey, ...]:
    message = _decode(tx).message
    header = message.header
    static = len(message.account_keys)
    signed = header.num_required_signatures
    out = [k for i, k in enumerate(keys[:signed]) if i < signed - header.num_readonly_signed_accounts]
    out += keys[signed : static - header.num_readonly_unsigned_accounts]
    if loaded is not None:
        out += list(loaded.writable)
    return tuple(out)


def _report(review: _Review, tx: VersionedTransaction | bytes, keys: list[Pubkey], loaded: LoadedAddresses | None) -> GuardReport:
    message = _decode(tx).message
    priority = review.priority_fee()
    return GuardReport(
        tokens_out=review.tokens_out,
        sol_out=review.sol_out,
        priority_fee_lamports=priority,
        programs=tuple(review.programs),
        dex_quote_in_max=review.dex_quote_in,
        unknown_programs=tuple(review.unknown),
        fee_lamports=LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures + priority,
        writable=_writable(tx, keys, loaded),
    )


def check_sell(
    tx: VersionedTransaction | bytes,
    intent: SellIntent,
    *,
    extra_programs: Iterable[Pubkey] = frozenset(),
    max_priority_fee_lamports: int = DEFAULT_MAX_PRIORITY_FEE_LAMPORTS,
    loaded: LoadedAddresses | None = None,
) -> GuardReport:
    """Check that ``tx`` only sells ``intent``'s position; raise :class:`GuardRefusal` otherwise."""
    review = _Review(
        side="sell",
        wallet=intent.wallet,
        mint=intent.mint,
        extra_programs=frozenset(extra_programs),
        position_account=intent.token_account,
        position_token_program=intent.token_program,
    )
    keys = _review(tx, review, max_priority_fee_lamports, loaded)
    if review.tokens_out > intent.max_tokens:
        raise GuardRefusal(
            "token_transfer_too_large",
            f"the transaction would sell {review.tokens_out:,} token units, more than the "
            f"{intent.max_tokens:,} of this position",
        )
    if review.sol_out > intent.max_tip_lamports:
        raise GuardRefusal(
            "sol_transfer_too_large",
            f"the transaction would send {format_sol(review.sol_out)} out of your wallet, more than your "
            f"{format_sol(intent.max_tip_lamports)} tip",
        )
    return _report(review, tx, keys, loaded)


def check_buy(
    tx: VersionedTransaction | bytes,
    intent: BuyIntent,
    *,
    extra_programs: Iterable[Pubkey] = frozenset(),
    max_priority_fee_lamports: int = DEFAULT_MAX_PRIORITY_FEE_LAMPORTS,
    loaded: LoadedAddresses | None = None,
) -> GuardReport:
    """Check that ``tx`` only buys ``intent.mint`` within the spend; raise :class:`GuardRefusal` otherwise."""
    review = _Review(
        side="buy",
        wallet=intent.wallet,
        mint=intent.mint,
        extra_programs=frozenset(extra_programs),
    )
    keys = _review(tx, review, max_priority_fee_lamports, loaded)
    if review.dex_quote_in > intent.max_sol_lamports:
        raise GuardRefusal(
            "dex_spend_too_large",
            f"the buy allows spending up to {format_sol(review.dex_quote_in)}, more than your "
            f"{format_sol(intent.max_sol_lamports)}",
        )
    budget = intent.max_sol_lamports + intent.max_tip_lamports
    if review.sol_out > budget:
        raise GuardRefusal(
            "sol_transfer_too_large",
            f"the transaction would send {format_sol(review.sol_out)} out of your wallet, more than your "
            f"{format_sol(intent.max_sol_lamports)} buy plus {format_sol(intent.max_tip_lamports)} tip",
        )
    return _report(review, tx, keys, loaded)


def check_token_withdrawal(
    tx: VersionedTransaction | bytes,
    intent: TokenWithdrawIntent,
    *,
    max_priority_fee_lamports: int = DEFAULT_MAX_PRIORITY_FEE_LAMPORTS,
    loaded: LoadedAddresses | None = None,
) -> GuardReport:
    """Check that ``tx`` is a token withdrawal and nothing else: compute-budget instructions, at most one
    idempotent creation of the destination's associated token account paid by the wallet, and exactly one
    ``TransferChecked`` of ``intent.amount`` of ``intent.mint`` from the wallet's account to that account,
    authorised by the wallet alone. Raise :class:`GuardRefusal` otherwise."""
    tx = _decode(tx)
    message = tx.message
    if not isinstance(message, Message | MessageV0):
        raise GuardRefusal("malformed", "the transaction message is of an unknown kind")
    review = _Review(side="withdraw", wallet=intent.wallet, mint=intent.mint, extra_programs=frozenset())
    static = list(message.account_keys)
    keys = _account_keys(message, static, loaded)
    _check_signers(tx, message, static, keys, review)
    source, destination = intent.source_account, intent.destination_account
    creates = transfers = 0
    for program, data, accounts in _instructions(message, static, keys, review):
        review.note_program(program)
        if program == COMPUTE_BUDGET_PROGRAM:
            review.compute_budget(data)
        elif program == ASSOCIATED_TOKEN_PROGRAM:
            expected = [intent.wallet, destination, intent.destination, intent.mint, SYSTEM_PROGRAM, intent.token_program]
            if data != b"\x01" or accounts != expected:
                raise GuardRefusal(
                    "withdrawal_destination",
                    "the transaction would create a token account other than the one of the address you chose",
                )
            creates += 1
        elif program == intent.token_program and data[:1] == b"\x0c":
            if len(data) != 10 or len(accounts) != 4:
                raise GuardRefusal("malformed", "the token transfer instruction is malformed")
            if accounts[1] != intent.mint or data[9] != intent.decimals:
                raise GuardRefusal(
                    "withdrawal_wrong_mint",
                    f"the transfer moves another token ({_short(accounts[1])}) than the one you chose",
                )
            if accounts[0] != source or accounts[3] != intent.wallet:
                raise GuardRefusal(
                    "withdrawal_source", f"the transfer takes tokens from {_short(accounts[0])}, not your wallet's account"
                )
            if accounts[2] != destination:
                raise GuardRefusal(
                    "withdrawal_destination",
                    f"the transfer goes to {_short(accounts[2])}, not the token account of the address you chose",
                )
            amount = _u64(data, 1, "token transfer")
            if amount != intent.amount:
                raise GuardRefusal(
                    "withdrawal_amount",
                    f"the transfer moves {amount:,} token units, not the {intent.amount:,} you chose",
                )
            transfers += 1
        else:
            raise GuardRefusal(
                "withdrawal_shape",
                f"a token withdrawal is one token transfer; this one also calls {PROGRAM_NAMES.get(program, _short(program))}",
            )
    if transfers != 1 or creates > 1:
        raise GuardRefusal("withdrawal_shape", "a token withdrawal is exactly one token transfer")
    _check_priority_fee(review, max_priority_fee_lamports)
    review.tokens_out = intent.amount
    return _report(review, tx, keys, loaded)


# ---- the effect check: what the simulated transaction does to the wallet ---------------------------------


class SimulationFailed(GuardRefusal):
    """The transaction fails when simulated: nothing is signed; ``err`` is the node's error, to explain it."""

    def __init__(self, err: object) -> None:
        super().__init__("simulation_failed", f"the transaction fails when simulated ({err})")
        self.err = err


class Unverifiable(Exception):
    """The effect check could not run (the RPC is down, the simulation errored); ``str()`` says why."""


@dataclass(frozen=True)
class AccountView:
    """An account as the chain shows it (before the transaction, or after it in a simulation)."""

    lamports: int
    owner: Pubkey
    data: bytes


@dataclass(frozen=True)
class Simulated:
    """A simulation's answer: ``before`` and ``after`` hold the same addresses (None: no such account);
    ``sol_transfers`` are the System transfers the transaction makes, top level and by CPI, as
    (source, destination, lamports)."""

    err: object
    before: dict[Pubkey, AccountView | None]
    after: dict[Pubkey, AccountView | None]
    sol_transfers: tuple[tuple[Pubkey, Pubkey, int], ...] = ()
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Effect:
    """What the transaction would do to the wallet, for the result message."""

    sol_change: int  # the wallet's SOL after minus before (fees included)
    tokens_out: int  # of the position (sells) / tokens in (buys)
    quote_in: int  # SOL (lamports) or USD1 base units a sell pays back


@dataclass(frozen=True)
class _Token:
    mint: Pubkey
    owner: Pubkey
    amount: int
    delegate: Pubkey | None
    close_authority: Pubkey | None


def _token_of(view: AccountView | None) -> _Token | None:
    if view is None or view.owner not in TOKEN_PROGRAMS or len(view.data) < 165:
        return None
    if len(view.data) > 165 and view.data[165] != 2:  # Token-2022: account type 2 is a token account
        return None
    try:
        state = TokenAccount.from_bytes(view.data[:165])
    except Exception:  # solders raises its own error types for bad bytes
        return None
    return _Token(state.mint, state.owner, state.amount, state.delegate, state.close_authority)


def _mint_name(mint: Pubkey, position_mint: Pubkey, label: str) -> str:
    if mint == position_mint:
        return label
    if mint == USD1_MINT:
        return "USD1"
    if mint == NATIVE_MINT:
        return "wrapped SOL"
    return f"another token ({_short(mint)})"


def check_effect(
    sim: Simulated,
    intent: SellIntent | BuyIntent,
    report: GuardReport,
    *,
    label: str = "this token",
    rent_per_account: int = _rent_exempt(165),
) -> Effect:
    """Refuse (GuardRefusal) unless the simulated effect on every account of the wallet is the intended trade:
    tokens out of the position only (sells) or into the bought mint only (buys), no delegate, owner or close
    authority change, nothing closed but to the wallet, SOL out within fee + tip cap (+ the spend for a buy)
    + rent for the wallet's new accounts, the wallet still a plain System account, and the simulation a success."""
    wallet = intent.wallet
    sell = isinstance(intent, SellIntent)
    if sim.err is not None:
        raise SimulationFailed(sim.err)
    after_wallet = sim.after.get(wallet)
    before_wallet = sim.before.get(wallet)
    if after_wallet is None or before_wallet is None:
        raise GuardRefusal("wallet_closed", "the transaction would empty and close your wallet")
    if after_wallet.owner != SYSTEM_PROGRAM or after_wallet.data:
        raise GuardRefusal(
            "wallet_reassigned",
            f"the transaction would hand your wallet over to the program {_short(after_wallet.owner)}",
        )
    tally = _Tally()
    for address in sim.after:
        if address != wallet:
            _tally_account(tally, sim, address, intent, label)
    sol_change = after_wallet.lamports - before_wallet.lamports
    sent = _sol_sent(sim, wallet)
    created_rent = min(tally.created_rent, rent_per_account * MAX_NEW_ACCOUNTS)
    if isinstance(intent, SellIntent):
        cap = _check_sell(intent, tally, sent, label)
        tally.quote_in += max(0, sol_change + report.fee_lamports + sent + created_rent - tally.closed_lamports)
        if tally.tokens_out > 0 and tally.quote_in <= 0:
            taker = _token_taker(sim, intent.mint, wallet)
            raise GuardRefusal(
                "sell_pays_nothing",
                f"the transaction would take {tally.tokens_out:,} units of {label}"
                + (f" to {_short(taker)}" if taker else "")
                + " and pay nothing back",
            )
    else:
        cap = intent.max_sol_lamports + intent.max_tip_lamports
        if sent > cap:
            raise GuardRefusal(
                "sol_out",
                f"the transaction would send {format_sol(sent)} out of your wallet, more than your "
                f"{format_sol(intent.max_sol_lamports)} buy plus {format_sol(intent.max_tip_lamports)} tip",
            )
    allowed = report.fee_lamports + cap + created_rent
    if -sol_change > allowed:
        raise GuardRefusal(
            "sol_out",
            f"the transaction would take {format_sol(-sol_change)} from your wallet, more than the "
            f"{format_sol(allowed)} fees, tip{' and buy' if not sell else ''} allow",
        )
    # A closed account's rent must come back (a sell's proceeds can hide a small theft here: a residual risk).
    if tally.closed_lamports and sol_change + allowed < tally.closed_lamports:
        raise GuardRefusal("close_account_foreign", "the transaction would close a token account of yours and keep its SOL")
    return Effect(sol_change=sol_change, tokens_out=tally.tokens_out if sell else tally.tokens_in, quote_in=tally.quote_in)


def check_withdrawal_effect(
    sim: Simulated, intent: TokenWithdrawIntent, report: GuardReport, *, label: str = "this token"
) -> Effect:
    """Refuse (GuardRefusal) unless the simulated effect is exactly the withdrawal: the wallet's token account
    falls by the amount, the destination's account (created if it was missing) rises by it, the wallet's SOL
    falls by no more than the fee and that account's rent, and no other account changes at all."""
    wallet, source, destination = intent.wallet, intent.source_account, intent.destination_account
    if sim.err is not None:
        raise SimulationFailed(sim.err)
    before_wallet, after_wallet = sim.before.get(wallet), sim.after.get(wallet)
    if after_wallet is None or before_wallet is None:
        raise GuardRefusal("wallet_closed", "the transaction would empty and close your wallet")
    if after_wallet.owner != SYSTEM_PROGRAM or after_wallet.data:
        raise GuardRefusal(
            "wallet_reassigned", f"the transaction would hand your wallet over to the program {_short(after_wallet.owner)}"
        )
    rent = _withdrawn_tokens(sim, intent, label)
    for address in sim.after:
        if address not in (wallet, source, destination) and sim.after[address] != sim.before.get(address):
            raise GuardRefusal(
                "withdrawal_other_change", f"the transaction would also change the account {_short(address)}"
            )
    for src, dst, lamports in sim.sol_transfers:
        if src == wallet and dst not in (wallet, destination):
            raise GuardRefusal("sol_out", f"the transaction would send {format_sol(lamports)} to {_short(dst)}")
    sol_change = after_wallet.lamports - before_wallet.lamports
    allowed = report.fee_lamports + rent
    if -sol_change > allowed:
        raise GuardRefusal(
            "sol_out",
            f"the transaction would take {format_sol(-sol_change)} from your wallet, more than the "
            f"{format_sol(allowed)} fee and rent",
        )
    return Effect(sol_change=sol_change, tokens_out=intent.amount, quote_in=0)


def _withdrawn_tokens(sim: Simulated, intent: TokenWithdrawIntent, label: str) -> int:
    """The withdrawal's token move, checked on both accounts; returns the rent of the destination's new account."""
    wallet, source, destination = intent.wallet, intent.source_account, intent.destination_account
    old_source, new_source = _token_of(sim.before.get(source)), _token_of(sim.after.get(source))
    if old_source is None or new_source is None or old_source.owner != wallet or new_source.owner != wallet:
        raise GuardRefusal("token_account_owner_change", "the transaction would close or hand over your token account")
    if (new_source.delegate, new_source.close_authority) != (old_source.delegate, old_source.close_authority):
        raise GuardRefusal("token_delegate", "the transaction would change who may spend or close your token account")
    if new_source.mint != intent.mint or old_source.amount - new_source.amount != intent.amount:
        raise GuardRefusal(
            "withdrawal_amount",
            f"the transaction would take {old_source.amount - new_source.amount:,} units of {label}, "
            f"not the {intent.amount:,} you chose",
        )
    before_dest, after_dest = sim.before.get(destination), sim.after.get(destination)
    old_dest, new_dest = _token_of(before_dest), _token_of(after_dest)
    if new_dest is None or new_dest.owner != intent.destination or new_dest.mint != intent.mint:
        raise GuardRefusal("withdrawal_destination", "the tokens would not arrive in the account of the address you chose")
    if new_dest.amount - (old_dest.amount if old_dest is not None else 0) != intent.amount:
        raise GuardRefusal("withdrawal_destination", f"the address you chose would not receive {intent.amount:,} units")
    rent = 0
    if before_dest is None and after_dest is not None:
        rent = after_dest.lamports
        if rent > _rent_exempt(MAX_TOKEN_ACCOUNT_SPACE):
            raise GuardRefusal("sol_out", f"the new token account would cost {format_sol(rent)} in rent")
    return rent


@dataclass
class _Tally:
    """What the simulation did to the wallet's token accounts, added up."""

    created_rent: int = 0
    closed_lamports: int = 0
    tokens_out: int = 0
    tokens_in: int = 0
    quote_in: int = 0


def _tally_account(
    tally: _Tally, sim: Simulated, address: Pubkey, intent: SellIntent | BuyIntent, label: str
) -> None:
    """Count one account's change; refuse a change to one of the wallet's token accounts the trade never makes."""
    wallet, sell = intent.wallet, isinstance(intent, SellIntent)
    old, new = sim.before.get(address), sim.after.get(address)
    old_token, new_token = _token_of(old), _token_of(new)
    mine_before = old_token is not None and old_token.owner == wallet
    mine_after = new_token is not None and new_token.owner == wallet
    if not mine_before and not mine_after:
        return
    if mine_before and old is not None and new is None:
        tally.closed_lamports += old.lamports
        return
    if mine_after and not mine_before:
        if old_token is None and new is not None:
            tally.created_rent += new.lamports  # a new account of the wallet: rent it keeps
        if new_token is not None and new_token.amount:
            _tally_new_tokens(tally, new_token, intent, label)
        return
    assert old_token is not None
    name = _mint_name(old_token.mint, intent.mint, label)
    if new_token is None or not mine_after:
        to = _short(new_token.owner) if new_token is not None else "another program"
        raise GuardRefusal(
            "token_account_owner_change",
            f"the transaction would make {to} the owner of your {name} account {_short(address)}",
        )
    if new_token.delegate is not None and new_token.delegate != old_token.delegate:
        raise GuardRefusal(
            "token_delegate",
            f"the transaction would let {_short(new_token.delegate)} spend your {name} (a delegate on {_short(address)})",
        )
    if new_token.close_authority != old_token.close_authority:
        raise GuardRefusal(
            "token_close_authority", f"the transaction would change who may close your {name} account"
        )
    change = new_token.amount - old_token.amount
    position_account = (
        isinstance(intent, SellIntent) and old_token.mint == intent.mint
        and (intent.token_account is None or address == intent.token_account)
    )
    if change < 0:
        if not position_account:
            raise GuardRefusal(
                "foreign_token_out",
                f"the transaction would take {-change:,} units of {name} out of your wallet",
            )
        tally.tokens_out += -change
    elif change > 0:
        if sell and old_token.mint in QUOTE_MINTS:
            tally.quote_in += change
        elif not sell and old_token.mint == intent.mint:
            tally.tokens_in += change
        else:
            raise GuardRefusal(
                "foreign_token_in", f"the transaction would change your {name} balance, which this trade never does"
            )


def _tally_new_tokens(tally: _Tally, new_token: _Token, intent: SellIntent | BuyIntent, label: str) -> None:
    """Tokens arriving in an account the wallet did not own before: only the quote (sells) or the bought mint."""
    mint = new_token.mint
    if isinstance(intent, SellIntent) and mint in QUOTE_MINTS:
        tally.quote_in += new_token.amount
    elif not isinstance(intent, SellIntent) and mint == intent.mint:
        tally.tokens_in += new_token.amount
    else:
        raise GuardRefusal(
            "foreign_token_in", f"the transaction would put {_mint_name(mint, intent.mint, label)} into your wallet"
        )


def _sol_sent(sim: Simulated, wallet: Pubkey) -> int:
    """Lamports the wallet sends to other accounts (rent parked in its own new accounts excepted)."""
    sent = 0
    for source, destination, lamports in sim.sol_transfers:
        if source != wallet or destination == wallet:
            continue
        created = _token_of(sim.after.get(destination)) if sim.before.get(destination) is None else None
        if created is not None and created.owner == wallet:
            continue  # rent parked in the wallet's own new account
        sent += lamports
    return sent


def _check_sell(intent: SellIntent, tally: _Tally, sent: int, label: str) -> int:
    """A sell takes at most the chosen tokens and sends at most the tip; returns the SOL cap (the tip)."""
    if tally.tokens_out > intent.max_tokens:
        raise GuardRefusal(
            "token_transfer_too_large",
            f"the transaction would take {tally.tokens_out:,} units of {label}, more than the {intent.max_tokens:,} you chose to sell",
        )
    cap = intent.max_tip_lamports
    if sent > cap:
        raise GuardRefusal(
            "sol_out",
            f"the transaction would send {format_sol(sent)} of your SOL to other accounts, more than your "
            f"{format_sol(cap)} tip",
        )
    return cap


def _token_taker(sim: Simulated, mint: Pubkey, wallet: Pubkey) -> Pubkey | None:
    """Who ends up with the tokens: the owner of an account of that mint that gained them."""
    for address, new in sim.after.items():
        token = _token_of(new)
        if token is None or token.mint != mint or token.owner == wallet:
            continue
        old = _token_of(sim.before.get(address))
        if token.amount > (old.amount if old else 0):
            return token.owner
    return None


__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM",
    "COMPUTE_BUDGET_PROGRAM",
    "DEFAULT_MAX_PRIORITY_FEE_LAMPORTS",
    "DEX_PROGRAMS",
    "MEMO_PROGRAM",
    "NATIVE_MINT",
    "SYSTEM_PROGRAM",
    "TOKEN_2022_PROGRAM",
    "TOKEN_PROGRAM",
    "AccountView",
    "BuyIntent",
    "Effect",
    "Simulated",
    "SimulationFailed",
    "Unverifiable",
    "check_effect",
    "GuardRefusal",
    "LoadedAddresses",
    "GuardReport",
    "SellIntent",
    "TokenWithdrawIntent",
    "associated_token_address",
    "check_token_withdrawal",
    "check_withdrawal_effect",
    "check_buy",
    "check_sell",
    "format_sol",
    "resolve_lookup_tables",
]


def _check_priority_fee(review: _Review, max_priority_fee_lamports: int) -> None:
    """Refuse a transaction whose priority fee is above the cap (every kind of trade has the same cap)."""
    fee = review.priority_fee()
    if fee > max_priority_fee_lamports:
        raise GuardRefusal(
            "priority_fee_too_high",
            f"the transaction would pay {format_sol(fee)} in priority fees, more than the "
            f"{format_sol(max_priority_fee_lamports)} limit",
        )
