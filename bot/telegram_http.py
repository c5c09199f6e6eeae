"""Bot API requests over aiohttp: python-telegram-bot's request interface on a pooled aiohttp session.

An exit signal's message is one HTTP request, and under a flood of stream frames every await on its way
to the socket waits for a turn of a busy event loop. The library's default client (httpx on anyio)
takes many such turns and a good deal of Python per request; aiohttp (the RPC client's, with a C HTTP
parser) takes a few. Behaviour is the default client's: the same form-encoded or multipart bodies, the
same timeouts, and network failures and timeouts raised as the library's `NetworkError` / `TimedOut`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    """`BaseRequest` on one aiohttp session with at most `connection_pool_size` connections."""

    __slots__ = ("_connect_timeout", "_pool_size", "_read_timeout", "_session", "_write_timeout", "on_answer")

    def __init__(
        self,
        connection_pool_size: int = 1,
        *,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        # aiohttp counts the wait for a free connection as part of connecting
        self._connect_timeout = _sum(connect_timeout, pool_timeout)
        self._session: aiohttp.ClientSession | None = None
        # sees every successful answer's body before the library does (getUpdates: bot/exits/early_taps.py)
        self.on_answer: Callable[[bytes], Awaitable[None]] | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, enable_cleanup_closed=True)
            # trust_env: HTTPS_PROXY and the like apply, as they did with httpx
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}, trust_env=True
            )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = (
            self._connect_timeout if isinstance(connect_timeout, DefaultValue) and isinstance(pool_timeout, DefaultValue)
            else _sum(_given(connect_timeout, self._connect_timeout), _given(pool_timeout, None))
        )
        # aiohttp has no write timeout: a stalled upload ends when no answer comes within the read timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, connect=connect, sock_read=read)
        body: aiohttp.FormData | dict[str, str] | None = None
        if request_data is not None:
            fields = request_data.json_parameters
            if request_data.contains_files:
                form = aiohttp.FormData()
                for name, value in fields.items():
                    form.add_field(name, value)
                for name, (filename, content, mimetype) in request_data.multipart_data.items():
                    form.add_field(name, content, filename=filename, content_type=mimetype)
                body = form
            elif fields:
                body = fields
        try:
            # no redirects, as with httpx: the Bot API answers in place (and a redirect's error would carry the URL)
            async with session.request(method, url, data=body, timeout=timeout, allow_redirects=False) as response:
                status, content = response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{exc.__class__.__name__}: {exc}") from exc
        if status == 200 and self.on_answer is not None:
            await self.on_answer(content)
        return status, content


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _sum(first: float | None, second: float | None) -> float | None:
    if first is None or second is None:
        return None
    return first + second
