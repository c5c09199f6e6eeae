"""Sell: guard, sign, submit, confirm, retry — exactly once, and never anything but the sell.

The guard -> sign -> persist -> send -> confirm -> recover path is `bot.exits.executor`, shared with buys;
this module adds what only a sell needs: the intent from the bot's own records and the chain (never from
the frame that carries the transaction), the refresh of a stale transaction, the slippage retry, the
PnL card, and auto-sell's bounds (never again while a sell of the position is in flight, a per-user cap
a minute, and a refusal switches auto-sell off and says why).

A signal's states: pending -> approved (the tap, atomic) -> signing (signed bytes and signature stored,
BEFORE anything is sent) -> submitted -> landed | failed; or superseded (a fresh transaction replaced
it), skipped, expired. A crash at any point is settled at the next start by `recover()`: what was
signed is looked up by signature and, if unknown while its blockhash is valid, the identical bytes
are sent again (the chain lands them at most once). A new transaction is asked for only once the
first is known failed or expired.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from bot.accounts import api_failure_words
from bot.callbacks import SignalTap
from bot.core import Core
from bot.exits.early_taps import EarlyTaps
from bot.exits.executor import AHEAD_S, Checked, Executor, Holdings, Trade, TradeHooks
from bot.exits.guard import GuardRefusal, SellIntent, SimulationFailed
from bot.exits.inbox import UNTRACKED
from bot.exits.signer import SigningError, decode_unsigned
from bot.lasersell_api import InvalidApiKey, LaserSellApiError
from bot.notify import render
from bot.notify.alerts import buttons, signal_buttons
from bot.notify.charts import bands_from
from bot.notify.outbox import Priority
from bot.notify.pnl_card import PnlCard, render_pnl_card
from bot.solana_rpc import RpcError, SignatureStatus
from bot.stream.events import StreamEvent
from bot.tasks import BackgroundTasks
from storage.accounts import UserSettings
from storage.db import user_writes
from storage.history import PnlHistory
from storage.positions import ExitSignal, ExitSignals, Position, Positions

log = logging.getLogger("lasersell_bot.sell")

FRESH_S = 3.0  # younger signals are signed without asking the chain about their blockhash
REFRESH_WAIT_S = 10.0  # how long to wait for a fresh transaction from the stream
CONFIRM_TIMEOUT_S = 60.0
SLIPPAGE_ERRORS = {6003, 6004}  # "too little SOL received" / "exceeded slippage" of the pump programs
SIGNAL_TTL_MS = 10 * 60 * 1000
RESUME_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # between checks of a signed sell after a restart
MAX_PREPARED = 4096  # signals checked ahead whose reads are kept for the tap
AUTO_SIGN_PER_MINUTE = 6  # a user's auto-signed transactions a minute; beyond it signals wait for a tap
# The official CLI's retry steps: +20 bps on the first retry, +40 bps on each one after, up to the cap.
SLIPPAGE_BUMP_FIRST_BPS = 20
SLIPPAGE_BUMP_NEXT_BPS = 40
# Instructions around the trade; a failure inside one of them is not the swap failing.
_NOT_THE_TRADE = frozenset({
    "ComputeBudget111111111111111111111111111111", "11111111111111111111111111111111",
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL", "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
    "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo",
})


def _program_at(tx: VersionedTransaction | None, index: int) -> str | None:
    if tx is None:
        return None
    instructions = tx.message.instructions
    if not 0 <= index < len(instructions):
        return None
    keys = tx.message.account_keys
    program_index = instructions[index].program_id_index
    return str(keys[program_index]) if program_index < len(keys) else None


def explain(err: Any, tx: VersionedTransaction | None = None) -> tuple[str, str]:
    """(kind, words) for a transaction error as a node reports it. Kind "slippage" (retried with more
    slippage) is any on-chain failure of the trade instruction on any market, not only the pump programs' codes;
    with `tx` the failing instruction's program tells the trade from the fee, tip and account steps around it."""
    if err is None:
        return "ok", "landed"
    if isinstance(err, str):
        if err in ("BlockhashNotFound",):
            return "expired", "the transaction expired before it landed (blockhash too old)"
        if err in ("InsufficientFundsForFee", "AccountNotFound"):
            return "fees", "not enough SOL in the wallet to pay the network fee"
        if err == "AlreadyProcessed":
            return "duplicate", "this exact transaction was already processed"
        return "other", f"the network refused it ({err})"
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        program = _program_at(tx, int(index))
        if isinstance(inner, dict) and "Custom" in inner:
            code = int(inner["Custom"])
            if code in SLIPPAGE_ERRORS:
                return "slippage", "the price moved more than your slippage allows"
            if program == "11111111111111111111111111111111" and code == 1:
                return "fees", "not enough SOL in the wallet for the tip and fees"
            if program is None or program not in _NOT_THE_TRADE:
                return "slippage", f"the swap failed on chain (error code {code}), most often because the price moved"
            return "other", f"instruction {index} failed with error code {code}"
        if program is not None and program not in _NOT_THE_TRADE:
            return "slippage", f"the swap failed on chain ({inner}), most often because the price moved"
        return "other", f"instruction {index} failed ({inner})"
    if isinstance(err, dict) and "InsufficientFundsForRent" in err:
        return "fees", "not enough SOL in the wallet to keep an account open (rent)"
    return "other", f"the transaction failed ({err})"


@dataclass
class Outcome:
    kind: str  # landed, failed, unknown
    words: str
    signature: str | None = None
    sol_received: int | None = None


class ExitRequests(Protocol):
    """How the sell path asks a user's stream for a fresh exit (`bot.stream.streams.UserStreams`)."""

    async def request_exit(self, user_id: int, position_id: int, slippage_bps: int | None = None) -> bool: ...


class ManualSignals(Protocol):
    """Where a sell asked for from the card goes: the same inbox as the stream's exit signals
    (`bot.exits.inbox.SignalInbox`)."""

    async def on_signal(self, user_id: int, event: StreamEvent) -> ExitSignal: ...


