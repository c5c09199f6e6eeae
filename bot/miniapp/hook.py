"""Starting and stopping the dashboard with the bot, and what the chat shows of it (the menu button, Dashboard
buttons, and the note that sends a PIN-protected export to the dashboard)."""

from __future__ import annotations

import logging
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MenuButtonWebApp, WebAppInfo
from telegram.error import TelegramError

from bot.miniapp.server import MiniAppServer

log = logging.getLogger("lasersell_bot.miniapp")


async def start_miniapp(services: Any, bot: Any) -> MiniAppServer | None:
    """Serve the dashboard when MINIAPP_LISTEN is set, and make it the chat's menu button."""
    settings = services.settings
    if not settings.miniapp_listen:
        return None
    server = MiniAppServer(services)
    url = await server.start(settings.miniapp_listen, settings.miniapp_public_url)
    services.miniapp = server  # read by the chat for Dashboard buttons
    try:
        await bot.set_chat_menu_button(menu_button=MenuButtonWebApp("Dashboard", WebAppInfo(url)))
    except TelegramError as exc:  # e.g. Telegram refuses a plain-http address: the Dashboard buttons still work
        log.info("menu button not set: %s", exc)
    return server


async def stop_miniapp(server: MiniAppServer | None) -> None:
    if server is not None:
        await server.stop()


def dashboard_url(services: Any, page: str = "") -> str | None:
    server = getattr(services, "miniapp", None)
    if server is None or not server.url:
        return None
    return f"{server.url}/#{page}" if page else f"{server.url}/"


def dashboard_button(services: Any, text: str = "📊 Dashboard", page: str = "") -> InlineKeyboardButton | None:
    url = dashboard_url(services, page)
    return InlineKeyboardButton(text, web_app=WebAppInfo(url)) if url else None


async def export_needs_dashboard(services: Any, user_id: int) -> tuple[str, InlineKeyboardMarkup | None] | None:
    """Where a PIN is set, a chat export is refused and sent to the dashboard: (reply, markup); else None."""
    server: MiniAppServer | None = getattr(services, "miniapp", None)
    if server is None or not await server.security.has_pin(user_id):
        return None
    button = dashboard_button(services, "🔐 Export in the dashboard", "security")
    markup = InlineKeyboardMarkup([[button]]) if button is not None else None
    return ("You protected exports with a PIN: export the key in the dashboard, where it asks for the PIN and "
            "the key never enters the chat.", markup)


__all__ = ["dashboard_button", "dashboard_url", "export_needs_dashboard", "start_miniapp", "stop_miniapp"]
