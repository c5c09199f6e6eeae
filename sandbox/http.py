"""A small asyncio HTTP/1.1 JSON server for the sandbox services (no third-party web framework).

Routes are `(method, path_prefix) -> async handler(request) -> (status, json_obj)`; the longest
matching prefix wins. Keep-alive and Content-Length bodies are supported; chunked request bodies
are not (the clients the sandbox stands in for never send them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_HEADER_LINES = 100


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


@dataclass
class JsonHttpServer:
    """`server.route("POST", "/v1/sell", handler)`, `await server.start()`, clients use `server.url`."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def route(self, method: str, prefix: str, handler: Handler) -> None:
        self.routes[(method.upper(), prefix)] = handler

    def add_routes(self, routes: dict[tuple[str, str], Handler]) -> None:
        for (method, prefix), handler in routes.items():
            self.route(method, prefix, handler)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve_connection, host, port)
        sock = self._server.sockets[0]
        self.host, self.port = sock.getsockname()[:2]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Closing the sockets ends each connection's read loop; cancel only what does not end.
        for writer in list(self._writers):
            writer.close()
        if self._connections:
            _, pending = await asyncio.wait(list(self._connections), timeout=2)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None

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

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader, writer)
                if request is None:
                    break
                status, body, extra = await self._dispatch(request)
                keep_alive = request.headers.get("connection", "").lower() != "close"
                await self._write_response(writer, status, body, extra, keep_alive)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        try:
            method, target, _version = line.decode("latin-1").strip().split(" ", 2)
        except ValueError:
            await self._write_response(writer, 400, {"error": "bad request line"}, {}, False)
            return None
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY_BYTES:
            await self._write_response(writer, 413, {"error": "body too large"}, {}, False)
            return None
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return Request(
            method.upper(), parts.path or "/", query, headers, body, writer.get_extra_info("peername")
        )

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

    @staticmethod
    async def _write_response(
        writer: asyncio.StreamWriter, status: int, body: Any, extra: dict[str, str], keep_alive: bool
    ) -> None:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        head = [
            f"HTTP/1.1 {status} {reason}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        head += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()


def _prefix_matches(prefix: str, path: str) -> bool:
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")
