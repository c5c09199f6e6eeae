"""One executor for every trade the bot signs: guard -> sign -> persist -> send -> confirm -> recover.

Sells (a tap, a card, auto-sell, a ladder level) and buys all come through here; what is particular to
each (the refresh of a stale sell, the slippage retry, the PnL card, the buy's quote) wraps it through
`TradeHooks`. The guard runs first and nothing is signed that it did not pass:

- the structural check (fee payer and sole signer, no nonce, compute-unit price cap, lookup tables read
  from the chain and checked like inline accounts);
- the effect check: `simulateTransaction` with the wallet and every account the transaction may write
  (lookup-table ones included), compared with the same accounts read just before. An unknown program
  (the LaserSell Router's id is not published) passes exactly when that effect is the intended trade.

The simulation runs beside the blockhash check; the balance for the fee check is the wallet's account as read
right before the simulation (asked separately only when the simulation could not run). When it cannot run (the
RPC is down, the simulation errors), a transaction that calls only known programs may pass on the structural
check; any other is refused as "could not be verified", and the trader can retry.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import base58
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from bot.accounts import AccountError
from bot.core import Core
from bot.exits.confirm import SignatureWatcher, follow
from bot.exits.guard import (
    SYSTEM_PROGRAM,
    AccountView,
    BuyIntent,
    Effect,
    GuardRefusal,
    GuardReport,
    LoadedAddresses,
    SellIntent,
    Simulated,
    TokenWithdrawIntent,
    Unverifiable,
    check_buy,
    check_effect,
    check_sell,
    check_token_withdrawal,
    check_withdrawal_effect,
    derive_ahead,
    resolve_lookup_tables,
)
from bot.exits.sender_http import HttpSender, SenderError
from bot.exits.signer import SigningError, sign_transaction
from bot.solana_rpc import RpcError, SignatureStatus, SolanaRpc, TokenHolding
from bot.tasks import BackgroundTasks

log = logging.getLogger("lasersell_bot.executor")

POLL_S = 0.3
BLOCKHASH_CACHE_S = 1.0
AHEAD_S = 30.0  # a guard run ahead stands this long for a tap (same transaction, intent and accounts)
MAX_AHEAD = 4096
LOOKUP_TABLE_CACHE_S = 30.0  # a table's entries at a given index only change if it is closed and made anew
HOLDINGS_CACHE_S = 30.0  # refreshed sooner on every balance_update
MAX_SIMULATED_ACCOUNTS = 100  # getMultipleAccounts' limit
SEND_RETRY_PAUSES_S = (0.2, 0.8)  # before each resend of the same bytes after an answer that said nothing definite
WARM_S = 20.0  # sender connections are warmed at most this often
WARM_GATHER_S = 0.05  # a burst of signals asking for warm connections is answered once, this long after the first


Outcome = TypeVar("Outcome")


class TradeRecords(Protocol):
    """The state machine a trade is persisted in (exit signals, buy orders)."""

    async def set(self, record_id: str, **values: Any) -> None: ...

    async def transition(self, record_id: str, from_states: tuple[str, ...], to_state: str, **values: Any) -> bool: ...


@dataclass(frozen=True)
class Trade:
    """One transaction to sign for one user, and what they agreed to."""

    user_id: int
    wallet: str
    tx: VersionedTransaction
    intent: SellIntent | BuyIntent | TokenWithdrawIntent
    send_mode: str
    records: TradeRecords
    record_id: str
    label: str = "this token"
    check_blockhash: bool = False  # an older transaction: ask the chain whether its blockhash still lives
    check_balance: bool = True


@dataclass(frozen=True)
class Checked:
    report: GuardReport
    effect: Effect | None  # None when the simulation could not run and known programs passed on structure
    fresh: bool
    balance: int | None


class TradeHooks(Generic[Outcome]):
    """What a kind of trade does at each step; each returns the trade's outcome (a sell's Outcome, a buy's state)."""

    async def refused(self, refusal: GuardRefusal) -> Outcome:
        raise NotImplementedError

    async def unverified(self, reason: str) -> Outcome:
        raise NotImplementedError

    async def stale(self) -> Outcome:
        raise NotImplementedError

    async def cannot_pay(self, needed: int, held: int) -> Outcome:
        raise NotImplementedError

    async def signing_failed(self, error: SigningError) -> Outcome:
        raise NotImplementedError

    async def moved_on(self) -> Outcome:
        """The record left "approved" before its signed bytes could be stored (handled elsewhere): nothing was sent."""
        raise NotImplementedError

    async def send_failed(self, error: RpcError, raw: bytes) -> Outcome:
        raise NotImplementedError

    async def sent(self, checked: Checked) -> None:
        return None

    async def settled(self, verdict: str, status: SignatureStatus | None, raw: bytes, signature: str) -> Outcome:
        raise NotImplementedError

    async def still_unknown(self) -> None:
        return None


