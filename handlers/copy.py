"""/copy: watch wallets, their buys (amount, buying wallet, ask me / auto), on / off / remove, the limits."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from solders.pubkey import Pubkey
from telegram import InlineKeyboardMarkup, Update

from bot.callbacks import CopyModeTap, CopyTap, keyboard
from bot.context import BotContext
from bot.copy import USD1_UNITS, amount_words
from bot.exits.buy import LAMPORTS_PER_SOL
from bot.notify import render
from handlers.common import answer, user_id_of
from handlers.registry import Button, Command, Router
from storage.copy import DEFAULT_LIMITS, WatchedWallet

DEFAULT_AMOUNT = LAMPORTS_PER_SOL // 10
MAX_NICKNAME = 24

LIMIT_WORDS: dict[str, str] = {
    "max_positions_per_wallet": "open copies per watched wallet; more buys from it are skipped",
    "cooldown_sec": "seconds between two copy buys from the same watched wallet",
    "max_active_sol": "SOL across all open copied positions; a buy past it is skipped",
    "buy_slippage_bps": "slippage for copy buys, in basis points (2500 = 25%)",
    "skip_creator_tokens": "skip tokens the watched wallet created (on / off)",
    "min_liquidity_sol": "minimum pool liquidity in SOL (off = no minimum)",
    "max_entry_drift_pct": "skip when the price moved more than this % since the wallet bought (off = any)",
    "max_consecutive_losses": "turn a watched wallet off after this many losses in a row (off = never)",
    "daily_budget_sol": "the most SOL this bot spends on copy buys in 24 hours",
    "fee_reserve_sol": "SOL always left in the wallet for exit fees; a buy that would dip under it is refused",
}
INTEGER_LIMITS = {"max_positions_per_wallet", "cooldown_sec", "buy_slippage_bps", "max_consecutive_losses"}
OPTIONAL_LIMITS = {"min_liquidity_sol", "max_entry_drift_pct", "max_consecutive_losses"}

USAGE = (
    "<b>Copy trading</b> commands:\n"
    "<code>/copy add &lt;address&gt; &lt;nickname&gt;</code> watch a wallet\n"
    "<code>/copy amount &lt;nickname&gt; 0.1</code> (or <code>25 usd1</code>) per copy buy\n"
    "<code>/copy wallet &lt;nickname&gt; &lt;your wallet's name&gt;</code> which of your wallets buys\n"
    "<code>/copy mode &lt;nickname&gt; ask</code> or <code>auto</code>\n"
    "<code>/copy on|off|remove &lt;nickname&gt;</code>\n"
    "<code>/copy limit &lt;name&gt; &lt;value&gt;</code> (names below)"
)


class CopyInputError(Exception):
    """Bad input; `str()` says what was wrong and how to write it."""


def _limit_value(limits: dict[str, Any], name: str) -> str:
    value = limits[name]
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_limit(name: str, text: str) -> Any:
    if name not in DEFAULT_LIMITS:
        raise CopyInputError(f"there is no limit called {name!r}; the limits are: {', '.join(DEFAULT_LIMITS)}")
    lowered = text.strip().lower()
    if name == "skip_creator_tokens":
        if lowered not in ("on", "off"):
            raise CopyInputError("skip_creator_tokens is on or off")
        return lowered == "on"
    if lowered == "off" and name in OPTIONAL_LIMITS:
        return None
    try:
        number = Decimal(lowered.replace(",", "."))
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0:
        hint = " or off" if name in OPTIONAL_LIMITS else ""
        raise CopyInputError(f"{name} takes a number of 0 or more{hint}, like /copy limit {name} {DEFAULT_LIMITS[name] or 3}")
    if name in INTEGER_LIMITS:
        if number != number.to_integral_value():
            raise CopyInputError(f"{name} is a whole number")
        if name == "buy_slippage_bps" and not 0 < number <= 10_000:
            raise CopyInputError("buy_slippage_bps is between 1 and 10000 (2500 = 25%)")
        return int(number)
    return float(number)


def parse_amount(words: list[str]) -> tuple[int, str]:
    if not words or len(words) > 2:
        raise CopyInputError("write the amount like <code>/copy amount alice 0.1</code> or <code>25 usd1</code>")
    quote = words[1].upper() if len(words) == 2 else "SOL"
    if quote not in ("SOL", "USD1"):
        raise CopyInputError(f"{words[1]!r} is not SOL or USD1")
    try:
        amount = Decimal(words[0].replace(",", "."))
    except InvalidOperation:
        raise CopyInputError(f"{words[0]!r} is not an amount: write it like 0.1") from None
    if not amount.is_finite() or amount <= 0:
        raise CopyInputError("the amount must be more than 0")
    if amount > 10_000:
        raise CopyInputError(f"{words[0]} {quote} per copy buy is more than this bot allows (10000)")
    units = int(amount * (LAMPORTS_PER_SOL if quote == "SOL" else USD1_UNITS))
    if units <= 0:
        raise CopyInputError("the amount is smaller than one unit")
    return units, quote


async def overview(services: Any, user_id: int) -> str:
    copier = services.copier
    wallets = await copier.store.wallets(user_id)
    plan, slots = await copier.slots(user_id)
    limits = await copier.store.limits(user_id)
    lines = [f"🪞 <b>Copy trading</b> · {len(wallets)} of {slots} watch-wallet slots used ({plan} plan)"]
    if not wallets:
        lines.append("You watch no wallet yet.")
    own = {w.address: w.label for w in await services.accounts.wallets.list(user_id)}
    for w in wallets:
        state = "on" if w.enabled else "<b>disabled</b>" + (f" ({render.esc(w.disabled_reason)})" if w.disabled_reason else "")
        mode = "auto" if w.mode == "auto" else "ask me"
        buyer = own.get(w.buy_wallet, "?") if w.buy_wallet else "default wallet"
        lines.append(f"• <b>{render.esc(w.nickname)}</b> <code>{render.short(w.address)}</code> · {amount_words(w)} · "
                     f"{mode} · buys with {render.esc(buyer)} · {state}")
        lines.append("   " + await copier.stats_line(user_id, w))
    lines.append("\n<b>Limits</b> (default in brackets):")
    for name, words in LIMIT_WORDS.items():
        default = _limit_value(DEFAULT_LIMITS, name)
        lines.append(f"• <code>{name}</code> {_limit_value(limits, name)} ({default}): {words}")
    lines.append("")
    lines.append(USAGE)
    return "\n".join(lines)


async def _watched(services: Any, user_id: int, name: str) -> WatchedWallet:
    found = await services.copier.store.find(user_id, name)
    if found is None:
        raise CopyInputError(f"you watch no wallet called {name!r}; /copy lists them")
    return found


async def copy_command(update: Update, context: BotContext) -> None:
    services = context.services
    assert update.effective_user is not None and update.effective_message is not None
    message = update.effective_message
    if getattr(services, "copier", None) is None:
        await message.reply_text("Copy trading is not available on this bot.")
        return
    user_id = update.effective_user.id
    args = list(context.args or [])
    try:
        reply = await _run(services, user_id, args)
    except CopyInputError as exc:
        await message.reply_text(f"Not changed: {exc}.")
        return
    if isinstance(reply, tuple):
        await message.reply_text(reply[0], reply_markup=reply[1])
    else:
        await message.reply_text(reply)


async def _run(services: Any, user_id: int, args: list[str]) -> str | tuple[str, InlineKeyboardMarkup]:
    if not args:
        return await overview(services, user_id)
    action, rest = args[0].lower(), args[1:]
    if action == "add":
        return await _add(services, user_id, rest)
    if action == "limit":
        return await _limit(services, user_id, rest)
    if action not in ("amount", "wallet", "mode", "on", "off", "remove"):
        raise CopyInputError(f"/copy does not know {args[0]!r}.\n\n{USAGE}")
    if not rest:
        raise CopyInputError(f"say which watched wallet: <code>/copy {action} &lt;nickname&gt;</code>")
    w = await _watched(services, user_id, rest[0])
    if action == "amount":
        return await _amount(services, user_id, w, rest[1:])
    if action == "wallet":
        return await _buying_wallet(services, user_id, w, rest[1:])
    if action == "mode":
        return await _mode(services, user_id, w, rest[1:])
    return await _switch(services, user_id, w, action)


async def _add(services: Any, user_id: int, rest: list[str]) -> str:
    copier = services.copier
    store = copier.store
    if len(rest) != 2:
        raise CopyInputError("write <code>/copy add &lt;wallet address&gt; &lt;nickname&gt;</code>")
    try:
        address = str(Pubkey.from_string(rest[0]))
    except ValueError:
        raise CopyInputError(f"{rest[0]!r} is not a Solana wallet address (base58, 32 to 44 characters)") from None
    nickname = rest[1]
    if len(nickname) > MAX_NICKNAME or not nickname.replace("_", "").replace("-", "").isalnum():
        raise CopyInputError(f"a nickname is up to {MAX_NICKNAME} letters, digits, - or _")
    own = {w.address for w in await services.accounts.wallets.list(user_id)}
    if address in own:
        raise CopyInputError("that is one of your own wallets; watch someone else's")
    wallets = await store.wallets(user_id)
    if any(w.address == address for w in wallets):
        raise CopyInputError("you already watch that wallet")
    if any(w.nickname.lower() == nickname.lower() for w in wallets):
        raise CopyInputError(f"the nickname {nickname!r} is taken; choose another")
    plan, slots = await copier.slots(user_id)
    if len(wallets) >= slots:
        raise CopyInputError(f"your {plan} plan has {slots} watch-wallet slots and all are used; "
                             "remove one (/copy remove &lt;nickname&gt;) or upgrade your LaserSell plan")
    w = await store.add(user_id, address, nickname, DEFAULT_AMOUNT)
    await copier.changed(user_id, limits=len(wallets) == 0)
    return (f"👀 Watching <b>{render.esc(w.nickname)}</b> <code>{render.esc(address)}</code>: each of its buys is "
            f"offered to you for {amount_words(w)} (ask me). Change it with /copy amount, /copy mode.")


async def _limit(services: Any, user_id: int, rest: list[str]) -> str:
    copier = services.copier
    if len(rest) != 2:
        raise CopyInputError("write <code>/copy limit &lt;name&gt; &lt;value&gt;</code>; /copy lists the names")
    value = parse_limit(rest[0], rest[1])
    await copier.store.set_limit(user_id, rest[0], value)
    if rest[0] in LIMIT_WORDS and rest[0] not in ("daily_budget_sol", "fee_reserve_sol"):
        await copier.changed(user_id, limits=True)
    limits = await copier.store.limits(user_id)
    return f"Saved: <code>{rest[0]}</code> is now {_limit_value(limits, rest[0])} ({LIMIT_WORDS[rest[0]]})."


async def _amount(services: Any, user_id: int, w: WatchedWallet, rest: list[str]) -> str:
    units, quote = parse_amount(rest)
    await services.copier.store.update(user_id, w.address, amount_units=units, quote=quote)
    await services.copier.changed(user_id)
    updated = await _watched(services, user_id, w.address)
    return f"Saved: each copy of <b>{render.esc(w.nickname)}</b> buys for {amount_words(updated)}."


async def _buying_wallet(services: Any, user_id: int, w: WatchedWallet, rest: list[str]) -> str:
    if not rest:
        raise CopyInputError("write <code>/copy wallet &lt;nickname&gt; &lt;your wallet's name&gt;</code>")
    wanted = " ".join(rest)
    mine = [x for x in await services.accounts.wallets.list(user_id) if x.registered_at]
    chosen = next((x for x in mine if x.label.lower() == wanted.lower() or x.address == wanted), None)
    if chosen is None:
        names = ", ".join(x.label for x in mine) or "none yet (/wallets)"
        raise CopyInputError(f"you have no wallet called {render.esc(wanted)!r}; yours: {render.esc(names)}")
    await services.copier.store.update(user_id, w.address, buy_wallet=chosen.address)
    await services.copier.changed(user_id)
    return f"Saved: copies of <b>{render.esc(w.nickname)}</b> buy with {render.esc(chosen.label)}."


async def _mode(
    services: Any, user_id: int, w: WatchedWallet, rest: list[str]
) -> str | tuple[str, InlineKeyboardMarkup]:
    name = render.esc(w.nickname)
    choice = rest[0].lower() if len(rest) == 1 else ""
    if choice in ("ask", "askme", "ask-me"):
        await services.copier.store.update(user_id, w.address, mode="ask")
        return f"Saved: each buy of <b>{name}</b> waits for your Copy / Skip."
    if choice == "auto":
        text = (f"⚠️ <b>Auto-copy {name}?</b> Every buy it makes is copied for {amount_words(w)} without asking, "
                "within your limits (daily budget, fee reserve, cooldown, exposure). Flagged or odd "
                "transactions are still refused by the guard.")
        return text, keyboard([("Yes, auto-copy", CopyModeTap("auto", w.address)), ("No", CopyModeTap("no", w.address))])
    raise CopyInputError("the mode is <code>ask</code> (Copy / Skip on each buy) or <code>auto</code>")


async def _switch(services: Any, user_id: int, w: WatchedWallet, action: str) -> str:
    name = render.esc(w.nickname)
    if action in ("on", "off"):
        await services.copier.store.update(user_id, w.address, enabled=int(action == "on"), disabled_reason=None)
        await services.copier.changed(user_id)
        return f"Copy trading of <b>{name}</b> is {'on' if action == 'on' else 'off'}."
    await services.copier.store.remove(user_id, w.address)
    await services.copier.changed(user_id)
    return f"Removed <b>{name}</b>: it is no longer watched."


async def on_mode_button(update: Update, context: BotContext) -> None:
    tap = CopyModeTap.read(update)
    services = context.services
    user_id = user_id_of(update)
    copier = services.copier
    found = await copier.store.find(user_id, tap.address) if copier is not None else None
    if found is None:
        await answer(update, "That wallet is no longer watched.", alert=True)
        return
    query = update.callback_query
    assert query is not None
    if tap.action == "auto":
        await copier.store.update(user_id, found.address, mode="auto")
        await answer(update, "Auto-copy on")
        await query.edit_message_text(f"✅ Auto-copy of <b>{render.esc(found.nickname)}</b> is on.")
    else:
        await answer(update, "Unchanged")
        await query.edit_message_text(f"Unchanged: <b>{render.esc(found.nickname)}</b> still asks you first.")


async def on_copy_button(update: Update, context: BotContext) -> None:
    """Copy / Skip under a buy a watched wallet made."""
    tap = CopyTap.read(update)
    copier = context.services.copier
    if copier is None:
        await answer(update, "Copy trading is not available on this bot.")
        return
    await answer(update, await copier.tap(user_id_of(update), tap.order_id, tap.action == "go"))


router = Router(
    commands=[
        Command("copy", "Copy trading: watch wallets and copy their buys under your limits", copy_command,
                section="Trading", usage="/copy add <address> <nickname>"),
    ],
    buttons=[Button(CopyTap, on_copy_button), Button(CopyModeTap, on_mode_button)],
)
