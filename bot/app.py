"""Starts and stops the whole bot: the services and the PTB Application, in order."""

from __future__ import annotations

import asyncio
import gc
import logging

from telegram import Update

from bot.config import Settings
from bot.context import BotApplication
from bot.miniapp.hook import start_miniapp, stop_miniapp
from bot.ownership import OwnedStreams
from bot.services import Services
from bot.webhook import WebhookServer
from bot.wiring import build_services
from storage.db import Database, ProcessLock, is_postgres
from storage.pg import PgProcessLock

log = logging.getLogger("lasersell_bot.app")


# Collections of the middle generation come every GC_MIDDLE_EVERY young ones. In a burst of a hundred Sell taps
# each took about a millisecond of the event loop, four or five of them per burst at Python's default of 10
# (measured with gc.callbacks on the tap benchmark); at 100 the burst sees none. The young generation keeps its
# default: with a larger one each of its passes took longer (more young objects still alive).
GC_MIDDLE_EVERY = 100


def freeze_startup_heap() -> None:
    """Move what start-up built (modules, the app, the services) out of the cyclic collector's reach, and
    collect the middle generation less often (`GC_MIDDLE_EVERY`).

    A full collection walks every tracked object: right after start-up that stalled the event loop for
    about 100 ms in the middle of a burst of Sell taps, and every tap behind it waited as long. Frozen
    objects are never collected, so this runs once, after a collection, on what is alive for good.
    """
    gc.collect()
    gc.freeze()
    young, _middle, old = gc.get_threshold()
    gc.set_threshold(young, GC_MIDDLE_EVERY, old)


class BotRunner:
    """Start and stop the whole bot in the current event loop (used by `run`, the sandbox and tests)."""

    def __init__(self, settings: Settings, *, poll_timeout: int = 10, webhook: bool = False) -> None:
        self.settings = settings
        self.poll_timeout = poll_timeout
        self.webhook = webhook  # Telegram posts to us (bot/webhook.py) instead of us polling it
        self.webhook_server: WebhookServer | None = None
        self.db: Database | None = None
        self.app: BotApplication | None = None
        self.services: Services | None = None
        self.lock: ProcessLock | None = None
        self.pg_lock: PgProcessLock | None = None  # PostgreSQL: shared by every running instance
        self.owned: OwnedStreams | None = None  # PostgreSQL: streams go by lease

    async def start(self) -> None:
        # Held while the bot runs: a master key rotation waits for the bot to stop (see ProcessLock).
        if is_postgres(self.settings.database):  # several instances share the database: a shared lock
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
            self.services, self.app = await build_services(self.settings, self.db)
        except BaseException:
            await self.db.close()
            self.db = None
            await self._release_pg()
            self._release()
            raise
        await self.app.initialize()
        if self.app.post_init:
            await self.app.post_init(self.app)
        await self.app.start()
        if self.db.backend == "postgresql":  # several instances: streams go by lease (bot/ownership.py)
            self.owned = OwnedStreams(self.services)
            self.services.streams.ownership = self.owned.ownership  # before start: nothing streams unowned
        await self.services.start()
        await start_miniapp(self.services)  # the dashboard Mini App (bot/miniapp)
        if self.owned is not None:
            self.services.accounts.on_change = self.owned.refresh  # a change reaches the stream's owner
            await self.owned.start()
        if self.webhook:
            host, port = self.settings.require_webhook()
            self.webhook_server = WebhookServer(
                self.app, self.services, url=self.settings.webhook_url, secret=self.settings.webhook_secret,
                host=host, port=port,
            )
            await self.webhook_server.start()
            freeze_startup_heap()
            log.info("bot started as @%s (webhook)", self.app.bot.username)
            return
        assert self.app.updater is not None
        await self.app.updater.start_polling(
            timeout=self.poll_timeout,
            drop_pending_updates=False,
            allowed_updates=Update.ALL_TYPES,
        )
        freeze_startup_heap()
        log.info("bot started as @%s", self.app.bot.username)

    async def stop(self) -> None:
        await stop_miniapp(self.services)  # the dashboard Mini App (bot/miniapp)
        if self.webhook_server is not None:  # no new updates: the proxy sends them to the other instances
            await self.webhook_server.stop()
            self.webhook_server = None
        if self.owned is not None:  # stop the streams and hand the leases over at once
            await self.owned.stop()
            self.owned = None
        if self.services is not None:
            await self.services.stop()
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
        if self.pg_lock is not None:
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
