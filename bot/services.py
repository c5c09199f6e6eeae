"""The application's services, built once at start (`bot.wiring.build_services`) and reached from handlers
through `BotContext.services`."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Bot

from bot.accounts import AccountService
from bot.admin import Admin
from bot.broadcast import Broadcasts
from bot.config import ConfigError, Settings
from bot.conversations import ConversationStates
from bot.copy import Copier
from bot.core import Core
from bot.deletions import ScheduledDeletions
from bot.exits.buy import Buyer
from bot.exits.executor import Executor
from bot.exits.inbox import SignalInbox
from bot.exits.sell import Seller
from bot.lasersell_api import LaserSellApi
from bot.miniapp.server import MiniAppServer
from bot.notify.alerts import Alerts
from bot.notify.outbox import Outbox
from bot.rotation import CHECK_KEY, rotation_note
from bot.solana_rpc import SolanaRpc
from bot.stream.streams import UserStreams
from bot.vault import Vault, VaultError, WrongMasterKey, load_master_key
from storage.db import Database
from storage.meta import Meta
from storage.positions import ExitSignals
from storage.users import Users

__all__ = ["CHECK_KEY", "Services", "open_vault"]


async def open_vault(settings: Settings, db: Database) -> Vault:
    """Load the master key and prove it opens this database's secrets (a sealed check value)."""
    settings.require_master_key()
    try:
        vault = Vault(load_master_key(settings.bot_master_key, settings.bot_master_key_file))
    except VaultError as exc:
        variable = "BOT_MASTER_KEY_FILE" if settings.bot_master_key_file else "BOT_MASTER_KEY"
        raise ConfigError(variable, str(exc).rstrip("."), "Fix the value or generate one with `lasersell-bot gen-master-key`") from None
    meta = Meta(db)
    check = await meta.get(CHECK_KEY)
    if check is None:
        await meta.insert(CHECK_KEY, vault.check_blob())
        return vault
    try:
        vault.verify_check(check)
    except WrongMasterKey as exc:
        variable = "BOT_MASTER_KEY_FILE" if settings.bot_master_key_file else "BOT_MASTER_KEY"
        rotated = await rotation_note(db)
        if rotated:
            raise ConfigError(
                variable,
                f"this master key (id {vault.key_id}) does not open the secrets in {settings.database_path}: {rotated}",
                "Use the NEW master key, the file given to --new-key-file",
            ) from None
        raise ConfigError(
            variable,
            f"this master key does not open the secrets in {settings.database_path} ({exc})",
            "Set the master key this database was sealed with",
        ) from None
    return vault


@dataclass
class Services:
    """Everything the bot runs, in start-up order. Built by `bot.wiring.build_services`, never patched after."""

    core: Core
    settings: Settings
    db: Database
    users: Users
    vault: Vault
    api: LaserSellApi
    rpc: SolanaRpc
    accounts: AccountService
    outbox: Outbox
    bot: Bot  # the application's telegram Bot
    deletions: ScheduledDeletions
    alerts: Alerts
    executor: Executor  # guard -> sign -> persist -> send -> confirm, shared by sells and buys
    streams: UserStreams  # one LaserSell stream per user, and the event router behind it
    seller: Seller
    inbox: SignalInbox  # every exit signal, stored first, then shown with Sell / Skip
    buyer: Buyer
    copier: Copier  # copy trading: watch wallets on the stream, mirror buys through the executor
    broadcasts: Broadcasts
    admin: Admin  # the audit log and the operator's numbers (/stats)
    conversations: ConversationStates  # what a user's next message answers, shared by instances
    dashboard: MiniAppServer | None = None  # the dashboard Mini App (bot/miniapp), when MINIAPP_LISTEN is set

    async def start(self) -> None:
        """Start what talks to Telegram and LaserSell, once the bot can send: outbox, recovery, streams."""
        await self.outbox.start(self.bot)
        await self.copier.recover()
        await self.buyer.recover()  # settle buys a previous run signed (never buys late)
        self.deletions.start()
        await self.seller.recover()
        await self.streams.start_all()
        if self.streams.ownership is None:  # several instances: a broadcast is claimed by one (bot/ownership.py)
            await self.broadcasts.resume()

    async def stop(self) -> None:
        """Stop what `start` started, within bounds: broadcasts, streams, trade paths, then the outbox."""
        await self.broadcasts.stop(timeout=5.0)
        await self.streams.stop_all(timeout=5.0)
        await self.alerts.close()
        await self.seller.close()
        await self.buyer.close()
        await self.copier.close()
        await self.executor.close()
        await self.outbox.stop(drain_timeout=3.0)

    async def close(self) -> None:
        """Release what building the services opened (after `stop`, and also when `start` never ran)."""
        await ExitSignals.release(self.db)  # the signals' rows are written before the database closes
        await self.conversations.close()
        await self.users.close()
        await self.deletions.stop()
        await self.api.close()
        await self.rpc.close()
