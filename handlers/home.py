"""The home panel (/home, and /start once set up) and the token panel a pasted mint or link opens.

Home buttons use `h:<action>`; the token panel `t:w:<wallet id>:<mint>` (choose the wallet),
`t:b:<wallet id>:<preset index>:<mint>` (buy a preset amount) and `t:r:<wallet id>:<mint>` (refresh).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from solders.pubkey import Pubkey
from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot.notify import render
from bot.services import get_services
from bot.solana_rpc import RpcError
from handlers.common import answer, clear_input, edit_or_reply, esc, expect_input, keyboard
from handlers.registry import Command
from storage.users import MAX_BUY_PRESETS, BuyPresets

log = logging.getLogger("lasersell_bot.home")

LAMPORTS_PER_SOL = 1_000_000_000
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS5EF4RzGT7m9YPj3NoTiGNcpzN"
BASE58 = "1-9A-HJ-NP-Za-km-z"
# A lone address: 32 to 44 base58 characters not inside a longer base58 run (a secret key is ~88).
ADDRESS_RE = re.compile(rf"(?<![{BASE58}])[{BASE58}]{{32,44}}(?![{BASE58}])")
# Sites whose token pages carry the mint in their path; the address is found by ADDRESS_RE in the link.
TOKEN_SITES = ("pump.fun", "dexscreener.com", "birdeye.so", "solscan.io", "gmgn.ai")
STREAM_WORDS = {
    "connected": "🟢 connected",
    "connecting": "🟡 connecting…",
    "reconnecting": "🟡 reconnecting…",
    "needs_attention": "🔴 needs your attention (see /status)",
    "stopped": "⚪ not running",
}
PRESETS_USAGE = "/presets 0.1 0.5 1"


def mint_in(text: str) -> str | None:
    """The token address in a pasted message: a bare address, or a link to a token page on one of
    TOKEN_SITES (pump.fun/coin/…, dexscreener.com/solana/…, birdeye.so/token/…, solscan.io/token/…,
    gmgn.ai/sol/token/…). None when the message holds neither."""
    stripped = text.strip()
    words = stripped.split()
    if len(words) == 1 and ADDRESS_RE.fullmatch(words[0]):
        candidates = [words[0]]
    else:
        links = [w for w in words if any(site in w.lower() for site in TOKEN_SITES)]
        candidates = [m.group(0) for link in links for m in ADDRESS_RE.finditer(link)]
    for candidate in candidates:
        try:
            return str(Pubkey.from_string(candidate))
        except ValueError:
            continue
    return None


def parse_presets(text: str) -> tuple[int, ...]:
    """`0.1 0.5 1` -> lamports; raises ValueError with a sentence saying what is wrong."""
    parts = text.replace(",", " ").split()
    if not parts:
        raise ValueError(f"send one to {MAX_BUY_PRESETS} amounts of SOL, for example 0.1 0.5 1")
    if len(parts) > MAX_BUY_PRESETS:
        raise ValueError(f"at most {MAX_BUY_PRESETS} amounts fit on the buttons; you sent {len(parts)}")
    values = []
    for part in parts:
        try:
            amount = Decimal(part)
        except InvalidOperation:
            raise ValueError(f"{part!r} is not an amount of SOL: write it like 0.25") from None
        if not amount.is_finite() or amount <= 0:
            raise ValueError(f"{part!r} is not more than 0 SOL")
        if amount > 1000:
            raise ValueError(f"{part} SOL is more than a buy button should spend (at most 1000)")
        lamports = int(amount * LAMPORTS_PER_SOL)
        if lamports < 1_000:
            raise ValueError(f"{part} SOL is too small to buy anything")
        values.append(lamports)
    return tuple(values)


# --- the home panel -----------------------------------------------------------------------------------------
async def home_text(services: Any, user_id: int) -> str:
    views = await services.accounts.overview(user_id)
    supervisor = services.streams
    positions = await supervisor.positions.open_for(user_id) if supervisor else []
    live = getattr(supervisor, "position", None)
    if live is not None:
        positions = [await live(user_id, p.position_id) or p for p in positions]
    lines = ["🏠 <b>Home</b>"]
    lines.append("<b>Wallets</b>")
    if not views:
        lines.append("No wallet yet: add one in /wallets.")
    for view in views:
        wallet = view.wallet
        mine = [p for p in positions if p.wallet == wallet.address]
        values: dict[str, int] = {}
        for p in mine:
            if p.proceeds_units is not None:
                values[render.quote_of(p)] = values.get(render.quote_of(p), 0) + p.proceeds_units
        tokens = " + ".join(f"{render.money(v, q)} in tokens" for q, v in values.items()) if values else (
            "no tracked tokens" if not mine else "tokens not priced yet")
        star = "⭐ " if wallet.is_default else ""
        balance = "balance unavailable" if view.sol_lamports is None else render.sol(view.sol_lamports)
        lines.append(f"{star}{esc(wallet.label)} <code>{render.short(wallet.address)}</code>: {balance} · {tokens}")
    lines.append("")
    lines.append(f"<b>Open positions</b> ({len(positions)})")
    for p in positions[:10]:
        quote = render.quote_of(p)
        if p.profit_units is not None and p.proceeds_units is not None:
            basis = p.proceeds_units - p.profit_units
            pnl = f"{render.money(p.profit_units, quote, signed=True)} ({render.pct(p.profit_units, basis)})"
        else:
            pnl = "waiting for the first price"
        lines.append(f"• <b>{esc(p.label)}</b> #{p.position_id}: {pnl}")
    if len(positions) > 10:
        lines.append(f"…and {len(positions) - 10} more in /positions")
    if not positions:
        lines.append("None. Paste a token's address or link to buy one.")
    today = await realised_today(services, user_id)
    if today:
        lines.append("Realised today: " + " · ".join(
            f"{render.money(units, quote, signed=True)} from {count} sell{'s' if count != 1 else ''}"
            for quote, (units, count) in today.items()
        ) + " (what the sells received, minus what those tokens cost)")
    worker = supervisor.workers.get(user_id) if supervisor else None
    state = worker.client.state if worker is not None else "stopped"
    lines.append("")
    lines.append(f"Stream: {STREAM_WORDS.get(state, esc(state))}")
    lines.append(f"Updated {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    return "\n".join(lines)


async def realised_today(services: Any, user_id: int) -> dict[str, tuple[int, int]]:
    """Per quote: (PnL, sells) of the sells that landed since 00:00 UTC, as measured on chain when they
    landed (proceeds received minus the share of the cost basis sold)."""
    midnight_ms = int(time.time() // 86400 * 86400 * 1000)
    out: dict[str, tuple[int, int]] = {}
    for signal in await services.inbox.signals.for_user(user_id, ("landed",), limit=500):
        outcome = signal.outcome
        if signal.updated_at < midnight_ms or outcome.get("pnl") is None:
            continue
        quote = "USD1" if outcome.get("quote") == "USD1" else "SOL"
        units, count = out.get(quote, (0, 0))
        out[quote] = (units + int(outcome["pnl"]), count + 1)
    return out


def home_markup() -> Any:
    return keyboard(
        [("📊 Positions", "h:pos"), ("🛒 Buy", "h:buy")],
        [("👛 Wallets", "h:wal"), ("⚙️ Settings", "h:set")],
        [("📜 History", "h:hist"), ("🔄 Refresh", "h:home")],
    )


async def show_home(update: Update, context: ContextTypes.DEFAULT_TYPE, *, edit: bool = False) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_chat is not None
    text = await home_text(services, update.effective_user.id)
    if edit:
        await edit_or_reply(update, text, home_markup())
    else:
        await update.effective_chat.send_message(text, reply_markup=home_markup())


async def home_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    clear_input(context)
    await show_home(update, context)


async def on_home_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    action = query.data.split(":", 1)[1]
    context.args = []
    if action == "home":
        await answer(update, "Refreshed")
        await show_home(update, context, edit=True)
    elif action == "pos":
        await answer(update)
        from handlers.trade import positions_command

        await positions_command(update, context)
    elif action == "buy":
        await answer(update)
        assert update.effective_chat is not None
        await update.effective_chat.send_message(
            "Paste a token's mint address, or a pump.fun, DexScreener, Birdeye, Solscan or GMGN link to it, and I "
            f"open it with buy buttons. Your amounts are {await presets_words(context, update)}: change them with "
            f"<code>{PRESETS_USAGE}</code>."
        )
    elif action == "wal":
        await answer(update)
        from handlers.wallets import show_list

        await show_list(update, context)
    elif action == "set":
        await answer(update)
        from handlers.settings import settings_command

        await settings_command(update, context)
    elif action == "hist":
        await answer(update)
        from handlers.positions import history_command

        await history_command(update, context)
    else:
        await answer(update, "That button is no longer valid.")


async def presets_words(context: ContextTypes.DEFAULT_TYPE, update: Update) -> str:
    services = get_services(context)
    assert update.effective_user is not None
    presets = await BuyPresets(services.db).get(update.effective_user.id)
    return ", ".join(render.sol(v) for v in presets)


# --- the token panel ----------------------------------------------------------------------------------------
@dataclass
class MintFacts:
    decimals: int
    supply: int
    mint_authority: str | None
    freeze_authority: str | None
    token_2022: bool
    extensions: list[str]


async def mint_facts(services: Any, mint: str) -> MintFacts | None:
    """What the chain says about a mint; None when the address is no token mint."""
    result = await services.rpc.call("getAccountInfo", [mint, {"encoding": "jsonParsed"}])
    value = (result or {}).get("value") if isinstance(result, dict) else None
    if not value:
        return None
    data = value.get("data")
    if not isinstance(data, dict) or data.get("parsed", {}).get("type") != "mint":
        return None
    info = data["parsed"].get("info", {})
    extensions = [str(e.get("extension")) for e in info.get("extensions") or [] if isinstance(e, dict)]
    return MintFacts(
        decimals=int(info.get("decimals") or 0),
        supply=int(info.get("supply") or 0),
        mint_authority=info.get("mintAuthority"),
        freeze_authority=info.get("freezeAuthority"),
        token_2022=value.get("owner") == TOKEN_2022_PROGRAM or data.get("program") == "spl-token-2022",
        extensions=extensions,
    )


async def token_panel(services: Any, user_id: int, mint: str, wallet_id: int | None) -> tuple[str, Any]:
    """Text and buttons for one token; `wallet_id` is the wallet the buy buttons spend from."""
    try:
        facts = await mint_facts(services, mint)
    except RpcError as exc:
        log.info("mint lookup failed: %s", exc)
        return ("I could not reach the Solana network to look this token up. Paste it again in a moment.",
                keyboard([("🔄 Try again", f"t:r:0:{mint}")]))
    if facts is None:
        return (f"<code>{esc(mint)}</code> is not a token mint. Paste the token's mint address (on pump.fun it is "
                "the part after /coin/), or a link to its page.", None)
    supervisor = services.streams
    positions = [p for p in (await supervisor.positions.open_for(user_id) if supervisor else []) if p.mint == mint]
    live = getattr(supervisor, "position", None)
    if live is not None:
        positions = [await live(user_id, p.position_id) or p for p in positions]
    known = next((p for p in positions if p.symbol), None)
    title = esc(known.label) if known else render.short(mint)
    lines = [f"🪙 <b>{title}</b>", f"<code>{esc(mint)}</code>"]
    supply = render.tokens(facts.supply, facts.decimals)
    lines.append(f"Supply {supply} · {facts.decimals} decimals · {'Token-2022' if facts.token_2022 else 'SPL Token'}")
    priced = next((p for p in positions if p.price_quote is not None), None)
    if priced is not None:
        quote = render.quote_of(priced)
        per_token = priced.price_quote / 10 ** render.QUOTE_DECIMALS[quote]  # type: ignore[operator]
        extra = [f"Price {render.price(per_token, quote)}"]
        if priced.market_cap_quote is not None:
            extra.append(f"market cap {render.money(priced.market_cap_quote, quote)}")
        if priced.liquidity_trend:
            extra.append(f"liquidity {render.TRENDS.get(priced.liquidity_trend, esc(priced.liquidity_trend))}")
        lines.append(" · ".join(extra) + " (from your LaserSell stream)")
    else:
        lines.append("Price and market: LaserSell quotes them when you tap a buy amount.")
    flags = []
    if facts.mint_authority:
        flags.append("⚠️ the creator can still mint more tokens")
    if facts.freeze_authority:
        flags.append("⚠️ the creator can freeze your tokens")
    risky = {"TransferFeeConfig": "transfer fee", "PermanentDelegate": "permanent delegate",
             "TransferHook": "transfer hook", "NonTransferable": "non-transferable", "DefaultAccountState": "default frozen"}
    for extension in facts.extensions:
        if extension in risky:
            flags.append(f"⚠️ Token-2022 {risky[extension]}")
    lines.append("\n".join(flags) if flags else "✅ No mint or freeze authority" + (
        "; no risky Token-2022 extensions" if facts.token_2022 else ""))
    for p in positions:
        lines.append(f"You hold it: #{p.position_id} in {render.short(p.wallet)} · {render.pnl_line(p)}")
    wallets = [w for w in await services.accounts.wallets.list(user_id) if w.registered_at]
    rows: list[list[tuple[str, str]]] = []
    if not wallets:
        lines.append("\nAdd a wallet in /wallets to buy.")
        return "\n".join(lines), keyboard([("🏠 Home", "h:home")])
    chosen = next((w for w in wallets if w.id == wallet_id), None) or next(
        (w for w in wallets if w.is_default), wallets[0])
    presets = await BuyPresets(services.db).get(user_id)
    lines.append(f"\nBuy from <b>{esc(chosen.label)}</b>:")
    rows.append([(f"Buy {render.sol(v)}", f"t:b:{chosen.id}:{i}:{mint}") for i, v in enumerate(presets)])
    if len(wallets) > 1:
        rows.append([(("✅ " if w.id == chosen.id else "") + w.label, f"t:w:{w.id}:{mint}") for w in wallets[:4]])
    rows.append([("✏️ Buy amounts", f"t:p:{chosen.id}:{mint}"), ("🔄 Refresh", f"t:r:{chosen.id}:{mint}"),
                 ("🏠 Home", "h:home")])
    return "\n".join(lines), keyboard(*rows)


async def open_token(update: Update, context: ContextTypes.DEFAULT_TYPE, mint: str) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    text, markup = await token_panel(services, update.effective_user.id, mint, None)
    await update.effective_message.reply_text(text, reply_markup=markup)


async def on_token_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    user_id = update.effective_user.id
    parts = query.data.split(":")
    action = parts[1] if len(parts) > 1 else ""
    wallet_id = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    mint = parts[-1]
    if action in ("w", "r") and len(parts) == 4:
        await answer(update, "Refreshed" if action == "r" else None)
        text, markup = await token_panel(services, user_id, mint, wallet_id)
        await edit_or_reply(update, text, markup)
    elif action == "p" and len(parts) == 4:
        await answer(update)
        expect_input(context, "presets")
        assert update.effective_chat is not None
        await update.effective_chat.send_message(
            f"Your buy amounts are {await presets_words(context, update)}. Send up to {MAX_BUY_PRESETS} new amounts "
            "of SOL separated by spaces, for example <code>0.1 0.5 1</code>, or /cancel."
        )
    elif action == "b" and len(parts) == 5 and parts[3].isdigit():
        presets = await BuyPresets(services.db).get(user_id)
        index = int(parts[3])
        wallet = await services.accounts.wallets.get(user_id, wallet_id) if wallet_id is not None else None
        if index >= len(presets) or wallet is None:
            await answer(update, "These buttons are out of date: paste the token again.", alert=True)
            return
        await answer(update, "Asking LaserSell for a quote…")
        from handlers.trade import offer_buy

        amount = str(Decimal(presets[index]) / LAMPORTS_PER_SOL)
        await offer_buy(update, context, mint, amount, wallet.address)
    else:
        await answer(update, "That button is no longer valid.")


async def save_presets(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
    """The typed answer to "Buy amounts": validated, stored and confirmed (or refused with the reason)."""
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    try:
        presets = parse_presets(text)
    except ValueError as exc:
        await update.effective_message.reply_text(
            f"❌ Not changed: {esc(exc)}.\nSend the amounts again, for example <code>0.1 0.5 1</code>, or /cancel.")
        return
    clear_input(context)
    await BuyPresets(services.db).set(update.effective_user.id, presets)
    await update.effective_message.reply_text(
        "✅ Buy amounts saved: " + ", ".join(render.sol(v) for v in presets) + ". Paste a token to use them.")


async def presets_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    if context.args:
        await save_presets(update, context, " ".join(context.args))
        return
    expect_input(context, "presets")
    await update.effective_message.reply_text(
        f"Your buy amounts are {await presets_words(context, update)}. Send up to {MAX_BUY_PRESETS} new amounts of "
        f"SOL, for example <code>0.1 0.5 1</code>, or /cancel.")


def register(app: Application) -> None:
    app.add_handler(CallbackQueryHandler(on_home_button, pattern=r"^h:"))
    app.add_handler(CallbackQueryHandler(on_token_button, pattern=r"^t:"))


COMMANDS = [
    Command("home", "Your balances, positions and stream at a glance", home_command),
    Command("presets", "The SOL amounts on your buy buttons", presets_command, section="Trading",
            usage=PRESETS_USAGE),
]
