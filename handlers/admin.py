"""Admin commands: /broadcast (preview, Send / Cancel), /broadcast_cancel and /stats; every action audited.

The gate in bot/app.py answers these commands like unknown ones for anyone not in ADMIN_USER_IDS; the
buttons check again, since a callback query does not pass through that gate.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Any

from telegram import Message, MessageEntity, Update
from telegram.error import BadRequest

from bot.broadcast import progress_text, report_text
from bot.callbacks import BroadcastTap, keyboard
from bot.context import BotContext
from bot.notify.render import esc
from bot.services import Services
from handlers import errors
from handlers.common import answer
from handlers.registry import Button, Callback, Command, Router

USAGE = (
    "Send <code>/broadcast your message</code> (HTML formatting works), or reply <code>/broadcast</code> to a "
    "message (a photo, formatted text…) to send a copy of it. You get a preview first."
)


def admin_only(callback: Callback) -> Callback:
    """Checked here too, not only in the app's gate: to a non-admin the command does not exist."""

    @functools.wraps(callback)
    async def guarded(update: Update, context: BotContext) -> Any:
        user = update.effective_user
        if user is None or not context.services.settings.is_admin(user.id):
            return await errors.unknown_command(update, context)
        return await callback(update, context)

    return guarded


def _body(message: Message) -> str:
    """The text after the command: as Telegram formatted it if the admin used formatting, else as typed (HTML)."""
    formatted = any(e.type != MessageEntity.BOT_COMMAND for e in message.entities or ())
    text = message.text_html if formatted else (message.text or "")
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


async def broadcast_command(update: Update, context: BotContext) -> None:
    message, user, chat = update.effective_message, update.effective_user, update.effective_chat
    assert message is not None and user is not None and chat is not None
    services = context.services
    broadcasts = services.broadcasts
    running = await broadcasts.running()
    if running:
        job = running[0]
        await message.reply_text(
            f"Broadcast #{job.id} is still sending ({job.done:,} of {job.total:,}). /broadcast_cancel stops it."
        )
        return
    source = message.reply_to_message
    body = _body(message)
    if source is None and not body:
        await message.reply_text(USAGE)
        return
    # The preview is the real message, sent the way recipients get it: Telegram checks the HTML here.
    try:
        if source is not None:
            await context.bot.copy_message(chat.id, from_chat_id=chat.id, message_id=source.message_id)
        else:
            await context.bot.send_message(chat.id, body)
    except BadRequest as exc:
        await message.reply_text(f"Telegram refused this message, nothing was sent: {esc(exc.message)}\n\n{USAGE}")
        return
    if source is not None:
        draft = await broadcasts.draft(user.id, chat.id, source=(chat.id, source.message_id))
    else:
        draft = await broadcasts.draft(user.id, chat.id, text=body)
    count = await broadcasts.recipient_count(exclude=(user.id,))
    numbers = await services.admin.users()
    await services.admin.record(user.id, "broadcast_preview", f"#{draft.id} {draft.kind} to {count} users")
    await message.reply_text(
        f"☝️ That is the preview of broadcast #{draft.id}.\nSend it to <b>{count:,}</b> users?\n"
        f"{audience_words(numbers.total, numbers.blocked, count)}",
        reply_markup=keyboard([("📣 Send", BroadcastTap("send", draft.id)), ("Cancel", BroadcastTap("drop", draft.id))]),
    )


async def on_broadcast_button(update: Update, context: BotContext) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    services = context.services
    if not services.settings.is_admin(user.id):
        await answer(update, "That button is no longer valid.")
        return
    tap = BroadcastTap.read(update)
    broadcast_id = tap.broadcast_id
    broadcasts = services.broadcasts
    if tap.action == "send":
        message_id = query.message.message_id if query.message is not None else None
        job = await broadcasts.send(broadcast_id, progress_message_id=message_id, exclude=(user.id,))
        if job is None:
            draft = await broadcasts.get(broadcast_id)
            why = "another broadcast is sending" if draft is not None and draft.state == "draft" else "it was already sent or cancelled"
            await answer(update, f"Not sent: {why}.", alert=True)
            return
        await services.admin.record(user.id, "broadcast_send", f"#{job.id} to {job.total} users")
        await answer(update, "Sending…")
        # the job edits this message with its progress from now on
        await query.edit_message_text(progress_text(job))
    elif await broadcasts.discard(broadcast_id):
        await services.admin.record(user.id, "broadcast_discard", f"#{broadcast_id}")
        await answer(update, "Cancelled")
        await query.edit_message_text(f"Broadcast #{broadcast_id} cancelled: nothing was sent.")
    else:
        await answer(update, "This broadcast was already sent or cancelled.", alert=True)


