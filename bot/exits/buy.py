"""Buy from chat: quote, one tap, then the shared executor (bot.exits.executor): guard, sign, persist, send,
confirm. The guard holds a buy to its simulated effect: SOL out at most the amount + fees + tip + rent,
only the bought mint's account gains, nothing else of the wallet moves.

An order's states: quoted -> approved (the tap, atomic) -> signing (signed bytes and signature stored
BEFORE sending) -> submitted -> landed | failed; or expired / cancelled. The buy is built for the
user's RPC (no tip): a bought token is then tracked by the stream like any other, which is why a buy
is refused while the stream is not connected (a wallet the stream does not watch is never tracked).
After a crash, `recover()` settles what was signed by its signature; a tapped order that was never
signed is failed rather than bought late, because the price it was quoted at is gone.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from solders.pubkey import Pubkey

from bot.core import Core
from bot.exits.executor import Checked, Executor, Trade, TradeHooks
from bot.exits.guard import BuyIntent, GuardRefusal
from bot.exits.sell import explain
from bot.exits.signer import SigningError, decode_unsigned
from bot.lasersell_api import InvalidApiKey, LaserSellApiError
from bot.notify import render
from bot.notify.outbox import Priority
from bot.solana_rpc import RpcError, SignatureStatus
from bot.stream.client import StreamClient
from bot.tasks import BackgroundTasks
from storage.history import BuyOrder, BuyOrders

log = logging.getLogger("lasersell_bot.buy")

LAMPORTS_PER_SOL = 1_000_000_000
QUOTE_TTL_MS = 60_000  # about a blockhash's life: an older quote is asked for again
FRESH_MS = 3_000  # younger quotes are signed without asking the chain about their blockhash
FEE_HEADROOM_LAMPORTS = 2_039_280 + 20_000  # a new token account's rent plus fees stay in the wallet
CONFIRM_TIMEOUT_S = 60.0
MAX_BUY_SOL = Decimal(1_000_000)


class BuyError(Exception):
    """The buy cannot go ahead; `str()` is a sentence the trader can act on. Nothing was changed."""


@dataclass(frozen=True)
class BuyQuote:
    order: BuyOrder
    symbol: str | None
    decimals: int | None

    @property
    def expected_tokens(self) -> int:
        return int(self.order.route.get("expected_out") or 0)

    @property
    def min_tokens(self) -> int:
        return int(self.order.route.get("min_out") or 0)


def parse_sol(text: str) -> int:
    """`0.25` -> lamports; raises BuyError with words for anything but a positive amount."""
    try:
        amount = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise BuyError(f"{text!r} is not an amount of SOL: write it like 0.25") from None
    if not amount.is_finite():
        raise BuyError(f"{text!r} is not an amount of SOL: write it like 0.25")
    if amount <= 0:
        raise BuyError("the amount must be more than 0 SOL")
    if amount > MAX_BUY_SOL:
        raise BuyError(f"{text} SOL is more than any wallet holds")
    lamports = int(amount * LAMPORTS_PER_SOL)
    if lamports <= 0:
        raise BuyError("the amount is smaller than one lamport")
    return lamports


def parse_mint(text: str) -> str:
    try:
        return str(Pubkey.from_string(text.strip()))
    except ValueError:
        raise BuyError(f"{text!r} is not a token mint address (base58, 32 to 44 characters)") from None


class StreamClients(Protocol):
    """The users' running stream clients (`bot.stream.streams.UserStreams`)."""

    def client(self, user_id: int) -> StreamClient | None: ...


