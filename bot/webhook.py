"""Webhook mode (`lasersell-bot run --webhook`): Telegram posts updates to this instance over HTTP.

Several instances sit behind one reverse proxy; any of them may receive any update, and Telegram posts an
update again after a timeout or a 5xx. So each request must carry the secret token set with setWebhook
(`X-Telegram-Bot-Api-Secret-Token`, compared in constant time), and each update is processed by the first
instance that records its update_id in the shared database (storage/updates.py). A re-delivery is
answered 200 and dropped.

The same port serves `GET /healthz` (200 or 503, JSON) and `GET /metrics` (Prometheus), see bot/metrics.py.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from bot.metrics import CONTENT_TYPE, Metrics
from storage.updates import SeenUpdates

log = logging.getLogger("lasersell_bot.webhook")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookServer:
    def __init__(
        self, app: Application, services: Any, *, url: str, secret: str, host: str, port: int
    ) -> None:
        self.app = app
        self.services = services
        self.url = url
        self.secret = secret.encode()
        self.host = host
        self.port = port
        self.path = urlparse(url).path or "/"
        self.seen = SeenUpdates(services.db)
        self.metrics = Metrics(services)
        self.runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        self.received = 0
        self.duplicates = 0
        self.refused = 0

    def web_app(self) -> web.Application:
        web_app = web.Application(client_max_size=2 * 1024 * 1024)
        web_app.router.add_post(self.path, self.on_update)
        web_app.router.add_get("/healthz", self.on_health)
        web_app.router.add_get("/metrics", self.on_metrics)
        return web_app

    async def start(self, *, set_webhook: bool = True) -> None:
        await self.seen.ensure_table()
        self.runner = web.AppRunner(self.web_app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("webhook listening on %s:%s%s", self.host, self.bound_port, self.path)
        if set_webhook:
            await self.app.bot.set_webhook(
                self.url, secret_token=self.secret.decode(), allowed_updates=Update.ALL_TYPES,
                drop_pending_updates=False,
            )

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def on_update(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self.secret):
            self.refused += 1
            log.warning("refused a webhook request without the right secret token from %s", request.remote)
            return web.json_response({"ok": False, "description": "wrong or missing secret token"}, status=401)
        try:
            data = await request.json()
            update_id = int(data["update_id"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            return web.json_response({"ok": False, "description": "the body is not a Telegram update"}, status=400)
        try:
            first = await self.seen.first_time(update_id)
        except Exception:
            log.exception("could not record update %s: Telegram will post it again", update_id)
            return web.json_response({"ok": False, "description": "database unavailable"}, status=503)
        if not first:
            self.duplicates += 1
            return web.json_response({"ok": True, "duplicate": True})
        self.received += 1
        # a Sell tap starts before the library reads the update (bot/exits/early_taps.py)
        seller = getattr(self.services, "seller", None)
        if seller is not None:
            seller.early.take(data)
        update = Update.de_json(data, self.app.bot)
        await self.app.update_queue.put(update)
        return web.json_response({"ok": True})

    async def on_health(self, _request: web.Request) -> web.Response:
        ok, checks = await self.metrics.health()
        return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)

    async def on_metrics(self, _request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
