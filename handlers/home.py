"""The home panel (/home, and /start once set up) and the token panel a pasted mint or link opens.

Home buttons are `HomeTap`s; the token panel's `TokenTap`s choose the wallet, refresh and change the buy
amounts, and its buy buttons are `TokenBuyTap`s (bought in handlers/trade.py).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from solders.pubkey import Pubkey
from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot.callbacks import CallbackData, HomeTap, TokenBuyTap, TokenTap, keyboard
from bot.notify import cards, render
from bot.notify.render import esc
from bot.services import Services, get_services
from bot.solana_rpc import RpcError
from handlers.common import answer, clear_input, edit_or_reply, expect_input, send, show, user_id_of
from handlers.registry import PLAIN_TEXT, Button, Command, Router
from storage.users import MAX_BUY_PRESETS

log = logging.getLogger("lasersell_bot.home")

LAMPORTS_PER_SOL = 1_000_000_000
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS5EF4RzGT7m9YPj3NoTiGNcpzN"
BASE58 = "1-9A-HJ-NP-Za-km-z"
# A lone address: 32 to 44 base58 characters not inside a longer base58 run (a secret key is ~88).
ADDRESS_RE = re.compile(rf"(?<![{BASE58}])[{BASE58}]{{32,44}}(?![{BASE58}])")
# Sites whose token pages carry the mint in their path; the address is found by ADDRESS_RE in the link.
TOKEN_SITES = ("pump.fun", "dexscreener.com", "birdeye.so", "solscan.io", "gmgn.ai")
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
async def show_home(update: Update, context: ContextTypes.DEFAULT_TYPE, *, edit: bool = False) -> None:
    await show(update, *await cards.home_view(get_services(context), user_id_of(update)), edit=edit)


async def home_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    clear_input(context)
    await show_home(update, context)


BUY_HELP = ("Paste a token's mint address, or a pump.fun, DexScreener, Birdeye, Solscan or GMGN link to it, and I "
            "open it with buy buttons. Your amounts are {amounts}: change them with <code>{usage}</code>.")


async def on_home_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Refresh the panel, or open one of the views it links to (the same views the commands show)."""
    tap = HomeTap.read(update)
    services = get_services(context)
    user_id = user_id_of(update)
    await answer(update, "Refreshed" if tap.action == "home" else None)
    if tap.action == "home":
        await show_home(update, context, edit=True)
    elif tap.action == "pos":
        await send(update, *await cards.positions_view(services, user_id))
    elif tap.action == "buy":
        await send(update, BUY_HELP.format(amounts=await presets_words(services, user_id), usage=PRESETS_USAGE))
    elif tap.action == "wal":
        await send(update, *await cards.wallets_view(services, user_id))
    elif tap.action == "set":
        await send(update, *await cards.settings_view(services, user_id, usage=True))
    else:
        await send(update, await cards.history_view(services, user_id), no_preview=True)


async def presets_words(services: Services, user_id: int) -> str:
    presets = await services.accounts.buy_presets(user_id)
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


async def token_panel(
    services: Services, user_id: int, mint: str, wallet_id: int | None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """Text and buttons for one token; `wallet_id` is the wallet the buy buttons spend from."""
    try:
        facts = await mint_facts(services, mint)
    except RpcError as exc:
        log.info("mint lookup failed: %s", exc)
        return ("I could not reach the Solana network to look this token up. Paste it again in a moment.",
                keyboard([("🔄 Try again", TokenTap("r", 0, mint))]))
    if facts is None:
        return (f"<code>{esc(mint)}</code> is not a token mint. Paste the token's mint address (on pump.fun it is "
                "the part after /coin/), or a link to its page.", None)
    positions = [p for p in await cards.open_positions(services, user_id) if p.mint == mint]
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
    if not wallets:
        lines.append("\nAdd a wallet in /wallets to buy.")
        return "\n".join(lines), keyboard([("🏠 Home", HomeTap("home"))])
    chosen = next((w for w in wallets if w.id == wallet_id), None) or next(
        (w for w in wallets if w.is_default), wallets[0])
    presets = await services.accounts.buy_presets(user_id)
    lines.append(f"\nBuy from <b>{esc(chosen.label)}</b>:")
    rows: list[list[tuple[str, CallbackData]]] = [
        [(f"Buy {render.sol(v)}", TokenBuyTap(chosen.id, i, mint)) for i, v in enumerate(presets)]
    ]
    if len(wallets) > 1:
        rows.append([(("✅ " if w.id == chosen.id else "") + w.label, TokenTap("w", w.id, mint)) for w in wallets[:4]])
    rows.append([("✏️ Buy amounts", TokenTap("p", chosen.id, mint)), ("🔄 Refresh", TokenTap("r", chosen.id, mint)),
                 ("🏠 Home", HomeTap("home"))])
    return "\n".join(lines), keyboard(*rows)


async def open_pasted_token(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str, _asked: object) -> None:
    """A message that answers no prompt: open the token it names, or say what to paste."""
    assert update.effective_message is not None
    mint = mint_in(text)
    if mint is None:
        await update.effective_message.reply_text(
            "I did not find a token in that. Paste a token's mint address, or a pump.fun, DexScreener, Birdeye, "
            "Solscan or GMGN link to it, and I open it with buy buttons. /home shows your wallets and positions; "
            "/help lists every command."
        )
        return
    clear_input(context)
    text, markup = await token_panel(get_services(context), user_id_of(update), mint, None)
    await update.effective_message.reply_text(text, reply_markup=markup)


async def on_token_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    tap = TokenTap.read(update)
    services = get_services(context)
    user_id = user_id_of(update)
    if tap.action == "p":
        await answer(update)
        expect_input(context, "presets")
        await send(update, f"Your buy amounts are {await presets_words(services, user_id)}. Send up to "
                           f"{MAX_BUY_PRESETS} new amounts of SOL separated by spaces, for example "
                           "<code>0.1 0.5 1</code>, or /cancel.")
        return
    await answer(update, "Refreshed" if tap.action == "r" else None)
    await edit_or_reply(update, *await token_panel(services, user_id, tap.mint, tap.wallet_id))


async def save_presets(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str, _asked: object = None) -> None:
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
    await services.accounts.set_buy_presets(user_id_of(update), presets)
    await update.effective_message.reply_text(
        "✅ Buy amounts saved: " + ", ".join(render.sol(v) for v in presets) + ". Paste a token to use them.")


async def presets_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    if context.args:
        await save_presets(update, context, " ".join(context.args))
        return
    expect_input(context, "presets")
    await update.effective_message.reply_text(
        f"Your buy amounts are {await presets_words(get_services(context), user_id_of(update))}. Send up to "
        f"{MAX_BUY_PRESETS} new amounts of "
        f"SOL, for example <code>0.1 0.5 1</code>, or /cancel.")


router = Router(
    commands=[
        Command("home", "Your balances, positions and stream at a glance", home_command),
        Command("presets", "The SOL amounts on your buy buttons", presets_command, section="Trading",
                usage=PRESETS_USAGE),
    ],
    buttons=[Button(HomeTap, on_home_button), Button(TokenTap, on_token_button)],
    inputs={"presets": save_presets, PLAIN_TEXT: open_pasted_token},
)
