"""The python-telegram-bot Application: its handlers in order, the command menus, the typed context."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    ContextTypes,
    Defaults,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.config import Settings
from bot.context import BotApplication, BotContext
from bot.notify.limiter import OutboxRateLimiter
from bot.telegram_http import AiohttpRequest
from handlers import (
    admin,
    common,
    copy,
    dashboard,
    errors,
    home,
    onboarding,
    positions,
    settings,
    signals,
    start,
    strategy,
    text,
    trade,
    wallets,
)
from handlers.registry import all_commands, include_routers

log = logging.getLogger("lasersell_bot.app")

# The feature routers, in menu order (as aiogram's include_routers): each handlers module declares its commands,
# buttons and prompts; none imports this list.
ROUTERS = [start.router, onboarding.router, home.router, wallets.router, strategy.router, settings.router,
           positions.router, trade.router, copy.router, dashboard.router, signals.router, text.router, admin.router]

# Handler groups: lower runs first, and only the first matching handler of a group runs, so screening for
# secrets, recording the user (every update) and gating admin commands (commands only) each need a group of
# their own. The screen is first: a pasted secret is deleted before anything else reads it.
RECALL_GROUP = -4
SECRET_GROUP = -3
RECORD_GROUP = -2
GATE_GROUP = -1


HandlerCallback = Callable[[Update, BotContext], Coroutine[Any, Any, Any]]
ErrorCallback = Callable[[object, BotContext], Coroutine[Any, Any, None]]


def _as_handler(callback: Callable[[Update, Any], Awaitable[Any]]) -> HandlerCallback:
    """A handler written against PTB's default context type. The context PTB hands it is a BotContext
    (a CallbackContext); the cast goes once handlers/ is typed with BotContext."""
    return cast(HandlerCallback, callback)


async def record_user(update: Update, context: BotContext) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None or user.is_bot:
        return
    services = context.services
    # The chat to reach the user in is their private chat with the bot.
    chat_id = chat.id if chat.type == "private" else user.id
    back = await services.users.seen_often(user.id, chat_id, user.first_name, user.last_name, user.username)
    if back:
        await services.streams.refresh(user.id)  # they unblocked the bot: watch their wallets again


def _admin_gate(admin_names: set[str]) -> HandlerCallback:
    async def gate(update: Update, context: BotContext) -> None:
        message = update.effective_message
        if message is None or not message.text or not message.text.startswith("/"):
            return
        name = message.text.split()[0][1:].split("@")[0].lower()
        user = update.effective_user
        if name in admin_names and (user is None or not context.services.settings.is_admin(user.id)):
            # To anyone else an admin command does not exist.
            await _as_handler(errors.unknown_command)(update, context)
            raise ApplicationHandlerStop

    return gate


def build_application(
    settings: Settings, limiter: OutboxRateLimiter, updates_request: AiohttpRequest | None = None
) -> BotApplication:
    """The Application, its handlers registered; `bot.wiring.build_services` puts the services in its bot_data.
    `updates_request` carries getUpdates (the wiring hooks the early Sell taps on it)."""
    token = settings.telegram_bot_token
    if not token:
        raise ValueError("build_application needs a bot token (the sandbox supplies one)")
    base = settings.telegram_api_base_url
    app: BotApplication = (
        Application.builder()
        .context_types(ContextTypes(context=BotContext))
        .token(token)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=None))
        # Bot API calls over aiohttp (bot/telegram_http.py). The outbox keeps at most ~13 calls in flight;
        # replies and callback answers use the rest of the 32 connections.
        .request(AiohttpRequest(32, pool_timeout=10.0))
        .get_updates_request(updates_request or AiohttpRequest(1))
        .rate_limiter(limiter)
        .post_init(_post_init)
        .concurrent_updates(True)
        .job_queue(None)
        .build()
    )
    commands = all_commands(ROUTERS)
    # several instances: the open conversation comes from the database before anything reads it
    app.add_handler(TypeHandler(Update, _as_handler(common.recall)), group=RECALL_GROUP)
    app.add_handler(TypeHandler(Update, _as_handler(text.screen_secrets)), group=SECRET_GROUP)
    app.add_handler(TypeHandler(Update, record_user), group=RECORD_GROUP)
    app.add_handler(
        MessageHandler(filters.COMMAND, _admin_gate({c.name for c in commands if c.admin})), group=GATE_GROUP
    )
    include_routers(app, ROUTERS)
    app.add_handler(MessageHandler(filters.COMMAND, _as_handler(errors.unknown_command)))
    app.add_error_handler(cast(ErrorCallback, errors.on_error))
    return app


async def _post_init(app: BotApplication) -> None:
    services = app.bot_data["services"]
    commands = all_commands(ROUTERS)
    public = [BotCommand(c.name, c.description[:256]) for c in commands if not c.admin]
    await app.bot.set_my_commands(public)
    if any(c.admin for c in commands):
        admin_menu = [BotCommand(c.name, c.description[:256]) for c in commands]
        for admin_id in services.settings.admin_user_ids:
            try:
                await app.bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(admin_id))
            except TelegramError as exc:  # the admin may not have started the bot yet
                log.info("admin menu not set for %s: %s", admin_id, exc)
