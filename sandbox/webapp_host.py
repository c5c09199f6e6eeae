"""The sandbox Telegram client's Mini App host: a page that opens the bot's dashboard the way Telegram Web does.

`GET /webapp?user=ID&name=Ann` answers a page holding an iframe of the dashboard whose address carries the
launch parameters a Telegram client gives a Mini App (`#tgWebAppData=<signed initData>&tgWebAppVersion=...
&tgWebAppPlatform=web&tgWebAppThemeParams=...`). Telegram's own `telegram-web-app.js` inside the dashboard
reads them and builds `window.Telegram.WebApp`; its calls to the client (`web_app_ready`,
`web_app_request_theme`, ...) arrive here by `postMessage`, and the page answers them as a client does.

The initData is signed with the bot's token and dated by `clock`, so a test that moves the bot's clock moves
this one too and the dashboard stays fresh.

    host = WebAppHost(bot_token, dashboard_url)
    url = await host.start()          # a tiny standalone server on 127.0.0.1, port 0
    host.page_url(user_id, "Ann")     # what a browser opens
    await host.stop()

or `host.add_routes(app)` to put the page on an existing aiohttp.web application.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from urllib.parse import quote, urlencode

from aiohttp import web

from bot.miniapp.initdata import init_data_for

LIGHT_THEME = {
    "bg_color": "#ffffff", "text_color": "#000000", "hint_color": "#999999", "link_color": "#2481cc",
    "button_color": "#2481cc", "button_text_color": "#ffffff", "secondary_bg_color": "#efeff3",
    "header_bg_color": "#ffffff", "accent_text_color": "#2481cc", "section_bg_color": "#ffffff",
    "section_header_text_color": "#6d6d71", "subtitle_text_color": "#999999", "destructive_text_color": "#ff3b30",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox Telegram: {title}</title>
<style>
 body {{ margin: 0; background: #c8d7e1; font: 14px system-ui, sans-serif; }}
 .phone {{ width: {width}px; margin: 0 auto; background: #fff; height: 100vh; display: flex; flex-direction: column; }}
 .bar {{ background: #517da2; color: #fff; padding: 10px 12px; font-weight: 600; }}
 iframe {{ border: 0; flex: 1; width: 100%; }}
</style></head>
<body><div class="phone"><div class="bar" id="title">{title}</div>
<iframe id="miniapp" src="{src}" allow="clipboard-write"></iframe></div>
<script>
// What a Telegram client answers a Mini App in an iframe (see Telegram's telegram-web-app.js).
const frame = document.getElementById("miniapp");
const theme = {theme};
const calls = window.miniappCalls = [];
function send(eventType, eventData) {{
  frame.contentWindow.postMessage(JSON.stringify({{eventType, eventData}}), "*");
}}
window.addEventListener("message", (event) => {{
  if (event.source !== frame.contentWindow) return;
  let msg; try {{ msg = JSON.parse(event.data); }} catch (e) {{ return; }}
  calls.push(msg.eventType);
  if (msg.eventType === "web_app_request_theme") send("theme_changed", {{theme_params: theme}});
  if (msg.eventType === "web_app_request_viewport" || msg.eventType === "web_app_expand")
    send("viewport_changed", {{height: frame.clientHeight, is_expanded: true, is_state_stable: true}});
  if (msg.eventType === "web_app_close") frame.remove();
}});
</script></body></html>
"""


class WebAppHost:
    def __init__(self, bot_token: str, dashboard_url: str, *, clock: Callable[[], float] = time.time,
                 version: str = "8.0", width: int = 420) -> None:
        self.bot_token = bot_token
        self.dashboard_url = dashboard_url.rstrip("/")
        self.clock = clock
        self.version = version
        self.width = width
        self.url = ""
        self._runner: web.AppRunner | None = None

    def launch_url(self, user_id: int, first_name: str, username: str | None = None, page: str | None = None) -> str:
        """The dashboard address with the launch parameters, as a Telegram client opens it."""
        init_data = init_data_for(user_id, first_name, self.bot_token, int(self.clock()), username)
        fragment = urlencode({
            "tgWebAppData": init_data,
            "tgWebAppVersion": self.version,
            "tgWebAppPlatform": "web",
            "tgWebAppThemeParams": json.dumps(LIGHT_THEME, separators=(",", ":")),
        }, quote_via=quote)
        query = f"?page={quote(page)}" if page else ""
        return f"{self.dashboard_url}/{query}#{fragment}"

    async def page(self, request: web.Request) -> web.Response:
        try:
            user_id = int(request.query["user"])
        except (KeyError, ValueError):
            return web.Response(status=400, text="Give ?user=<telegram id>&name=<first name>")
        name = request.query.get("name", "User")
        src = self.launch_url(user_id, name, request.query.get("username"), request.query.get("page"))
        body = _PAGE.format(title=html.escape(f"Dashboard: {name}"), src=html.escape(src, quote=True),
                            theme=json.dumps(LIGHT_THEME), width=self.width)
        return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/webapp", self.page)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    def page_url(self, user_id: int, first_name: str, page: str | None = None) -> str:
        query = {"user": str(user_id), "name": first_name, **({"page": page} if page else {})}
        return f"{self.url}/webapp?{urlencode(query)}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["LIGHT_THEME", "WebAppHost"]