Key = TypeVar("Key")
Value = TypeVar("Value")


class SharedReads(Generic[Key, Value]):
    """One chain read per key, shared: whoever asks while it is in flight, or within `ttl_s` after it
    answered, gets the same answer (a burst of exits reads a wallet or a lookup table once). A read that
    fails is forgotten, so the next caller asks again; an answer `lasting` says so is kept for good."""

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[Key, tuple[float, asyncio.Future[Value]]] = {}

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)

    async def get(
        self, key: Key, read: Callable[[], Awaitable[Value]], *, fresh: bool = False,
        lasting: Callable[[Value], bool] | None = None,
    ) -> Value:
        now = time.monotonic()
        entry = self._entries.get(key)
        if not fresh and entry is not None:
            asked_at, answer = entry
            if not answer.done() or now - asked_at < self.ttl_s or (
                lasting is not None and not answer.cancelled() and answer.exception() is None
                and lasting(answer.result())
            ):
                return await asyncio.shield(answer)
        if len(self._entries) > self.max_entries:
            self._entries.clear()
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now, future)
        try:
            value = await read()
        except BaseException as exc:
            if self._entries.get(key, (0.0, None))[1] is future:
                del self._entries[key]
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()  # whoever shares it asks again rather than wait for ever
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: the caller gets it below
            raise
        future.set_result(value)
        return value


class AccountReads:
    """Accounts read again for many trades at once: every address asked in the same moment (the taps of one
    burst checking the accounts their checks ahead simulated) is read once, in getMultipleAccounts calls of up
    to 100 addresses that leave together (one JSON-RPC batch) once the moment's callers are all in. The pool
    the hundred sells share is read once, and every tap of the burst sees the chain as it was before any of
    them was sent."""

    def __init__(self, rpc: SolanaRpc) -> None:
        self.rpc = rpc
        self._readers: list[tuple[list[str], asyncio.Future[list[dict[str, Any] | None]]]] = []
        self._reading = BackgroundTasks()

    def read(self, addresses: list[str]) -> asyncio.Future[list[dict[str, Any] | None]]:
        """The accounts as getMultipleAccounts answers them (None for a missing one), to come; RpcError if not."""
        loop = asyncio.get_running_loop()
        if not self._readers:
            loop.call_soon(self._flush)
        future: asyncio.Future[list[dict[str, Any] | None]] = loop.create_future()
        self._readers.append((addresses, future))
        return future

    def _flush(self) -> None:
        readers, self._readers = self._readers, []
        addresses = list(dict.fromkeys(a for wanted, _ in readers for a in wanted))
        self._reading.spawn(self._read(addresses, readers), name="account-reads")

    async def _read(self, addresses: list[str],
                    readers: list[tuple[list[str], asyncio.Future[list[dict[str, Any] | None]]]]) -> None:
        try:
            chunks = await asyncio.gather(*(self.rpc.get_accounts(addresses[start : start + MAX_SIMULATED_ACCOUNTS])
                                            for start in range(0, len(addresses), MAX_SIMULATED_ACCOUNTS)))
        except BaseException as exc:  # whatever went wrong (a shutdown too), nobody is left waiting
            error = exc if isinstance(exc, RpcError) else RpcError(f"getMultipleAccounts failed ({type(exc).__name__})")
            for _, future in readers:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        found = dict(zip(addresses, (account for chunk in chunks for account in chunk), strict=True))
        for wanted, future in readers:
            if not future.done():
                future.set_result([found[a] for a in wanted])

    async def close(self) -> None:
        await self._reading.cancel_all()


class Holdings:
    """The wallets' token accounts as the chain shows them (getTokenAccountsByOwner, both token programs):
    cached, refreshed on balance_update, asked once for many trades of the same wallet."""

    def __init__(self, rpc: SolanaRpc, ttl_s: float = HOLDINGS_CACHE_S) -> None:
        self.rpc = rpc
        self._reads: SharedReads[str, list[TokenHolding]] = SharedReads(ttl_s)

    def forget(self, wallet: str) -> None:
        self._reads.forget(wallet)

    async def of(self, wallet: str, *, fresh: bool = False) -> list[TokenHolding]:
        return await self._reads.get(wallet, lambda: self.rpc.get_token_holdings(wallet), fresh=fresh)


