"""/wallets: list, import, generate, rename, set default, remove, export."""

from __future__ import annotations

from typing import Any

from telegram import Update

from bot.accounts import MAX_LABEL, AccountError, label_was_cut
from bot.callbacks import WalletTap, keyboard
from bot.context import BotContext
from bot.keys import short_address
from bot.miniapp.hook import export_needs_dashboard
from bot.notify import cards
from bot.notify.render import esc
from handlers.common import (
    answer,
    clear_input,
    delete_secret_message,
    edit_or_reply,
    expect_input,
    is_private,
    send,
    show,
    user_id_of,
)
from handlers.onboarding import continue_setup
from handlers.registry import Button, Command, Router

GENERATED_SECRET_TTL_S = 600
EXPORTED_SECRET_TTL_S = 60
BACK = keyboard([("« Back", WalletTap("list"))])
PRIVATE_ONLY = {"import", "gen", "exp", "expok"}  # buttons that show or take a wallet key


async def show_list(update: Update, context: BotContext, *, edit: bool = False) -> None:
    await show(update, *await cards.wallets_view(context.services, user_id_of(update)), edit=edit)


async def wallets_command(update: Update, context: BotContext) -> None:
    clear_input(context)
    await show_list(update, context)


async def import_wallet(update: Update, context: BotContext, secret_text: str, _asked: Any = None) -> None:
    """The user sent a secret key or phrase: delete it first, then check and store."""
    services = context.services
    note = await delete_secret_message(update.effective_message, "wallet key")
    clear_input(context)
    try:
        wallet = await services.accounts.import_wallet(user_id_of(update), secret_text)
    except AccountError as exc:
        expect_input(context, "import")
        await send(update, f"❌ {esc(exc)}\n{note}\nSend it again, or /cancel.")
        return
    await send(update, f"✅ <b>{esc(wallet.label)}</b> added: <code>{esc(wallet.address)}</code>"
                       + (" (your default)" if wallet.is_default else "") + f"\n{note}")
    await continue_setup(update, context)


async def rename_wallet(update: Update, context: BotContext, label: str, asked: dict[str, Any]) -> None:
    services = context.services
    assert update.effective_message is not None
    try:
        wallet = await services.accounts.rename(user_id_of(update), int(asked["wallet_id"]), label)
    except AccountError as exc:
        await update.effective_message.reply_text(f"❌ {esc(exc)} Send another name, or /cancel.")
        return
    clear_input(context)
    cut = f"\nNames are at most {MAX_LABEL} characters, so I kept the first {MAX_LABEL}." if label_was_cut(label) else ""
    await update.effective_message.reply_text(f"✅ Renamed to <b>{esc(wallet.label)}</b>.{cut}")


async def _generate(update: Update, context: BotContext) -> None:
    services = context.services
    wallet, secret = await services.accounts.generate(user_id_of(update))
    assert update.effective_chat is not None
    shown = await update.effective_chat.send_message(
        f"🔑 New wallet <b>{esc(wallet.label)}</b>\nAddress: <code>{esc(wallet.address)}</code>\n\n"
        f"Secret key (shown once; import it into Phantom or write it down):\n<tg-spoiler><code>{secret}</code></tg-spoiler>\n\n"
        "This message is deleted when you tap the button, or in 10 minutes.",
        reply_markup=keyboard([("I saved it", WalletTap("saved"))]),
    )
    del secret
    await services.deletions.schedule(shown.chat_id, shown.message_id, GENERATED_SECRET_TTL_S)
    await continue_setup(update, context)


async def _export(update: Update, context: BotContext, wallet_id: int) -> None:
    services = context.services
    wallet, secret = await services.accounts.export(user_id_of(update), wallet_id)
    assert update.effective_chat is not None
    shown = await update.effective_chat.send_message(
        f"🔑 Secret key of <b>{esc(wallet.label)}</b>:\n<tg-spoiler><code>{secret}</code></tg-spoiler>\n"
        "This message is deleted in 60 seconds.",
    )
    del secret
    await services.deletions.schedule(shown.chat_id, shown.message_id, EXPORTED_SECRET_TTL_S)
    await edit_or_reply(update, "Key shown below; it disappears in 60 seconds.", BACK)