class Buyer:
    def __init__(self, core: Core, executor: Executor, streams: StreamClients) -> None:
        self.core = core
        self.streams = streams
        self.orders = BuyOrders(core.db)
        self._background = BackgroundTasks()
        self.executor = executor

    async def close(self) -> None:
        await self._background.cancel_all()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._background.spawn(coro)

    # --- the quote --------------------------------------------------------------------------------------
    async def quote(self, user_id: int, mint_text: str, sol_text: str, wallet_address: str | None = None) -> BuyQuote:
        """Check everything, then ask LaserSell for the buy transaction and store it as a quoted order."""
        lamports = parse_sol(sol_text)
        mint = parse_mint(mint_text)
        services = self.core
        found = await services.accounts.api_key(user_id)
        if found is None:
            raise BuyError("connect your LaserSell API key first: /start")
        wallets = [w for w in await services.accounts.wallets.list(user_id) if w.registered_at]
        if not wallets:
            raise BuyError("add a wallet first: /wallets")
        wallet = next((w for w in wallets if w.is_default), wallets[0])
        if wallet_address is not None:  # the wallet the trader chose on the token panel
            chosen = next((w for w in wallets if w.address == wallet_address), None)
            if chosen is None:
                raise BuyError("that wallet is not one of your registered wallets any more: open /wallets")
            wallet = chosen
        client = self.streams.client(user_id)
        if client is None or client.state != "connected":
            raise BuyError(
                "your LaserSell stream is not connected, so a buy now would never be tracked. "
                "Check /status (or /resume) and buy once it is connected."
            )
        try:
            balance = await services.rpc.get_balance(wallet.address)
        except RpcError as exc:
            raise BuyError(f"I could not read your wallet's balance ({exc}); try again") from None
        if lamports + FEE_HEADROOM_LAMPORTS > balance:
            raise BuyError(
                f"wallet {render.esc(wallet.label)} holds {render.sol(balance)}: not enough for "
                f"{render.sol(lamports)} plus fees and the token account's rent"
            )
        settings = await services.accounts.store.get(user_id)
        try:
            # `amount` is a human amount (0.1 = 0.1 SOL); the atomic field is `amount_in_total`. Lamports are
            # what the trader confirmed, so the exact integer goes in the atomic field.
            reply = await services.api.buy(
                found[0], mint=mint, user_pubkey=wallet.address, slippage_bps=settings.slippage_bps, input="SOL",
                amount_in_total=lamports, send_mode="rpc", tip_lamports=0,
            )
        except InvalidApiKey:
            raise BuyError("LaserSell refused your API key: set it again with /apikey") from None
        except LaserSellApiError as exc:
            if exc.reason == "not_indexed" or "not indexed" in str(exc):
                raise BuyError("LaserSell has not indexed this mint yet: try again in a minute") from None
            if exc.status == 404 or exc.reason in ("no_route", "invalid_mint", "unsupported_token_program"):
                raise BuyError(f"LaserSell knows no market for this mint ({exc}): check the address") from None
            if exc.retryable:
                raise BuyError(f"LaserSell is busy ({exc}): try again in a moment") from None
            raise BuyError(f"LaserSell could not build the buy: {exc}") from None
        tx_b64 = reply.get("tx")
        if not isinstance(tx_b64, str):
            raise BuyError("LaserSell answered without a transaction; try again")
        order = await self.orders.create(
            user_id, wallet=wallet.address, mint=mint, lamports=lamports, slippage_bps=settings.slippage_bps,
            tip_lamports=0, unsigned_tx_b64=tx_b64, route=dict(reply.get("route") or {}),
        )
        symbol, decimals = await self._token_info(mint)
        return BuyQuote(order, symbol, decimals)

    async def _token_info(self, mint: str) -> tuple[str | None, int | None]:
        """Decimals from the mint account (to show amounts in whole tokens); best effort."""
        try:
            result = await self.core.rpc.call("getAccountInfo", [mint, {"encoding": "jsonParsed"}])
            info = result["value"]["data"]["parsed"]["info"]
            return None, int(info["decimals"])
        except (RpcError, KeyError, TypeError, ValueError):
            return None, None

    # --- taps -------------------------------------------------------------------------------------------
    async def attach(self, order_id: str, chat_id: int, message_id: int) -> None:
        await self.orders.set(order_id, chat_id=chat_id, message_id=message_id)

    async def approve(self, user_id: int, order_id: str) -> str:
        order = await self.orders.get(order_id)
        if order is None or order.telegram_id != user_id:
            return "This buy is not yours."
        if order.state != "quoted":
            return {
                "approved": "Already buying…", "signing": "Already buying…", "submitted": "Already buying…",
                "landed": "Already bought.", "cancelled": "You cancelled this buy.", "expired": "This quote expired.",
                "failed": "This buy failed; see the message.",
            }.get(order.state, "Already handled.")
        if now_ms() - order.created_at > QUOTE_TTL_MS:
            if await self.orders.transition(order.id, ("quoted",), "expired"):
                await self._edit(order, "⌛ This quote expired (prices move). Send /buy again for a fresh one.")
            return "Expired: send /buy again."
        if not await self.orders.transition(order.id, ("quoted",), "approved"):
            return "Already buying…"
        self._spawn(self.execute(order.id))
        return "Buying…"

    async def cancel(self, user_id: int, order_id: str) -> str:
        order = await self.orders.get(order_id)
        if order is None or order.telegram_id != user_id:
            return "This buy is not yours."
        if not await self.orders.transition(order.id, ("quoted",), "cancelled"):
            return "Too late to cancel." if order.state != "cancelled" else "Already cancelled."
        await self._edit(order, "Buy cancelled. Nothing was signed.")
        return "Cancelled"

    # --- the buy ----------------------------------------------------------------------------------------
    async def execute(self, order_id: str) -> str:
        """Guard, sign, persist, send and confirm an approved order; returns the outcome in a word."""
        order = await self.orders.get(order_id)
        assert order is not None
        try:
            return await self._execute(order)
        except Exception as exc:  # never leave a tapped buy without an answer
            log.exception("buy %s failed unexpectedly", order_id)
            await self.orders.set(order.id, state="failed", error=type(exc).__name__)
            await self._edit(order, f"❌ The buy failed on my side ({type(exc).__name__}).")
            return "failed"

    async def _execute(self, order: BuyOrder) -> str:
        hooks = _BuyHooks(self, order)
        try:
            tx = decode_unsigned(order.unsigned_tx_b64)
        except SigningError as exc:
            return await hooks.signing_failed(exc)
        intent = BuyIntent(
            wallet=Pubkey.from_string(order.wallet), mint=Pubkey.from_string(order.mint),
            max_sol_lamports=order.lamports, max_tip_lamports=order.tip_lamports,
        )
        trade = Trade(
            user_id=order.telegram_id, wallet=order.wallet, tx=tx, intent=intent, send_mode="rpc",
            records=self.orders, record_id=order.id, label=render.short(order.mint),
            check_blockhash=now_ms() - order.created_at > FRESH_MS,
        )
        result: str = await self.executor.execute(trade, hooks)
        return result

    async def _confirm(self, order_id: str, raw: bytes, signature: str) -> str:
        order = await self.orders.get(order_id)
        assert order is not None
        result: str = await self.executor.confirm(raw, signature, _BuyHooks(self, order), CONFIRM_TIMEOUT_S, self._spawn)
        return result

    async def _landed(self, order: BuyOrder, signature: str) -> str:
        spent = await self._sol_spent(signature, order.wallet)
        await self.orders.set(order.id, state="landed")
        self.executor.holdings.forget(order.wallet)
        lines = [f"✅ <b>Bought</b> <code>{render.esc(order.mint)}</code> for {render.sol(spent or order.lamports)}"
                 + (" (fees and rent included)" if spent else "")]
        lines.append("LaserSell picks the new position up in a moment; it shows here as a new position.")
        lines.append(f'<a href="https://solscan.io/tx/{signature}">{signature[:8]}…{signature[-8:]}</a>')
        await self._edit(order, "\n".join(lines))
        return "landed"

    # --- after a crash ----------------------------------------------------------------------------------
    async def recover(self) -> None:
        for order in await self.orders.in_states(("approved", "signing", "submitted")):
            if not order.signed_tx_b64 or not order.signature:
                await self.orders.set(order.id, state="failed", error="interrupted before signing")
                await self._edit(order, "❌ The bot restarted before this buy was signed: nothing was sent. "
                                 "Send /buy again if you still want it.")
                continue
            self._spawn(self._resume(order))

    async def _resume(self, order: BuyOrder) -> None:
        assert order.signed_tx_b64 and order.signature
        raw = base64.b64decode(order.signed_tx_b64)
        await self.executor.resume(self.orders, order.id, order.state, raw, order.signature, order.telegram_id, "rpc")
        await self._confirm(order.id, raw, order.signature)

    # --- helpers ----------------------------------------------------------------------------------------
    def describe(self, order: BuyOrder, symbol: str | None = None, decimals: int | None = None) -> str:
        route = order.route
        lines = [f"🛒 <b>Buy {render.esc(symbol) if symbol else render.short(order.mint)}</b> for {render.sol(order.lamports)}",
                 f"Mint <code>{render.esc(order.mint)}</code>"]
        if route.get("expected_out"):
            lines.append(
                f"About {render.tokens(int(route['expected_out']), decimals)} tokens, at least "
                f"{render.tokens(int(route.get('min_out') or 0), decimals)} ({order.slippage_bps / 100:g}% slippage)"
            )
        if route.get("market_type"):
            lines.append(f"Market {render.market_words(str(route['market_type']))} · wallet <code>{render.short(order.wallet)}</code>")
        return "\n".join(lines)

    async def _sol_spent(self, signature: str, wallet: str) -> int | None:
        """What the buy took out of the wallet, fee included."""
        change = await self.core.rpc.sol_change(signature, wallet)
        return None if change is None else -change[0]

    async def _edit(self, order: BuyOrder, text: str) -> None:
        if order.chat_id is None or order.message_id is None:
            current = await self.orders.get(order.id)
            if current is None or current.chat_id is None or current.message_id is None:
                return
            order = current
        assert order.chat_id is not None and order.message_id is not None
        future = self.core.outbox.edit_message_text(order.chat_id, order.message_id, text, priority=Priority.URGENT)
        with contextlib.suppress(Exception):
            await future


