"""/positions, the position card and its actions, /pstrategy (one position's strategy) and /buy.

Every position button is a `PositionTap` (the card, /positions, the live position message and liquidity
alerts), buy buttons are `BuyTap`s and the token panel's amounts `TokenBuyTap`s. A sell from the card goes
through `Seller.sell_share` (bot/exits/sell.py): built by the LaserSell REST API for the chosen amount, stored
as a "manual" exit signal, then the same way as any exit signal: Sell / Skip (or straight on with auto-sell),
the guard, signing, sending and confirming.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from telegram import Chat, InputFile, Update
from telegram.error import TelegramError

from bot.callbacks import BuyTap, LegacyPositionTap, PositionTap, TokenBuyTap, keyboard
from bot.context import BotContext
from bot.exits.buy import LAMPORTS_PER_SOL, BuyError
from bot.notify import cards, render
from bot.notify.charts import ChartError, bands_from, render_liquidity_chart, render_pnl_chart
from bot.notify.render import esc
from bot.services import Services
from bot.strategy import Strategy, StrategyError, apply_one_line
from handlers.common import answer, edit_or_reply, user_id_of
from handlers.registry import Button, Command, Router
from storage.history import Mark, PnlHistory
from storage.positions import Position

log = logging.getLogger("lasersell_bot.trade")

PSTRATEGY_USAGE = "/pstrategy <position> tp 40 sl 15 (or /pstrategy <position> reset)"


async def current_position(services: Services, user_id: int, position_id: int) -> Position | None:
    """The stored position with the stream's newest numbers."""
    return await cards.live_position(services, user_id, position_id)


async def held_tokens(services: Services, position: Position) -> int:
    """Tokens the wallet holds now."""
    return await services.seller.held_tokens(position)


# --- /positions ------------------------------------------------------------------------------------------------
async def positions_command(update: Update, context: BotContext) -> None:
    assert update.effective_message is not None
    text, markup = await cards.positions_view(context.services, user_id_of(update))
    await update.effective_message.reply_text(text, reply_markup=markup)


# --- the position buttons --------------------------------------------------------------------------------------
async def _sell_now(services: Services, user_id: int, position_id: int) -> tuple[str, bool]:
    """Ask the stream for an exit transaction now; the answer for the tap and whether it is an alert."""
    if await services.streams.request_exit(user_id, position_id):
        return "Asking LaserSell for the exit transaction…", False
    if user_id in services.streams.workers:
        return "Your stream is reconnecting; I will ask as soon as it is back.", False
    return "Your stream is not running: finish /start or /resume first.", True


async def _stop_tracking(update: Update, services: Services, user_id: int, position: Position) -> None:
    if not await services.streams.close_position(user_id, position.position_id):
        await answer(update, "Your stream is not connected: try again once it is.", alert=True)
        return
    await services.inbox.stop_tracking(user_id, position.position_id)  # an older Sell must not sell it now
    await answer(update, "Stopped tracking")
    await edit_or_reply(update, cards.stopped_tracking(position))


async def on_position_button(update: Update, context: BotContext) -> None:
    """Every position button, wherever it is shown (one handler for PositionTap and its older form)."""
    query = update.callback_query
    tap = LegacyPositionTap.read(update).upgraded() if LegacyPositionTap.matches(query and query.data) \
        else PositionTap.read(update)
    services = context.services
    user_id = user_id_of(update)
    position = await current_position(services, user_id, tap.position_id)
    if position is None or position.status != "open":
        await answer(update, cards.GONE, alert=True)
        return
    chat = update.effective_chat
    assert chat is not None
    action = tap.action
    if action in ("open", "ref"):
        await answer(update, "Refreshed" if action == "ref" else None)
        text, markup = await cards.position_card(services, user_id, position)
        if action == "open":
            await chat.send_message(text, reply_markup=markup)
        else:
            await edit_or_reply(update, text, markup)
    elif action in ("s", "max"):
        share = None if action == "max" else tap.share
        words = await services.seller.sell_share(user_id, position, share, services.inbox)
        await answer(update, words, alert=words.startswith("No liquidity snapshot"))
    elif action == "now":
        await answer(update, *await _sell_now(services, user_id, position.position_id))
    elif action == "edit":
        await answer(update)
        await chat.send_message(await cards.position_strategy_form(services, user_id, position))
    elif action == "stop":
        await answer(update)
        text, markup = cards.stop_tracking_question(position)
        await chat.send_message(text, reply_markup=markup)
    elif action == "stopok":
        await _stop_tracking(update, services, user_id, position)
    elif action == "keep":
        await answer(update, "Still tracking")
        await edit_or_reply(update, cards.still_tracking(position))
    else:
        await answer(update, "Drawing…")
        await send_chart(services, user_id, chat, position, action)