async def _ask(update: Update, context: BotContext, tap: WalletTap) -> None:
    """The buttons that ask before acting: open a wallet, rename, remove, export."""
    wallet = await context.services.accounts.wallet(user_id_of(update), tap.wallet_id)
    wid = wallet.id
    if tap.action == "open":
        await edit_or_reply(
            update,
            f"<b>{esc(wallet.label)}</b>{' ⭐ default' if wallet.is_default else ''}\n<code>{esc(wallet.address)}</code>",
            keyboard(
                [("Rename", WalletTap("ren", wid)), ("Make default", WalletTap("def", wid))],
                [("Export key", WalletTap("exp", wid)), ("Remove", WalletTap("rm", wid))],
                [("« Back", WalletTap("list"))],
            ),
        )
    elif tap.action == "ren":
        expect_input(context, "rename", wallet_id=wid)
        await edit_or_reply(update, "Send the new name for this wallet (up to 32 characters), or /cancel.")
    elif tap.action == "rm":
        await edit_or_reply(
            update,
            f"Remove <b>{esc(wallet.label)}</b> (<code>{esc(short_address(wallet.address))}</code>)? I stop watching it and "
            "forget its key. Your funds stay in the wallet; make sure you have its key elsewhere.",
            keyboard([("Yes, remove it", WalletTap("rmok", wid)), ("Cancel", WalletTap("list"))]),
        )
    else:
        await edit_or_reply(
            update,
            f"Show the secret key of <b>{esc(wallet.label)}</b>? Anyone who sees it can take everything in the "
            "wallet. The message is deleted after 60 seconds.",
            keyboard([("Yes, show the key", WalletTap("expok", wid)), ("Cancel", WalletTap("list"))]),
        )


async def _act(update: Update, context: BotContext, tap: WalletTap) -> None:
    accounts = context.services.accounts
    user_id = user_id_of(update)
    if tap.action == "list":
        await answer(update)
        await show_list(update, context, edit=True)
    elif tap.action == "import":
        await answer(update)
        expect_input(context, "import")
        await edit_or_reply(
            update,
            "Send the wallet's secret as your next message: a base58 secret key (as Phantom exports it), a JSON "
            "array of 64 numbers, or a 12/24-word recovery phrase. I delete your message at once. /cancel stops.",
        )
    elif tap.action == "gen":
        await answer(update)
        await _generate(update, context)
    elif tap.action == "saved":
        message = update.callback_query.message if update.callback_query else None
        if message is not None:
            await context.services.deletions.delete_now(message.chat.id, message.message_id)
        await answer(update, "Deleted. Keep your copy safe.")
    elif tap.action == "def":
        wallet = await accounts.set_default(user_id, tap.wallet_id)
        await answer(update, f"{wallet.label} is now your default wallet.")
        await show_list(update, context, edit=True)
    elif tap.action == "rmok":
        wallet = await accounts.remove(user_id, tap.wallet_id)
        await answer(update, f"{wallet.label} removed.")
        await show_list(update, context, edit=True)
    elif tap.action == "expok":
        await answer(update)
        await _export(update, context, tap.wallet_id)
    else:
        await answer(update)
        await _ask(update, context, tap)


async def on_button(update: Update, context: BotContext) -> None:
    tap = WalletTap.read(update)
    if tap.action in PRIVATE_ONLY and not is_private(update):
        await answer(update, "Wallet keys are handled in a private chat with me only.", alert=True)
        return
    try:
        if tap.action in ("exp", "expok") and (pinned := await export_needs_dashboard(context.services,
                                                                                     user_id_of(update))):
            await answer(update)  # dashboard Mini App: with a PIN set, exports happen there, behind the PIN
            await edit_or_reply(update, *pinned)
            return
        await _act(update, context, tap)
    except AccountError as exc:
        await answer(update)
        await edit_or_reply(update, f"❌ {esc(exc)}", BACK)


router = Router(
    commands=[
        Command("wallets", "Your wallets: add, generate, rename, default, remove, export", wallets_command,
                section="Setup"),
    ],
    buttons=[Button(WalletTap, on_button)],
    inputs={"import": import_wallet, "rename": rename_wallet},
)
