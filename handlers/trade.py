"""/positions, the position card and its actions, /pstrategy (one position's strategy) and /buy.

Card buttons use the `pc:<action>:<position id>[:<arg>]` callback data, buy buttons `b:<go|no>:<order id>`.
A sell from the card is built by the LaserSell REST API for the chosen amount, stored as a "manual" exit
signal and then goes the same way as any exit signal: Sell / Skip (or straight on with auto-sell), the
guard, signing, sending and confirming in `bot.exits.sell`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from telegram import InputFile, Update
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot.accounts import api_failure_words
from bot.exits.buy import BuyError
from bot.lasersell_api import InvalidApiKey, LaserSellApiError
from bot.notify import render
from bot.notify.charts import ChartError, bands_from, render_liquidity_chart, render_pnl_chart
from bot.services import get_services
from bot.solana_rpc import RpcError
from bot.strategy import KEYWORDS, Strategy, StrategyError, apply_one_line
from handlers.common import answer, edit_or_reply, esc, keyboard
from handlers.registry import Command
from storage.history import Mark, PnlHistory
from storage.positions import Position

log = logging.getLogger("lasersell_bot.trade")

GONE = "This position is closed or not yours."
SELL_SHARES = (25, 50, 100)
PSTRATEGY_USAGE = "/pstrategy <position> tp 40 sl 15 (or /pstrategy <position> reset)"


async def current_position(services: Any, user_id: int, position_id: int) -> Position | None:
    """The stored position with the stream's newest numbers (PnL and liquidity are written in batches)."""
    supervisor = services.streams
    if supervisor is None:
        return None
    live = getattr(supervisor, "position", None)
    return await live(user_id, position_id) if live is not None else await supervisor.positions.get(user_id, position_id)


# --- numbers for the card ------------------------------------------------------------------------------------
async def held_tokens(services: Any, position: Position) -> int:
    """Tokens the wallet holds now (a partial sell leaves fewer than the stream first reported)."""
    try:
        holdings = await services.rpc.get_token_holdings(position.wallet)
    except (RpcError, KeyError, TypeError, ValueError) as exc:
        log.info("token holdings unavailable (%s); using the stream's amount", exc)
        return position.tokens
    for holding in holdings:
        if holding.mint == position.mint and (position.token_account in (None, holding.token_account)):
            return holding.amount
    return 0


async def buy_cost(services: Any, user_id: int, position: Position) -> int | None:
    """Lamports this bot's landed buys of the position took from the wallet, fees and rent included (as the
    chain recorded them); None when the position was not bought here or a buy cannot be read."""
    rows = await services.db.fetchall(
        "SELECT signature FROM buy_orders WHERE telegram_id=? AND wallet=? AND mint=? AND state='landed'",
        (user_id, position.wallet, position.mint),
    )
    total = 0
    for row in rows:
        change = await services.rpc.sol_change(row[0], position.wallet) if row[0] else None
        if change is None:
            return None
        total += -change[0]
    return total or None


def max_within(position: Position, slippage_bps: int, held: int) -> tuple[int, float, int] | None:
    """(tokens, % of what is held, band slippage) sellable within the band at or below `slippage_bps`."""
    bands = [b for b in bands_from(position.bands) if b.slippage_bps <= slippage_bps]
    if not bands or held <= 0:
        return None
    band = bands[-1]
    tokens = min(held, band.max_tokens) if band.max_tokens else int(held * min(100.0, band.coverage_pct) / 100)
    return tokens, 100.0 * tokens / held, band.slippage_bps


def _opened_local_ms(services: Any, user_id: int, position: Position) -> int:
    worker = services.streams.workers.get(user_id) if services.streams else None
    if position.opened_at_ms and worker is not None:
        return min(position.first_seen_ms, position.opened_at_ms - worker.clock_offset_ms)
    return position.first_seen_ms


async def _copy_source(services: Any, user_id: int, position: Position) -> str | None:
    """The watched wallet a copied position came from (copy trading), else None."""
    copier = getattr(services, "copier", None)
    return None if copier is None else await copier.source_label(user_id, position.wallet, position.mint)