class Seller:
    def __init__(self, core: Core, executor: Executor, streams: ExitRequests) -> None:
        self.core = core
        self.streams = streams
        self.signals = ExitSignals(core.db)
        self.positions = Positions(core.db)
        self.outbox = core.outbox
        self.executor = executor
        self._waiting: dict[tuple[int, int], asyncio.Future[ExitSignal]] = {}
        self._unsent: set[str] = set()  # tapped sells not sent (nor settled) yet
        self._after_sends: list[asyncio.Future[None]] = []  # who waits until none is left
        self._background = BackgroundTasks()
        self._auto: set[str] = set()  # signals sold by auto-sell, so their result says so
        self._in_flight: dict[tuple[int, int], str] = {}  # (user, position) -> the signal being sold
        self._auto_signed: dict[int, deque[float]] = {}  # user -> when auto-sell signed, the last minute
        self._refreshing: dict[tuple[int, int], str] = {}  # (user, position) -> the refreshed signal's reason
        self._amount_refreshing: set[tuple[int, int]] = set()  # positions refreshed for a changed amount
        self.early = EarlyTaps(self)  # Sell taps read off Telegram's answer before the library's handlers
        # signal id -> what the check ahead read for it (position, settings, the decoded transaction), taken by
        # the tap's sell when nothing of the user's was written since (one process on SQLite)
        self._prepared: dict[str, _Prepared] = {}
        # the journaled rows of exit signals are written once the tapped sells are sent (storage/positions.py)
        if core.db is not None:
            ExitSignals.hold_writes(core.db, self.sends_pending)

    @property
    def holdings(self) -> Holdings:
        return self.executor.holdings

    async def close(self) -> None:
        await self.early.close()
        await self._background.cancel_all()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._background.spawn(coro)

    # --- taps -------------------------------------------------------------------------------------------
    async def tap(self, user_id: int, signal_id: str, action: str, shown_in: tuple[int, int] | None = None) -> str:
        """A tap on Sell, Refresh or Retry; `shown_in` is the (chat, message) the button was in."""
        signal = await self.signals.get_tapped(signal_id)
        if signal is None or signal.telegram_id != user_id:
            return "This signal is not yours."
        if shown_in is not None and signal.message_id is None:
            # a tap can beat the write of the message id right after the signal was shown: the tapped message is it
            await self.signals.set(signal.id, chat_id=shown_in[0], message_id=shown_in[1])
            signal = dataclasses.replace(signal, chat_id=shown_in[0], message_id=shown_in[1])
        if action == "refresh":
            return await self._refresh_button(signal)
        if action == "retry":
            return await self._retry_button(signal)
        if signal.state == "skipped" and signal.error == UNTRACKED:
            return "You stopped tracking this position; nothing was sold."
        if signal.state != "pending":
            return {
                "approved": "Already selling…", "signing": "Already selling…", "submitted": "Already selling…",
                "landed": "Already sold.", "skipped": "You skipped this one.", "superseded": "A newer signal replaced this one.",
                "expired": "This signal expired: tap Refresh.", "failed": "This sell failed; see the message.",
            }.get(signal.state, "Already handled.")
        if int(time.time() * 1000) - signal.received_at_ms > SIGNAL_TTL_MS:
            if await self.signals.transition(signal.id, ("pending",), "expired"):
                await self._edit(signal, "⌛ This signal expired. Tap Refresh for a fresh exit transaction.",
                                 buttons([("🔄 Refresh", SignalTap("refresh", signal.id))]))
            return "Expired: tap Refresh."
        tapped_at_ms = int(time.time() * 1000)
        if not await self.signals.transition(signal.id, ("pending",), "approved", tapped_at_ms=tapped_at_ms):
            return "Already selling…"
        self._unsent.add(signal.id)
        # the accounts read again, and the blockhash question if old enough, go out now, answered while the sell starts
        self.executor.tapped(signal.id, ask_blockhash=tapped_at_ms - signal.received_at_ms > FRESH_S * 1000)
        # the row as the approve left it: the sell need not read it again
        approved = dataclasses.replace(signal, state="approved", tapped_at_ms=tapped_at_ms)
        task = self._background.spawn(self.sell(signal.id, approved=approved))
        task.add_done_callback(lambda _task: self.mark_sent(signal.id))
        return "Selling…"

    def mark_sent(self, signal_id: str) -> None:
        """A tapped sell was sent (or settled without a send); the last one wakes whoever waits (`sends_first`)."""
        self._unsent.discard(signal_id)
        if self._unsent:
            return
        woken, self._after_sends = self._after_sends, []
        for future in woken:
            if not future.done():
                future.set_result(None)

    async def wait_sent(self, signal_id: str, timeout: float = 2.0) -> None:
        """Wait (bounded) until this tapped sell, and every other one in flight, is sent or settled: a tap's
        answer is Telegram traffic, and in a burst of taps it would take the event loop and the sandbox or
        network from the sells still to be sent, so the answers go after them."""
        await self.sends_first(timeout)

    async def sends_first(self, timeout: float = 2.0) -> None:
        """Wait (bounded by `timeout`) until no tapped sell is waiting to be sent. The taps of one burst reach
        this one by one, each before the next has been approved, so waiting only for the sells tapped so far
        would let the first answers out in front of the later sells; the bound keeps a stream of taps from
        holding an answer back for long."""
        woken = self.sends_pending()
        if woken is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken, timeout)

    def sends_pending(self) -> asyncio.Future[None] | None:
        """A future done once no tapped sell is waiting to be sent; None when none is waiting now."""
        if not self._unsent:
            return None
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._after_sends.append(woken)
        return woken

    async def auto_sell(self, signal_id: str, user_id: int) -> None:
        """Sell without a tap, within bounds: never while a sell of the same position is in flight, at most
        AUTO_SIGN_PER_MINUTE a minute per user, and through the same guard as a tap."""
        signal = await self.signals.get(signal_id)
        if signal is None or signal.state != "pending":
            return
        key = (user_id, signal.position_id)
        if key in self._in_flight:
            await self._edit(signal, await self._signal_text(signal) + "\n\n🤖 Auto-sell held this one back: a sell of "
                             "this position is already in flight. Tap Sell if you still want it.", signal_buttons(signal.id))
            return
        recent = self._auto_signed.setdefault(user_id, deque())
        now = time.monotonic()
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= AUTO_SIGN_PER_MINUTE:
            await self._edit(signal, await self._signal_text(signal) + f"\n\n🤖 Auto-sell held this one back: it already "
                             f"signed {AUTO_SIGN_PER_MINUTE} sells in the last minute. Tap Sell if you want it.",
                             signal_buttons(signal.id))
            return
        if await self.signals.transition(signal_id, ("pending",), "approved", tapped_at_ms=int(time.time() * 1000)):
            recent.append(now)
            self._in_flight[key] = signal_id  # claimed before the task runs: a burst finds it taken
            self._spawn(self.sell(signal_id, auto=True))

    def prefetch(self, signal: ExitSignal) -> None:
        """Warm the wallet's holdings (the guard's intent reads them) and the transaction's lookup tables, and
        run the guard ahead, while the trader reads the message."""

        async def warm() -> None:
            with contextlib.suppress(RpcError):
                await self.executor.holdings.of(signal.wallet)
            with contextlib.suppress(SigningError, ValueError):
                await self.executor.warm(decode_unsigned(signal.unsigned_tx_b64), Pubkey.from_string(signal.wallet),
                                         Pubkey.from_string(signal.mint))
            await self.check_ahead(signal)

        self._spawn(warm())

    async def absorbs(self, signal: ExitSignal) -> bool:
        """A fresh signal that a sell in progress asked for is handed to it instead of shown anew."""
        waiter = self._waiting.pop((signal.telegram_id, signal.position_id), None)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(signal)
        return True

    async def _refresh_button(self, signal: ExitSignal) -> str:
        if signal.state == "skipped" and signal.error == UNTRACKED:
            return "You stopped tracking this position; nothing was sold."
        if signal.state not in ("expired", "pending", "failed"):
            return "Already handled."
        position = await self.positions.get(signal.telegram_id, signal.position_id)
        if position is None or position.status != "open":
            return "The position is closed."
        if is_partial(signal):
            self._spawn(self._refresh_partial(signal))
            return "Asking LaserSell for a fresh sell of the same amount…"
        key = (signal.telegram_id, signal.position_id)
        self._refreshing[key] = signal.reason
        if not await self.streams.request_exit(signal.telegram_id, signal.position_id, signal.slippage_bps):
            self._refreshing.pop(key, None)
            return "Your stream is not running right now."
        return "Asked LaserSell for a fresh exit; it arrives as a new message."

    def kept_reason(self, user_id: int, position_id: int, reason: str) -> str:
        """A fresh exit that a Refresh asked for answers the old trigger: it keeps that signal's reason
        (a requested exit would otherwise read "You asked to sell" in the message, the card and /history)."""
        return self._refreshing.pop((user_id, position_id), None) or reason

    async def _retry_button(self, signal: ExitSignal) -> str:
        if signal.state == "skipped" and signal.error == UNTRACKED:
            return "You stopped tracking this position; nothing was sold."
        if signal.state != "failed":
            return "Already handled."
        position = await self.positions.get(signal.telegram_id, signal.position_id)
        if position is None or position.status != "open":
            return "The position is closed."
        settings = await self.core.accounts.store.get(signal.telegram_id)
        if signal.error and signal.error.startswith("unverified"):
            # the check could not run: try the same amount again at the same slippage
            self._spawn(self._retry(signal, signal.slippage_bps or settings.slippage_bps, automatic=False))
            return "Checking a fresh transaction…"
        slippage = next_slippage(signal.slippage_bps or settings.slippage_bps, signal.attempt, settings.slippage_cap_bps)
        self._spawn(self._retry(signal, slippage, automatic=False))
        return f"Retrying with {slippage / 100:g}% slippage…"

    # --- the sell ---------------------------------------------------------------------------------------
    async def sell(self, signal_id: str, *, auto: bool = False, approved: ExitSignal | None = None) -> Outcome:
        """Sell an approved signal; `approved` is its row when the caller has it already (a tap just wrote it)."""
        signal = approved if approved is not None and approved.id == signal_id else await self.signals.get(signal_id)
        assert signal is not None
        key = (signal.telegram_id, signal.position_id)
        if auto:
            self._auto.add(signal_id)
        self._in_flight.setdefault(key, signal_id)
        try:
            return await self._sell(signal, auto=auto)
        except Exception as exc:  # never leave a tapped signal without an answer
            log.exception("sell %s failed unexpectedly", signal_id)
            await self.signals.set(signal.id, state="failed", error=type(exc).__name__)
            # the failure is ours, so the way forward must be there: a fresh transaction is checked from scratch
            await self._edit(signal, await self._signal_text(signal) + "\n\n❌ The sell failed on my side; nothing was "
                             "sent twice. Tap Refresh for a fresh exit transaction.", _refresh_markup(signal))
            return Outcome("failed", "internal error")
        finally:
            if self._in_flight.get(key) == signal_id:
                del self._in_flight[key]

    async def intent(self, signal: ExitSignal, position: Position | None, settings: UserSettings) -> SellIntent:
        """What the trader agreed to, from the bot's own records checked against the chain; the frame that
        carried the transaction only says which position. Raises GuardRefusal saying what disagrees."""
        if position is None or position.status != "open":
            raise GuardRefusal("no_position", "the bot has no open position this signal could sell")
        label = position.label
        if signal.wallet != position.wallet:
            raise GuardRefusal("intent_wallet", f"the signal names wallet {render.short(signal.wallet)}, but position "
                               f"#{position.position_id} is in {render.short(position.wallet)}")
        if signal.mint != position.mint:
            raise GuardRefusal("intent_mint", f"the signal is for token {render.short(signal.mint)}, but position "
                               f"#{position.position_id} holds {label}")
        account = position.token_account
        if signal.token_account and account and signal.token_account != account:
            raise GuardRefusal("intent_token_account", f"the signal names token account {render.short(signal.token_account)}, "
                               f"but your {label} are in {render.short(account)}")
        held = await self._held(position, account, fresh=False)
        if held is None or held[1] < signal.tokens_to_sell:
            held = await self._held(position, account, fresh=True)  # the cache may predate a buy
        if held is None:
            raise GuardRefusal("intent_no_account", f"your wallet has no {label} token account the bot knows of")
        account_found, amount, program = held
        if amount <= 0:
            raise GuardRefusal("intent_empty", f"your wallet holds no {label} any more")
        if signal.tokens_to_sell > amount:
            raise GuardRefusal("intent_amount", f"the signal would sell {signal.tokens_to_sell:,} units of {label}, "
                               f"but your wallet holds {amount:,}")
        return SellIntent(
            wallet=Pubkey.from_string(position.wallet), mint=Pubkey.from_string(position.mint),
            token_account=Pubkey.from_string(account_found), max_tokens=signal.tokens_to_sell,
            max_tip_lamports=settings.tip_lamports, token_program=Pubkey.from_string(program),
        )

    async def _held(self, position: Position, account: str | None, *, fresh: bool) -> tuple[str, int, str] | None:
        try:
            holdings = await self.executor.holdings.of(position.wallet, fresh=fresh)
        except RpcError as exc:
            raise GuardRefusal("intent_unreadable", f"the wallet's token accounts could not be read ({exc})") from None
        for holding in holdings:
            if holding.mint == position.mint and (account is None or holding.token_account == account):
                return holding.token_account, holding.amount, holding.program
        return None

    async def _sell(self, signal: ExitSignal, *, auto: bool) -> Outcome:
        user_id = signal.telegram_id
        prepared = self._take_prepared(signal)
        if prepared is not None:
            position, settings = prepared.position, prepared.settings
        else:
            position = await self.positions.get(user_id, signal.position_id)
            settings = await self.core.accounts.store.get(user_id)
        hooks = _SellHooks(self, signal, position, settings, auto)
        try:
            tx = prepared.tx if prepared is not None else decode_unsigned(signal.unsigned_tx_b64)
        except SigningError as exc:
            return await hooks.signing_failed(exc)
        try:
            intent = await self.intent(signal, position, settings)
        except GuardRefusal as refusal:
            return await hooks.refused(refusal)
        return await self.executor.execute(self._trade(signal, tx, intent, position, settings), hooks)

    def _trade(self, signal: ExitSignal, tx: VersionedTransaction, intent: SellIntent, position: Position | None,
               settings: UserSettings) -> Trade:
        return Trade(
            user_id=signal.telegram_id, wallet=signal.wallet, tx=tx, intent=intent, send_mode=settings.send_mode,
            records=self.signals, record_id=signal.id, label=position.label if position else "this token",
            # an old transaction may carry an expired blockhash that would never land: ask the chain
            check_blockhash=time.time() * 1000 - signal.received_at_ms > FRESH_S * 1000,
        )

    async def check_ahead(self, signal: ExitSignal) -> None:
        """Run the guard on a shown signal's transaction before anyone taps (`Executor.check_ahead`): a tap
        within AHEAD_S of it, on the same transaction for the same intent, is signed on this check."""
        writes = user_writes(self.core.db, signal.telegram_id)
        position = await self.positions.get(signal.telegram_id, signal.position_id)
        settings = await self.core.accounts.store.get(signal.telegram_id)
        try:
            tx = decode_unsigned(signal.unsigned_tx_b64)
            intent = await self.intent(signal, position, settings)
        except (SigningError, GuardRefusal):
            return  # the tap says why, with the full check
        if self.core.db is not None and self.core.db.backend == "sqlite":  # one process: it sees every write
            now = time.monotonic()
            while self._prepared and (len(self._prepared) >= MAX_PREPARED
                                      or now - next(iter(self._prepared.values())).at > AHEAD_S):
                del self._prepared[next(iter(self._prepared))]  # the oldest: full, or too old to be taken
            self._prepared[signal.id] = _Prepared(time.monotonic(), writes, signal.unsigned_tx_b64, position, settings, tx)
        self.executor.warm_sender(settings.send_mode)
        await self.executor.check_ahead(self._trade(signal, tx, intent, position, settings))

    def _take_prepared(self, signal: ExitSignal) -> _Prepared | None:
        """What the check ahead read for this signal, once, if it still holds: the same transaction, within
        AHEAD_S, and no write of the user's positions or settings since."""
        prepared = self._prepared.pop(signal.id, None)
        if (
            prepared is None or time.monotonic() - prepared.at > AHEAD_S
            or prepared.writes != user_writes(self.core.db, signal.telegram_id)
            or prepared.unsigned_tx_b64 != signal.unsigned_tx_b64
        ):
            return None
        return prepared

    async def _refresh_and_sell(self, signal: ExitSignal, position: Position | None, *, auto: bool) -> Outcome:
        """The tapped transaction was too old (or for more tokens than are held now): ask for a fresh one and sell
        that (its signature is the one used)."""
        await self._edit(signal, render.exit_signal(signal, position) + "\n\n🔄 Refreshing: the transaction was too old…")
        fresh = await self._ask_fresh(signal, signal.slippage_bps)
        if fresh is None:
            await self.signals.set(signal.id, state="expired", error="no fresh transaction")
            await self._edit(signal, render.exit_signal(signal, position) + "\n\n⌛ Could not get a fresh transaction in time.",
                             buttons([("🔄 Refresh", SignalTap("refresh", signal.id))]))
            return Outcome("failed", "expired")
        # the fresh signal goes through the same atomic approve as a tap
        if not await self.signals.transition(fresh.id, ("pending",), "approved", tapped_at_ms=int(time.time() * 1000)):
            return Outcome("failed", "already handled")
        if auto:
            self._auto.add(fresh.id)
        return await self._sell(fresh, auto=auto)

    async def _confirm(self, signal_id: str, raw: bytes, signature: str) -> Outcome:
        signal = await self.signals.get(signal_id)
        assert signal is not None
        settings = await self.core.accounts.store.get(signal.telegram_id)
        hooks = _SellHooks(self, signal, None, settings, signal_id in self._auto)
        result: Outcome = await self.executor.confirm(raw, signature, hooks, CONFIRM_TIMEOUT_S, self._spawn)
        return result

    async def _landed(self, signal: ExitSignal, signature: str) -> Outcome:
        position = await self.positions.get(signal.telegram_id, signal.position_id)
        quote = render.quote_of(position) if position is not None else render.quote_of(signal)
        received = await self._received(signature, signal.wallet, quote)
        sold = signal.tokens_to_sell
        basis = (position.entry_quote_units * sold // position.tokens) if position and position.tokens else None
        pnl = (received - basis) if (received is not None and basis is not None) else None
        # amounts are quote units of `quote` (lamports or USD1 base units); /history reads them with it
        outcome = {"sol_received": received, "tokens_sold": sold, "basis": basis, "pnl": pnl, "quote": quote}
        await self.signals.set(signal.id, state="landed", outcome=outcome)
        self.executor.holdings.forget(signal.wallet)
        decimals = position.decimals if position else None
        label = position.label if position else signal.mint[:6]
        lines = [
            f"✅ <b>Sold {render.tokens(sold, decimals)} {render.esc(label)}</b> for {render.money(received, quote)}",
        ]
        if pnl is not None and basis:
            lines.append(f"PnL {render.money(pnl, quote, signed=True)} ({render.pct(pnl, basis)})")
        if signal.sell_tokens and signal.sell_tokens < signal.position_tokens:
            level = f", ladder level {signal.level_index + 1}" if signal.level_index is not None else ""
            lines.append(f"Partial sell{level}: the rest of the position stays tracked.")
        lines.append(f'<a href="https://solscan.io/tx/{signature}">{signature[:8]}…{signature[-8:]}</a>')
        if signal.id in self._auto:
            lines.append("🤖 Sold by auto-sell, without a tap (change it in /settings).")
        await self._edit(signal, f"<b>{render.reason_words(signal.reason)}</b>\n" + "\n".join(lines))
        await self._send_card(signal, position, received, basis, pnl, quote)
        return Outcome("landed", "landed", signature, received)

    async def _failed(self, signal: ExitSignal, kind: str, words: str) -> Outcome:
        """Tell the user why, and retry (automatically up to their retry count) when it can help."""
        text = await self._signal_text(signal) + f"\n\n❌ <b>Not sold</b>: {render.esc(words)}."
        position = await self.positions.get(signal.telegram_id, signal.position_id)
        settings = await self.core.accounts.store.get(signal.telegram_id)
        retryable = kind in ("slippage", "expired") and position is not None and position.status == "open"
        if not retryable:
            if kind == "fees":
                text += "\nAdd a little SOL to the wallet for fees, then tap Refresh."
                await self._edit(signal, text, buttons([("🔄 Refresh", SignalTap("refresh", signal.id))]))
            elif position is not None and position.status == "open":
                # a way forward always: a fresh transaction is checked and sent from scratch
                await self._edit(signal, text + "\nTap Refresh for a fresh exit transaction.", _refresh_markup(signal))
            else:
                await self._edit(signal, text + "\nThe position is no longer open, so there is nothing left to sell here.")
            return Outcome("failed", words, signal.signature)
        current = signal.slippage_bps or settings.slippage_bps
        slippage = next_slippage(current, signal.attempt, settings.slippage_cap_bps)
        if signal.attempt < settings.retry_count and (slippage > current or kind == "expired"):
            await self._edit(signal, text + f"\n🔁 Retrying with {slippage / 100:g}% slippage…")
            self._spawn(self._retry(signal, slippage, automatic=True))
        elif slippage > current or kind == "expired":
            await self._edit(signal, text, buttons([(f"🔁 Retry at {slippage / 100:g}% slippage", SignalTap("retry", signal.id))]))
        else:
            await self._edit(signal, text + f"\nYour slippage cap ({settings.slippage_cap_bps / 100:g}%) is reached; raise it in /settings.")
        return Outcome("failed", words, signal.signature)

    async def _auto_refused(self, signal: ExitSignal, why: str) -> None:
        """A refusal during auto-sell: a spoofed or broken stream must not get another try without a person."""
        await self.core.accounts.store.update(signal.telegram_id, auto_sell=False)
        user = await self.core.users.get(signal.telegram_id)
        if user is not None:
            self.outbox.send_message(
                user.chat_id,
                "🛡 <b>Auto-sell is now off.</b> I refused to sign an exit it was about to sell: "
                f"{render.esc(why)}. Nothing was signed. Check the signal, then turn auto-sell back on in /settings.",
                priority=Priority.URGENT,
            )
    async def _retry(self, failed: ExitSignal, slippage_bps: int, *, automatic: bool) -> None:
        try:
            await self._retry_once(failed, slippage_bps, automatic=automatic)
        except Exception:  # the message must not stay on "Retrying…": settle it with a way forward
            log.exception("retry of signal %s failed unexpectedly", failed.id)
            await self._edit(failed, await self._signal_text(failed) + "\n\n❌ The retry failed on my side; nothing was "
                             "sent twice. Tap Refresh for a fresh exit transaction.", _refresh_markup(failed))

    async def _retry_once(self, failed: ExitSignal, slippage_bps: int, *, automatic: bool) -> None:
        log.info("retrying signal %s at %d bps (%s)", failed.id, slippage_bps, "automatic" if automatic else "tapped")
        fresh = await self._ask_fresh(failed, slippage_bps)
        if fresh is None:
            await self._edit(failed, await self._signal_text(failed) + "\n\n⌛ No fresh transaction came; tap Refresh.",
                             buttons([("🔄 Refresh", SignalTap("refresh", failed.id))]))
            return
        await self.signals.set(fresh.id, attempt=failed.attempt + 1, slippage_bps=slippage_bps)
        if await self.signals.transition(fresh.id, ("pending",), "approved", tapped_at_ms=int(time.time() * 1000)):
            await self.sell(fresh.id, auto=failed.id in self._auto)

    async def _ask_fresh(self, old: ExitSignal, slippage_bps: int | None) -> ExitSignal | None:
        """Ask the stream for a new exit transaction and wait (bounded) for it; it takes over the old message.
        A partial sell is asked again for the same amount instead (see `_fresh_partial`)."""
        if is_partial(old):
            return await self._fresh_partial(old, slippage_bps)
        key = (old.telegram_id, old.position_id)
        waiter: asyncio.Future[ExitSignal] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        if not await self.streams.request_exit(old.telegram_id, old.position_id, slippage_bps):
            self._waiting.pop(key, None)
        try:
            fresh = await asyncio.wait_for(waiter, REFRESH_WAIT_S)
        except TimeoutError:
            self._waiting.pop(key, None)
            return None
        # the fresh transaction answers the same trigger: it keeps the old signal's reason (message, card, /history)
        await self.signals.set(fresh.id, chat_id=old.chat_id, message_id=old.message_id, attempt=old.attempt,
                               slippage_bps=slippage_bps or old.slippage_bps, reason=old.reason)
        if old.state in ("pending", "approved"):
            await self.signals.transition(old.id, (old.state,), "superseded")
        return await self.signals.get(fresh.id)

    async def _fresh_partial(self, old: ExitSignal, slippage_bps: int | None) -> ExitSignal | None:
        """A new transaction for the same partial amount ("Sell 25 %", a ladder level). request_exit_signal
        sells the whole position, so the REST API builds this one with `amount_tokens`; it takes over the
        old signal's message and place in the retry count."""
        user_id = old.telegram_id
        assert old.sell_tokens is not None
        found = await self.core.accounts.api_key(user_id)
        if found is None:
            return None
        settings = await self.core.accounts.store.get(user_id)
        position = await self.positions.get(user_id, old.position_id)
        slippage = slippage_bps or old.slippage_bps or settings.slippage_bps
        try:
            tx_b64 = await self.core.api.sell(
                found[0], mint=old.mint, user_pubkey=old.wallet, amount_tokens=old.sell_tokens, slippage_bps=slippage,
                output=render.quote_of(position), send_mode=settings.send_mode, tip_lamports=settings.tip_lamports,
            )
        except LaserSellApiError as exc:
            log.info("could not rebuild partial sell %s: %s", old.id, exc)
            return None
        msg: dict[str, Any] = {
            "position_id": old.position_id, "wallet_pubkey": old.wallet, "mint": old.mint,
            "token_account": old.token_account, "position_tokens": old.position_tokens,
            "sell_tokens": old.sell_tokens, "level_index": old.level_index, "profit_units": old.profit_units,
            "reason": old.reason, "triggered_at_ms": old.triggered_at_ms, "unsigned_tx_b64": tx_b64,
        }
        if old.market_type:
            msg["market_context"] = {"market_type": old.market_type}
        fresh = await self.signals.store(user_id, msg, int(time.time() * 1000), slippage)
        await self.signals.set(fresh.id, chat_id=old.chat_id, message_id=old.message_id, attempt=old.attempt)
        if old.state in ("pending", "approved"):
            await self.signals.transition(old.id, (old.state,), "superseded")
        return await self.signals.get(fresh.id)

    async def _refresh_partial(self, old: ExitSignal) -> None:
        fresh = await self._fresh_partial(old, old.slippage_bps)
        if fresh is None:
            await self._edit(old, await self._signal_text(old) + "\n\n⌛ LaserSell could not build a fresh sell right now; "
                             "tap Refresh again.", buttons([("🔄 Refresh", SignalTap("refresh", old.id))]))
            return
        await self._edit(fresh, await self._signal_text(fresh) + "\n\n🔄 Fresh transaction for the same amount.",
                         signal_buttons(fresh.id))

    # --- helpers ----------------------------------------------------------------------------------------
    async def _received(self, signature: str, wallet: str, quote: str) -> int | None:
        """What the sell paid into the wallet in quote units: SOL before the network fee, or USD1 base units
        into the wallet's USD1 token account."""
        if quote == "USD1":
            return await self.core.rpc.token_change(signature, wallet, render.USD1_MINT)
        change = await self.core.rpc.sol_change(signature, wallet)
        return None if change is None else change[0] + change[1]

    async def _signal_text(self, signal: ExitSignal) -> str:
        position = await self.positions.get(signal.telegram_id, signal.position_id)
        return render.exit_signal(signal, position, slippage_bps=signal.slippage_bps)

    async def _edit(self, signal: ExitSignal, text: str, markup: Any = None) -> None:
        if signal.chat_id is None or signal.message_id is None:
            user = await self.core.users.get(signal.telegram_id)
            if user is None:
                return
            message = await self.outbox.send_message(user.chat_id, text, priority=Priority.URGENT, reply_markup=markup)
            await self.signals.set(signal.id, chat_id=user.chat_id, message_id=message.message_id)
            return
        future = self.outbox.edit_message_text(signal.chat_id, signal.message_id, text, priority=Priority.URGENT,
                                               reply_markup=markup)
        with contextlib.suppress(Exception):
            await future

    async def _send_card(self, signal: ExitSignal, position: Position | None, received: int | None,
                         basis: int | None, pnl: int | None, quote: str = "SOL") -> None:
        if signal.chat_id is None or received is None or basis is None or pnl is None:
            return
        hold_ms = int(time.time() * 1000) - ((position.opened_at_ms or position.first_seen_ms) if position else signal.received_at_ms)
        partial = None
        if signal.sell_tokens and signal.sell_tokens < signal.position_tokens:
            partial = f"{100 * signal.sell_tokens / signal.position_tokens:.0f}% sold" + (
                f", level {signal.level_index + 1}" if signal.level_index is not None else "")
        per_unit = 10 ** render.QUOTE_DECIMALS[quote]
        card = PnlCard(
            token_symbol=position.label if position else signal.mint[:6],
            token_name=position.name if position else None,
            entry_sol=basis / per_unit, exit_sol=received / per_unit, pnl_sol=pnl / per_unit,
            pnl_pct=100 * pnl / basis if basis else 0.0, hold_seconds=max(0, hold_ms) / 1000,
            reason=render.REASONS.get(signal.reason, signal.reason).split(" ", 1)[-1], partial=partial, quote=quote,
        )
        png = await asyncio.to_thread(render_pnl_card, card)
        caption = f"{render.esc(card.token_symbol)} {render.pct(pnl, basis)} · {render.money(pnl, quote, signed=True)}"
        self.outbox.send_photo(signal.chat_id, png, caption, priority=Priority.URGENT)

    # --- after a crash ----------------------------------------------------------------------------------
    async def recover(self) -> None:
        """Settle every signal a previous run left approved, signing or submitted."""
        for signal in await self.signals.in_states(("approved", "signing", "submitted")):
            if signal.state == "approved" or not signal.signed_tx_b64 or not signal.signature:
                # tapped but never signed: nothing can have been sent; sell it now as the user asked
                self._spawn(self.sell(signal.id))
                continue
            self._spawn(self._resume(signal))

    async def _resume(self, signal: ExitSignal) -> None:
        assert signal.signed_tx_b64 and signal.signature
        raw = base64.b64decode(signal.signed_tx_b64)
        settings = await self.core.accounts.store.get(signal.telegram_id)
        # the node may be down right after a restart: ask again, backing off, rather than leave the sell signed
        # and unsettled until the next restart
        for pause in RESUME_PAUSES_S:
            try:
                await self.executor.resume(self.signals, signal.id, signal.state, raw, signal.signature,
                                           signal.telegram_id, settings.send_mode)
                break
            except RpcError as exc:
                log.info("resuming signal %s: the RPC did not answer (%s); again in %gs", signal.id, exc, pause)
                await asyncio.sleep(pause)
        else:
            await self._edit(signal, await self._signal_text(signal) + "\n\n⏳ I could not reach the Solana network to "
                             "check this sell after a restart. I keep checking and will tell you; /status shows it.")
        await self._confirm(signal.id, raw, signal.signature)


    # --- sells asked for from a position's card -----------------------------------------------------------
    async def held_tokens(self, position: Position) -> int:
        """Tokens the wallet holds now (a partial sell leaves fewer than the stream first reported)."""
        try:
            holdings = await self.core.rpc.get_token_holdings(position.wallet)
        except (RpcError, KeyError, TypeError, ValueError) as exc:
            log.info("token holdings unavailable (%s); using the stream's amount", exc)
            return int(position.tokens)
        for holding in holdings:
            if holding.mint == position.mint and (position.token_account in (None, holding.token_account)):
                return int(holding.amount)
        return 0

    async def sell_share(self, user_id: int, position: Position, share_pct: int | None, inbox: ManualSignals) -> str:
        """Sell `share_pct` % of what the wallet holds, or (None) the most that sells within the user's
        slippage; returns the answer for the tap.

        The REST API builds the sell for that amount; it goes into `inbox` as a "manual" exit signal and from
        there the way of every exit signal: stored, shown with Sell / Skip (or straight on with auto-sell),
        the guard, signing, sending and confirming."""
        settings = await self.core.accounts.user_settings(user_id)
        held = await self.held_tokens(position)
        if share_pct is None:
            best = sellable_within(position, settings.slippage_bps, held)
            if best is None:
                return "No liquidity snapshot within your slippage yet: try Refresh in a few seconds."
            amount, share = best[0], f"{best[1]:.0f}%"
        else:
            amount, share = (held if share_pct >= 100 else held * share_pct // 100), f"{share_pct}%"
        if amount <= 0 or held <= 0:
            return "This wallet holds none of these tokens any more."
        found = await self.core.accounts.api_key(user_id)
        if found is None:
            return "Connect your LaserSell key first: /start"
        try:
            # the tip is the user's for their send mode (none over plain RPC); the proceeds come in the market's quote
            tx = await self.core.api.sell(
                found[0], mint=position.mint, user_pubkey=position.wallet, amount_tokens=amount,
                slippage_bps=settings.slippage_bps, output=render.quote_of(position), send_mode=settings.send_mode,
                tip_lamports=settings.tip_lamports,
            )
        except InvalidApiKey:
            return "LaserSell refused your API key: set it again with /apikey."
        except LaserSellApiError as exc:
            return f"No sell was built: {api_failure_words(exc)}."[:190]
        now = int(time.time() * 1000)
        msg: dict[str, Any] = {
            "type": "exit_signal_with_tx", "position_id": position.position_id, "wallet_pubkey": position.wallet,
            "mint": position.mint, "token_account": position.token_account, "position_tokens": held,
            "sell_tokens": amount, "profit_units": position.profit_units or 0, "reason": "manual",
            "triggered_at_ms": now, "unsigned_tx_b64": tx,
        }
        if position.market_type:
            msg["market_context"] = {"market_type": position.market_type}
        await PnlHistory.for_db(self.core.db).mark(user_id, position.position_id, "sell", f"card {share}")
        event = StreamEvent(type="exit_signal_with_tx", data=msg, received_at=time.monotonic(), urgent=True)
        await inbox.on_signal(user_id, event)
        if settings.auto_sell:
            return f"Selling {share}…"
        return f"Sell {share} ready: tap Sell to confirm."


@dataclass(frozen=True)
class _Prepared:
    at: float  # time.monotonic() of the check ahead
    writes: int  # storage.db.user_writes then
    unsigned_tx_b64: str
    position: Position | None
    settings: UserSettings
    tx: VersionedTransaction


class _SellHooks(TradeHooks[Outcome]):
    """What a sell does at each step of the executor."""

    def __init__(self, seller: Seller, signal: ExitSignal, position: Position | None, settings: UserSettings, auto: bool) -> None:
        self.seller = seller
        self.signal = signal
        self.position = position
        self.settings = settings
        self.auto = auto

    async def _text(self) -> str:
        return await self.seller._signal_text(self.signal)

    async def refused(self, refusal: GuardRefusal) -> Outcome:
        signal, seller = self.signal, self.seller
        key = (signal.telegram_id, signal.position_id)
        if refusal.rule == "intent_amount" and not is_partial(signal) and key not in seller._amount_refreshing:
            # the signal predates a partial sell: it would sell more than the wallet holds and fail on chain.
            # A fresh exit for what is held now answers the same trigger (once: a second mismatch is refused).
            seller._amount_refreshing.add(key)
            try:
                return await seller._refresh_and_sell(signal, self.position, auto=self.auto)
            finally:
                seller._amount_refreshing.discard(key)
        if isinstance(refusal, SimulationFailed):
            kind, words = explain(refusal.err, VersionedTransaction.from_bytes(base64.b64decode(signal.unsigned_tx_b64)))
            if kind in ("slippage", "fees"):
                # an honest trade that would fail on chain: nothing is signed and the usual retry takes over
                await seller.signals.set(signal.id, state="failed", error=f"{kind}: simulated {refusal.err}")
                return await seller._failed(signal, kind, words)
        await seller.signals.set(signal.id, state="failed", error=f"guard:{refusal.rule}")
        await seller._edit(signal, await self._text() + f"\n\n🛡 {render.esc(refusal)}\nNothing was signed. Tap Refresh "
                           "to ask LaserSell for a fresh transaction; it is checked again before anything is signed.",
                           _refresh_markup(signal))
        if self.auto:
            await seller._auto_refused(signal, refusal.detail)
        return Outcome("failed", str(refusal))

    async def unverified(self, reason: str) -> Outcome:
        signal, seller = self.signal, self.seller
        await seller.signals.set(signal.id, state="failed", error=f"unverified: {reason}"[:200])
        await seller._edit(signal, await self._text() + "\n\n⚠️ <b>Not signed</b>: this transaction could not be "
                           f"verified ({render.esc(reason)}), and the bot never signs blind.",
                           buttons([("🔁 Retry", SignalTap("retry", signal.id))]))
        return Outcome("failed", "could not be verified")

    async def stale(self) -> Outcome:
        return await self.seller._refresh_and_sell(self.signal, self.position, auto=self.auto)

    async def cannot_pay(self, needed: int, held: int) -> Outcome:
        words = (f"not enough SOL in the wallet to pay the network fee (it needs {render.sol(needed)}, "
                 f"holds {render.sol(held)})")
        await self.seller.signals.set(self.signal.id, state="failed", error=f"fees: balance {held} < {needed}")
        return await self.seller._failed(self.signal, "fees", words)

    async def signing_failed(self, error: SigningError) -> Outcome:
        await self.seller.signals.set(self.signal.id, state="failed", error="signing")
        await self.seller._edit(self.signal, await self._text() + f"\n\n❌ {render.esc(error)}", _refresh_markup(self.signal))
        return Outcome("failed", str(error))

    def _mark_sent(self) -> None:
        self.seller.mark_sent(self.signal.id)

    async def moved_on(self) -> Outcome:
        self._mark_sent()
        return Outcome("failed", "already handled")  # whoever moved it told the trader

    async def send_failed(self, error: RpcError, raw: bytes) -> Outcome:
        self._mark_sent()
        kind, words = explain(_rpc_error_kind(error), VersionedTransaction.from_bytes(raw))
        await self.seller.signals.set(self.signal.id, state="failed", error=f"{kind}: {error}")
        return await self.seller._failed(self.signal, kind, words)

    async def sent(self, checked: Checked) -> None:
        self._mark_sent()
        submitted_at_ms = int(time.time() * 1000)
        await self.seller.sends_first()  # the write and the message edit wait for the burst's other sends
        await self.seller.signals.set(self.signal.id, submitted_at_ms=submitted_at_ms)
        await self.seller._edit(self.signal, await self._text() + "\n\n⏳ Sent. Waiting for the network to confirm…")

    async def still_unknown(self) -> None:
        await self.seller._edit(self.signal, await self._text() + "\n\n⏳ Still not confirmed. I keep checking and will tell you.")

    async def settled(self, verdict: str, status: SignatureStatus | None, raw: bytes, signature: str) -> Outcome:
        seller, signal = self.seller, self.signal
        if verdict == "expired":
            await seller.signals.set(signal.id, state="failed", error="expired")
            return await seller._failed(signal, "expired", "the transaction expired before it landed")
        if verdict == "unknown" or status is None:
            return Outcome("unknown", "still checking", signature)
        if verdict == "failed":
            kind, words = explain(status.err, VersionedTransaction.from_bytes(raw))
            await seller.signals.set(signal.id, state="failed", error=f"{kind}: {status.err}")
            return await seller._failed(signal, kind, words)
        current = await seller.signals.get(signal.id)
        return await seller._landed(current or signal, signature)


def _refresh_markup(signal: ExitSignal) -> Any:
    return buttons([("🔄 Refresh", SignalTap("refresh", signal.id))])


def is_partial(signal: ExitSignal) -> bool:
    """A sell of part of the position: a ladder level or a share asked from the card."""
    return bool(signal.sell_tokens) and signal.sell_tokens < signal.position_tokens  # type: ignore[operator]


def next_slippage(current_bps: int, attempt: int, cap_bps: int) -> int:
    """The official CLI's steps: +20 bps on the first retry, then +40 bps each time, up to the user's cap."""
    bump = SLIPPAGE_BUMP_FIRST_BPS if attempt == 0 else SLIPPAGE_BUMP_NEXT_BPS
    return min(cap_bps, current_bps + bump)


def _rpc_error_kind(exc: RpcError) -> Any:
    text = str(exc)
    if "Blockhash not found" in text or "BlockhashNotFound" in text:
        return "BlockhashNotFound"
    if "insufficient funds for fee" in text.lower() or "InsufficientFundsForFee" in text:
        return "InsufficientFundsForFee"
    data = exc.data if isinstance(exc.data, dict) else {}
    if data.get("err") is not None:
        return data["err"]
    return text


def sellable_within(position: Position, slippage_bps: int, held: int) -> tuple[int, float, int] | None:
    """(tokens, % of what is held, band slippage) sellable within the band at or below `slippage_bps`."""
    bands = [b for b in bands_from(position.bands) if b.slippage_bps <= slippage_bps]
    if not bands or held <= 0:
        return None
    band = bands[-1]
    tokens = min(held, band.max_tokens) if band.max_tokens else int(held * min(100.0, band.coverage_pct) / 100)
    return tokens, 100.0 * tokens / held, band.slippage_bps
