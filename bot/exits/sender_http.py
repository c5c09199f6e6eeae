"""Requests to a transaction sender (Helius Sender, Astralane) over kept-alive HTTP/1.1 connections of our own.

aiohttp, on Python 3.11, writes a request's body from a task of its own that runs only once the event loop
comes round again. In a burst of taps, the sells signed one after another on the loop therefore all left
together, after the last one was signed, and the sender started reading the first only then. Here the whole
request is written to the socket in the very step that signed the sell, so the sender (another machine, or
another core) takes each sell while the next one is being signed.

One request at a time per connection (no pipelining); a response's body is read by its Content-Length, as
chunks, or up to the close; a connection the server closes is dropped and one closed under a request that got
no byte back is tried once more on a new connection (a sender's keep-alive timer can close an idle one just as
it is used; the same request again is harmless for sendTransaction, which lands one transaction once). At most
`max_connections` are open; callers beyond that wait for one to come free.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import cast
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # a response head larger than this is not a sender's
MAX_BODY = 4 * 1024 * 1024
IDLE_S = 30.0  # a connection idle this long is not used again (a NAT or balancer may have dropped it unsaid)


class SenderError(Exception):
    """No usable answer: the connection failed or closed, or the response could not be read."""


class _Answer:
    """A response being read off a connection."""

    __slots__ = ("status", "length", "chunked", "to_close", "body")

    def __init__(self, status: int, length: int | None, chunked: bool, to_close: bool) -> None:
        self.status = status
        self.length = length
        self.chunked = chunked
        self.to_close = to_close
        self.body = bytearray()


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.closed = False
        self.reusable = True
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._answer: _Answer | None = None
        self.got_bytes = False
        self.last_used = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's are not asyncio's classes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer, waiter = self._answer, self._waiter
        if waiter is None or waiter.done():
            return
        if answer is not None and answer.length is None and not answer.chunked:
            self._deliver(answer.status, bytes(answer.body))  # a body that runs to the close has ended
            return
        waiter.set_exception(SenderError("the sender closed the connection before answering"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.reusable = False  # bytes nobody asked for: this connection is out of step
            self.close()
            return
        self.got_bytes = True
        self._buffer += data
        try:
            self._read()
        except SenderError as exc:
            self.reusable = False
            if not self._waiter.done():
                self._waiter.set_exception(exc)
            self.close()

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write the request now; the future gets (status, body)."""
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._answer = None
        self.got_bytes = False
        if self.closed or self.transport.is_closing():  # closed while it was handed over: fail now, not at the timeout
            self._waiter.set_exception(SenderError("the sender closed the connection before answering"))
            return self._waiter
        self.last_used = time.monotonic()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _read(self) -> None:
        while True:
            if self._answer is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEAD:
                        raise SenderError("the sender's response head is too large")
                    return
                head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
                del self._buffer[: end + 4]
                answer = _parse_head(head)
                if 100 <= answer.status < 200:
                    continue  # an interim response: the real one follows
                self._answer = answer
            answer = self._answer
            if answer.chunked:
                if not self._read_chunks(answer):
                    return
            elif answer.length is not None:
                if len(self._buffer) < answer.length:
                    return
                answer.body += self._buffer[: answer.length]
                del self._buffer[: answer.length]
            else:
                answer.body += self._buffer  # up to the close (connection_lost delivers it)
                self._buffer.clear()
                if len(answer.body) > MAX_BODY:
                    raise SenderError("the sender's response is too large")
                return
            if answer.to_close:
                self.reusable = False
            self._deliver(answer.status, bytes(answer.body))
            return

    def _read_chunks(self, answer: _Answer) -> bool:
        """Consume whole chunks from the buffer; True once the last one (and the trailer) is in."""
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return False
            size_text = bytes(self._buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise SenderError("the sender's chunked response is malformed") from None
            if size == 0:  # the last chunk: then trailer lines, if any, and an empty line
                rest = line_end + 2
                if bytes(self._buffer[rest : rest + 2]) == b"\r\n":
                    del self._buffer[: rest + 2]
                    return True
                trailer_end = self._buffer.find(b"\r\n\r\n", rest)
                if trailer_end < 0:
                    return False
                del self._buffer[: trailer_end + 4]
                return True
            if len(self._buffer) < line_end + 2 + size + 2:
                return False
            answer.body += self._buffer[line_end + 2 : line_end + 2 + size]
            del self._buffer[: line_end + 2 + size + 2]
            if len(answer.body) > MAX_BODY:
                raise SenderError("the sender's response is too large")

    def _deliver(self, status: int, body: bytes) -> None:
        if self._buffer:
            self.reusable = False  # bytes beyond the answer: the next one could not be read from here
        waiter, self._waiter, self._answer = self._waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))


