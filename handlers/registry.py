"""Feature routers: each handlers module declares its commands, buttons and typed-input answers in one `Router`.

The app lists the routers (`bot/application.py` ROUTERS) and `include_routers` installs them; this module imports no feature,
so no feature module imports the list that imports it. The commands drive handler registration,
`set_my_commands` and /help.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application, BaseHandler, CallbackQueryHandler, CommandHandler

from bot.callbacks import CallbackData, CallbackError
from bot.context import BotContext

log = logging.getLogger("lasersell_bot.handlers")

Callback = Callable[[Update, BotContext], Coroutine[Any, Any, Any]]
# The answer to a prompt: (update, context, the text the user sent, what the prompt stored with it)
InputCallback = Callable[[Update, BotContext, str, dict[str, Any]], Awaitable[None]]

COMMANDS_KEY = "commands"
INPUTS_KEY = "inputs"
PLAIN_TEXT = ""  # the inputs key for a message that answers no prompt

_installed: list[Command] = []


@dataclass(frozen=True)
class Command:
    name: str
    description: str  # shown in Telegram's command menu and in /help (max 256 characters)
    callback: Callback
    section: str = "General"
    admin: bool = False  # admin commands do not exist for anyone else
    usage: str = ""  # extra help line, e.g. "/strategy tp 25 sl 10"


@dataclass(frozen=True)
class Button:
    """One handler for one kind of button: `callback` runs for taps whose data is a `kind`."""

    kind: type[CallbackData]
    callback: Callback


@dataclass
class Router:
    """What one feature module handles."""

    commands: list[Command] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    inputs: dict[str, InputCallback] = field(default_factory=dict)  # prompt name -> what reads the answer
    handlers: list[BaseHandler[Any, Any, Any]] = field(default_factory=list)  # anything else (plain text)


def all_commands(routers: Sequence[Router]) -> list[Command]:
    """Every command of every router, in menu order."""
    commands = [c for router in routers for c in router.commands]
    names = [c.name for c in commands]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise RuntimeError(f"commands registered twice: {sorted(duplicates)}")
    return commands


def user_commands(routers: Sequence[Router] | None = None) -> list[Command]:
    """The commands a user sees in the menu: of `routers`, or of the ones the app installed."""
    commands = all_commands(routers) if routers is not None else _installed
    return [c for c in commands if not c.admin]


def installed_commands(context: BotContext) -> list[Command]:
    commands: list[Command] = context.application.bot_data.get(COMMANDS_KEY, [])
    return commands


def installed_inputs(context: BotContext) -> dict[str, InputCallback]:
    inputs: dict[str, InputCallback] = context.application.bot_data.get(INPUTS_KEY, {})
    return inputs


def button_handler(button: Button) -> CallbackQueryHandler[Any, Any]:
    async def run(update: Update, context: BotContext) -> Any:
        try:
            return await button.callback(update, context)
        except CallbackError as exc:  # data of this kind this version cannot read (old or forged)
            await stale_button(update, context, str(exc))
            return None

    return CallbackQueryHandler(run, pattern=button.kind.matches)


async def stale_button(update: Update, _context: BotContext, words: str | None = None) -> None:
    """Any button whose data we do not know: a clear answer, nothing changed."""
    query = update.callback_query
    if query is None:
        return
    try:
        await query.answer(words or "That button is no longer valid.", show_alert=False)
    except TelegramError as exc:
        log.info("callback answer failed: %s", exc)


def include_routers(app: Application[Any, Any, Any, Any, Any, Any], routers: Sequence[Router]) -> None:
    """Install every router's commands, buttons (one handler per kind) and other handlers, then a catch-all
    for buttons of no known kind."""
    commands = all_commands(routers)
    inputs: dict[str, InputCallback] = {}
    kinds: set[type[CallbackData]] = set()
    for router in routers:
        for name, reader in router.inputs.items():
            if name in inputs:
                raise RuntimeError(f"two routers answer the prompt {name!r}")
            inputs[name] = reader
    for command in commands:
        app.add_handler(CommandHandler(command.name, command.callback))
    for router in routers:
        for button in router.buttons:
            if button.kind in kinds:
                raise RuntimeError(f"two handlers for {button.kind.__name__}")
            kinds.add(button.kind)
            app.add_handler(button_handler(button))
        for handler in router.handlers:
            app.add_handler(handler)
    app.add_handler(CallbackQueryHandler(stale_button))
    app.bot_data[COMMANDS_KEY] = commands
    app.bot_data[INPUTS_KEY] = inputs
    _installed[:] = commands
