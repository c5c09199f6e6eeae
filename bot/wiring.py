"""Builds the whole object graph once, in start-up order, each part given what it needs when it is made.

Nothing is attached after construction. Where two parts need each other (the outbox reports a blocked
chat to the streams, which send through the outbox; an exit signal goes from the streams to the inbox,
which sells through the seller, which asks the streams for fresh exits; copy trading configures the
streams and hears their events), the later part is reached through a callback passed at construction:
nothing calls it before `Services.start`, by when every part exists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from telegram import ReplyParameters

from bot.accounts import AccountService
from bot.admin import Admin
from bot.application import build_application
from bot.broadcast import Broadcasts
from bot.config import Settings
from bot.context import BotApplication
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
from bot.notify.limiter import OutboxRateLimiter
from bot.notify.outbox import Outbox
from bot.risk import read_risk_flags
from bot.services import Services, open_vault
from bot.solana_rpc import SolanaRpc
from bot.stream.events import StreamEvent
from bot.stream.pnl import PnlBatcher
from bot.stream.streams import UserStreams
from bot.telegram_http import AiohttpRequest
from storage.conversations import Conversations
from storage.db import Database, is_postgres, sqlite_path
from storage.history import PnlHistory
from storage.positions import ExitSignals, Positions
from storage.users import Users


async def build_services(settings: Settings, db: Database) -> tuple[Services, BotApplication]:
    """The services and the PTB Application that carries them (in its bot_data), not started yet.

    Raises `ConfigError` (before anything else is built) when the master key does not open this database.
    """
    vault = await open_vault(settings, db)
    journal = signal_journal_base(settings)
    if journal is not None:  # before anything can receive a signal: what a crash left is written first
        await ExitSignals.recover(db, journal)
    users = Users(db)
    api = LaserSellApi(settings.lasersell_api_url, settings.lasersell_stream_url)
    rpc = SolanaRpc(settings.solana_rpc_url)

    async def account_changed(user_id: int) -> None:
        await streams.refresh(user_id)  # a key, wallet, strategy or setting the user's stream must pick up

    accounts = AccountService(settings, db, vault, api, rpc, on_change=account_changed)

    async def blocked(chat_id: int) -> None:
        """Telegram says the user blocked the bot: mark them and stop their stream."""
        user_id = await users.blocked_chat(chat_id)
        if user_id is not None:
            await streams.stop_user(user_id)

    outbox = Outbox(
        global_rate=settings.telegram_global_rate, per_chat_rate=settings.telegram_chat_rate, on_blocked=blocked
    )
    updates_request = AiohttpRequest(1)
    app = build_application(settings, OutboxRateLimiter(outbox), updates_request)
    bot = app.bot

    async def ask_to_delete(chat_id: int, message_id: int, note: str) -> object:
        # Points at the message so the user knows which one; sent even if it is gone meanwhile.
        return await bot.send_message(
            chat_id, note, reply_parameters=ReplyParameters(message_id, allow_sending_without_reply=True)
        )

    deletions = ScheduledDeletions(db, bot.delete_message, notify=ask_to_delete)
    core = Core(settings, db, users, vault, api, rpc, accounts, outbox)
    positions = Positions(db)
    history = PnlHistory.for_db(db)
    pnl = PnlBatcher(positions, history)
    alerts = Alerts(outbox, positions, accounts.store, load_position=pnl.position)
    executor = Executor(core)

    async def exit_signal(user_id: int, event: StreamEvent) -> None:
        await inbox.on_signal(user_id, event)

    streams = UserStreams(
        users=users, accounts=accounts, alerts=alerts, positions=positions, history=history, pnl=pnl,
        stream_url=settings.lasersell_stream_url, on_exit_signal=exit_signal, copy=_CopyRelay(lambda: copier),
        register_wallets=accounts.register_for_stream, wallet_changed=executor.holdings.forget,
        risk_flags=functools.partial(read_risk_flags, rpc),
    )
    seller = Seller(core, executor, streams)
    updates_request.on_answer = seller.early.from_updates_body  # Sell taps start before the library parses
    inbox = SignalInbox(
        users=users, settings=accounts.store, signals=ExitSignals(db), positions=positions, alerts=alerts,
        seller=seller,
    )
    buyer = Buyer(core, executor, streams)
    copier = Copier(core, executor, streams)
    broadcasts = Broadcasts(db, outbox, bot, rate=settings.broadcast_rate)
    services = Services(
        core=core, settings=settings, db=db, users=users, vault=vault, api=api, rpc=rpc, accounts=accounts,
        outbox=outbox, bot=bot, deletions=deletions, alerts=alerts, executor=executor, streams=streams,
        seller=seller, inbox=inbox, buyer=buyer, copier=copier, broadcasts=broadcasts, admin=Admin(db),
        conversations=ConversationStates(Conversations(db), shared=db.backend == "postgresql"),
        # the dashboard Mini App: reaches the services it serves through a callback, like the copy relay
        dashboard=MiniAppServer(settings, db, lambda: services) if settings.miniapp_listen else None,
    )
    app.bot_data["services"] = services
    return services, app


def signal_journal_base(settings: Settings) -> Path | None:
    """Where this database's exit-signal journals live (storage/signal_journal.py): beside the SQLite file, or
    beside DATABASE_PATH on this machine with PostgreSQL. None for an in-memory database (nothing outlives it)."""
    target = settings.database
    base = settings.database_path if is_postgres(target) else sqlite_path(target)
    if str(base) == ":memory:":
        return None
    return Path(f"{base}.signals")


class _CopyRelay:
    """Copy trading as the streams see it. It is built after the streams it configures, so the streams
    reach it through this relay; nothing calls it before the streams start."""

    def __init__(self, copier: Callable[[], Copier]) -> None:
        self._copier = copier

    async def watch_entries(self, user_id: int) -> list[dict[str, Any]]:
        return await self._copier().watch_entries(user_id)

    async def mirror_config(self, user_id: int) -> dict[str, Any] | None:
        return await self._copier().mirror_config(user_id)

    async def position_opened(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        await self._copier().position_opened(user_id, chat_id, msg)

    async def on_event(self, user_id: int, chat_id: int, msg: dict[str, Any]) -> None:
        await self._copier().on_event(user_id, chat_id, msg)