async def landed_marks(services: Services, user_id: int, position: Position, marks: list[Mark]) -> list[Mark]:
    """Only exits that landed are drawn as sells: a signal that was skipped, failed or is still waiting, and a
    card sell that never went through, are left off the chart."""
    signals = [s for s in await services.inbox.signals.for_user(user_id, None, limit=500)
               if s.position_id == position.position_id]
    kept = []
    for mark in marks:
        if mark.kind == "signal":
            if any(s.state == "landed" and s.triggered_at_ms == mark.t_ms for s in signals):
                kept.append(Mark(mark.t_ms, "sell", mark.label))
        elif mark.kind == "sell":
            # a card sell is marked when asked for; its signal carries the same moment on our clock
            if any(s.state == "landed" and s.reason == "manual" and abs(s.received_at_ms - mark.t_ms) < 30_000
                   for s in signals):
                kept.append(mark)
        else:
            kept.append(mark)
    return kept


async def send_chart(services: Services, user_id: int, chat: Chat, position: Position, which: str) -> None:
    settings = await services.accounts.user_settings(user_id)
    try:
        if which == "chart":
            history = PnlHistory.for_db(services.db)
            samples = await history.samples(user_id, position.position_id)
            marks = await landed_marks(services, user_id, position, await history.marks(user_id, position.position_id))
            title = f"{position.label} · PnL"
            png = await asyncio.to_thread(render_pnl_chart, samples, marks, title=title,
                                          quote=render.quote_of(position))
            caption = f"{esc(position.label)}: value over time, entry dashed, exits marked"
        else:
            bands = bands_from(position.bands)
            png = await asyncio.to_thread(render_liquidity_chart, bands, title=f"{position.label} · liquidity",
                                          your_slippage_bps=settings.slippage_bps, trend=position.liquidity_trend)
            caption = f"{esc(position.label)}: how much of your position sells within each slippage"
    except ChartError as exc:
        await chat.send_message(f"No chart yet: {esc(exc)}.")
        return
    try:
        await chat.send_photo(InputFile(png, filename=f"{which}-{position.position_id}.png"), caption=caption)
    except TelegramError as exc:
        log.info("chart not delivered: %s", exc)


# --- one position's strategy -----------------------------------------------------------------------------------
async def pstrategy_command(update: Update, context: BotContext) -> None:
    services = context.services
    assert update.effective_user is not None and update.effective_message is not None
    user_id = update.effective_user.id
    args = list(context.args or [])
    reply = update.effective_message.reply_text
    if not args or not args[0].lstrip("#").isdigit():
        await reply(f"Which position? Usage: <code>{esc(PSTRATEGY_USAGE)}</code> (numbers are in /positions)")
        return
    position = await services.streams.positions.get(user_id, int(args[0].lstrip("#")))
    if position is None or position.status != "open":
        await reply(f"No open position #{esc(args[0])} of yours. See /positions.")
        return
    if len(args) == 1:
        await reply(await cards.position_strategy_form(services, user_id, position))
        return
    account = await services.accounts.strategy(user_id)
    if len(args) == 2 and args[1].lower() == "reset":
        strategy, saved = account, None
    else:
        if any(key.lower() == "deadline" for key in args[1::2]):
            await reply("The deadline runs for all positions: change it with /strategy.")
            return
        base = Strategy.from_json(position.strategy_json) if position.strategy_json else account
        try:
            strategy = apply_one_line(base, args[1:])
        except StrategyError as exc:
            await reply(f"Not changed: {esc(exc)}")
            return
        saved = strategy.to_json()
    # stored first: the stream re-sends it after every reconnect
    sent = await services.streams.set_position_strategy(user_id, position.position_id, strategy if saved else None)
    head = ("Back on your account's strategy" if saved is None else "Saved for this position") + \
        f": <b>{esc(position.label)}</b> #{position.position_id}"
    lines = [head, *(f"• {esc(line)}" for line in strategy.describe() if not line.startswith("Deadline"))]
    if not sent:
        lines.append("Your stream is not connected right now; it gets this as soon as it is.")
    await reply("\n".join(lines))