def _view(raw: dict[str, Any] | None) -> AccountView | None:
    if not raw:
        return None
    data = raw.get("data")
    encoded = data[0] if isinstance(data, list) else (data or "")
    return AccountView(int(raw["lamports"]), Pubkey.from_string(str(raw["owner"])), base64.b64decode(encoded))


Fingerprint = tuple[int, str, str] | None


def _fingerprint(raw: dict[str, Any] | None) -> Fingerprint:
    """An account as getMultipleAccounts answers it (base64), as (lamports, owner, data): compared as it comes."""
    if not raw:
        return None
    data = raw.get("data")
    return int(raw["lamports"]), str(raw["owner"]), str(data[0] if isinstance(data, list) else (data or ""))


def _fingerprint_of(view: AccountView | None) -> Fingerprint:
    return None if view is None else (view.lamports, str(view.owner), base64.b64encode(view.data).decode())


def _lamports_before(simulated: Simulated | None, wallet: Pubkey) -> int | None:
    """The wallet's lamports as read just before the simulation (0 if it has no account); None if not read."""
    if simulated is None or wallet not in simulated.before:
        return None
    view = simulated.before[wallet]
    return view.lamports if view is not None else 0


def _system_transfer(program: Pubkey | str, accounts: list[str], data: bytes) -> tuple[Pubkey, Pubkey, int] | None:
    if str(program) != str(SYSTEM_PROGRAM) or len(data) < 12 or len(accounts) < 2:
        return None
    kind = int.from_bytes(data[:4], "little")
    if kind in (0, 2, 3):  # CreateAccount, Transfer, CreateAccountWithSeed: lamports move from account 0
        offset = 4 if kind != 3 else None
        if offset is None:
            return None  # with a seed the lamports sit after the seed; the balance rule still counts them
        return Pubkey.from_string(accounts[0]), Pubkey.from_string(accounts[1]), int.from_bytes(data[4:12], "little")
    if kind == 11 and len(accounts) >= 3:  # TransferWithSeed: from an address the base (account 1) controls
        return Pubkey.from_string(accounts[1]), Pubkey.from_string(accounts[2]), int.from_bytes(data[4:12], "little")
    return None


def _sol_transfers(
    tx: VersionedTransaction, keys: list[Pubkey], inner: list[dict[str, Any]] | None
) -> tuple[tuple[Pubkey, Pubkey, int], ...]:
    """System transfers the transaction makes: its own instructions and the ones programs make by CPI."""
    found: list[tuple[Pubkey, Pubkey, int]] = []
    for ix in tx.message.instructions:
        names = [str(keys[i]) for i in bytes(ix.accounts) if i < len(keys)]
        hit = _system_transfer(keys[ix.program_id_index], names, bytes(ix.data))
        if hit:
            found.append(hit)
    for group in inner or []:
        for ix in group.get("instructions") or []:
            parsed = ix.get("parsed")
            if isinstance(parsed, dict) and ix.get("program") == "system":
                info = parsed.get("info") or {}
                source = info.get("source") or info.get("fundingAccount")
                destination = info.get("destination") or info.get("newAccount")
                if source and destination and "lamports" in info:
                    found.append((Pubkey.from_string(source), Pubkey.from_string(destination), int(info["lamports"])))
                continue
            if "data" in ix and "programId" in ix:
                try:
                    data = base58.b58decode(ix["data"])
                except ValueError:
                    continue
                hit = _system_transfer(ix["programId"], list(ix.get("accounts") or []), data)
                if hit:
                    found.append(hit)
    return tuple(found)


