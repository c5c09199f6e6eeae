"""The parts every service leans on: settings, storage, the vault, the REST and RPC clients, accounts, outbox.

Built first (see `bot.wiring.build_services`), they depend on nothing that comes later, so the trade paths,
the streams and copy trading take one `Core` instead of reaching into a bag of optional services.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.accounts import AccountService
from bot.config import Settings
from bot.lasersell_api import LaserSellApi
from bot.notify.outbox import Outbox
from bot.solana_rpc import SolanaRpc
from bot.vault import Vault
from storage.db import Database
from storage.users import Users


@dataclass(frozen=True)
class Core:
    settings: Settings
    db: Database
    users: Users
    vault: Vault
    api: LaserSellApi
    rpc: SolanaRpc
    accounts: AccountService
    outbox: Outbox
