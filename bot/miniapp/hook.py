"""Starting and stopping the dashboard with the bot, and what the chat shows of it (the menu button, Dashboard
buttons, and the note that sends a PIN-protected export to the dashboard)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MenuButtonWebApp, WebAppInfo
from telegram.error import TelegramError

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("lasersell_bot.miniapp")


async def start_miniapp(services: Services) -> None:
    """Serve the dashboard (when MINIAPP_LISTEN is set) and make it the chat's menu button."""
    server = services.dashboard
    settings = services.settings
    if server is None or not settings.miniapp_listen:
        return
    url = await server.start(settings.miniapp_listen, settings.miniapp_public_url)
    try:
        await services.bot.set_chat_menu_button(menu_button=MenuButtonWebApp("Dashboard", WebAppInfo(url)))
    except TelegramError as exc:  # e.g. Telegram refuses a plain-http address: the Dashboard buttons still work
        log.info("menu button not set: %s", exc)


async def stop_miniapp(services: Services | None) -> None:
    if services is not None and services.dashboard is not None:
        await services.dashboard.stop()


def dashboard_url(services: Services, page: str = "") -> str | None:
    server = services.dashboard
    if server is None or not server.url:
        return None
    return f"{server.url}/?page={page}" if page else f"{server.url}/"


def dashboard_button(services: Services, text: str = "📊 Dashboard", page: str = "") -> InlineKeyboardButton | None:
    url = dashboard_url(services, page)
    return InlineKeyboardButton(text, web_app=WebAppInfo(url)) if url else None


async def export_needs_dashboard(services: Services, user_id: int) -> tuple[str, InlineKeyboardMarkup | None] | None:
    """Where a PIN is set, a chat export is refused and sent to the dashboard: (reply, markup); else None."""
    server = services.dashboard
    if server is None or not await server.security.has_pin(user_id):
        return None
    button = dashboard_button(services, "🔐 Export in the dashboard", "security")
    markup = InlineKeyboardMarkup([[button]]) if button is not None else None
    return ("You protected exports with a PIN: export the key in the dashboard, where it asks for the PIN and "
            "the key never enters the chat.", markup)


__all__ = ["dashboard_button", "dashboard_url", "export_needs_dashboard", "start_miniapp", "stop_miniapp"]