# --- /buy ------------------------------------------------------------------------------------------------------
async def buy_command(update: Update, context: BotContext) -> None:
    assert update.effective_user is not None and update.effective_message is not None
    args = list(context.args or [])
    message = update.effective_message
    if len(args) != 2:
        await message.reply_text("Usage: <code>/buy &lt;mint&gt; &lt;SOL&gt;</code>, for example "
                                 "<code>/buy 7xKX…pump 0.1</code>")
        return
    await offer_buy(update, context, args[0], args[1])


async def offer_buy(
    update: Update, context: BotContext, mint: str, amount: str, wallet: str | None = None
) -> None:
    """Quote a buy of `amount` SOL of `mint` (from `wallet`, else the default) and ask for one tap to confirm."""
    services = context.services
    chat = update.effective_chat
    assert chat is not None
    buyer = services.buyer
    if buyer is None:
        await chat.send_message("Buying is not available on this bot.")
        return
    try:
        quote = await buyer.quote(user_id_of(update), mint, amount, wallet)
    except BuyError as exc:
        await chat.send_message(f"Not bought: {esc(exc)}.")
        return
    order = quote.order
    text = buyer.describe(order, quote.symbol, quote.decimals) + "\n\nTap Buy within a minute to confirm."
    sent = await chat.send_message(
        text, reply_markup=keyboard([("✅ Buy", BuyTap("go", order.id)), ("Cancel", BuyTap("no", order.id))])
    )
    await buyer.attach(order.id, sent.chat_id, sent.message_id)


async def on_buy_button(update: Update, context: BotContext) -> None:
    tap = BuyTap.read(update)
    buyer = context.services.buyer
    if buyer is None:
        await answer(update, "Buying is not available on this bot.", alert=True)
    elif tap.action == "go":
        await answer(update, await buyer.approve(user_id_of(update), tap.order_id))
    else:
        await answer(update, await buyer.cancel(user_id_of(update), tap.order_id))


async def on_token_buy_button(update: Update, context: BotContext) -> None:
    """A buy amount on the token panel: quote that preset from the chosen wallet."""
    tap = TokenBuyTap.read(update)
    services = context.services
    user_id = user_id_of(update)
    presets = await services.accounts.buy_presets(user_id)
    wallet = await services.accounts.wallets.get(user_id, tap.wallet_id)
    if tap.index >= len(presets) or wallet is None:
        await answer(update, "These buttons are out of date: paste the token again.", alert=True)
        return
    await answer(update, "Asking LaserSell for a quote…")
    await offer_buy(update, context, tap.mint, str(Decimal(presets[tap.index]) / LAMPORTS_PER_SOL), wallet.address)


router = Router(
    commands=[
        Command("positions", "Your open positions: PnL, value, liquidity; tap one for its card", positions_command,
                section="Trading"),
        Command("buy", "Buy a token: /buy <mint> <SOL>", buy_command, section="Trading", usage="/buy <mint> 0.1"),
        Command("pstrategy", "Change the exit strategy of one position", pstrategy_command, section="Trading",
                usage="/pstrategy 3 tp 40 sl 15"),
    ],
    buttons=[
        Button(PositionTap, on_position_button),
        Button(LegacyPositionTap, on_position_button),
        Button(BuyTap, on_buy_button),
        Button(TokenBuyTap, on_token_buy_button),
    ],
)