def _parse_head(lines: list[str]) -> _Answer:
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise SenderError("the sender did not answer in HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length_text = headers.get("content-length")
    length = None
    if length_text is not None:
        if not length_text.isdigit() or int(length_text) > MAX_BODY:
            raise SenderError("the sender's response has a bad length")
        length = int(length_text)
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    connection = headers.get("connection", "").lower()
    to_close = "close" in connection or (parts[0] == "HTTP/1.0" and "keep-alive" not in connection)
    status = int(parts[1])
    if status in (204, 304):
        length = 0
    return _Answer(status, length, chunked, to_close)


class HttpSender:
    """Kept-alive connections to one sender (`scheme://host:port`), for requests written at once."""

    def __init__(self, url: str, *, timeout: float = 10.0, max_connections: int = 100) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a sender URL is http:// or https:// with a host")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        default_port = 443 if self.tls else 80
        self._host_header = self.host if self.port == default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not self._host_header.startswith("["):
            self._host_header = f"[{self.host}]" + ("" if self.port == default_port else f":{self.port}")
        self.timeout = timeout
        self.max_connections = max_connections
        self._ssl = ssl.create_default_context() if self.tls else None
        self._idle: deque[_Connection] = deque()
        self._count = 0  # open or opening
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._closed = False

    async def request(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
                      ) -> tuple[int, bytes]:
        """(status, body). Raises SenderError or TimeoutError when there is no answer."""
        head = [f"{method} {target or '/'} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in (headers or {}).items():
            if not (name + value).isascii() or not (name + value).isprintable():
                # the value is not repeated here: it may be a key
                raise ValueError(f"the {name!r} header holds a line break or characters HTTP cannot carry")
            head.append(f"{name}: {value}")
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with asyncio.timeout(self.timeout):
            for attempt in range(2):
                conn, reused = await self._acquire()
                answer = conn.request(data)
                try:
                    result = await answer
                except SenderError:
                    self._release(conn)
                    if attempt == 0 and reused and not conn.got_bytes:
                        continue  # the sender had closed the idle connection as it was used: once more on a new one
                    raise
                except BaseException:
                    conn.reusable = False  # cancelled or timed out mid-request: its answer may still come
                    conn.close()
                    self._release(conn)
                    raise
                self._release(conn)
                return result
        raise SenderError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _acquire(self) -> tuple[_Connection, bool]:
        while True:
            if self._closed:
                raise SenderError("the sender's connections are closed")
            while self._idle:
                conn = self._idle.pop()  # the most recently used: the likeliest still open
                if not conn.closed and time.monotonic() - conn.last_used < IDLE_S:
                    return conn, True
                conn.close()  # closed by the sender, or idle so long a middlebox may have dropped it silently
                self._count -= 1
            if self._count < self.max_connections:
                self._count += 1
                try:
                    return await self._open(), False
                except BaseException:
                    self._count -= 1
                    self._wake()
                    raise
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    if waiter.result() is not None:
                        self._release(waiter.result())  # handed over as we were cancelled: pass it on
                    else:
                        self._wake()  # a free slot was ours: the next waiter takes it
                raise
            if handed is not None:
                return handed, True

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection, self.host, self.port, ssl=self._ssl, server_hostname=self.host if self.tls else None
            )
        except OSError as exc:
            raise SenderError(f"could not connect to the sender ({type(exc).__name__})") from None
        return conn

    def _release(self, conn: _Connection | None) -> None:
        if conn is None:
            return
        if conn.closed or not conn.reusable or self._closed:
            conn.close()
            self._count -= 1
            self._wake()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _wake(self) -> None:
        """A connection closed: a caller waiting for one may open its own now."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @property
    def idle(self) -> int:
        return sum(1 for conn in self._idle if not conn.closed)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


__all__ = ["HttpSender", "SenderError"]