class _BuyHooks(TradeHooks[str]):
    """What a buy does at each step of the executor; each returns the outcome in a word."""

    def __init__(self, buyer: Buyer, order: BuyOrder) -> None:
        self.buyer = buyer
        self.order = order

    async def _fail(self, error: str, text: str) -> str:
        await self.buyer.orders.set(self.order.id, state="failed", error=error[:200])
        await self.buyer._edit(self.order, text)
        return "failed"

    async def refused(self, refusal: GuardRefusal) -> str:
        return await self._fail(f"guard:{refusal.rule}", f"🛡 {render.esc(refusal)}\nNothing was signed.")

    async def unverified(self, reason: str) -> str:
        return await self._fail(f"unverified: {reason}", "⚠️ <b>Not bought</b>: this transaction could not be verified "
                                f"({render.esc(reason)}), and the bot never signs blind. Send /buy again to retry.")

    async def stale(self) -> str:
        await self.buyer.orders.set(self.order.id, state="expired", error="blockhash")
        await self.buyer._edit(self.order, "⌛ The quote's transaction expired before it was signed. Send /buy again.")
        return "expired"

    async def cannot_pay(self, needed: int, held: int) -> str:
        return await self._fail(f"fees: balance {held} < {needed}", f"❌ <b>Not bought</b>: the wallet holds "
                                f"{render.sol(held)}, less than the {render.sol(needed)} fees need.")

    async def signing_failed(self, error: SigningError) -> str:
        return await self._fail("signing", f"❌ {render.esc(error)}")

    async def moved_on(self) -> str:
        return "already handled"  # whoever moved the order on told the trader

    async def send_failed(self, error: RpcError, raw: bytes) -> str:
        return await self._fail(str(error), f"❌ <b>Not bought</b>: the network refused it ({render.esc(error)}).")

    async def sent(self, checked: Checked) -> None:
        await self.buyer._edit(self.order, self.buyer.describe(self.order) + "\n\n⏳ Sent. Waiting for the network to confirm…")

    async def still_unknown(self) -> None:
        await self.buyer._edit(self.order, self.buyer.describe(self.order) + "\n\n⏳ Still not confirmed; I keep checking.")

    async def settled(self, verdict: str, status: SignatureStatus | None, raw: bytes, signature: str) -> str:
        order = self.order
        if verdict == "expired":
            return await self._fail("expired", self.buyer.describe(order) + "\n\n⌛ <b>Not bought</b>: the transaction "
                                    "expired before it landed. Send /buy again.")
        if verdict == "unknown" or status is None:
            return "unknown"
        if verdict == "failed":
            _kind, words = explain(status.err)
            return await self._fail(str(status.err), self.buyer.describe(order) + f"\n\n❌ <b>Not bought</b>: {render.esc(words)}.")
        return await self.buyer._landed(order, signature)


def now_ms() -> int:
    return int(time.time() * 1000)
