"""HttpSender against a raw local server: the answers a sender may give, closed connections, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

import bot.exits.sender_http as sender_http
from bot.exits.sender_http import HttpSender, SenderError

Reply = Callable[[bytes], bytes | None]  # the request's bytes -> what to answer (None: close without a word)


class RawServer:
    """Answers each request on a connection with `reply(request)`; counts connections and requests."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


@pytest.fixture
async def served() -> AsyncIterator[Callable[[Reply], asyncio.Future[tuple[RawServer, HttpSender]]]]:
    made: list[tuple[RawServer, HttpSender]] = []

    async def make(reply: Reply, **kwargs: float) -> tuple[RawServer, HttpSender]:
        server = RawServer(reply)
        url = await server.start()
        sender = HttpSender(url + "/send?api-key=k", **kwargs)  # type: ignore[arg-type]
        made.append((server, sender))
        return server, sender

    yield make  # type: ignore[misc]
    for server, sender in made:
        sender.close()
        await server.stop()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


async def test_a_post_is_written_whole_and_the_connection_is_kept(served) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: ok(b'{"result":"sig"}'))
    for _ in range(3):
        assert await sender.request("POST", "/send?api-key=k", b'{"a":1}', {"Content-Type": "application/json"}) == (
            200, b'{"result":"sig"}')
    assert server.connections == 1  # kept alive between requests
    first = server.requests[0]
    assert first.startswith(b"POST /send?api-key=k HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first and b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'{"a":1}')


async def test_chunked_and_interim_answers_are_read(served) -> None:  # type: ignore[no-untyped-def]
    chunked = (b"HTTP/1.1 100 Continue\r\n\r\n"
               b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\n{\"er\r\n9;ext=1\r\nror\":429}\r\n0\r\nX-Trailer: 1\r\n\r\n")
    server, sender = await served(lambda request: chunked)
    assert await sender.request("POST", "/", b"{}") == (429, b'{"error":429}')
    assert await sender.request("POST", "/", b"{}") == (429, b'{"error":429}')
    assert server.connections == 1


async def test_a_body_running_to_the_close_ends_there_and_the_connection_is_not_reused(served) -> None:  # type: ignore[no-untyped-def]
    answers = iter([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", None])

    def reply(request: bytes) -> bytes | None:
        return next(answers, None)

    server, sender = await served(reply)
    task = asyncio.ensure_future(sender.request("GET", "/ping"))
    await asyncio.sleep(0.05)
    for writer in server.writers:
        writer.close()  # the server ends the body by closing
    assert await task == (200, b"all of it")
    assert sender.idle == 0


async def test_an_idle_connection_the_sender_closed_is_replaced_and_the_request_tried_once_more(served) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: ok(b"pong"))
    assert await sender.request("GET", "/ping") == (200, b"pong")
    # the server drops the idle connection; the client may not have noticed yet when it is used
    for writer in server.writers:
        writer.close()
    assert await sender.request("POST", "/", b"{}") == (200, b"pong")
    assert server.connections == 2


async def test_no_answer_is_an_error_not_a_hang(served) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: None)  # closes without a word, every time
    with pytest.raises(SenderError, match="closed the connection"):
        await sender.request("POST", "/", b"{}")
    silent, slow = await served(lambda request: b"", timeout=0.2)  # takes the request and says nothing
    with pytest.raises(TimeoutError):
        await slow.request("POST", "/", b"{}")
    garbage, confused = await served(lambda request: b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(SenderError, match="HTTP/1.1"):
        await confused.request("POST", "/", b"{}")


async def test_callers_beyond_the_connection_limit_wait_for_a_free_one(served) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: ok(b"x"), max_connections=2)
    answers = await asyncio.gather(*(sender.request("POST", "/", b"{}") for _ in range(10)))
    assert answers == [(200, b"x")] * 10
    assert server.connections == 2 and len(server.requests) == 10


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(served) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: ok(b"x"))
    with pytest.raises(ValueError, match="line break"):
        await sender.request("POST", "/", b"{}", {"x-api-key": "k\r\nX-Evil: 1"})
    assert server.requests == []


async def test_a_connection_idle_too_long_is_not_used_again(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: ok(b"x"))
    assert await sender.request("POST", "/", b"{}") == (200, b"x")
    monkeypatch.setattr(sender_http, "IDLE_S", 0.0)  # a middlebox may have dropped it without a word
    assert await sender.request("POST", "/", b"{}") == (200, b"x")
    assert server.connections == 2 and len(server.requests) == 2


async def test_bytes_beyond_an_answer_retire_the_connection(served) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: ok(b"x") + b"HTTP/1.1 200 OK\r\n")  # junk after the answer
    assert await sender.request("POST", "/", b"{}") == (200, b"x")
    assert await sender.request("POST", "/", b"{}") == (200, b"x")  # on a new connection, not the junk
    assert server.connections == 2


async def test_a_header_http_cannot_carry_is_refused_without_repeating_it(served) -> None:  # type: ignore[no-untyped-def]
    server, sender = await served(lambda request: ok(b"x"))
    with pytest.raises(ValueError) as refused:
        await sender.request("POST", "/", b"{}", {"x-api-key": "secret\u200bkey"})
    assert "secret" not in str(refused.value) and "x-api-key" in str(refused.value)
    assert server.requests == []
