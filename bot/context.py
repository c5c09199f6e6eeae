"""The context every handler gets: PTB's `CallbackContext` with the bot's services on it, typed."""

from __future__ import annotations

from typing import Any

from telegram.ext import Application, CallbackContext, ExtBot

from bot.services import Services

# the bot's requests carry the outbox rate limiter's arguments (a dict), hence ExtBot[dict[str, Any]]
BotExt = ExtBot[dict[str, Any]]


class BotContext(CallbackContext[BotExt, dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """Built by PTB for each update (the Application is made with `ContextTypes(context=BotContext)`)."""

    @property
    def user_id(self) -> int | None:
        """The id of the user whose update this is (PTB sets it when it builds the context)."""
        return self._user_id

    @property
    def services(self) -> Services:
        services = self.application.bot_data["services"]
        if not isinstance(services, Services):
            raise RuntimeError("the application was built without the bot's services (see bot.wiring)")
        return services


# no job queue: the services own their timers and background tasks
BotApplication = Application[BotExt, BotContext, dict[Any, Any], dict[Any, Any], dict[Any, Any], None]