async def card(services: Any, user_id: int, position: Position) -> tuple[str, Any]:
    """The position card: text and buttons."""
    settings = await services.accounts.store.get(user_id)
    held = await held_tokens(services, position)
    pid = position.position_id
    name = f" ({esc(position.name)})" if position.name and position.name != position.symbol else ""
    lines = [f"📊 <b>{esc(position.label)}</b>{name} · {render.market_words(position.market_type)}",
             f"Holding {render.tokens(held, position.decimals)} tokens · wallet <code>{render.short(position.wallet)}</code>"]
    source = await _copy_source(services, user_id, position)
    if source:
        lines.append(f"🪞 Copied from {esc(source)}")
    lines.append(render.pnl_line(position))
    cost = await buy_cost(services, user_id, position) if render.quote_of(position) == "SOL" else None
    sold = [x for x in await services.inbox.signals.for_user(user_id, ("landed",), limit=200)
            if x.position_id == position.position_id]
    if cost is not None and position.proceeds_units is not None and not sold:
        net = position.proceeds_units - cost
        lines.append(f"After the {render.sol(cost)} your buy paid, fees and rent included: "
                     f"{render.money(net, 'SOL', signed=True)} ({render.pct(net, cost)})")
    trend = render.TRENDS.get(position.liquidity_trend or "", esc(position.liquidity_trend or "not measured yet"))
    lines.append(f"Liquidity {trend} · age {render.age(_opened_local_ms(services, user_id, position))}")
    best = max_within(position, settings.slippage_bps, held)
    if best is not None:
        tokens, share, band_bps = best
        lines.append(f"Sellable within your {settings.slippage_bps / 100:g}% slippage: "
                     f"{render.tokens(tokens, position.decimals)} tokens ({share:.0f}% of the position"
                     + (f", {band_bps / 100:g}% band)" if band_bps != settings.slippage_bps else ")"))
    elif position.bands:
        lines.append(f"No liquidity band at or below your {settings.slippage_bps / 100:g}% slippage.")
    if position.strategy_json:
        lines.append("Strategy for this position: " + "; ".join(Strategy.from_json(position.strategy_json).describe()[:3]))
    if position.waiting_exit:
        lines.append("⏳ Waiting for an exit transaction from LaserSell…")
    lines.append(f"Updated {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    rows = [[(f"Sell {share}%", f"pc:s:{pid}:{share}") for share in SELL_SHARES]]
    if best is not None:
        rows.append([(f"Sell max within {settings.slippage_bps / 100:g}% · {render.tokens(best[0], position.decimals)}",
                      f"pc:max:{pid}")])
    rows += [
        [("⚡ Sell now", f"pc:now:{pid}"), ("✏️ Edit strategy", f"pc:edit:{pid}")],
        [("📈 PnL chart", f"pc:chart:{pid}"), ("💧 Liquidity chart", f"pc:liq:{pid}")],
        [("🔄 Refresh", f"pc:ref:{pid}"), ("Stop tracking", f"pc:stop:{pid}")],
    ]
    return "\n".join(lines), keyboard(*rows)


# --- /positions ------------------------------------------------------------------------------------------------
async def positions_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    user_id = update.effective_user.id
    stored = await services.streams.positions.open_for(user_id) if services.streams else []
    positions = [await current_position(services, user_id, p.position_id) or p for p in stored]
    if not positions:
        await update.effective_message.reply_text(
            "No open positions. Buy with <code>/buy &lt;mint&gt; &lt;SOL&gt;</code>, or from any app: "
            "LaserSell tracks what your wallets buy."
        )
        return
    lines = [f"<b>Open positions</b> ({len(positions)})"]
    buttons = []
    for p in positions[:30]:
        pnl = ""
        if p.profit_units is not None and p.proceeds_units is not None:
            basis = p.proceeds_units - p.profit_units
            quote = render.quote_of(p)
            pnl = f" · {render.money(p.profit_units, quote, signed=True)} ({render.pct(p.profit_units, basis)})" \
                  f" · value {render.money(p.proceeds_units, quote)}"
        trend = f" · {render.TRENDS.get(p.liquidity_trend, esc(p.liquidity_trend))}" if p.liquidity_trend else ""
        age = render.age(_opened_local_ms(services, user_id, p))
        source = await _copy_source(services, user_id, p)
        copied = f" · 🪞 {esc(source)}" if source else ""
        lines.append(f"<b>{esc(p.label)}</b> #{p.position_id}{pnl}{trend} · {age}{copied}")
        buttons.append((f"{p.label} #{p.position_id}", f"pc:open:{p.position_id}"))
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    lines.append("\nTap one to open its card.")
    await update.effective_message.reply_text("\n".join(lines), reply_markup=keyboard(*rows))


# --- the card's buttons ----------------------------------------------------------------------------------------
async def on_card_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    parts = query.data.split(":")
    action = parts[1] if len(parts) > 1 else ""
    user_id = update.effective_user.id
    position_id = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else -1
    position = await current_position(services, user_id, position_id)
    if position is None or position.status != "open":
        await answer(update, GONE, alert=True)
        return
    chat = update.effective_chat
    assert chat is not None
    if action == "open":
        await answer(update)
        text, markup = await card(services, user_id, position)
        await chat.send_message(text, reply_markup=markup)
    elif action == "ref":
        await answer(update, "Refreshed")
        text, markup = await card(services, user_id, position)
        await edit_or_reply(update, text, markup)
    elif action == "s" and len(parts) > 3 and parts[3] in {str(s) for s in SELL_SHARES}:
        share = int(parts[3])
        held = await held_tokens(services, position)
        amount = held if share == 100 else held * share // 100
        await answer(update, await sell_from_card(services, user_id, chat.id, position, amount, held, f"{share}%"))
    elif action == "max":
        settings = await services.accounts.store.get(user_id)
        held = await held_tokens(services, position)
        best = max_within(position, settings.slippage_bps, held)
        if best is None:
            await answer(update, "No liquidity snapshot within your slippage yet: try Refresh in a few seconds.", alert=True)
            return
        await answer(update, await sell_from_card(services, user_id, chat.id, position, best[0], held, f"{best[1]:.0f}%"))
    elif action == "now":
        if await services.streams.request_exit(user_id, position_id):
            await answer(update, "Asking LaserSell for the exit transaction…")
        elif user_id in services.streams.workers:
            await answer(update, "Your stream is reconnecting; I will ask as soon as it is back.")
        else:
            await answer(update, "Your stream is not running: finish /start or /resume first.", alert=True)
    elif action == "edit":
        await answer(update)
        await chat.send_message(await strategy_form(services, user_id, position))
    elif action == "stop":
        await answer(update)
        await chat.send_message(
            f"Stop tracking <b>{esc(position.label)}</b>? I will not alert or sell it any more. This does <b>not</b> "
            "sell your tokens.",
            reply_markup=keyboard([("Yes, stop tracking", f"pc:stopok:{position_id}"), ("Cancel", f"pc:keep:{position_id}")]),
        )
    elif action == "stopok":
        worker = services.streams.workers.get(user_id)
        if worker is None or not await worker.client.close_position(position_id):
            await answer(update, "Your stream is not connected: try again once it is.", alert=True)
            return
        await services.inbox.stop_tracking(user_id, position_id)  # an older Sell must not sell it now
        await answer(update, "Stopped tracking")
        await edit_or_reply(update, f"Stopped tracking {esc(position.label)}. Your tokens are still in your wallet.")
    elif action == "keep":
        await answer(update, "Still tracking")
        await edit_or_reply(update, f"Still tracking {esc(position.label)}.")
    elif action in ("chart", "liq"):
        await answer(update, "Drawing…")
        await send_chart(services, user_id, chat, position, action)
    else:
        await answer(update, "That button is no longer valid.")


async def sell_from_card(
    services: Any, user_id: int, chat_id: int, position: Position, amount: int, held: int, share: str
) -> str:
    """Build a sell of `amount` tokens with the REST API and hand it to the exit path; returns the answer."""
    if amount <= 0 or held <= 0:
        return "This wallet holds none of these tokens any more."
    found = await services.accounts.api_key(user_id)
    if found is None:
        return "Connect your LaserSell key first: /start"
    settings = await services.accounts.store.get(user_id)
    try:
        # the tip is the user's for their send mode (none over plain RPC); the proceeds come in the market's quote
        tx = await services.api.sell(
            found[0], mint=position.mint, user_pubkey=position.wallet, amount_tokens=amount,
            slippage_bps=settings.slippage_bps, output=render.quote_of(position), send_mode=settings.send_mode,
            tip_lamports=settings.tip_lamports,
        )
    except InvalidApiKey:
        return "LaserSell refused your API key: set it again with /apikey."
    except LaserSellApiError as exc:
        return f"No sell was built: {api_failure_words(exc)}."[:190]
    now = int(time.time() * 1000)
    msg = {
        "position_id": position.position_id, "wallet_pubkey": position.wallet, "mint": position.mint,
        "token_account": position.token_account, "position_tokens": held, "sell_tokens": amount,
        "profit_units": position.profit_units or 0, "reason": "manual", "triggered_at_ms": now,
        "unsigned_tx_b64": tx,
    }
    if position.market_type:
        msg["market_context"] = {"market_type": position.market_type}
    signal = await services.inbox.signals.store(user_id, msg, now, settings.slippage_bps)
    await PnlHistory.for_db(services.db).mark(user_id, position.position_id, "sell", f"card {share}")
    message_id = await services.alerts.exit_signal(user_id, chat_id, signal, position)
    if message_id is not None:
        await services.inbox.signals.set(signal.id, chat_id=chat_id, message_id=message_id)
    if settings.auto_sell and services.seller is not None:
        await services.seller.auto_sell(signal.id, user_id)
        return f"Selling {share}…"
    return f"Sell {share} ready: tap Sell to confirm."


async def landed_marks(services: Any, user_id: int, position: Position, marks: list[Mark]) -> list[Mark]:
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


async def send_chart(services: Any, user_id: int, chat: Any, position: Position, which: str) -> None:
    settings = await services.accounts.store.get(user_id)
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
async def strategy_form(services: Any, user_id: int, position: Position) -> str:
    current = (Strategy.from_json(position.strategy_json) if position.strategy_json
               else await services.accounts.strategy(user_id))
    whose = "its own" if position.strategy_json else "your account's"
    example = f"tp {current.take_profit_pct:g} sl {current.stop_loss_pct:g}"
    return (
        f"✏️ <b>{esc(position.label)}</b> #{position.position_id} follows {whose} strategy:\n"
        + "\n".join(f"• {esc(line)}" for line in current.describe() if not line.startswith("Deadline"))
        + f"\n\nTo change it for this position only, send for example:\n<code>/pstrategy {position.position_id} {example}</code>"
        + f"\n(keys: {', '.join(k for k in KEYWORDS if k != 'deadline')}; "
        + f"<code>/pstrategy {position.position_id} reset</code> follows your account's strategy again)"
    )


async def pstrategy_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    user_id = update.effective_user.id
    args = list(context.args or [])
    reply = update.effective_message.reply_text
    if not args or not args[0].lstrip("#").isdigit():
        await reply(f"Which position? Usage: <code>{esc(PSTRATEGY_USAGE)}</code> (numbers are in /positions)")
        return
    position = await services.streams.positions.get(user_id, int(args[0].lstrip("#"))) if services.streams else None
    if position is None or position.status != "open":
        await reply(f"No open position #{esc(args[0])} of yours. See /positions.")
        return
    if len(args) == 1:
        await reply(await strategy_form(services, user_id, position))
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
    # saved first: the supervisor re-sends it after every reconnect
    await services.streams.positions.update(user_id, position.position_id, strategy_json=saved)
    worker = services.streams.workers.get(user_id)
    sent = worker is not None and await worker.client.update_position_strategy(position.position_id, strategy.to_wire())
    head = ("Back on your account's strategy" if saved is None else "Saved for this position") + \
        f": <b>{esc(position.label)}</b> #{position.position_id}"
    lines = [head, *(f"• {esc(line)}" for line in strategy.describe() if not line.startswith("Deadline"))]
    if not sent:
        lines.append("Your stream is not connected right now; it gets this as soon as it is.")
    await reply("\n".join(lines))


# --- /buy ------------------------------------------------------------------------------------------------------
async def buy_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_user is not None and update.effective_message is not None
    args = list(context.args or [])
    message = update.effective_message
    if len(args) != 2:
        await message.reply_text("Usage: <code>/buy &lt;mint&gt; &lt;SOL&gt;</code>, for example "
                                 "<code>/buy 7xKX…pump 0.1</code>")
        return
    await offer_buy(update, context, args[0], args[1])


async def offer_buy(
    update: Update, context: ContextTypes.DEFAULT_TYPE, mint: str, amount: str, wallet: str | None = None
) -> None:
    """Quote a buy of `amount` SOL of `mint` (from `wallet`, else the default) and ask for one tap to confirm."""
    services = get_services(context)
    assert update.effective_user is not None and update.effective_chat is not None
    chat = update.effective_chat
    buyer = getattr(services, "buyer", None)
    if buyer is None:
        await chat.send_message("Buying is not available on this bot.")
        return
    try:
        quote = await buyer.quote(update.effective_user.id, mint, amount, wallet)
    except BuyError as exc:
        await chat.send_message(f"Not bought: {exc}.")
        return
    order = quote.order
    text = buyer.describe(order, quote.symbol, quote.decimals) + "\n\nTap Buy within a minute to confirm."
    sent = await chat.send_message(
        text, reply_markup=keyboard([("✅ Buy", f"b:go:{order.id}"), ("Cancel", f"b:no:{order.id}")])
    )
    await buyer.attach(order.id, sent.chat_id, sent.message_id)


async def on_buy_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    _, action, order_id = (query.data.split(":", 2) + ["", ""])[:3]
    buyer = getattr(services, "buyer", None)
    if buyer is None:
        await answer(update, "Buying is not available on this bot.", alert=True)
    elif action == "go":
        await answer(update, await buyer.approve(update.effective_user.id, order_id))
    elif action == "no":
        await answer(update, await buyer.cancel(update.effective_user.id, order_id))
    else:
        await answer(update, "That button is no longer valid.")


COMMANDS = [
    Command("positions", "Your open positions: PnL, value, liquidity; tap one for its card", positions_command,
            section="Trading"),
    Command("buy", "Buy a token: /buy <mint> <SOL>", buy_command, section="Trading", usage="/buy <mint> 0.1"),
    Command("pstrategy", "Change the exit strategy of one position", pstrategy_command, section="Trading",
            usage="/pstrategy 3 tp 40 sl 15"),
]


def register(app: Application) -> None:
    app.add_handler(CallbackQueryHandler(on_card_button, pattern=r"^pc:"))
    app.add_handler(CallbackQueryHandler(on_buy_button, pattern=r"^b:"))
