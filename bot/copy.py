"""Copy trading: the watch wallets and limits a user's stream carries, and what the bot does with the
server's `mirror_*` events.

Every mirror buy goes through the one executor (guard -> sign -> persist -> send -> confirm). The guard's
intent is the user's own copy settings for that watched wallet (its amount, its buying wallet, the user's
tip), never the frame: a signal that spends more, or buys with another wallet, is refused unsigned. The bot
adds its own limits on top of the server's: a daily budget and a SOL reserve kept for exit fees, and the
mint's risk flags read from the chain (a flagged token is never bought without a tap). Each signal is
answered with `mirror_buy_result` (true only when the transaction was signed and submitted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from solders.pubkey import Pubkey

from bot.callbacks import CopyTap, keyboard
from bot.core import Core
from bot.exits.buy import FEE_HEADROOM_LAMPORTS, LAMPORTS_PER_SOL, StreamClients
from bot.exits.executor import Checked, Executor, Trade, TradeHooks
from bot.exits.guard import BuyIntent, GuardRefusal
from bot.exits.signer import SigningError, decode_unsigned
from bot.notify import render
from bot.notify.outbox import Priority
from bot.risk import read_risk_flags
from bot.solana_rpc import RpcError, SignatureStatus
from bot.tasks import BackgroundTasks
from storage.accounts import Wallet
from storage.copy import DEFAULT_LIMITS, SERVER_LIMITS, CopyStore, WatchedWallet
from storage.history import BuyOrder, BuyOrders

log = logging.getLogger("lasersell_bot.copy")

SIGNAL_TTL_MS = 60_000  # like a buy quote: an older transaction is not signed (its price and blockhash are gone)
COALESCE_S = 600.0  # the same skip reason for the same watched wallet is told once in this long
USD1_UNITS = 1_000_000
DEFAULT_AMOUNT = LAMPORTS_PER_SOL // 10  # per copy buy of a newly watched wallet
MAX_NICKNAME = 24
TIPPED_SEND_MODES = ("helius_sender", "astralane")

# Watch-wallet slots per plan (desktop/mirror-trading.mdx).
SLOTS = {"free": 2, "professional": 10, "advanced": 25}

FAILED_WORDS = {
    "insufficient_balance": "the buying wallet holds too little. Top it up, or lower the amount with /copy amount",
    "no_route": "LaserSell found no market to buy this token on. Nothing to do",
    "below_min_liquidity": "the pool holds less than your minimum liquidity (/copy limit min_liquidity_sol)",
    "cooldown_active": "a buy from this wallet came inside the cooldown (/copy limit cooldown_sec)",
    "max_positions_reached": "you already hold as many copies of this wallet as allowed "
                             "(/copy limit max_positions_per_wallet)",
    "max_exposure_reached": "it would take your copied positions over your SOL exposure cap "
                            "(/copy limit max_active_sol)",
    "entry_drift_exceeded": "the price moved too far since the wallet bought (/copy limit max_entry_drift_pct)",
    "creator_token": "the wallet created this token (/copy limit skip_creator_tokens)",
}


def plan_of(info: dict[str, Any]) -> str:
    """The plan from the stored account reply: tier_name (free / tier_1 / tier_2), plan, or wallet count."""
    name = str(info.get("tier_name") or info.get("plan") or "").lower()
    if "2" in name or "advanced" in name:
        return "advanced"
    if "1" in name or "professional" in name:
        return "professional"
    if name:
        return "free"
    wallets = int(info.get("max_wallets") or 1)
    return "advanced" if wallets >= 200 else "professional" if wallets >= 5 else "free"


def amount_words(w: WatchedWallet) -> str:
    if w.quote == "USD1":
        return f"{w.amount_units / USD1_UNITS:g} USD1"
    return render.sol(w.amount_units)


class CopyError(Exception):
    """A copy-trading change refused, nothing changed; `str()` (HTML) says what was wrong and how to do it right."""


class NotWatched(CopyError):
    """The user watches no wallet by that nickname or address."""


@dataclass(frozen=True)
class WatchedRow:
    wallet: WatchedWallet
    buyer_label: str | None  # the label of the user's wallet that buys its copies; None: the default wallet
    stats: str


@dataclass(frozen=True)
class CopyOverview:
    plan: str
    slots: int
    rows: list[WatchedRow]
    limits: dict[str, Any]


class CopyStreams(StreamClients, Protocol):
    """What copy trading asks of the users' streams (`bot.stream.streams.UserStreams`)."""

    async def refresh(self, user_id: int) -> None: ...

    async def stop_user(self, user_id: int) -> None: ...