async def broadcast_cancel(update: Update, context: BotContext) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    services = context.services
    stopped, dropped = await services.broadcasts.cancel_all(user.id)
    if not stopped and not dropped:
        await services.admin.record(user.id, "broadcast_cancel", "nothing to cancel")
        await message.reply_text("No broadcast is sending.")
        return
    detail = ", ".join([f"#{j.id} stopped at {j.done}/{j.total}" for j in stopped] + [f"draft #{d}" for d in dropped])
    await services.admin.record(user.id, "broadcast_cancel", detail)
    lines = [f"🛑 Broadcast #{j.id} cancelled: {j.done:,} of {j.total:,} done, the rest will not be sent." for j in stopped]
    lines += [f"Draft #{d} discarded." for d in dropped]
    await message.reply_text("\n".join(lines))


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def audience_words(total: int, blocked: int, recipients: int) -> str:
    """Whom a broadcast reaches out of everyone /stats counts, so the two numbers add up."""
    others = total - blocked - recipients  # you, when you have talked to the bot yourself
    left_out = [f"{blocked:,} who blocked me"] if blocked else []
    if others > 0:
        left_out.append("you" if others == 1 else f"{others:,} senders")
    return f"Of the {total:,} users in /stats" + (f": all but {' and '.join(left_out)}." if left_out else ": all of them.")


async def stats_text(services: Services, now: float | None = None) -> str:
    """The operator's numbers: users, streams, positions, today's exit signals and sells, last broadcast."""
    now = time.time() if now is None else now
    numbers = services.admin
    users = await numbers.users(int(now * 1000))
    day_start = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sells = await numbers.sells_since(int(day_start.timestamp() * 1000))
    streams = {"connected": 0, "reconnecting": 0, "needs_attention": 0}
    workers = services.streams.workers.values() if services.streams is not None else ()
    for worker in workers:
        state = worker.client.state
        key = "reconnecting" if state in ("connecting", "reconnecting") else state
        if key in streams:
            streams[key] += 1
    lines = [
        "📊 <b>Stats</b>",
        f"<b>Users</b> {users.total:,} · set up {users.set_up:,} · active in 7 days {users.active_7d:,} · "
        f"blocked {users.blocked:,}\n(a broadcast reaches the {users.total - users.blocked:,} not blocked, "
        "except the admin sending it)",
        f"<b>Streams</b> connected {streams['connected']:,} · reconnecting {streams['reconnecting']:,} · "
        f"needing attention {streams['needs_attention']:,}",
        f"<b>Open positions</b> {await numbers.open_positions():,}",
        f"<b>Today (UTC)</b> exit signals {sells.signals:,} · sells landed {sells.landed:,} · failed {sells.failed:,} "
        f"· skipped {sells.skipped:,} · auto {sells.auto:,}",
        f"<b>Median tap to submit</b> {_ms(sells.median_tap_to_submit_ms)}",
    ]
    report = await services.broadcasts.last_report()
    if report is None:
        lines.append("<b>Last broadcast</b> none yet")
    else:
        lines.append("<b>Last broadcast</b>\n" + report_text(*report))
    return "\n".join(lines)


async def stats(update: Update, context: BotContext) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    services = context.services
    await services.admin.record(user.id, "stats")
    await message.reply_text(await stats_text(services))


router = Router(
    commands=[
        Command("broadcast", "Send a message to every user (preview first)", admin_only(broadcast_command),
                section="Admin", admin=True, usage="/broadcast <b>Maintenance</b> tonight at 22:00 UTC"),
        Command("broadcast_cancel", "Stop the broadcast that is sending", admin_only(broadcast_cancel),
                section="Admin", admin=True),
        Command("stats", "Users, streams, sells today and the last broadcast", admin_only(stats), section="Admin",
                admin=True),
    ],
    buttons=[Button(BroadcastTap, on_broadcast_button)],
)
