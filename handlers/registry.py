"""One registry of commands: it drives handler registration, `set_my_commands` and `/help`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    name: str
    description: str  # shown in Telegram's command menu and in /help (max 256 characters)
    callback: Callback
    section: str = "General"
    admin: bool = False  # admin commands do not exist for anyone else
    usage: str = ""  # extra help line, e.g. "/strategy tp 25 sl 10"


def feature_modules() -> list[Any]:
    """Feature modules in menu order; each has COMMANDS and may have register(app) for its buttons."""
    from handlers import (
        admin,
        copy,
        dashboard,
        home,
        positions,
        settings,
        signals,
        start,
        strategy,
        text,
        trade,
        wallets,
    )

    return [start, home, wallets, strategy, settings, positions, trade, copy, dashboard, signals, text, admin]


def all_commands() -> list[Command]:
    """Every command of every feature module, in menu order."""
    commands: list[Command] = []
    for module in feature_modules():
        commands.extend(getattr(module, "COMMANDS", []))
    names = [c.name for c in commands]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise RuntimeError(f"commands registered twice: {sorted(duplicates)}")
    return commands


def user_commands() -> list[Command]:
    return [c for c in all_commands() if not c.admin]