class SendTargets:
    """Helius Sender and Astralane: sendTransaction posted over kept-alive connections per sender, each request
    written to the socket in the step that makes it (`HttpSender`: a burst's first sells reach the sender while
    the later ones are still being signed)."""

    def __init__(self, timeout: float = 10.0, max_connections: int = 100) -> None:
        self._timeout = timeout
        self._max_connections = max_connections
        self._senders: dict[tuple[str, str, int | None], HttpSender] = {}
        self._targets: dict[str, tuple[HttpSender, str]] = {}  # url -> its sender and request target
        self._warming: dict[str, asyncio.Future[None]] = {}
        self._warmed: dict[str, float] = {}  # url -> when it was last warmed
        self._warm_count: dict[str, int] = {}  # url -> how many connections that warm opened

    def _sender(self, url: str) -> tuple[HttpSender, str]:
        """The connections to `url`'s host, and the request target (path and query) on it (worked out once per url)."""
        found = self._targets.get(url)
        if found is None:
            parts = urlsplit(url)
            key = (parts.scheme, parts.hostname or "", parts.port)
            sender = self._senders.get(key)
            if sender is None:
                sender = self._senders[key] = HttpSender(url, timeout=self._timeout,
                                                         max_connections=self._max_connections)
            found = self._targets[url] = (sender, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        return found

    async def post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
        """(HTTP status, body text); raises SenderError or TimeoutError when there is no answer."""
        sender, target = self._sender(url)
        status, text = await sender.request("POST", target, json.dumps(body).encode(),
                                            {"Content-Type": "application/json", **headers})
        return status, text.decode("utf-8", "replace")

    def warm(self, url: str, wanted: Callable[[], int]) -> None:
        """Have `wanted()` connections to the sender at `url` open and idle in the pool, for as many sends at
        once: that many concurrent pings (Helius Sender's documented `GET /ping`), made together WARM_GATHER_S
        after the first ask (a burst of signals asks once each). Warmed again after WARM_S, or sooner when more
        are wanted than were warmed (then at least twice as many, so a growing number warms a few times only)."""
        if url in self._warming:
            return
        if time.monotonic() - self._warmed.get(url, -WARM_S) < WARM_S and wanted() <= self._warm_count.get(url, 0):
            return
        self._warming[url] = asyncio.ensure_future(self._warm(url, wanted))

    async def _warm(self, url: str, wanted: Callable[[], int]) -> None:
        try:
            await asyncio.sleep(WARM_GATHER_S)
            now = time.monotonic()
            had = self._warm_count.get(url, 0) if now - self._warmed.get(url, -WARM_S) < WARM_S else 0
            count = max(1, min(max(wanted(), 2 * had), self._max_connections))
            self._warmed[url] = now
            self._warm_count[url] = count
            parts = urlsplit(url)
            ping = urlunsplit((parts.scheme, parts.netloc, "/ping", "", ""))
            await asyncio.gather(*(self._ping(ping) for _ in range(count)))
        finally:
            self._warming.pop(url, None)

    async def _ping(self, url: str) -> None:
        sender, target = self._sender(url)
        try:
            await sender.request("GET", target)
        except (SenderError, TimeoutError) as exc:
            log.debug("sender ping failed: %s", type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._warming.values()):
            task.cancel()
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()
        self._targets.clear()


@dataclass
class _Ahead:
    at: float  # time.monotonic() when the run began
    message: bytes  # the transaction's message as checked: what would be signed
    blockhash: Hash
    intent: SellIntent | BuyIntent | TokenWithdrawIntent
    result: asyncio.Future[tuple[GuardReport, Effect | None, Simulated | None] | None]
    reread: asyncio.Future[list[dict[str, Any] | None]] | None = None  # its accounts read again at the tap
    fingerprints: list[Fingerprint] | None = None  # the simulated accounts as read before the run


class Executor:
    def __init__(self, core: Core, *, poll_s: float = POLL_S) -> None:
        self.core = core
        self.rpc = core.rpc
        self.watcher = SignatureWatcher(core.rpc, poll_s)
        self.holdings = Holdings(core.rpc)
        # one read for a burst of exits sharing a lookup table, or a blockhash
        self._tables: SharedReads[str, tuple[str, bytes] | None] = SharedReads(LOOKUP_TABLE_CACHE_S, 256)
        self._blockhash_checks: SharedReads[str, bool] = SharedReads(BLOCKHASH_CACHE_S, 256)
        self._senders = SendTargets()
        extra = getattr(core.settings, "guard_extra_programs", ())
        self.extra_programs = frozenset(Pubkey.from_string(p) for p in extra)
        self.guard_times: deque[float] = deque(maxlen=4096)  # seconds per guard run, for the benchmark
        self.ahead_times: deque[float] = deque(maxlen=4096)  # seconds per guard run ahead of a tap
        self.ahead_moved = 0  # runs ahead not used because an account had changed since
        self._ahead: dict[str, _Ahead] = {}  # record id -> the guard run on it before the tap
        self._rereads = AccountReads(core.rpc)
        self._asking: dict[Hash, asyncio.Future[bool]] = {}  # blockhash -> isBlockhashValid asked at a tap

    async def close(self) -> None:
        await self._rereads.close()
        await self._senders.close()
        await self.watcher.close()

    # --- the guard -----------------------------------------------------------------------------------
    async def check_ahead(self, trade: Trade) -> None:
        """Run the guard (structure, simulation, effect) on a trade that may be signed soon, before anyone asks:
        `check` takes it instead of simulating again when it comes within AHEAD_S for the very same transaction
        and intent and every account the simulation read is unchanged (`_checked_ahead` reads them again: a
        price moved by another trade, a balance changed, and the guard runs afresh). A run that refuses is not
        kept: the check at signing time runs in full and says why."""
        started = time.perf_counter()
        ahead = _Ahead(time.monotonic(), bytes(trade.tx.message), trade.tx.message.recent_blockhash, trade.intent,
                       asyncio.get_running_loop().create_future())
        self._ahead.pop(trade.record_id, None)
        while len(self._ahead) >= MAX_AHEAD:
            del self._ahead[next(iter(self._ahead))]
        self._ahead[trade.record_id] = ahead
        try:
            result = await self._guard(trade)
        except BaseException as exc:
            ahead.result.set_result(None)  # a tap waiting for it runs the guard itself
            if self._ahead.get(trade.record_id) is ahead:
                del self._ahead[trade.record_id]
            if isinstance(exc, GuardRefusal | Unverifiable):
                return
            raise
        if result[2] is not None:
            ahead.fingerprints = [_fingerprint_of(view) for view in result[2].before.values()]
        ahead.result.set_result(result)
        self.ahead_times.append(time.perf_counter() - started)

    async def _checked_ahead(self, trade: Trade) -> tuple[GuardReport, Effect | None, Simulated | None] | None:
        """The guard's run ahead of this trade (waited for if still running), once, if it still stands: the same
        transaction and intent within AHEAD_S, and every account it simulated (the wallet, the pool, the token
        accounts) read again now exactly as it was then, so the simulation would answer the same. None when
        the guard must run afresh (a market move, a balance change, no run ahead)."""
        ahead = self._ahead.pop(trade.record_id, None)
        if ahead is None or time.monotonic() - ahead.at > AHEAD_S or ahead.intent != trade.intent:
            return None
        if ahead.message != bytes(trade.tx.message):
            return None
        ran = await asyncio.shield(ahead.result)
        simulated = ran[2] if ran is not None else None
        if simulated is None or not simulated.before:
            return None  # the simulation could not run then: it is tried now
        reread = ahead.reread or self._rereads.read([str(a) for a in simulated.before])
        try:
            now = [_fingerprint(raw) for raw in await reread]
        except (RpcError, KeyError, TypeError, ValueError):
            return None
        if now != ahead.fingerprints:
            self.ahead_moved += 1
            return None
        return ran

    async def check(self, trade: Trade) -> Checked:
        """The guard beside the blockhash and balance checks. Raises GuardRefusal or Unverifiable."""
        checked, fresh_task = await self._check(trade)
        if fresh_task is None:
            return checked
        return dataclasses.replace(checked, fresh=await fresh_task)

    async def _check(self, trade: Trade) -> tuple[Checked, asyncio.Future[bool] | None]:
        """`check`, the blockhash answer left to come (None when it is not asked)."""
        started = time.perf_counter()
        fresh_task = asyncio.ensure_future(self.blockhash_valid(trade.tx)) if trade.check_blockhash else None
        try:
            ran = await self._checked_ahead(trade)
            report, effect, simulated = ran if ran is not None else await self._guard(trade)
            self.guard_times.append(time.perf_counter() - started)
            balance = None
            if trade.check_balance:
                # the simulation read the wallet just before it ran: its lamports are the balance, asked no second time
                balance = _lamports_before(simulated, trade.intent.wallet)
                if balance is None:  # the simulation could not run (known programs passed on structure): ask
                    balance = await self._balance(trade.wallet)
        except BaseException:
            if fresh_task is not None:
                fresh_task.cancel()
            raise
        return Checked(report, effect, True, balance), fresh_task

    async def _guard(self, trade: Trade) -> tuple[GuardReport, Effect | None, Simulated | None]:
        loaded = await self._lookup_tables(trade.tx)
        if isinstance(trade.intent, TokenWithdrawIntent):
            # a token withdrawal is signed only on its simulated effect: Unverifiable is never waived here
            report = check_token_withdrawal(trade.tx, trade.intent, loaded=loaded)
            simulated = await self.simulate(trade.tx, trade.intent.wallet, report, loaded)
            return report, check_withdrawal_effect(simulated, trade.intent, report, label=trade.label), simulated
        if isinstance(trade.intent, SellIntent):
            report = check_sell(trade.tx, trade.intent, extra_programs=self.extra_programs, loaded=loaded)
        else:
            report = check_buy(trade.tx, trade.intent, extra_programs=self.extra_programs, loaded=loaded)
        try:
            simulated = await self.simulate(trade.tx, trade.intent.wallet, report, loaded)
        except Unverifiable as reason:
            if report.unknown_programs:
                raise
            log.info("effect check could not run (%s); known programs only, structural check passed", reason)
            return report, None, None
        return report, check_effect(simulated, trade.intent, report, label=trade.label), simulated

    async def simulate(
        self, tx: VersionedTransaction, wallet: Pubkey, report: GuardReport, loaded: LoadedAddresses | None
    ) -> Simulated:
        """The accounts the transaction may write, before (read now) and after (simulated)."""
        addresses = [wallet, *[key for key in report.writable if key != wallet]][:MAX_SIMULATED_ACCOUNTS]
        names = [str(a) for a in addresses]
        try:
            before_raw, value = await asyncio.gather(self.rpc.get_accounts(names), self.rpc.simulate(tx, names))
        except RpcError as exc:
            raise Unverifiable(f"the Solana RPC did not simulate it: {exc}") from None
        accounts = value.get("accounts")
        if not isinstance(accounts, list) or len(accounts) != len(addresses):
            if value.get("err") is not None:
                return Simulated(value["err"], {}, {}, logs=tuple(value.get("logs") or ()))
            raise Unverifiable("the simulation returned no accounts")
        try:
            before = {a: _view(r) for a, r in zip(addresses, before_raw, strict=True)}
            after = {a: _view(r) for a, r in zip(addresses, accounts, strict=True)}
        except (KeyError, TypeError, ValueError) as exc:
            raise Unverifiable(f"the simulation's accounts could not be read ({type(exc).__name__})") from None
        message = tx.message
        keys = list(message.account_keys)
        if loaded is not None:
            keys += list(loaded.writable) + list(loaded.readonly)
        transfers = _sol_transfers(tx, keys, value.get("innerInstructions"))
        return Simulated(value.get("err"), before, after, transfers, tuple(value.get("logs") or ()))

    async def _lookup_tables(self, tx: VersionedTransaction) -> LoadedAddresses | None:
        """The accounts the transaction loads from lookup tables, read from the chain (briefly cached: a burst
        of exits shares the router's tables)."""

        async def fetch(address: str) -> tuple[str, bytes] | None:
            try:
                return await self._table(address)
            except RpcError as exc:
                raise GuardRefusal("address_lookup_table", f"the lookup table could not be read ({exc})") from None

        return await resolve_lookup_tables(tx, fetch)

    async def _table(self, address: str) -> tuple[str, bytes] | None:
        """One lookup table account (owner, data), read once for everyone who asks within LOOKUP_TABLE_CACHE_S."""
        return await self._tables.get(address, lambda: self.rpc.get_account_data(address))

    async def warm(self, tx: VersionedTransaction, wallet: Pubkey, mint: Pubkey) -> None:
        """Before anyone taps (the trader reads the message first): read the transaction's lookup tables into the
        cache and work out the wallet's token account addresses the structural check will derive. The guard
        still reads, resolves and checks everything at the tap; it just finds these ready."""

        async def fetch(address: str) -> tuple[str, bytes] | None:
            return await self._table(address)

        with contextlib.suppress(RpcError):
            await derive_ahead(tx, wallet, mint, fetch)

    async def _balance(self, wallet: str) -> int | None:
        try:
            return int(await self.rpc.get_balance_batched(wallet))
        except RpcError as exc:
            log.info("getBalance failed (%s); sending without the fee check", exc)
            return None

    def warm_sender(self, send_mode: str) -> None:
        """A sell in this send mode may be sent soon: have connections to its sender ready, as many as there
        are trades checked ahead (each may be tapped at the same moment)."""
        if send_mode == "helius_sender":
            self._senders.warm(self.core.settings.helius_sender_url, lambda: len(self._ahead))

    def tapped(self, record_id: str, *, ask_blockhash: bool) -> None:
        """A trade checked ahead (`check_ahead`) was tapped and is about to be checked: read again now the accounts
        its simulation read (`_checked_ahead` compares them), with every other tap of the moment (`AccountReads`),
        and ask the chain about its blockhash if `ask_blockhash`, so the answers are there (shared, see
        `blockhash_valid`) by the time the sell needs them."""
        ahead = self._ahead.get(record_id)
        if ahead is None:
            return
        asking = self._asking.get(ahead.blockhash)
        if ask_blockhash and (asking is None or asking.done()):  # one question for the taps of a burst
            task = self._asking[ahead.blockhash] = asyncio.ensure_future(self._blockhash_valid(ahead.blockhash))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            task.add_done_callback(partial(self._asked, ahead.blockhash))
        ran = ahead.result.result() if ahead.result.done() else None
        if ran is not None and ran[2] is not None and ran[2].before and ahead.reread is None:
            ahead.reread = self._rereads.read([str(a) for a in ran[2].before])
            ahead.reread.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _asked(self, blockhash: Hash, task: asyncio.Future[bool]) -> None:
        if self._asking.get(blockhash) is task:
            del self._asking[blockhash]

    async def blockhash_valid(self, tx: VersionedTransaction) -> bool:
        return await self._blockhash_valid(tx.message.recent_blockhash)

    async def _blockhash_valid(self, blockhash: Hash) -> bool:
        """isBlockhashValid, asked once for many trades of the same blockhash (a burst of taps shares one).

        A "valid" answer is reused for BLOCKHASH_CACHE_S (a blockhash lives ~150 slots, so at worst a trade signed
        at the very edge is sent stale and the confirm loop reports it expired); "invalid" is final.
        """
        try:
            # an expired blockhash stays expired: that answer is kept for good
            return await self._blockhash_checks.get(
                str(blockhash), lambda: self.rpc.is_blockhash_valid(blockhash), lasting=lambda valid: not valid
            )
        except RpcError as exc:
            log.info("isBlockhashValid failed (%s); treating as valid", exc)
            return True

    # --- sign, persist, send, confirm ----------------------------------------------------------------
    async def execute(self, trade: Trade, hooks: TradeHooks[Outcome]) -> Outcome:
        fresh_task: asyncio.Future[bool] | None = None
        try:
            try:
                checked, fresh_task = await self._check(trade)
            except GuardRefusal as refusal:
                log.warning("guard refused %s: %s (%s)", trade.record_id, refusal.rule, refusal)
                return await hooks.refused(refusal)
            except Unverifiable as reason:
                log.warning("could not verify %s: %s", trade.record_id, reason)
                return await hooks.unverified(str(reason))
            needed = checked.report.fee_lamports + checked.report.sol_out
            if checked.balance is not None and checked.balance < needed:
                return await hooks.cannot_pay(needed, checked.balance)
            # signed while the chain is asked about the blockhash (if it is): sent only once it says it lives
            signed_or_failed = await self._sign(trade)
            if fresh_task is not None and not await fresh_task:
                return await hooks.stale()
        finally:
            if fresh_task is not None and not fresh_task.done():
                fresh_task.cancel()
        if isinstance(signed_or_failed, SigningError):
            return await hooks.signing_failed(signed_or_failed)
        signed = signed_or_failed
        raw = bytes(signed)
        signature = str(signed.signatures[0])
        # Persist before sending: after a crash the signature is looked up instead of trading twice.
        if not await trade.records.transition(
            trade.record_id, ("approved",), "signing", signed_tx_b64=base64.b64encode(raw).decode(), signature=signature
        ):
            log.warning("%s left 'approved' before it was sent; the signed bytes are dropped unsent", trade.record_id)
            return await hooks.moved_on()
        try:
            await self.send_resilient(trade.user_id, raw, trade.send_mode)
        except RpcError as exc:
            return await hooks.send_failed(exc, raw)
        # the hook waits while other sells of a burst are still to be sent (their sends come first), then the state
        # moves on ("signing" and "submitted" are both looked up by signature after a crash)
        try:
            await hooks.sent(checked)
        finally:
            await trade.records.transition(trade.record_id, ("signing",), "submitted")
        return await self.confirm(raw, signature, hooks)

    async def _sign(self, trade: Trade) -> VersionedTransaction | SigningError:
        """The transaction signed with the wallet's key, decrypted for this and dropped at once."""
        try:
            keypair = await self.core.accounts.keypair(trade.user_id, trade.wallet)
        except AccountError as exc:  # the wallet was removed after the signal came: say so, in words
            return SigningError(str(exc))
        try:
            return sign_transaction(trade.tx, keypair)
        except SigningError as exc:
            return exc
        finally:
            del keypair

    async def confirm(self, raw: bytes, signature: str, hooks: TradeHooks[Outcome], timeout: float = 60.0,
                      spawn: Callable[[Coroutine[Any, Any, Any]], object] | None = None) -> Outcome:
        tx = VersionedTransaction.from_bytes(raw)
        verdict, status = await follow(self.watcher, signature, lambda: self.blockhash_valid(tx), timeout)
        if verdict == "unknown" and spawn is not None:
            await hooks.still_unknown()
            spawn(self.confirm(raw, signature, hooks, timeout * 4, spawn))
        return await hooks.settled(verdict, status, raw, signature)

    async def resume(self, records: TradeRecords, record_id: str, state: str, raw: bytes, signature: str,
                     user_id: int, send_mode: str) -> None:
        """After a crash: what was signed is looked up by signature and, if unknown while its blockhash lives,
        the identical bytes are sent again (the chain lands them at most once)."""
        status = (await self.rpc.get_signature_statuses([signature]))[0]
        if status is None and await self.blockhash_valid(VersionedTransaction.from_bytes(raw)):
            with contextlib.suppress(RpcError):
                await self.send(user_id, raw, send_mode)
        if state == "signing":
            await records.transition(record_id, ("signing",), "submitted")

    async def send_resilient(self, user_id: int, raw: bytes, send_mode: str) -> None:
        """`send`, again with the identical bytes when the answer says nothing definite (no answer, a 5xx,
        a 429, garbage): the chain lands one transaction at most once, so a second send cannot sell twice,
        while giving up on an answer we could not read could abandon a sell that was taken."""
        for attempt, pause in enumerate((*SEND_RETRY_PAUSES_S, None)):
            try:
                await self.send(user_id, raw, send_mode)
                return
            except RpcError as exc:
                definite = exc.code is not None and exc.code != 429
                if definite or pause is None:
                    raise
                log.info("send attempt %d had no definite answer (%s); sending the same bytes again", attempt + 1, exc)
                await asyncio.sleep(pause)

    async def send(self, user_id: int, raw: bytes, send_mode: str) -> None:
        if send_mode == "rpc":
            await self.rpc.send_transaction(raw, skip_preflight=True)
            return
        settings = self.core.settings
        url = settings.helius_sender_url if send_mode == "helius_sender" else settings.astralane_url
        headers = {}
        if send_mode == "astralane":
            stored = await self.core.accounts.store.get(user_id)
            if stored.astralane_sealed:
                key = self.core.vault.open(stored.astralane_sealed, user_id=user_id, kind="astralane_key",
                                               identity="astralane_key").decode()
                headers["x-api-key"] = key
        body = {
            "jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
            "params": [base64.b64encode(raw).decode(), {"encoding": "base64", "skipPreflight": True, "maxRetries": 0}],
        }
        try:
            status, text = await self._senders.post(url, body, headers)
        except (SenderError, TimeoutError) as exc:
            raise RpcError(f"{send_mode} did not answer ({type(exc).__name__})") from None
        except ValueError as exc:  # the request could not be made (a stored key HTTP cannot carry): definite
            raise RpcError(f"the {send_mode} request could not be made: {exc}", -32602) from None
        if status == 429:
            raise RpcError(f"{send_mode} is rate limiting us (HTTP 429)", 429)
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RpcError(f"{send_mode} answered HTTP {status} without a JSON-RPC reply")
        error = data.get("error")
        if error:
            if not isinstance(error, dict):
                raise RpcError(f"{send_mode} refused it ({str(error)[:200]})", -32000)
            raise RpcError(str(error.get("message")), error.get("code"), error.get("data"))
        if not isinstance(data.get("result"), str):
            raise RpcError(f"{send_mode} answered without a signature")


__all__ = ["Checked", "Executor", "Holdings", "SendTargets", "Trade", "TradeHooks", "TradeRecords"]
