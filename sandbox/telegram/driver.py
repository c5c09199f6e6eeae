"""The users' side of the sandbox Telegram: what tests, the terminal and the demo use to act as a
user (send, press, block), to read the chat as that user sees it, and to wait for the bot.

The same on HTTP, as JSON, at `/driver/...`:
    POST /driver/users {first_name, username}     GET /driver/users
    POST /driver/send {user_id, text}             POST /driver/press {user_id, message_id, data}
    POST /driver/block {user_id}                  POST /driver/unblock {user_id}
    GET  /driver/chat/<id>[?since=<version>&timeout=<s>]   (a long poll when `since` is given)
    POST /driver/faults {method, status, description, retry_after, count}
    POST /driver/clock {advance_s}                GET /driver/stats
    GET  /driver/calls[?method=&chat_id=&message_id=]  (counts, refused ones, and the log)
    POST /driver/webhook_instances {urls}         GET /driver/webhook_deliveries
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from sandbox.telegram.botapi import BotApi
from sandbox.telegram.entities import utf16_len
from sandbox.telegram.model import (
    _COMMAND_RE,
    BUTTON_ACTIONS,
    CallbackQuery,
    DriverError,
    SandboxUser,
    StoredMessage,
)

T = TypeVar("T")
DriverHandler = Callable[[web.Request, dict[str, Any]], Awaitable[Any]]


class SandboxTelegram(BotApi):
    """The Bot API plus the driver: the sandbox Telegram as tests and the terminal use it."""

    def __init__(self, token: str | None = None, **options: Any) -> None:
        super().__init__(token, **options)
        routes: list[tuple[str, str, DriverHandler]] = [
            ("GET", "/driver/users", self._http_users),
            ("POST", "/driver/users", self._http_add_user),
            ("POST", "/driver/send", self._http_send),
            ("POST", "/driver/press", self._http_press),
            ("POST", "/driver/block", self._http_block),
            ("POST", "/driver/unblock", self._http_unblock),
            ("GET", "/driver/chat/{chat_id}", self._http_chat),
            ("POST", "/driver/faults", self._http_fault),
            ("POST", "/driver/clock", self._http_clock),
            ("GET", "/driver/stats", self._http_stats),
            ("GET", "/driver/calls", self._http_calls),
            ("POST", "/driver/webhook_instances", self._http_webhook_instances),
            ("GET", "/driver/webhook_deliveries", self._http_webhook_deliveries),
        ]
        for method, path, handler in routes:
            self._web.app.router.add_route(method, path, _driver_route(handler))
        self._web.app.router.add_route("*", "/driver/{rest:.*}", _driver_route(self._http_no_route))

    # ------------------------------------------------------------------ Python driver API

    def add_user(self, first_name: str, username: str | None = None) -> tuple[int, int]:
        """Creates a user with a private chat; returns (user_id, chat_id), which are equal."""
        if not first_name:
            raise DriverError("first_name is required")
        user_id = self._next_user_id
        self._next_user_id += 1
        self._users[user_id] = SandboxUser(user_id, first_name, username)
        self._messages[user_id] = {}
        self._next_message_id[user_id] = 1
        self._callback_answers[user_id] = []
        self._chat_versions[user_id] = 0
        return user_id, user_id

    def send(self, user_id: int, text: str) -> int:
        """The user sends `text` to the bot; returns the new message id."""
        user = self._user(user_id)
        if not text:
            raise DriverError("text is required")
        message = self._new_message(user.user_id, from_bot=False)
        message.text = text
        command = _COMMAND_RE.match(text)
        if command:
            message.entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))}]
        self._touch_chat(user.user_id)
        self._queue_update("message", self._message_to_api(message))
        return message.message_id

    def press(self, user_id: int, message_id: int, data: str) -> str:
        """The user taps the callback button with `data` on a bot message; returns the query id."""
        user = self._user(user_id)
        message = self._messages[user.user_id].get(message_id)
        if message is None or message.deleted:
            raise DriverError(f"message {message_id} is not in the chat of user {user_id}")
        if not message.from_bot:
            raise DriverError(f"message {message_id} was sent by the user, not the bot")
        datas = [
            button.get("callback_data")
            for row in (message.reply_markup or {}).get("inline_keyboard", [])
            for button in row
            if "callback_data" in button
        ]
        if data not in datas:
            raise DriverError(
                f"message {message_id} has no callback button with data {data!r}; its buttons carry {datas!r}"
            )
        query_id = str(secrets.randbits(62) + 10**18)
        self._queries[query_id] = CallbackQuery(query_id, user.user_id, user.user_id, message_id, data, self.now())
        self._queue_update(
            "callback_query",
            {
                "id": query_id,
                "from": user.to_api(),
                "message": self._message_to_api(message),
                "chat_instance": user.chat_instance,
                "data": data,
            },
        )
        return query_id

    def block(self, user_id: int) -> None:
        self._user(user_id).blocked = True

    def unblock(self, user_id: int) -> None:
        self._user(user_id).blocked = False

    def users(self) -> list[dict[str, Any]]:
        return [
            {"user_id": u.user_id, "chat_id": u.user_id, "first_name": u.first_name,
             "username": u.username, "blocked": u.blocked}
            for u in self._users.values()
        ]

    def chat(self, chat_id: int) -> list[dict[str, Any]]:
        """The conversation in order, as the driver's transcript shows it."""
        if chat_id not in self._messages:
            raise DriverError(f"no chat {chat_id}", status=404)
        return [self._transcript_entry(m) for m in self._messages[chat_id].values()]

    def photo_bytes(self, chat_id: int, message_id: int) -> bytes | None:
        """The largest picture of a message as uploaded (None when it has none), for a viewer to save."""
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None or not message.photo:
            return None
        stored = self._files.get(message.photo[-1]["file_id"])
        return stored.data if stored is not None else None

    def callback_answers(self, chat_id: int) -> list[dict[str, Any]]:
        if chat_id not in self._callback_answers:
            raise DriverError(f"no chat {chat_id}", status=404)
        return [dict(answer) for answer in self._callback_answers[chat_id]]

    def transcript(self, chat_id: int) -> dict[str, Any]:
        return {
            "chat_id": chat_id,
            "version": self._chat_versions.get(chat_id, 0),
            "messages": self.chat(chat_id),
            "callback_answers": self.callback_answers(chat_id),
        }

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        return [entry for entry in self.chat(chat_id) if entry["from"] == "bot"]

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Waits until `predicate()` is truthy, re-checking whenever anything changes (a bot
        message, edit, deletion, callback answer, user message, update delivery, poll).
        Raises TimeoutError."""
        return await self._changed.wait_until(predicate, timeout)

    async def wait_for_bot_message(
        self,
        chat_id: int,
        count_or_predicate: int | Callable[[dict[str, Any]], bool] = 1,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """With an int n: waits until the bot has sent n messages in the chat and returns the
        n-th. With a predicate: returns the first bot message (edits included) it accepts."""

        def check() -> dict[str, Any] | None:
            messages = self.bot_messages(chat_id)
            if isinstance(count_or_predicate, int):
                return messages[count_or_predicate - 1] if len(messages) >= count_or_predicate else None
            return next((m for m in messages if count_or_predicate(m)), None)

        found = await self.wait_for(check, timeout)
        assert found is not None
        return found

    # ------------------------------------------------------------------ internals

    def _user(self, user_id: Any) -> SandboxUser:
        try:
            return self._users[int(user_id)]
        except (KeyError, TypeError, ValueError):
            raise DriverError(f"no user {user_id}", status=404) from None

    def _transcript_entry(self, message: StoredMessage) -> dict[str, Any]:
        buttons = []
        for row in (message.reply_markup or {}).get("inline_keyboard", []):
            out_row = []
            for button in row:
                entry = {"text": button.get("text", "")}
                if "callback_data" in button:
                    entry["data"] = button["callback_data"]
                else:
                    for kind in BUTTON_ACTIONS:
                        if kind in button:
                            entry[kind] = button[kind]
                out_row.append(entry)
            buttons.append(out_row)
        return {
            "message_id": message.message_id,
            "from": "bot" if message.from_bot else "user",
            "text": message.text,
            "entities": list(message.entities),
            "caption": message.caption,
            "buttons": buttons,
            "edits": message.edits,
            "deleted": message.deleted,
            "photo": message.photo is not None,
            "document": message.document is not None,
            "date": message.date,
            "received_at": message.received_at,
            "edited_at": message.edited_at,
        }

    # ------------------------------------------------------------------ driver over HTTP

    async def _http_users(self, request: web.Request, body: dict[str, Any]) -> Any:
        return {"users": self.users()}

    async def _http_add_user(self, request: web.Request, body: dict[str, Any]) -> Any:
        user_id, chat_id = self.add_user(str(body.get("first_name", "")), body.get("username"))
        return {"user_id": user_id, "chat_id": chat_id}

    async def _http_send(self, request: web.Request, body: dict[str, Any]) -> Any:
        return {"message_id": self.send(int(body["user_id"]), str(body.get("text", "")))}

    async def _http_press(self, request: web.Request, body: dict[str, Any]) -> Any:
        query_id = self.press(int(body["user_id"]), int(body["message_id"]), str(body["data"]))
        return {"callback_query_id": query_id}

    async def _http_block(self, request: web.Request, body: dict[str, Any]) -> Any:
        self.block(int(body["user_id"]))
        return {"ok": True}

    async def _http_unblock(self, request: web.Request, body: dict[str, Any]) -> Any:
        self.unblock(int(body["user_id"]))
        return {"ok": True}

    async def _http_chat(self, request: web.Request, body: dict[str, Any]) -> Any:
        chat_id = int(request.match_info["chat_id"])
        if chat_id not in self._messages:
            raise DriverError(f"no chat {chat_id}", status=404)
        # optional long poll for a terminal client: ?since=<version>&timeout=<seconds>
        if "since" in request.query:
            since = int(request.query["since"])
            with contextlib.suppress(TimeoutError):
                await self._changed.wait_until(
                    lambda: self._closing or self._chat_versions[chat_id] > since,
                    float(request.query.get("timeout", 30)),
                )
        return self.transcript(chat_id)

    async def _http_fault(self, request: web.Request, body: dict[str, Any]) -> Any:
        retry_after = body.get("retry_after")
        self.inject_fault(
            str(body["method"]),
            status=int(body.get("status", 500)),
            description=body.get("description"),
            retry_after=int(retry_after) if retry_after is not None else None,
            count=int(body.get("count", 1)),
        )
        return {"ok": True}

    async def _http_clock(self, request: web.Request, body: dict[str, Any]) -> Any:
        self.advance_clock(float(body["advance_s"]))
        return {"ok": True, "offset_s": self._clock_offset}

    async def _http_stats(self, request: web.Request, body: dict[str, Any]) -> Any:
        return self.stats()

    async def _http_calls(self, request: web.Request, body: dict[str, Any]) -> Any:
        query = request.query
        method = query.get("method") or None
        chat_id = int(query["chat_id"]) if query.get("chat_id") else None
        message_id = int(query["message_id"]) if query.get("message_id") else None
        log = self.call_log(method, chat_id=chat_id, message_id=message_id)
        return {
            "calls": len(log),
            "refused": sum(record.refused for record in log),
            "log": [record.to_json() for record in log],
        }

    async def _http_webhook_instances(self, request: web.Request, body: dict[str, Any]) -> Any:
        urls = body.get("urls")
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise DriverError('"urls" is a list of the instances\' webhook URLs, e.g. ["http://127.0.0.1:8081/hook"]')
        self.set_webhook_instances(urls)
        return {"ok": True, "instances": urls}

    async def _http_webhook_deliveries(self, request: web.Request, body: dict[str, Any]) -> Any:
        return {"deliveries": self.webhook_deliveries()}

    async def _http_no_route(self, request: web.Request, body: dict[str, Any]) -> Any:
        raise DriverError(f"no driver route {request.method} {request.path}", status=404)


def _driver_route(handler: DriverHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A driver handler as an aiohttp one: the JSON object body in, JSON out, errors as
    `{"error": ...}` with 400 (or the DriverError's status)."""

    async def route(request: web.Request) -> web.Response:
        try:
            raw = await request.read()
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise DriverError("a JSON object is expected")
            status, result = 200, await handler(request, body)
        except DriverError as error:
            status, result = error.status, {"error": str(error)}
        except (ValueError, TypeError, KeyError) as error:
            status, result = 400, {"error": f"bad driver request: {error}"}
        return web.Response(status=status, body=json.dumps(result).encode(), content_type="application/json")

    return route
