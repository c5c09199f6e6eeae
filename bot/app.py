"""Builds the python-telegram-bot Application, wires the services, owns start-up and shutdown order."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telegram import BotCommand, BotCommandScopeChat, ReplyParameters, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CommandHandler,
    ContextTypes,
    Defaults,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.config import Settings
from bot.notify.limiter import OutboxRateLimiter
from bot.services import Services, get_services
from handlers import errors, text
from handlers.registry import all_commands, feature_modules
from storage.db import Database, ProcessLock, is_postgres

log = logging.getLogger("lasersell_bot.app")

# Handler groups: lower runs first, and only the first matching handler of a group runs, so screening for
# secrets, recording the user (every update) and gating admin commands (commands only) each need a group of
# their own. The screen is first: a pasted secret is deleted before anything else reads it.
SECRET_GROUP = -3
RECORD_GROUP = -2
GATE_GROUP = -1


async def record_user(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None or user.is_bot:
        return
    services = get_services(context)
    # The chat to reach the user in is their private chat with the bot.
    chat_id = chat.id if chat.type == "private" else user.id
    back = await services.users.seen_often(user.id, chat_id, user.first_name, user.last_name, user.username)
    if back and services.supervisor is not None:
        await services.supervisor.refresh(user.id)  # they unblocked the bot: watch their wallets again


def _admin_gate(admin_names: set[str]):  # type: ignore[no-untyped-def]
    async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text or not message.text.startswith("/"):
            return
        name = message.text.split()[0][1:].split("@")[0].lower()
        user = update.effective_user
        if name in admin_names and (user is None or not get_services(context).settings.is_admin(user.id)):
            # To anyone else an admin command does not exist.
            await errors.unknown_command(update, context)
            raise ApplicationHandlerStop

    return gate


def build_application(settings: Settings, services: Services, *, poll_interval: float = 0.0) -> Application:
    token = settings.telegram_bot_token
    if not token:
        raise ValueError("build_application needs a bot token (the sandbox supplies one)")
    base = settings.telegram_api_base_url
    app = (
        Application.builder()
        .token(token)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=None))
        # httpx's pool scans every connection for each queued request: a small pool stays fast under a burst
        # of taps. The outbox keeps at most ~13 calls in flight; replies and callback answers use the rest.
        .connection_pool_size(32)
        .pool_timeout(10.0)
        .rate_limiter(OutboxRateLimiter())
        .post_init(_post_init)
        .concurrent_updates(True)
        .build()
    )
    app.bot_data["services"] = services
    commands = all_commands()
    app.add_handler(TypeHandler(Update, text.screen_secrets), group=SECRET_GROUP)
    app.add_handler(TypeHandler(Update, record_user), group=RECORD_GROUP)
    app.add_handler(
        MessageHandler(filters.COMMAND, _admin_gate({c.name for c in commands if c.admin})), group=GATE_GROUP
    )
    for command in commands:
        app.add_handler(CommandHandler(command.name, command.callback))
    for module in feature_modules():
        if hasattr(module, "register"):
            module.register(app)
    app.add_handler(MessageHandler(filters.COMMAND, errors.unknown_command))
    app.add_error_handler(errors.on_error)
    return app


async def _post_init(app: Application) -> None:
    services: Services = app.bot_data["services"]
    commands = all_commands()
    public = [BotCommand(c.name, c.description[:256]) for c in commands if not c.admin]
    await app.bot.set_my_commands(public)
    if any(c.admin for c in commands):
        admin_menu = [BotCommand(c.name, c.description[:256]) for c in commands]
        for admin_id in services.settings.admin_user_ids:
            try:
                await app.bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(admin_id))
            except TelegramError as exc:  # the admin may not have started the bot yet
                log.info("admin menu not set for %s: %s", admin_id, exc)


class BotRunner:
    """Start and stop the whole bot in the current event loop (used by `run`, the sandbox and tests)."""

    def __init__(self, settings: Settings, *, poll_timeout: int = 10, webhook: bool = False) -> None:
        self.settings = settings
        self.poll_timeout = poll_timeout
        self.webhook = webhook  # Telegram posts to us (bot/webhook.py) instead of us polling it
        self.webhook_server: Any = None
        self.db: Database | None = None
        self.app: Application | None = None
        self.services: Services | None = None
        self.lock: ProcessLock | None = None
        self.pg_lock: object | None = None  # storage.pg.PgProcessLock, shared by every running instance
        self.owned: Any = None  # bot.ownership.OwnedStreams on PostgreSQL

    async def start(self) -> None:
        # Held while the bot runs: a master key rotation waits for the bot to stop (see ProcessLock).
        if is_postgres(self.settings.database):  # several instances share the database: a shared lock
            from storage.pg import PgProcessLock

            self.pg_lock = await PgProcessLock.acquire(str(self.settings.database), "the running bot", shared=True)
        else:
            self.lock = ProcessLock.acquire(self.settings.database_path, "the running bot")
        try:
            self.db = await Database.open(self.settings.database)
        except BaseException:
            await self._release_pg()
            self._release()
            raise
        try:
            self.services = await Services.build(self.settings, self.db)
        except BaseException:
            await self.db.close()
            self.db = None
            await self._release_pg()
            self._release()
            raise
        self.app = build_application(self.settings, self.services)
        bot = self.app.bot

        async def ask_to_delete(chat_id: int, message_id: int, note: str) -> object:
            # Points at the message so the user knows which one; sent even if it is gone meanwhile.
            return await bot.send_message(
                chat_id, note, reply_parameters=ReplyParameters(message_id, allow_sending_without_reply=True)
            )

        self.services.deletions.notify = ask_to_delete
        await self.app.initialize()
        if self.app.post_init:
            await self.app.post_init(self.app)
        await self.app.start()
        if self.db.backend == "postgresql":  # several instances: streams go by lease (bot/ownership.py)
            from bot.ownership import OwnedStreams

            self.owned = OwnedStreams(self.services)
            self.services.ownership = self.owned.ownership  # before start_live: nothing streams unowned
        await self.services.start_live(self.app.bot)
        if self.owned is not None:
            self.services.accounts.on_change = self.owned.refresh
            await self.owned.start()
        limiter = self.app.bot.rate_limiter
        if isinstance(limiter, OutboxRateLimiter):
            limiter.outbox = self.services.outbox
        if self.webhook:
            from bot.webhook import WebhookServer

            host, port = self.settings.require_webhook()
            self.webhook_server = WebhookServer(
                self.app, self.services, url=self.settings.webhook_url, secret=self.settings.webhook_secret,
                host=host, port=port,
            )
            await self.webhook_server.start()
            log.info("bot started as @%s (webhook)", self.app.bot.username)
            return
        assert self.app.updater is not None
        await self.app.updater.start_polling(
            timeout=self.poll_timeout,
            drop_pending_updates=False,
            allowed_updates=Update.ALL_TYPES,
        )
        log.info("bot started as @%s", self.app.bot.username)

    async def stop(self) -> None:
        if self.webhook_server is not None:  # no new updates: the proxy sends them to the other instances
            await self.webhook_server.stop()
            self.webhook_server = None
        if self.owned is not None:  # stop the streams and hand the leases over at once
            await self.owned.stop()
            self.owned = None
        if self.services is not None:
            await self.services.stop_live()
        if self.app is not None:
            try:
                if self.app.updater is not None and self.app.updater.running:
                    await self.app.updater.stop()
                if self.app.running:
                    await self.app.stop()
                await self.app.shutdown()
            finally:
                self.app = None
        if self.services is not None:
            await self.services.close()
            self.services = None
        if self.db is not None:
            await self.db.close()
            self.db = None
        await self._release_pg()
        self._release()

    async def _release_pg(self) -> None:
        from storage.pg import PgProcessLock

        if isinstance(self.pg_lock, PgProcessLock):
            await self.pg_lock.release()
        self.pg_lock = None

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
