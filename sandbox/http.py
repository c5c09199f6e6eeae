"""The sandbox services' JSON HTTP server, on `aiohttp.web`.

Routes are `(method, path_prefix) -> async handler(request) -> (status, json_obj)`; the longest
matching prefix wins. A path no route knows answers 404, a known path with another method 405, a
handler that raises `HttpError` answers with its status and body, and any other exception 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
SHUTDOWN_TIMEOUT_S = 2.0


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    peer: Any = None
    route_prefix: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body parsed as JSON; raises HttpError(400) when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8") if self.body else "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(
                400, {"status": "error", "reason": "malformed_json", "message": str(exc)}
            ) from exc

    @property
    def subpath(self) -> str:
        """The path after the matched route prefix."""
        return self.path[len(self.route_prefix) :]


class HttpError(Exception):
    """Raise from a handler to answer with `status` and `body`."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers or {}


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    return web.Response(status=status, body=payload, content_type="application/json", headers=headers)


class WebServer:
    """An `aiohttp.web` application on 127.0.0.1 (port 0 by default) that shuts down promptly."""

    def __init__(self, client_max_size: int = MAX_BODY_BYTES) -> None:
        self.app = web.Application(client_max_size=client_max_size)
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.host, self.port = runner.addresses[0][:2]
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


@dataclass
class JsonHttpServer:
    """`server.route("POST", "/v1/sell", handler)`, `await server.start()`, clients use `server.url`."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    _web: WebServer = field(default_factory=WebServer)

    def __post_init__(self) -> None:
        self._web.app.router.add_route("*", "/{tail:.*}", self._handle)

    def route(self, method: str, prefix: str, handler: Handler) -> None:
        self.routes[(method.upper(), prefix)] = handler

    def add_routes(self, routes: dict[tuple[str, str], Handler]) -> None:
        for (method, prefix), handler in routes.items():
            self.route(method, prefix, handler)

    @property
    def host(self) -> str:
        return self._web.host

    @property
    def port(self) -> int:
        return self._web.port

    @property
    def url(self) -> str:
        return self._web.url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await self._web.start(host, port)

    async def stop(self) -> None:
        await self._web.stop()

    def _match(self, method: str, path: str) -> tuple[Handler | None, str, bool]:
        """(handler, prefix, path_known): the longest prefix for this method; path_known for 405."""
        best: tuple[Handler | None, str] = (None, "")
        known = False
        for (m, prefix), handler in self.routes.items():
            if not _prefix_matches(prefix, path):
                continue
            known = True
            if m == method and (best[0] is None or len(prefix) > len(best[1])):
                best = (handler, prefix)
        return best[0], best[1], known

    async def _handle(self, web_request: web.Request) -> web.Response:
        request = Request(
            web_request.method.upper(),
            web_request.path or "/",
            {name: value for name, value in web_request.query.items() if value},
            {name.lower(): value for name, value in web_request.headers.items()},
            await web_request.read(),
            web_request.remote,
        )
        status, body, extra = await self._dispatch(request)
        return json_response(status, body, extra)

    async def _dispatch(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        handler, prefix, known = self._match(request.method, request.path)
        if handler is None:
            if known:
                return 405, {"error": f"method {request.method} not allowed"}, {}
            return 404, {"error": f"no route for {request.path}"}, {}
        request.route_prefix = prefix
        try:
            status, body = await handler(request)
            return status, body, {}
        except HttpError as exc:
            return exc.status, exc.body, exc.headers
        except Exception:  # a handler bug answers 500 instead of dropping the connection
            log.exception("handler for %s %s failed", request.method, request.path)
            return 500, {"status": "error", "reason": "internal", "message": "internal server error"}, {}


class JsonService:
    """A sandbox service served by its `server`: `url`, `start()` and `stop()` come from it."""

    server: JsonHttpServer

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await self.server.start(host, port)

    async def stop(self) -> None:
        await self.server.stop()


def _prefix_matches(prefix: str, path: str) -> bool:
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")