class Copier:
    def __init__(self, core: Core, executor: Executor, streams: CopyStreams) -> None:
        self.core = core
        self.executor = executor
        self.streams = streams
        self.store = CopyStore(core.db)
        self.orders = BuyOrders(core.db)
        self._background = BackgroundTasks()
        self._told: dict[tuple[int, str, str], float] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self.signal_ttl_ms = SIGNAL_TTL_MS
        self._locks: dict[int, asyncio.Lock] = {}

    async def close(self) -> None:
        for handle in self._expiry.values():
            handle.cancel()
        await self._background.cancel_all()

    async def recover(self) -> None:
        """After a restart, a copy signal still waiting for a tap has lost its timer: it expires now, unsigned."""
        for order in await self.orders.in_states(("quoted",)):
            if order.route.get("copy"):
                await self._expire(order.id)

    # --- what the stream carries --------------------------------------------------------------------------
    async def default_wallet(self, user_id: int) -> str | None:
        wallets = [w for w in await self.core.accounts.wallets.list(user_id) if w.registered_at]
        chosen = next((w for w in wallets if w.is_default), wallets[0] if wallets else None)
        return None if chosen is None else chosen.address

    async def watch_entries(self, user_id: int) -> list[dict[str, Any]]:
        """`watch_wallets` for configure / update_watch_wallets: the enabled wallets, each with its buy."""
        default = await self.default_wallet(user_id)
        entries: list[dict[str, Any]] = []
        for w in await self.store.wallets(user_id):
            if not w.enabled:
                continue
            buyer = w.buy_wallet or default
            entry: dict[str, Any] = {"pubkey": w.address}
            if buyer is not None:
                # Both modes need the server to build the buy; "ask me" is the bot holding it for a tap.
                auto: dict[str, Any] = {"wallet_pubkey": buyer, "amount_quote_units": w.amount_units}
                if w.quote == "USD1":
                    auto = {"wallet_pubkey": buyer, "amount_quote_units": 0, "amount_usd1_units": w.amount_units}
                entry["auto_buy"] = auto
            entries.append(entry)
        return entries

    async def mirror_config(self, user_id: int) -> dict[str, Any] | None:
        if not await self.store.wallets(user_id):
            return None
        limits = await self.store.limits(user_id)
        return {name: limits[name] for name in SERVER_LIMITS}

    async def slots(self, user_id: int) -> tuple[str, int]:
        stored = await self.core.accounts.keys.get(user_id)
        info = json.loads(stored.tier) if stored is not None and stored.tier else {}
        plan = plan_of(info)
        return plan, SLOTS[plan]

    async def stats_line(self, user_id: int, w: WatchedWallet) -> str:
        s = await self.store.stats(user_id, w.address)
        if not s["copies"]:
            return "no copies yet"
        if not s["closed"]:
            return f"{s['copies']} copies, none closed yet"
        return (f"{s['copies']} copies · win rate {100 * s['wins'] / s['closed']:.0f}% · best "
                f"{render.sol(s['best'])} · worst {render.sol(s['worst'])} · avg hold {s['avg_hold_s'] / 60:.1f} min · "
                f"PnL {render.sol(s['total'])}")

    async def changed(self, user_id: int, *, limits: bool = False) -> None:
        """Bring a running stream in line: the watch list in place, limits by a fresh configure."""
        client = self.streams.client(user_id)
        if client is None:
            await self.streams.refresh(user_id)  # not streaming: the next configure carries it
            return
        if limits:
            # mirror_config travels only on configure: reconnect so the server reads the new limits
            await self.streams.stop_user(user_id)
            await self.streams.refresh(user_id)
            return
        await client.update_watch_wallets(await self.watch_entries(user_id))

    # --- what the user changes (/copy) -----------------------------------------------------------------------
    async def overview(self, user_id: int) -> CopyOverview:
        """Everything /copy shows: the plan's slots, each watched wallet with its buyer and stats, the limits."""
        wallets = await self.store.wallets(user_id)
        plan, slots = await self.slots(user_id)
        own = {w.address: w.label for w in await self.core.accounts.wallets.list(user_id)}
        rows = [WatchedRow(w, own.get(w.buy_wallet, "?") if w.buy_wallet else None, await self.stats_line(user_id, w))
                for w in wallets]
        return CopyOverview(plan, slots, rows, await self.store.limits(user_id))

    async def watched(self, user_id: int) -> list[WatchedWallet]:
        return await self.store.wallets(user_id)

    async def limits(self, user_id: int) -> dict[str, Any]:
        """The user's limits, each at its default unless changed."""
        return await self.store.limits(user_id)

    async def find(self, user_id: int, name_or_address: str) -> WatchedWallet | None:
        """A watched wallet by nickname (any case) or address."""
        return await self.store.find(user_id, name_or_address)

    async def get(self, user_id: int, name_or_address: str) -> WatchedWallet:
        """Like `find`, but a wallet not watched raises `NotWatched`, with the words to reply."""
        found = await self.store.find(user_id, name_or_address)
        if found is None:
            raise NotWatched(f"you watch no wallet called {render.esc(name_or_address)!r}; /copy lists them")
        return found

    async def watch(self, user_id: int, address: str, nickname: str) -> WatchedWallet:
        """Start watching someone else's wallet, within the plan's slots, at the default amount, asking first."""
        try:
            address = str(Pubkey.from_string(address))
        except ValueError:
            raise CopyError(f"{render.esc(address)!r} is not a Solana wallet address (base58, 32 to 44 characters)") from None
        if len(nickname) > MAX_NICKNAME or not nickname.replace("_", "").replace("-", "").isalnum():
            raise CopyError(f"a nickname is up to {MAX_NICKNAME} letters, digits, - or _")
        own = {w.address for w in await self.core.accounts.wallets.list(user_id)}
        if address in own:
            raise CopyError("that is one of your own wallets; watch someone else's")
        wallets = await self.store.wallets(user_id)
        if any(w.address == address for w in wallets):
            raise CopyError("you already watch that wallet")
        if any(w.nickname.lower() == nickname.lower() for w in wallets):
            raise CopyError(f"the nickname {nickname!r} is taken; choose another")
        plan, slots = await self.slots(user_id)
        if len(wallets) >= slots:
            raise CopyError(f"your {plan} plan has {slots} watch-wallet slots and all are used; "
                            "remove one (/copy remove &lt;nickname&gt;) or upgrade your LaserSell plan")
        w = await self.store.add(user_id, address, nickname, DEFAULT_AMOUNT)
        await self.changed(user_id, limits=len(wallets) == 0)  # the first one: the limits travel with it
        return w

    async def set_limit(self, user_id: int, name: str, value: Any) -> Any:
        """Save one limit; one the server applies reaches a running stream by a fresh configure."""
        if name not in DEFAULT_LIMITS:
            raise CopyError(f"there is no limit called {render.esc(name)!r}; the limits are: {', '.join(DEFAULT_LIMITS)}")
        await self.store.set_limit(user_id, name, value)
        if name in SERVER_LIMITS:
            await self.changed(user_id, limits=True)
        return (await self.store.limits(user_id))[name]

    async def set_amount(self, user_id: int, name: str, units: int, quote: str) -> WatchedWallet:
        """What each copy of a watched wallet's buy spends, in SOL lamports or USD1 units."""
        if quote not in ("SOL", "USD1") or units <= 0:
            raise CopyError("the amount must be more than 0, in SOL or USD1")
        w = await self.get(user_id, name)
        await self.store.update(user_id, w.address, amount_units=units, quote=quote)
        await self.changed(user_id)
        return await self.get(user_id, w.address)

    async def set_buy_wallet(self, user_id: int, name: str, wanted: str) -> tuple[WatchedWallet, Wallet]:
        """Which of the user's registered wallets (by name or address) buys the copies of a watched wallet."""
        w = await self.get(user_id, name)
        mine = [x for x in await self.core.accounts.wallets.list(user_id) if x.registered_at]
        chosen = next((x for x in mine if x.label.lower() == wanted.lower() or x.address == wanted), None)
        if chosen is None:
            names = ", ".join(x.label for x in mine) or "none yet (/wallets)"
            raise CopyError(f"you have no wallet called {render.esc(wanted)!r}; yours: {render.esc(names)}")
        await self.store.update(user_id, w.address, buy_wallet=chosen.address)
        await self.changed(user_id)
        return w, chosen

    async def set_mode(self, user_id: int, name: str, mode: str) -> WatchedWallet:
        """"ask" (Copy / Skip on each buy) or "auto"; the stream builds the buy either way, so it is not told."""
        if mode not in ("ask", "auto"):
            raise CopyError("the mode is <code>ask</code> (Copy / Skip on each buy) or <code>auto</code>")
        w = await self.get(user_id, name)
        await self.store.update(user_id, w.address, mode=mode)
        return w

    async def enable(self, user_id: int, name: str, on: bool) -> WatchedWallet:
        """Turn copying of a watched wallet on or off (on clears why it was turned off)."""
        w = await self.get(user_id, name)
        await self.store.update(user_id, w.address, enabled=int(on), disabled_reason=None)
        await self.changed(user_id)
        return w

    async def remove(self, user_id: int, name: str) -> WatchedWallet:
        """Stop watching a wallet; returns the one removed."""
        w = await self.get(user_id, name)
        await self.store.remove(user_id, w.address)
        await self.changed(user_id)
        return w

    # --- events -------------------------------------------------------------------------------------------
    async def on_event(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "mirror_buy_signal":
            # off the stream's consumer (exit signals must not queue behind chain reads and Telegram sends);
            # one user's signals in turn, so two at once cannot both pass the daily budget
            self._background.spawn(self._signal_in_turn(user_id, chat_id, msg))
            return
        try:
            if kind == "mirror_buy_failed":
                await self._failed(user_id, chat_id, msg)
            elif kind == "mirror_wallet_auto_disabled":
                await self._auto_disabled(user_id, chat_id, msg)
        except Exception:  # one bad frame must not stop the stream's consumer
            log.exception("copy trading could not handle %s", kind)

    async def _signal_in_turn(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        async with self._locks.setdefault(user_id, asyncio.Lock()):
            try:
                await self._signal(user_id, chat_id, msg)
            except Exception:
                log.exception("copy trading could not handle a mirror buy signal")
                await self._result(user_id, str(msg.get("mint")), False)

    async def source_label(self, user_id: int, wallet: str, mint: str, mirror_source: str | None = None) -> str | None:
        """The nickname (or short address) of the watched wallet a position copies, or None for the user's own
        trades: from the stream's mirror_source, else from the copy buy this bot made."""
        source = mirror_source or await self.store.source_of(user_id, wallet, mint)
        if not source:
            return None
        w = await self.store.find(user_id, source)
        return w.nickname if w is not None else render.short(source)

    async def position_opened(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        """Tell which watched wallet a new position copies."""
        source = msg.get("mirror_source")
        name = await self.source_label(user_id, str(msg.get("wallet_pubkey")), str(msg.get("mint")),
                                       source if isinstance(source, str) else None)
        if name is None:
            return
        text = f"🪞 The new position in <code>{render.esc(msg.get('mint'))}</code> copies <b>{render.esc(name)}</b>."
        flags = await self.risk_flags(str(msg.get("mint")))
        if flags:
            text += "\n⚠️ <b>Token risks</b>:\n" + "\n".join(f"• {render.esc(flag)}" for flag in flags)
        self._text(chat_id, text)

    async def _result(self, user_id: int, mint: str, success: bool) -> None:
        client = self.streams.client(user_id)
        if client is not None:
            await client.mirror_buy_result(mint, success)

    async def _signal(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        watched, mint = str(msg.get("watched_wallet")), str(msg.get("mint"))
        w = await self.store.find(user_id, watched)
        if w is None or not w.enabled:
            await self._result(user_id, mint, False)
            return
        refusal = await self._own_limits(user_id, w)
        if refusal is not None:
            await self._result(user_id, mint, False)
            self._text(chat_id, f"🪞 <b>Not copied</b>: {render.esc(w.nickname)} bought <code>{render.esc(mint)}</code>, "
                                f"but {refusal}.")
            return
        tx_b64 = msg.get("unsigned_tx_b64")
        settings = await self.core.accounts.store.get(user_id)
        tip = settings.tip_lamports if settings.send_mode in TIPPED_SEND_MODES else 0
        buyer = w.buy_wallet or await self.default_wallet(user_id) or ""
        order = await self.orders.create(
            user_id, wallet=buyer, mint=mint, lamports=w.amount_units, slippage_bps=int(msg.get("slippage_bps") or 0),
            tip_lamports=tip, unsigned_tx_b64=str(tx_b64 or ""), route={"copy": watched},
        )
        await self.store.record_buy(order.id, user_id, watched=watched, wallet=buyer, mint=mint,
                                    lamports=w.amount_units, mode=w.mode)
        head = (f"🪞 <b>{render.esc(w.nickname)}</b> bought <code>{render.esc(mint)}</code>\n"
                f"Copy for {amount_words(w)} from wallet <code>{render.short(buyer)}</code>")
        flags = await self.risk_flags(mint)
        if flags:
            head += "\n⚠️ <b>Token risks</b>:\n" + "\n".join(f"• {render.esc(flag)}" for flag in flags)
            if w.mode == "auto":
                head += "\nA flagged token is never copied automatically: you decide."
        if w.mode == "auto" and not flags:
            sent = await self._send(chat_id, head + "\n\n⏳ Auto-copy: checking and buying…")
            if sent is not None:
                await self.orders.set(order.id, chat_id=chat_id, message_id=sent)
            await self.orders.transition(order.id, ("quoted",), "approved")
            self._background.spawn(self.execute(order.id))
            return
        markup = _buttons(order.id)
        sent = await self._send(chat_id, head + "\n\nTap Copy within a minute, or Skip.", markup)
        if sent is not None:
            await self.orders.set(order.id, chat_id=chat_id, message_id=sent)
        loop = asyncio.get_running_loop()
        self._expiry[order.id] = loop.call_later(self.signal_ttl_ms / 1000, lambda: self._background.spawn(self._expire(order.id)))

    async def risk_flags(self, mint: str) -> list[str]:
        """Read from the chain before any copy buy; a mint that cannot be read counts as flagged."""
        return await read_risk_flags(self.core.rpc, mint)

    async def _own_limits(self, user_id: int, w: WatchedWallet) -> str | None:
        """The bot's limits on top of the server's: the daily budget and the reserve kept for exit fees."""
        if w.quote != "SOL":
            return "USD1 copy buys are not signed by this bot yet; set a SOL amount with /copy amount"
        limits = await self.store.limits(user_id)
        budget = int(float(limits["daily_budget_sol"]) * LAMPORTS_PER_SOL)
        spent = await self.store.spent_today(user_id)
        if spent + w.amount_units > budget:
            return (f"your daily copy budget of {render.sol(budget)} would be passed ({render.sol(spent)} spent "
                    f"in the last 24 hours). Raise it with /copy limit daily_budget_sol")
        buyer = w.buy_wallet or await self.default_wallet(user_id)
        if buyer is None:
            return "you have no wallet to buy with: /wallets"
        try:
            balance = await self.core.rpc.get_balance(buyer)
        except RpcError as exc:
            return f"I could not read the wallet's balance ({exc})"
        reserve = int(float(limits["fee_reserve_sol"]) * LAMPORTS_PER_SOL)
        if balance - w.amount_units - FEE_HEADROOM_LAMPORTS < reserve:
            return (f"the wallet holds {render.sol(balance)}, and the buy would leave less than the "
                    f"{render.sol(reserve)} kept for exit fees. Top it up or lower the amount")
        return None

    async def tap(self, user_id: int, order_id: str, copy: bool) -> str:
        order = await self.orders.get(order_id)
        if order is None or order.telegram_id != user_id:
            return "This signal is not yours."
        if order.state != "quoted":
            return {"cancelled": "Skipped.", "expired": "This signal expired.", "landed": "Already copied."}.get(
                order.state, "Already handled.")
        if not copy:
            if await self.orders.transition(order.id, ("quoted",), "cancelled"):
                self._cancel_expiry(order.id)
                await self._result(user_id, order.mint, False)
                await self._edit(order, self._head(order) + "\n\nSkipped. Nothing was signed.")
            return "Skipped"
        if time.time() * 1000 - order.created_at > self.signal_ttl_ms:
            await self._expire(order.id)
            return "Expired: the signal is too old to buy safely."
        if not await self.orders.transition(order.id, ("quoted",), "approved"):
            return "Already handled."
        self._cancel_expiry(order.id)
        self._background.spawn(self.execute(order.id))
        return "Copying…"

    async def _expire(self, order_id: str) -> None:
        self._expiry.pop(order_id, None)
        order = await self.orders.get(order_id)
        if order is None or not await self.orders.transition(order_id, ("quoted",), "expired"):
            return
        await self._result(order.telegram_id, order.mint, False)
        await self._edit(order, self._head(order) + "\n\n⌛ Expired: not copied (a late buy pays a price you never saw).")

    def _cancel_expiry(self, order_id: str) -> None:
        handle = self._expiry.pop(order_id, None)
        if handle is not None:
            handle.cancel()

    async def execute(self, order_id: str) -> str:
        order = await self.orders.get(order_id)
        assert order is not None
        hooks = _CopyHooks(self, order)
        try:
            try:
                tx = decode_unsigned(order.unsigned_tx_b64)
            except SigningError as exc:
                return str(await hooks.signing_failed(exc))
            settings = await self.core.accounts.store.get(order.telegram_id)
            intent = BuyIntent(
                wallet=Pubkey.from_string(order.wallet), mint=Pubkey.from_string(order.mint),
                max_sol_lamports=order.lamports, max_tip_lamports=order.tip_lamports,
            )
            trade = Trade(
                user_id=order.telegram_id, wallet=order.wallet, tx=tx, intent=intent, send_mode=settings.send_mode,
                records=self.orders, record_id=order.id, label=render.short(order.mint), check_blockhash=True,
            )
            result = await self.executor.execute(trade, hooks)
            return str(result)
        except Exception as exc:  # never leave a signal without an answer
            log.exception("copy buy %s failed unexpectedly", order_id)
            if not hooks.reported:
                hooks.reported = True
                await self._result(order.telegram_id, order.mint, False)
            await self.orders.set(order.id, state="failed", error=type(exc).__name__)
            await self._edit(order, self._head(order) + f"\n\n❌ The copy failed on my side ({type(exc).__name__}).")
            return "failed"

    async def _failed(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        watched, reason = str(msg.get("watched_wallet")), str(msg.get("reason") or "unknown")
        key = (user_id, watched, reason)
        now = time.monotonic()
        if now - self._told.get(key, -COALESCE_S) < COALESCE_S:
            return  # a burst of the same skip: told once
        self._told[key] = now
        w = await self.store.find(user_id, watched)
        name = w.nickname if w is not None else render.short(watched)
        words = FAILED_WORDS.get(reason, f"LaserSell said {reason!r}")
        self._text(chat_id, f"🪞 <b>Not copied</b>: {render.esc(name)} bought <code>{render.esc(msg.get('mint'))}</code>, "
                            f"but {render.esc(words)}.\n(Further skips for the same reason stay quiet for 10 minutes.)")

    async def _auto_disabled(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        watched = str(msg.get("watched_wallet"))
        losses = msg.get("loss_count")
        w = await self.store.find(user_id, watched)
        name = w.nickname if w is not None else render.short(watched)
        if w is not None:
            await self.store.update(user_id, w.address, enabled=0, disabled_reason=f"{losses} losses in a row")
            await self.changed(user_id)  # off our list too, so /copy on lists it afresh and the server re-enables it
        self._text(chat_id, f"🛑 <b>Copy trading of {render.esc(name)} turned off</b> after {render.esc(losses)} losing "
                            f"trades in a row. Nothing more is copied from it. Turn it back on with "
                            f"<code>/copy on {render.esc(name)}</code> if you still trust it.")

    # --- messages -----------------------------------------------------------------------------------------
    def _head(self, order: BuyOrder) -> str:
        return (f"🪞 Copy of <code>{render.esc(order.route.get('copy'))}</code>: <code>{render.esc(order.mint)}</code> "
                f"for {render.sol(order.lamports)}")

    def _text(self, chat_id: int, text: str) -> None:
        self.core.outbox.send_message(chat_id, text, priority=Priority.ALERT)

    async def _send(self, chat_id: int, text: str, markup: Any = None) -> int | None:
        future = self.core.outbox.send_message(chat_id, text, reply_markup=markup, priority=Priority.URGENT)
        with contextlib.suppress(Exception):
            sent = await future
            return int(sent.message_id)
        return None

    async def _edit(self, order: BuyOrder, text: str) -> None:
        current = await self.orders.get(order.id) or order
        if current.chat_id is None or current.message_id is None:
            return
        future = self.core.outbox.edit_message_text(current.chat_id, current.message_id, text,
                                                        priority=Priority.URGENT)
        with contextlib.suppress(Exception):
            await future


def _buttons(order_id: str) -> Any:
    return keyboard([("✅ Copy", CopyTap("go", order_id)), ("Skip", CopyTap("no", order_id))])


class _CopyHooks(TradeHooks[str]):
    """A mirror buy at each step of the executor; every end reports `mirror_buy_result` once."""

    def __init__(self, copier: Copier, order: BuyOrder) -> None:
        self.copier = copier
        self.order = order
        self.reported = False

    async def _report(self, success: bool) -> None:
        if not self.reported:
            self.reported = True
            await self.copier._result(self.order.telegram_id, self.order.mint, success)

    async def _fail(self, error: str, text: str) -> str:
        await self.copier.orders.set(self.order.id, state="failed", error=error[:200])
        await self._report(False)
        await self.copier._edit(self.order, self.copier._head(self.order) + "\n\n" + text)
        return "failed"

    async def refused(self, refusal: GuardRefusal) -> str:
        return await self._fail(f"guard:{refusal.rule}", f"🛡 <b>Not copied</b>: {render.esc(refusal)}\nNothing was signed.")

    async def unverified(self, reason: str) -> str:
        return await self._fail(f"unverified: {reason}", f"⚠️ <b>Not copied</b>: the transaction could not be verified "
                                f"({render.esc(reason)}), and the bot never signs blind.")

    async def moved_on(self) -> str:
        await self._report(False)
        return "already handled"  # whoever moved the order on told the trader

    async def stale(self) -> str:
        await self.copier.orders.set(self.order.id, state="expired", error="blockhash")
        await self._report(False)
        await self.copier._edit(self.order, self.copier._head(self.order) + "\n\n⌛ Not copied: the transaction expired.")
        return "expired"

    async def cannot_pay(self, needed: int, held: int) -> str:
        return await self._fail("fees", f"❌ <b>Not copied</b>: the wallet holds {render.sol(held)}, less than the "
                                f"{render.sol(needed)} the buy needs.")

    async def signing_failed(self, error: SigningError) -> str:
        return await self._fail("signing", f"❌ <b>Not copied</b>: {render.esc(error)}")

    async def send_failed(self, error: RpcError, raw: bytes) -> str:
        return await self._fail(str(error), f"❌ <b>Not copied</b>: the network refused it ({render.esc(error)}).")

    async def sent(self, checked: Checked) -> None:
        await self._report(True)
        await self.copier._edit(self.order, self.copier._head(self.order) + "\n\n⏳ Sent. Waiting for the network…")

    async def settled(self, verdict: str, status: SignatureStatus | None, raw: bytes, signature: str) -> str:
        if verdict == "landed":
            await self.copier.orders.set(self.order.id, state="landed")
            self.copier.executor.holdings.forget(self.order.wallet)
            await self.copier._edit(self.order, self.copier._head(self.order) + "\n\n✅ <b>Copied.</b> The exit strategy "
                                    f"now manages it.\nTx <code>{signature[:8]}…{signature[-8:]}</code>")
            return "landed"
        if verdict == "unknown":
            return "unknown"
        await self.copier.orders.set(self.order.id, state="failed", error=verdict)
        await self.copier._edit(self.order, self.copier._head(self.order) + f"\n\n❌ <b>Not copied</b>: the transaction {verdict}.")
        return "failed"
