"""The application's services, built once at start and reached from handlers through `get_services`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.accounts import AccountService
from bot.config import ConfigError, Settings
from bot.deletions import ScheduledDeletions
from bot.lasersell_api import LaserSellApi
from bot.rotation import CHECK_KEY, rotation_note
from bot.solana_rpc import SolanaRpc
from bot.vault import Vault, VaultError, WrongMasterKey, load_master_key
from storage.db import Database
from storage.users import Users

__all__ = ["CHECK_KEY", "Services", "get_services", "open_vault"]


async def open_vault(settings: Settings, db: Database) -> Vault:
    """Load the master key and prove it opens this database's secrets (a sealed check value)."""
    settings.require_master_key()
    try:
        vault = Vault(load_master_key(settings.bot_master_key, settings.bot_master_key_file))
    except VaultError as exc:
        variable = "BOT_MASTER_KEY_FILE" if settings.bot_master_key_file else "BOT_MASTER_KEY"
        raise ConfigError(variable, str(exc).rstrip("."), "Fix the value or generate one with `lasersell-bot gen-master-key`") from None
    row = await db.fetchone("SELECT value FROM meta WHERE key=?", (CHECK_KEY,))
    if row is None:
        await db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (CHECK_KEY, vault.check_blob()))
        return vault
    try:
        vault.verify_check(bytes(row[0]))
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
    settings: Settings
    db: Database
    users: Users
    vault: Vault
    api: LaserSellApi
    rpc: SolanaRpc
    accounts: AccountService
    deletions: ScheduledDeletions
    bot: Any = None  # the telegram Bot, attached once the Application exists
    outbox: Any = None
    alerts: Any = None
    supervisor: Any = None
    desk: Any = None
    executor: Any = None  # guard -> sign -> persist -> send -> confirm, shared by sells and buys
    seller: Any = None
    buyer: Any = None
    copier: Any = None  # copy trading: watch wallets on the stream, mirror buys through the executor
    broadcasts: Any = None

    @classmethod
    async def build(cls, settings: Settings, db: Database) -> Services:
        vault = await open_vault(settings, db)
        api = LaserSellApi(settings.lasersell_api_url, settings.lasersell_stream_url)
        rpc = SolanaRpc(settings.solana_rpc_url)
        accounts = AccountService(settings, db, vault, api, rpc)
        services = cls(
            settings=settings, db=db, users=Users(db), vault=vault, api=api, rpc=rpc, accounts=accounts,
            deletions=ScheduledDeletions(db, lambda chat_id, message_id: services.bot.delete_message(chat_id, message_id)),
        )
        return services

    async def start_live(self, bot: Any) -> None:
        """Start what talks to Telegram and LaserSell once the bot exists: outbox, alerts, streams."""
        from bot.exits.desk import ExitDesk
        from bot.notify.alerts import Alerts
        from bot.notify.outbox import Outbox
        from bot.stream.supervisor import StreamSupervisor
        from storage.positions import Positions

        self.bot = bot
        self.outbox = Outbox(
            bot,
            global_rate=self.settings.telegram_global_rate,
            per_chat_rate=self.settings.telegram_chat_rate,
            on_blocked=self.on_blocked,
        )
        await self.outbox.start()
        self.alerts = Alerts(self.outbox, Positions(self.db), self.accounts.store)
        self.desk = ExitDesk(self, self.alerts)
        self.supervisor = StreamSupervisor(
            self, self.alerts, stream_url=self.settings.lasersell_stream_url, on_exit_signal=self.desk.on_signal
        )
        from bot.exits.executor import Executor
        from bot.exits.sell import Seller

        self.executor = Executor(self)
        self.seller = Seller(self, self.desk, self.supervisor)
        from bot.exits.buy import Buyer

        self.buyer = Buyer(self)
        from bot.copy import Copier

        self.copier = Copier(self)
        await self.copier.recover()
        await self.buyer.recover()  # settle buys a previous run signed (never buys late)
        self.desk.seller = self.seller
        self.alerts.load_position = self.supervisor.position
        self.accounts.on_change = self.supervisor.refresh
        self.deletions.start()
        await self.seller.recover()
        await self.supervisor.start_all()
        from bot.broadcast import Broadcasts

        self.broadcasts = Broadcasts(self.db, self.outbox, bot, rate=self.settings.broadcast_rate)
        if getattr(self, "ownership", None) is None:  # several instances: claimed by one (bot/ownership.py)
            await self.broadcasts.resume()

    async def on_blocked(self, chat_id: int) -> None:
        """Telegram says the user blocked the bot: mark them and stop their stream."""
        row = await self.db.fetchone("SELECT telegram_id FROM users WHERE chat_id=?", (chat_id,))
        if row is None:
            return
        await self.users.set_blocked(int(row[0]))
        if self.supervisor is not None:
            await self.supervisor.stop_user(int(row[0]))

    async def stop_live(self) -> None:
        if self.broadcasts is not None:
            await self.broadcasts.stop(timeout=5.0)
        if self.supervisor is not None:
            await self.supervisor.stop_all(timeout=5.0)
        if self.alerts is not None:
            self.alerts.close()
        if self.seller is not None:
            await self.seller.close()
        if self.buyer is not None:
            await self.buyer.close()
        if self.copier is not None:
            await self.copier.close()
        if self.executor is not None:
            await self.executor.close()
        if self.outbox is not None:
            await self.outbox.stop(drain_timeout=3.0)

    async def close(self) -> None:
        await self.users.flush_seen()
        await self.deletions.stop()
        await self.api.close()
        await self.rpc.close()


def get_services(context: Any) -> Services:
    """The Services stored in the Application's bot_data (PTB passes it to every handler)."""
    return context.application.bot_data["services"]
