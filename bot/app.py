"""Starts and stops the whole bot: the services and the PTB Application, in order."""

from __future__ import annotations

import asyncio
import logging

from telegram import Update

from bot.config import Settings
from bot.context import BotApplication
from bot.miniapp.hook import start_miniapp, stop_miniapp
from bot.services import Services
from bot.wiring import build_services
from storage.db import Database, ProcessLock

log = logging.getLogger("lasersell_bot.app")


class BotRunner:
    """Start and stop the whole bot in the current event loop (used by `run`, the sandbox and tests)."""

    def __init__(self, settings: Settings, *, poll_timeout: int = 10) -> None:
        self.settings = settings
        self.poll_timeout = poll_timeout
        self.db: Database | None = None
        self.app: BotApplication | None = None
        self.services: Services | None = None
        self.lock: ProcessLock | None = None

    async def start(self) -> None:
        # Held while the bot runs: a master key rotation waits for the bot to stop (see ProcessLock).
        self.lock = ProcessLock.acquire(self.settings.database_path, "the running bot")
        try:
            self.db = await Database.open(self.settings.database_path)
        except BaseException:
            self._release()
            raise
        try:
            self.services, self.app = await build_services(self.settings, self.db)
        except BaseException:
            await self.db.close()
            self.db = None
            self._release()
            raise
        await self.app.initialize()
        if self.app.post_init:
            await self.app.post_init(self.app)
        await self.app.start()
        await self.services.start()
        await start_miniapp(self.services)  # the dashboard Mini App (bot/miniapp)
        assert self.app.updater is not None
        await self.app.updater.start_polling(
            timeout=self.poll_timeout,
            drop_pending_updates=False,
            allowed_updates=Update.ALL_TYPES,
        )
        log.info("bot started as @%s", self.app.bot.username)

    async def stop(self) -> None:
        await stop_miniapp(self.services)  # the dashboard Mini App (bot/miniapp)
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
        self._release()

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
