"""/wallets: list, import, generate, rename, set default, remove, export."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot.accounts import MAX_LABEL, AccountError, WalletView, label_was_cut
from bot.keys import short_address
from bot.miniapp.hook import export_needs_dashboard
from bot.services import get_services
from handlers.common import (
    answer,
    clear_input,
    delete_secret_message,
    edit_or_reply,
    esc,
    expect_input,
    is_private,
    keyboard,
)
from handlers.registry import Command

GENERATED_SECRET_TTL_S = 600
EXPORTED_SECRET_TTL_S = 60
LAMPORTS_PER_SOL = 1_000_000_000


def _sol(lamports: int | None) -> str:
    return "? SOL" if lamports is None else f"{lamports / LAMPORTS_PER_SOL:.4f} SOL"


def _list_text(views: list[WalletView]) -> str:
    if not views:
        return "<b>Your wallets</b>\nNo wallet yet. Import the one you trade from, or generate a new one."
    lines = ["<b>Your wallets</b>"]
    for v in views:
        w = v.wallet
        star = "⭐ " if w.is_default else ""
        tokens = "?" if v.token_count is None else str(v.token_count)
        lines.append(
            f"{star}<b>{esc(w.label)}</b> <code>{esc(short_address(w.address))}</code> · {_sol(v.sol_lamports)} · "
            f"{tokens} token(s)" + ("" if w.registered_at else " · not registered with LaserSell yet")
        )
    return "\n".join(lines)


async def show_list(update: Update, context: ContextTypes.DEFAULT_TYPE, *, edit: bool = False) -> None:
    services = get_services(context)
    assert update.effective_user is not None
    views = await services.accounts.overview(update.effective_user.id)
    rows = [[(f"⚙ {v.wallet.label}", f"w:open:{v.wallet.id}")] for v in views]
    rows.append([("Import a wallet", "w:import"), ("Generate a new one", "w:gen")])
    markup = keyboard(*rows)
    if edit:
        await edit_or_reply(update, _list_text(views), markup)
    else:
        assert update.effective_chat is not None
        await update.effective_chat.send_message(_list_text(views), reply_markup=markup)


async def wallets_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    clear_input(context)
    await show_list(update, context)


async def import_wallet(update: Update, context: ContextTypes.DEFAULT_TYPE, secret_text: str) -> None:
    """The user sent a secret key or phrase: delete it first, then check and store."""
    services = get_services(context)
    assert update.effective_user is not None and update.effective_chat is not None
    note = await delete_secret_message(update.effective_message, "wallet key")
    clear_input(context)
    try:
        wallet = await services.accounts.import_wallet(update.effective_user.id, secret_text)
    except AccountError as exc:
        expect_input(context, "import")
        await update.effective_chat.send_message(f"❌ {esc(exc)}\n{note}\nSend it again, or /cancel.")
        return
    await update.effective_chat.send_message(
        f"✅ <b>{esc(wallet.label)}</b> added: <code>{esc(wallet.address)}</code>"
        + (" (your default)" if wallet.is_default else "")
        + f"\n{note}"
    )
    await _continue_onboarding(update, context)


async def _continue_onboarding(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from handlers.start import next_step, show_step

    services = get_services(context)
    assert update.effective_user is not None
    settings = await services.accounts.store.get(update.effective_user.id)
    if settings.onboarding_step != "done" and await next_step(services, update.effective_user.id) is not None:
        await show_step(update, context)


async def rename_wallet(update: Update, context: ContextTypes.DEFAULT_TYPE, wallet_id: int, label: str) -> None:
    services = get_services(context)
    assert update.effective_user is not None and update.effective_message is not None
    try:
        wallet = await services.accounts.rename(update.effective_user.id, wallet_id, label)
    except AccountError as exc:
        await update.effective_message.reply_text(f"❌ {esc(exc)} Send another name, or /cancel.")
        return
    clear_input(context)
    cut = f"\nNames are at most {MAX_LABEL} characters, so I kept the first {MAX_LABEL}." if label_was_cut(label) else ""
    await update.effective_message.reply_text(f"✅ Renamed to <b>{esc(wallet.label)}</b>.{cut}")


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    services = get_services(context)
    user_id = update.effective_user.id
    parts = query.data.split(":")
    action = parts[1]
    wallet_id = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    if action in ("import", "gen", "exp", "expok") and not is_private(update):
        await answer(update, "Wallet keys are handled in a private chat with me only.", alert=True)
        return
    try:
        if action == "list":
            await answer(update)
            await show_list(update, context, edit=True)
        elif action == "import":
            await answer(update)
            expect_input(context, "import")
            await edit_or_reply(
                update,
                "Send the wallet's secret as your next message: a base58 secret key (as Phantom exports it), a JSON "
                "array of 64 numbers, or a 12/24-word recovery phrase. I delete your message at once. /cancel stops.",
            )
        elif action == "gen":
            await answer(update)
            wallet, secret = await services.accounts.generate(user_id)
            assert update.effective_chat is not None
            shown = await update.effective_chat.send_message(
                f"🔑 New wallet <b>{esc(wallet.label)}</b>\nAddress: <code>{esc(wallet.address)}</code>\n\n"
                f"Secret key (shown once; import it into Phantom or write it down):\n<tg-spoiler><code>{secret}</code></tg-spoiler>\n\n"
                "This message is deleted when you tap the button, or in 10 minutes.",
                reply_markup=keyboard([("I saved it", "w:saved")]),
            )
            del secret
            await services.deletions.schedule(shown.chat_id, shown.message_id, GENERATED_SECRET_TTL_S)
            await _continue_onboarding(update, context)
        elif action == "saved":
            message = query.message
            if message is not None:
                await services.deletions.delete_now(message.chat.id, message.message_id)
            await answer(update, "Deleted. Keep your copy safe.")
        elif action == "open":
            await answer(update)
            wallet = await services.accounts._own(user_id, wallet_id)
            await edit_or_reply(
                update,
                f"<b>{esc(wallet.label)}</b>{' ⭐ default' if wallet.is_default else ''}\n<code>{esc(wallet.address)}</code>",
                keyboard(
                    [("Rename", f"w:ren:{wallet_id}"), ("Make default", f"w:def:{wallet_id}")],
                    [("Export key", f"w:exp:{wallet_id}"), ("Remove", f"w:rm:{wallet_id}")],
                    [("« Back", "w:list")],
                ),
            )
        elif action == "ren":
            await answer(update)
            await services.accounts._own(user_id, wallet_id)
            expect_input(context, "rename", wallet_id=wallet_id)
            await edit_or_reply(update, "Send the new name for this wallet (up to 32 characters), or /cancel.")
        elif action == "def":
            wallet = await services.accounts.set_default(user_id, wallet_id)
            await answer(update, f"{wallet.label} is now your default wallet.")
            await show_list(update, context, edit=True)
        elif action == "rm":
            await answer(update)
            wallet = await services.accounts._own(user_id, wallet_id)
            await edit_or_reply(
                update,
                f"Remove <b>{esc(wallet.label)}</b> (<code>{esc(short_address(wallet.address))}</code>)? I stop watching it and "
                "forget its key. Your funds stay in the wallet; make sure you have its key elsewhere.",
                keyboard([("Yes, remove it", f"w:rmok:{wallet_id}"), ("Cancel", "w:list")]),
            )
        elif action == "rmok":
            wallet = await services.accounts.remove(user_id, wallet_id)
            await answer(update, f"{wallet.label} removed.")
            await show_list(update, context, edit=True)
        elif action in ("exp", "expok") and (pinned := await export_needs_dashboard(services, user_id)):
            await answer(update)  # dashboard Mini App: with a PIN set, exports happen there, behind the PIN
            await edit_or_reply(update, *pinned)
        elif action == "exp":
            await answer(update)
            wallet = await services.accounts._own(user_id, wallet_id)
            await edit_or_reply(
                update,
                f"Show the secret key of <b>{esc(wallet.label)}</b>? Anyone who sees it can take everything in the "
                "wallet. The message is deleted after 60 seconds.",
                keyboard([("Yes, show the key", f"w:expok:{wallet_id}"), ("Cancel", "w:list")]),
            )
        elif action == "expok":
            await answer(update)
            wallet, secret = await services.accounts.export(user_id, wallet_id)
            assert update.effective_chat is not None
            shown = await update.effective_chat.send_message(
                f"🔑 Secret key of <b>{esc(wallet.label)}</b>:\n<tg-spoiler><code>{secret}</code></tg-spoiler>\n"
                "This message is deleted in 60 seconds.",
            )
            del secret
            await services.deletions.schedule(shown.chat_id, shown.message_id, EXPORTED_SECRET_TTL_S)
            await edit_or_reply(update, "Key shown below; it disappears in 60 seconds.", keyboard([("« Back", "w:list")]))
        else:
            await answer(update, "That button is no longer valid.")
    except AccountError as exc:
        await answer(update)
        await edit_or_reply(update, f"❌ {esc(exc)}", keyboard([("« Back", "w:list")]))


def register(app: Application) -> None:
    app.add_handler(CallbackQueryHandler(on_button, pattern=r"^w:"))


COMMANDS = [
    Command("wallets", "Your wallets: add, generate, rename, default, remove, export", wallets_command, section="Setup"),
]
