"""The sandbox Telegram Bot API server: real error answers for wrong requests, the driver API, and
python-telegram-bot running unmodified against it."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, Defaults

from sandbox.telegram import NOT_MODIFIED, QUERY_TOO_OLD, SandboxTelegram, parse_html

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxTelegram]:
    server = SandboxTelegram()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def call(
    http: httpx.AsyncClient, server: SandboxTelegram, method: str, form: bool = False, **params: Any
) -> tuple[int, dict[str, Any]]:
    """A raw Bot API call, as JSON or (like python-telegram-bot) as a form with JSON-encoded
    nested values."""
    url = f"{server.url}/bot{server.token}/{method}"
    if form:
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        response = await http.post(url, data=data)
    else:
        response = await http.post(url, json=params)
    return response.status_code, response.json()


def keyboard(*buttons: dict[str, Any]) -> dict[str, Any]:
    return {"inline_keyboard": [list(buttons)]}


async def expect_error(
    http: httpx.AsyncClient, server: SandboxTelegram, method: str, code: int, description: str, **params: Any
) -> dict[str, Any]:
    status, body = await call(http, server, method, **params)
    assert status == code, body
    assert body["ok"] is False
    assert body["error_code"] == code
    assert body["description"] == description
    return body


# ------------------------------------------------------------------ tokens and methods


async def test_wrong_token_is_unauthorized_and_unknown_method_not_found(sandbox, client):
    response = await client.post(f"{sandbox.url}/bot123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/getMe")
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    await expect_error(client, sandbox, "sendPigeon", 404, "Not Found")
    # method names are case-insensitive, as on the real server
    status, body = await call(client, sandbox, "getme")
    assert status == 200 and body["result"]["is_bot"] is True
    assert body["result"]["id"] == int(sandbox.token.split(":")[0])


async def test_get_requests_with_query_parameters_work(sandbox, client):
    user_id, chat_id = sandbox.add_user("Ada", "ada")
    response = await client.get(
        f"{sandbox.url}/bot{sandbox.token}/sendMessage", params={"chat_id": chat_id, "text": "hi"}
    )
    assert response.json()["result"]["text"] == "hi"


# ------------------------------------------------------------------ messages


async def test_empty_text_is_rejected(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    await expect_error(client, sandbox, "sendMessage", 400, "Bad Request: message text is empty", chat_id=chat_id)
    await expect_error(
        client, sandbox, "sendMessage", 400, "Bad Request: message text is empty",
        chat_id=chat_id, text="<b> </b>", parse_mode="HTML",
    )


async def test_length_is_counted_after_entity_parsing(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    # 4096 visible characters in a much longer HTML source are fine
    status, body = await call(
        client, sandbox, "sendMessage", chat_id=chat_id, text="<b>" + "&amp;" * 4096 + "</b>", parse_mode="HTML"
    )
    assert status == 200, body
    assert len(body["result"]["text"]) == 4096
    assert body["result"]["entities"] == [{"type": "bold", "offset": 0, "length": 4096}]
    await expect_error(
        client, sandbox, "sendMessage", 400, "Bad Request: message is too long",
        chat_id=chat_id, text="<i>" + "x" * 4097 + "</i>", parse_mode="HTML",
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("<b>bold", "Can't find end tag corresponding to start tag b"),
        ("abc<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 3'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("é<b", "Unclosed start tag at byte offset 2"),
        ("Tom & Jerry", 'Character "&" at byte offset 4 must be escaped as "&amp;"'),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
async def test_html_errors_have_the_real_descriptions(sandbox, client, text, detail):
    _, chat_id = sandbox.add_user("Ada", "ada")
    await expect_error(
        client, sandbox, "sendMessage", 400, f"Bad Request: can't parse entities: {detail}",
        chat_id=chat_id, text=text, parse_mode="HTML",
    )


async def test_html_entities_are_parsed_with_utf16_offsets(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    html = (
        '🚀 <b>Exit</b> &lt;now&gt; <a href="https://solscan.io/tx/1">tx</a> '
        '<tg-spoiler>s</tg-spoiler> <pre><code class="language-json">{}</code></pre> &#36;5'
    )
    status, body = await call(client, sandbox, "sendMessage", form=True, chat_id=chat_id, text=html, parse_mode="HTML")
    assert status == 200, body
    message = body["result"]
    assert message["text"] == "🚀 Exit <now> tx s {} $5"
    assert message["entities"] == [
        {"type": "bold", "offset": 3, "length": 4},
        {"type": "text_link", "offset": 14, "length": 2, "url": "https://solscan.io/tx/1"},
        {"type": "spoiler", "offset": 17, "length": 1},
        {"type": "pre", "offset": 19, "length": 2, "language": "json"},
    ]
    assert message["from"]["is_bot"] is True
    assert message["chat"] == {"id": chat_id, "type": "private", "first_name": "Ada", "username": "ada"}


def test_lenient_html_keeps_a_bare_ampersand_like_the_real_server():
    assert parse_html("Tom & Jerry &amp", strict=False) == ("Tom & Jerry &", [])
    assert parse_html("<blockquote expandable>q</blockquote>")[1] == [
        {"type": "expandable_blockquote", "offset": 0, "length": 1}
    ]


async def test_unknown_chat_is_not_found(sandbox, client):
    user_id, _ = sandbox.add_user("Ada", "ada")
    await expect_error(client, sandbox, "sendMessage", 400, "Bad Request: chat not found", chat_id=42, text="x")
    await expect_error(client, sandbox, "sendMessage", 400, "Bad Request: chat_id is empty", text="x")
    status, body = await call(client, sandbox, "sendMessage", chat_id="@ada", text="x")
    assert status == 200 and body["result"]["chat"]["id"] == user_id


async def test_unsupported_parse_mode_is_refused(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    await expect_error(
        client, sandbox, "sendMessage", 400, "Bad Request: unsupported parse_mode",
        chat_id=chat_id, text="*x*", parse_mode="Klingon",
    )


# ------------------------------------------------------------------ keyboards


async def test_callback_data_must_be_1_to_64_bytes(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    for data in ("x" * 65, "", "é" * 33):
        await expect_error(
            client, sandbox, "sendMessage", 400, "Bad Request: BUTTON_DATA_INVALID",
            chat_id=chat_id, text="t", reply_markup=keyboard({"text": "Sell", "callback_data": data}),
        )
    # 64 bytes exactly, sent as a form the way python-telegram-bot sends it
    status, body = await call(
        client, sandbox, "sendMessage", form=True, chat_id=chat_id, text="t",
        reply_markup=keyboard({"text": "Sell", "callback_data": "é" * 32}),
    )
    assert status == 200, body
    assert body["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "é" * 32


async def test_inline_button_needs_exactly_one_action(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    await expect_error(
        client, sandbox, "sendMessage", 400,
        "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        chat_id=chat_id, text="t", reply_markup=keyboard({"text": "Sell"}),
    )
    status, body = await call(
        client, sandbox, "sendMessage", chat_id=chat_id, text="t",
        reply_markup=keyboard({"text": "Sell", "callback_data": "s", "url": "https://x.io"}),
    )
    assert status == 400 and body["description"].startswith("Bad Request: can't parse inline keyboard button")
    await expect_error(
        client, sandbox, "sendMessage", 400, "Bad Request: BUTTON_URL_INVALID",
        chat_id=chat_id, text="t", reply_markup=keyboard({"text": "Chart", "url": "javascript:alert(1)"}),
    )
    status, body = await call(
        client, sandbox, "sendMessage", form=True, chat_id=chat_id, text="t", reply_markup="{not json"
    )
    assert (status, body["description"]) == (400, "Bad Request: can't parse reply keyboard markup JSON object")


# ------------------------------------------------------------------ edits, deletes


async def test_identical_edit_is_not_modified(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    markup = keyboard({"text": "Sell", "callback_data": "sell:1"})
    _, sent = await call(client, sandbox, "sendMessage", chat_id=chat_id, text="<b>PnL</b> +5%",
                         parse_mode="HTML", reply_markup=markup)
    message_id = sent["result"]["message_id"]
    await expect_error(
        client, sandbox, "editMessageText", 400, NOT_MODIFIED, chat_id=chat_id, message_id=message_id,
        text="<b>PnL</b> +5%", parse_mode="HTML", reply_markup=markup,
    )
    await expect_error(
        client, sandbox, "editMessageReplyMarkup", 400, NOT_MODIFIED,
        chat_id=chat_id, message_id=message_id, reply_markup=markup,
    )
    # same text without the markup is a change: the real server removes the keyboard
    status, body = await call(client, sandbox, "editMessageText", chat_id=chat_id, message_id=message_id,
                              text="<b>PnL</b> +5%", parse_mode="HTML")
    assert status == 200, body
    assert "reply_markup" not in body["result"] and "edit_date" in body["result"]
    [entry] = sandbox.chat(chat_id)
    assert entry["edits"] == 1 and entry["buttons"] == []
    # the refused edits are counted all the same, by method, chat and message
    assert sandbox.calls("editMessageText", chat_id=chat_id, message_id=message_id) == 2
    assert sandbox.refused("editMessageText", chat_id=chat_id, description="message is not modified") == 1
    assert sandbox.refused("editMessageReplyMarkup", chat_id=chat_id) == 1
    assert sandbox.calls("sendMessage", chat_id=chat_id, message_id=message_id) == 1
    assert sandbox.refused(chat_id=chat_id) == 2 and sandbox.calls(chat_id=chat_id) == 4


async def test_calls_are_counted_per_chat_with_faults_and_errors_as_refused(sandbox, client):
    _, ada = sandbox.add_user("Ada", "ada")
    _, bob = sandbox.add_user("Bob", "bob")
    _, sent = await call(client, sandbox, "sendMessage", chat_id=ada, text="card")
    card = sent["result"]["message_id"]
    for _ in range(3):  # a redundant refresher
        await call(client, sandbox, "editMessageText", chat_id=ada, message_id=card, text="card v2")
    sandbox.inject_fault("editMessageText", status=502)
    await call(client, sandbox, "editMessageText", chat_id=ada, message_id=card, text="card v3")
    await call(client, sandbox, "sendMessage", form=True, chat_id="@bob", text="hi")
    await call(client, sandbox, "sendMessage", chat_id=bob, text="")
    assert sandbox.calls("editMessageText", chat_id=ada) == 4
    assert sandbox.refused("editMessageText", chat_id=ada, description="not modified") == 2
    assert sandbox.refused("editMessageText", chat_id=ada, description="Bad Gateway") == 1
    assert sandbox.calls("editMessageText", chat_id=bob) == 0
    assert (sandbox.calls("sendMessage", chat_id=bob), sandbox.refused("sendMessage", chat_id=bob)) == (2, 1)
    assert [r.error_code for r in sandbox.call_log("editmessagetext")] == [None, 400, 400, 502]
    assert sandbox.stats()["refused"] == {"editMessageText": 3, "sendMessage": 1}
    over_http = (await client.get(f"{sandbox.url}/driver/calls", params={"method": "editMessageText",
                                                                         "chat_id": ada})).json()
    assert (over_http["calls"], over_http["refused"]) == (4, 3)
    assert over_http["log"][1]["description"] == NOT_MODIFIED


async def test_edit_or_delete_of_missing_message(sandbox, client):
    user_id, chat_id = sandbox.add_user("Ada", "ada")
    await expect_error(client, sandbox, "editMessageText", 400, "Bad Request: message to edit not found",
                       chat_id=chat_id, message_id=99, text="x")
    await expect_error(client, sandbox, "deleteMessage", 400, "Bad Request: message to delete not found",
                       chat_id=chat_id, message_id=99)
    _, sent = await call(client, sandbox, "sendMessage", chat_id=chat_id, text="x")
    message_id = sent["result"]["message_id"]
    status, body = await call(client, sandbox, "deleteMessage", chat_id=chat_id, message_id=message_id)
    assert (status, body["result"]) == (200, True)
    await expect_error(client, sandbox, "deleteMessage", 400, "Bad Request: message to delete not found",
                       chat_id=chat_id, message_id=message_id)
    await expect_error(client, sandbox, "editMessageReplyMarkup", 400, "Bad Request: message to edit not found",
                       chat_id=chat_id, message_id=message_id)
    users_message = sandbox.send(user_id, "hello")
    await expect_error(client, sandbox, "editMessageText", 400, "Bad Request: message can't be edited",
                       chat_id=chat_id, message_id=users_message, text="y")
    assert sandbox.chat(chat_id)[0]["deleted"] is True


# ------------------------------------------------------------------ callback queries


async def test_callback_answer_window_and_single_answer(client):
    server = SandboxTelegram(callback_answer_window_s=10)
    await server.start()
    try:
        user_id, chat_id = server.add_user("Ada", "ada")
        _, sent = await call(client, server, "sendMessage", chat_id=chat_id, text="Exit ready",
                             reply_markup=keyboard({"text": "Sell", "callback_data": "sell:7"}))
        message_id = sent["result"]["message_id"]
        first = server.press(user_id, message_id, "sell:7")
        status, body = await call(client, server, "answerCallbackQuery", callback_query_id=first,
                                  text="Selling…", show_alert=True)
        assert (status, body["result"]) == (200, True)
        await expect_error(client, server, "answerCallbackQuery", 400, QUERY_TOO_OLD, callback_query_id=first)

        late = server.press(user_id, message_id, "sell:7")
        server.advance_clock(10.5)
        await expect_error(client, server, "answerCallbackQuery", 400, QUERY_TOO_OLD, callback_query_id=late)
        await expect_error(client, server, "answerCallbackQuery", 400, QUERY_TOO_OLD, callback_query_id="123")
        answers = server.callback_answers(chat_id)
        assert [(a["callback_query_id"], a["text"], a["show_alert"], a["data"]) for a in answers] == [
            (first, "Selling…", True, "sell:7")
        ]
    finally:
        await server.stop()


async def test_press_must_match_a_button_as_a_real_client(sandbox, client):
    user_id, chat_id = sandbox.add_user("Ada", "ada")
    _, sent = await call(client, sandbox, "sendMessage", chat_id=chat_id, text="x",
                         reply_markup=keyboard({"text": "Sell", "callback_data": "sell:1"}))
    message_id = sent["result"]["message_id"]
    response = await client.post(f"{sandbox.url}/driver/press",
                                 json={"user_id": user_id, "message_id": message_id, "data": "sell:2"})
    assert response.status_code == 400
    assert "no callback button with data 'sell:2'" in response.json()["error"]
    response = await client.post(f"{sandbox.url}/driver/press",
                                 json={"user_id": user_id, "message_id": 77, "data": "sell:1"})
    assert response.status_code == 400
    response = await client.post(f"{sandbox.url}/driver/press",
                                 json={"user_id": user_id, "message_id": message_id, "data": "sell:1"})
    assert response.status_code == 200 and response.json()["callback_query_id"]


# ------------------------------------------------------------------ blocked users, flood control, faults


async def test_blocked_user_is_forbidden(sandbox, client):
    user_id, chat_id = sandbox.add_user("Ada", "ada")
    assert (await client.post(f"{sandbox.url}/driver/block", json={"user_id": user_id})).status_code == 200
    await expect_error(client, sandbox, "sendMessage", 403, "Forbidden: bot was blocked by the user",
                       chat_id=chat_id, text="x")
    await expect_error(client, sandbox, "sendChatAction", 403, "Forbidden: bot was blocked by the user",
                       chat_id=chat_id, action="typing")
    await client.post(f"{sandbox.url}/driver/unblock", json={"user_id": user_id})
    status, _ = await call(client, sandbox, "sendMessage", chat_id=chat_id, text="x")
    assert status == 200


async def test_flood_control_per_chat_with_a_burst(client):
    server = SandboxTelegram(per_chat_rate=1.0, per_chat_burst=3)
    await server.start()
    try:
        _, chat_id = server.add_user("Ada", "ada")
        for _ in range(3):
            status, _ = await call(client, server, "sendMessage", chat_id=chat_id, text="x")
            assert status == 200
        body = await expect_error(client, server, "sendMessage", 429, "Too Many Requests: retry after 1",
                                  chat_id=chat_id, text="x")
        assert body["parameters"] == {"retry_after": 1}
        # typing indicators and deletes do not count
        for _ in range(5):
            status, _ = await call(client, server, "sendChatAction", chat_id=chat_id, action="typing")
            assert status == 200
        # another chat has its own bucket
        _, other = server.add_user("Bob", "bob")
        assert (await call(client, server, "sendMessage", chat_id=other, text="x"))[0] == 200
        response = await client.post(f"{server.url}/driver/clock", json={"advance_s": 1.0})
        assert response.status_code == 200
        assert (await call(client, server, "sendMessage", chat_id=chat_id, text="x"))[0] == 200
        stats = (await client.get(f"{server.url}/driver/stats")).json()
        assert stats["http_429"] == 1
        assert stats["calls"]["sendMessage"] == 6 and stats["calls"]["sendChatAction"] == 5
    finally:
        await server.stop()


async def test_flood_control_global_and_switched_off(client):
    server = SandboxTelegram(per_chat_rate=None, global_rate=0.01, global_burst=5)
    # a burst of 5 that refills once in 100 s: the sixth is refused however slowly the machine sends
    await server.start()
    try:
        chats = [server.add_user(f"U{i}", f"u{i}")[1] for i in range(6)]
        codes = [(await call(client, server, "sendMessage", chat_id=c, text="x"))[0] for c in chats]
        assert codes == [200] * 5 + [429]
    finally:
        await server.stop()
    unlimited = SandboxTelegram(per_chat_rate=None, global_rate=None)
    await unlimited.start()
    try:
        _, chat_id = unlimited.add_user("Ada", "ada")
        codes = {(await call(client, unlimited, "sendMessage", chat_id=chat_id, text="x"))[0] for _ in range(40)}
        assert codes == {200}
    finally:
        await unlimited.stop()


async def test_injected_faults_fail_the_next_calls(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    response = await client.post(f"{sandbox.url}/driver/faults",
                                 json={"method": "sendMessage", "status": 429, "retry_after": 7, "count": 2})
    assert response.status_code == 200
    for _ in range(2):
        body = await expect_error(client, sandbox, "sendMessage", 429, "Too Many Requests: retry after 7",
                                  chat_id=chat_id, text="x")
        assert body["parameters"] == {"retry_after": 7}
    assert (await call(client, sandbox, "sendMessage", chat_id=chat_id, text="x"))[0] == 200
    sandbox.inject_fault("editMessageText", status=502, description="Bad Gateway")
    await expect_error(client, sandbox, "editMessageText", 502, "Bad Gateway", chat_id=chat_id, message_id=1, text="y")
    assert sandbox.stats()["http_429"] == 2


# ------------------------------------------------------------------ updates


async def test_get_updates_long_polls_and_offset_confirms(sandbox, client):
    user_id, chat_id = sandbox.add_user("Ada", "ada")
    started = time.monotonic()
    poll = asyncio.create_task(call(client, sandbox, "getUpdates", timeout=20))
    await sandbox.wait_for(lambda: sandbox.stats()["calls"].get("getUpdates") == 1, 5)
    sandbox.send(user_id, "/start now")
    status, body = await poll
    assert status == 200 and time.monotonic() - started < 5
    [update] = body["result"]
    message = update["message"]
    assert message["text"] == "/start now"
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert message["from"]["is_bot"] is False and message["chat"]["id"] == chat_id

    sandbox.send(user_id, "second")
    sandbox.send(user_id, "third")
    _, body = await call(client, sandbox, "getUpdates", offset=update["update_id"] + 1, limit=1)
    assert [u["message"]["text"] for u in body["result"]] == ["second"]
    _, body = await call(client, sandbox, "getUpdates", offset=-1)
    assert [u["message"]["text"] for u in body["result"]] == ["third"]
    _, body = await call(client, sandbox, "getUpdates", offset=body["result"][0]["update_id"] + 1, timeout=0.05)
    assert body["result"] == []


async def test_allowed_updates_filter_and_second_poller_conflict(sandbox, client):
    user_id, _ = sandbox.add_user("Ada", "ada")
    _, sent = await call(client, sandbox, "sendMessage", chat_id=user_id, text="x",
                         reply_markup=keyboard({"text": "Sell", "callback_data": "s"}))
    _, body = await call(client, sandbox, "getUpdates", allowed_updates=["callback_query"])
    assert body["result"] == []
    sandbox.send(user_id, "ignored")
    sandbox.press(user_id, sent["result"]["message_id"], "s")
    _, body = await call(client, sandbox, "getUpdates")
    assert [list(u)[1] for u in body["result"]] == ["callback_query"]
    assert body["result"][0]["callback_query"]["message"]["message_id"] == sent["result"]["message_id"]

    first = asyncio.create_task(call(client, sandbox, "getUpdates", offset=body["result"][0]["update_id"] + 1,
                                     timeout=20))
    await sandbox.wait_for(lambda: sandbox.stats()["calls"].get("getUpdates") == 3, 5)
    async with httpx.AsyncClient() as second_client:
        second = asyncio.create_task(call(second_client, sandbox, "getUpdates", timeout=0))
        status, body = await first
        assert (status, body["description"]) == (409, sandbox_poll_conflict())
        assert (await second)[0] == 200


def sandbox_poll_conflict() -> str:
    return "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"


async def test_webhook_delivers_with_secret_and_blocks_get_updates(sandbox, client):
    received: asyncio.Queue[tuple[dict[str, str], dict[str, Any]]] = asyncio.Queue()

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await reader.readline()
            if not line:
                break
            headers = {}
            while (header := await reader.readline()) not in (b"\r\n", b""):
                key, _, value = header.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            await received.put((headers, json.loads(body)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    receiver = await asyncio.start_server(receive, "127.0.0.1", 0)
    port = receiver.sockets[0].getsockname()[1]
    try:
        user_id, _ = sandbox.add_user("Ada", "ada")
        status, body = await call(client, sandbox, "setWebhook", url=f"http://127.0.0.1:{port}/hook",
                                  secret_token="s3cret-Token_1")
        assert (status, body["result"], body["description"]) == (200, True, "Webhook was set")
        await expect_error(
            client, sandbox, "getUpdates", 409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
        )
        sandbox.send(user_id, "/start")
        headers, update = await asyncio.wait_for(received.get(), 5)
        assert headers["x-telegram-bot-api-secret-token"] == "s3cret-Token_1"
        assert update["message"]["text"] == "/start"
        await sandbox.wait_for(lambda: sandbox.pending_update_count() == 0, 5)
        _, info = await call(client, sandbox, "getWebhookInfo")
        assert info["result"]["url"].endswith("/hook") and info["result"]["pending_update_count"] == 0
        await call(client, sandbox, "deleteWebhook", drop_pending_updates=True)
        _, info = await call(client, sandbox, "getWebhookInfo")
        assert info["result"]["url"] == ""
        assert (await call(client, sandbox, "getUpdates"))[0] == 200
    finally:
        receiver.close()
        await receiver.wait_closed()


async def test_failing_webhook_keeps_the_update_and_reports_the_error(sandbox, client):
    # a port nobody listens on: bind one, close it
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    user_id, _ = sandbox.add_user("Ada", "ada")
    await call(client, sandbox, "setWebhook", url=f"http://127.0.0.1:{port}/hook")
    sandbox.send(user_id, "hi")
    await sandbox.wait_for(lambda: "last_error_message" in sandbox.webhook_info(), 5)
    _, info = await call(client, sandbox, "getWebhookInfo")
    assert info["result"]["pending_update_count"] == 1
    assert info["result"]["last_error_message"] == "Connection refused"


# ------------------------------------------------------------------ other methods and the driver


async def test_copy_message_chat_action_and_commands(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    _, sent = await call(client, sandbox, "sendMessage", chat_id=chat_id, text="<i>card</i>", parse_mode="HTML")
    status, body = await call(client, sandbox, "copyMessage", chat_id=chat_id, from_chat_id=chat_id,
                              message_id=sent["result"]["message_id"])
    assert status == 200 and body["result"] == {"message_id": 2}
    assert sandbox.chat(chat_id)[1]["text"] == "card"
    await expect_error(client, sandbox, "copyMessage", 400, "Bad Request: message to copy not found",
                       chat_id=chat_id, from_chat_id=chat_id, message_id=50)
    await expect_error(client, sandbox, "sendChatAction", 400, "Bad Request: wrong parameter action in request",
                       chat_id=chat_id, action="dancing")
    commands = [{"command": "start", "description": "Connect"}, {"command": "sell", "description": "Sell now"}]
    assert (await call(client, sandbox, "setMyCommands", form=True, commands=commands))[0] == 200
    _, body = await call(client, sandbox, "getMyCommands")
    assert body["result"] == commands
    await expect_error(client, sandbox, "setMyCommands", 400, "Bad Request: BOT_COMMAND_INVALID",
                       commands=[{"command": "Bad-Name", "description": "x"}])


async def test_driver_http_api_transcript(sandbox, client):
    response = await client.post(f"{sandbox.url}/driver/users", json={"first_name": "Ada", "username": "ada"})
    ids = response.json()
    assert ids["user_id"] == ids["chat_id"]
    chat_id = ids["chat_id"]
    sent = (await client.post(f"{sandbox.url}/driver/send", json={"user_id": ids["user_id"], "text": "hi"})).json()
    await call(client, sandbox, "sendMessage", chat_id=chat_id, text="hello",
               reply_markup=keyboard({"text": "Sell", "callback_data": "s:1"}, {"text": "Chart", "url": "https://x.io"}))
    transcript = (await client.get(f"{sandbox.url}/driver/chat/{chat_id}")).json()
    user_entry, bot_entry = transcript["messages"]
    assert user_entry["message_id"] == sent["message_id"] and user_entry["from"] == "user"
    assert bot_entry["from"] == "bot" and bot_entry["text"] == "hello"
    assert bot_entry["buttons"] == [[{"text": "Sell", "data": "s:1"}, {"text": "Chart", "url": "https://x.io"}]]
    assert {k: bot_entry[k] for k in ("edits", "deleted", "photo", "document", "caption")} == {
        "edits": 0, "deleted": False, "photo": False, "document": False, "caption": None
    }
    assert transcript["callback_answers"] == []

    # a terminal client can long-poll the transcript for the next change
    waiting = asyncio.create_task(client.get(
        f"{sandbox.url}/driver/chat/{chat_id}", params={"since": transcript["version"], "timeout": 10}
    ))
    await asyncio.sleep(0)
    await call(client, sandbox, "sendMessage", chat_id=chat_id, text="next")
    later = (await waiting).json()
    assert later["messages"][-1]["text"] == "next" and later["version"] > transcript["version"]
    assert (await client.get(f"{sandbox.url}/driver/chat/999")).status_code == 404


async def test_wait_for_bot_message_times_out(sandbox):
    _, chat_id = sandbox.add_user("Ada", "ada")
    with pytest.raises(TimeoutError):
        await sandbox.wait_for_bot_message(chat_id, 1, timeout=0.05)


async def test_raw_multipart_upload_that_is_not_an_image(sandbox, client):
    _, chat_id = sandbox.add_user("Ada", "ada")
    response = await client.post(
        f"{sandbox.url}/bot{sandbox.token}/sendPhoto",
        data={"chat_id": str(chat_id)},
        files={"photo": ("card.png", b"not an image", "image/png")},
    )
    assert response.status_code == 400
    assert response.json()["description"] == "Bad Request: IMAGE_PROCESS_FAILED"
    await expect_error(client, sandbox, "sendPhoto", 400, "Bad Request: there is no photo in the request",
                       chat_id=chat_id)


# ------------------------------------------------------------------ python-telegram-bot, unmodified


def build_app(server: SandboxTelegram) -> Application:
    return (
        Application.builder()
        .token(server.token)
        .base_url(f"{server.url}/bot")
        .base_file_url(f"{server.url}/file/bot")
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .build()
    )


async def test_ptb_application_start_button_and_answer(sandbox):
    user_id, chat_id = sandbox.add_user("Ada", "ada")
    seen: list[str] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("Sell 100%", callback_data="sell:42")]])
        await update.message.reply_text("<b>Welcome</b>, exit ready", reply_markup=markup)

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        seen.append(query.data)
        await query.answer("Selling…")
        await query.edit_message_text(f"Sold <code>{query.data}</code>")

    app = build_app(sandbox)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(on_button))
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=5)
        try:
            sandbox.send(user_id, "/start")
            reply = await sandbox.wait_for_bot_message(chat_id, 1, timeout=10)
            assert reply["text"] == "Welcome, exit ready"
            assert reply["entities"] == [{"type": "bold", "offset": 0, "length": 7}]
            assert reply["buttons"] == [[{"text": "Sell 100%", "data": "sell:42"}]]
            sandbox.press(user_id, reply["message_id"], "sell:42")
            edited = await sandbox.wait_for_bot_message(chat_id, lambda m: m["edits"] == 1, timeout=10)
            await sandbox.wait_for(lambda: sandbox.callback_answers(chat_id), timeout=10)
        finally:
            await app.updater.stop()
            await app.stop()
    assert seen == ["sell:42"]
    assert edited["text"] == "Sold sell:42" and edited["buttons"] == []
    [answer] = sandbox.callback_answers(chat_id)
    assert answer["text"] == "Selling…" and answer["show_alert"] is False
    calls = sandbox.stats()["calls"]
    assert calls["getMe"] == 1
    # long polling: a handful of getUpdates calls, not a busy loop
    assert calls["getUpdates"] < 10


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_ptb_multipart_photo_document_and_errors(sandbox):
    _, chat_id = sandbox.add_user("Ada", "ada")
    png = io.BytesIO()
    Image.new("RGB", (320, 200), "green").save(png, format="PNG")
    app = build_app(sandbox)
    async with app:
        bot = app.bot
        message = await bot.send_photo(chat_id, png.getvalue(), caption="<b>+42%</b> PnL")
        assert message.photo[-1].width == 320 and message.photo[-1].height == 200
        assert message.caption == "+42% PnL" and message.caption_entities[0].type == "bold"
        again = await bot.send_photo(chat_id, message.photo[-1].file_id)
        assert again.photo[-1].file_id == message.photo[-1].file_id
        file = await bot.get_file(message.photo[-1].file_id)
        assert bytes(await file.download_as_bytearray()) == png.getvalue()

        document = await bot.send_document(chat_id, b"mint,pnl\nabc,1.5\n", filename="positions.csv")
        assert document.document.file_name == "positions.csv"
        chat = await bot.get_chat(chat_id)
        assert chat.first_name == "Ada"

        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_caption(chat_id, message.message_id, caption="<b>+42%</b> PnL")
        sandbox.inject_fault("sendMessage", status=429, retry_after=3)
        with pytest.raises(RetryAfter, match=r"Retry in 3(\.0)? seconds"):
            await bot.send_message(chat_id, "x")
    entries = sandbox.chat(chat_id)
    assert [(e["photo"], e["document"]) for e in entries] == [(True, False), (True, False), (False, True)]
    assert entries[0]["caption"] == "+42% PnL"
