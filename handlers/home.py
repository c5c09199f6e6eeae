"""The home panel (/home, and /start once set up) and the token panel a pasted mint or link opens.

Home buttons are `HomeTap`s; the token panel's `TokenTap`s choose the wallet, refresh and change the buy
amounts, and its buy buttons are `TokenBuyTap`s (bought in handlers/trade.py).
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation

from solders.pubkey import Pubkey
from telegram import Update

from bot.callbacks import HomeTap, TokenTap
from bot.context import BotContext
from bot.notify import cards, render
from bot.notify.render import esc
from bot.services import Services
from handlers.common import answer, clear_input, edit_or_reply, expect_input, send, show, user_id_of
from handlers.registry import PLAIN_TEXT, Button, Command, Router
from storage.users import MAX_BUY_PRESETS

log = logging.getLogger("lasersell_bot.home")

LAMPORTS_PER_SOL = 1_000_000_000
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
async def show_home(update: Update, context: BotContext, *, edit: bool = False) -> None:
    await show(update, *await cards.home_view(context.services, user_id_of(update)), edit=edit)


async def home_command(update: Update, context: BotContext) -> None:
    clear_input(context)
    await show_home(update, context)


BUY_HELP = ("Paste a token's mint address, or a pump.fun, DexScreener, Birdeye, Solscan or GMGN link to it, and I "
            "open it with buy buttons. Your amounts are {amounts}: change them with <code>{usage}</code>.")


async def on_home_button(update: Update, context: BotContext) -> None:
    """Refresh the panel, or open one of the views it links to (the same views the commands show)."""
    tap = HomeTap.read(update)
    services = context.services
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
async def open_pasted_token(update: Update, context: BotContext, text: str, _asked: object) -> None:
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
    text, markup = await cards.token_panel(context.services, user_id_of(update), mint, None)
    await update.effective_message.reply_text(text, reply_markup=markup)


async def on_token_button(update: Update, context: BotContext) -> None:
    tap = TokenTap.read(update)
    services = context.services
    user_id = user_id_of(update)
    if tap.action == "p":
        await answer(update)
        expect_input(context, "presets")
        await send(update, f"Your buy amounts are {await presets_words(services, user_id)}. Send up to "
                           f"{MAX_BUY_PRESETS} new amounts of SOL separated by spaces, for example "
                           "<code>0.1 0.5 1</code>, or /cancel.")
        return
    await answer(update, "Refreshed" if tap.action == "r" else None)
    await edit_or_reply(update, *await cards.token_panel(services, user_id, tap.mint, tap.wallet_id))


async def save_presets(update: Update, context: BotContext, text: str, _asked: object = None) -> None:
    """The typed answer to "Buy amounts": validated, stored and confirmed (or refused with the reason)."""
    services = context.services
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


async def presets_command(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    if context.args:
        await save_presets(update, context, " ".join(context.args))
        return
    expect_input(context, "presets")
    await update.effective_message.reply_text(
        f"Your buy amounts are {await presets_words(context.services, user_id_of(update))}. Send up to "
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
