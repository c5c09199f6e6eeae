"""The application's services, built once at start and reached from handlers through `get_services`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import Settings
from storage.db import Database
from storage.users import Users


@dataclass
class Services:
    settings: Settings
    db: Database
    users: Users

    @classmethod
    def build(cls, settings: Settings, db: Database) -> Services:
        return cls(settings=settings, db=db, users=Users(db))


def get_services(context: Any) -> Services:
    """The Services stored in the Application's bot_data (PTB passes it to every handler)."""
    return context.application.bot_data["services"]
