"""The Bot API half of the sandbox Telegram: its state, its methods, injected faults, the call log
and webhook delivery, served on `aiohttp.web` at `/bot<token>/<method>` and `/file/bot<token>/<path>`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Iterator
from http import HTTPStatus
from typing import Any, Self

from aiohttp import BodyPartReader, hdrs, web
from PIL import Image

from sandbox.http import WebServer
from sandbox.telegram.entities import HtmlParseError, parse_html
from sandbox.telegram.model import (
    _BOT_COMMAND_NAME_RE,
    _SECRET_TOKEN_RE,
    _TOKEN_RE,
    BUTTON_ACTIONS,
    CHAT_ACTIONS,
    DEFAULT_UPDATE_TYPES,
    MAX_BODY_BYTES,
    MAX_CALLBACK_ANSWER_LENGTH,
    MAX_CALLBACK_DATA_BYTES,
    MAX_CAPTION_LENGTH,
    MAX_MESSAGE_LENGTH,
    NOT_MODIFIED,
    POLL_CONFLICT,
    QUERY_TOO_OLD,
    WEBHOOK_CONFLICT,
    CallbackQuery,
    CallRecord,
    DriverError,
    Fault,
    Handler,
    Params,
    SandboxUser,
    Signal,
    StoredFile,
    StoredMessage,
    TelegramApiError,
    TokenBucket,
    Upload,
    WithDescription,
    bad_request,
)
from sandbox.telegram.webhooks import Webhook, WebhookDelivery


class BotApi:
    """The Bot API on one `aiohttp.web` server. `SandboxTelegram` adds the users' side."""


    def __init__(
        self,
        token: str | None = None,
        *,
        bot_first_name: str = "LaserSell",
        bot_username: str = "lasersell_sandbox_bot",
        callback_answer_window_s: float = 15.0,
        per_chat_rate: float | None = 1.0,
        per_chat_burst: int = 5,
        global_rate: float | None = 30.0,
        global_burst: int = 30,
        strict_html: bool = True,
        webhook_timeout_s: float = 10.0,
    ) -> None:
        """`per_chat_rate` / `global_rate` are messages per second of sandbox time; None turns
        that flood limit off. `webhook_timeout_s`: how long a webhook receiver may take to answer."""
        if token is None:
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
            token = f"{secrets.randbelow(9 * 10**9) + 10**9}:" + "".join(
                secrets.choice(alphabet) for _ in range(35)
            )
        if not _TOKEN_RE.match(token):
            raise ValueError("a bot token looks like 123456789:AAH... (digits, a colon, 35 url-safe characters)")
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_first_name = bot_first_name
        self.bot_username = bot_username
        self.callback_answer_window_s = callback_answer_window_s
        self.per_chat_rate = per_chat_rate
        self.per_chat_burst = per_chat_burst
        self.global_rate = global_rate
        self.global_burst = global_burst
        self.strict_html = strict_html

        self._clock_offset = 0.0
        self._users: dict[int, SandboxUser] = {}
        self._next_user_id = 700_000_001
        self._messages: dict[int, dict[int, StoredMessage]] = {}
        self._next_message_id: dict[int, int] = {}
        self._callback_answers: dict[int, list[dict[str, Any]]] = {}
        self._chat_versions: dict[int, int] = {}
        self._queries: dict[str, CallbackQuery] = {}
        self._updates: deque[dict[str, Any]] = deque()
        self._next_update_id = 500_000_001
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._poll_generation = 0
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._files: dict[str, StoredFile] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._calls: dict[str, int] = {}
        self._call_log: list[CallRecord] = []
        self._http_429 = 0
        self._chat_buckets: dict[int, TokenBucket] = {}
        self._global_bucket: TokenBucket | None = None

        # one signal for every change; each waiter re-checks its own condition
        self._changed = Signal()
        self._delivery = WebhookDelivery(self._updates, self._changed, self._unix_now, webhook_timeout_s)
        self._delivery_task: asyncio.Task[None] | None = None
        self._closing = False
        self._web = WebServer(client_max_size=MAX_BODY_BYTES)
        self._web.app.router.add_route("*", "/bot{rest:.*}", self._on_api)
        self._web.app.router.add_route("*", "/file/bot{rest:.*}", self._on_download)
        self.url = ""

        self._methods: dict[str, tuple[str, Handler, bool]] = {}
        for name, handler, counts in (
            ("getMe", self._get_me, False),
            ("getUpdates", self._get_updates, False),
            ("setWebhook", self._set_webhook, False),
            ("deleteWebhook", self._delete_webhook, False),
            ("getWebhookInfo", self._get_webhook_info, False),
            ("setMyCommands", self._set_my_commands, False),
            ("getMyCommands", self._get_my_commands, False),
            ("deleteMyCommands", self._delete_my_commands, False),
            ("sendMessage", self._send_message, True),
            ("editMessageText", self._edit_message_text, True),
            ("editMessageCaption", self._edit_message_caption, True),
            ("editMessageReplyMarkup", self._edit_message_reply_markup, True),
            ("deleteMessage", self._delete_message, False),
            ("answerCallbackQuery", self._answer_callback_query, False),
            ("sendPhoto", self._send_photo, True),
            ("sendDocument", self._send_document, True),
            ("copyMessage", self._copy_message, True),
            ("sendChatAction", self._send_chat_action, False),
            ("getChat", self._get_chat, False),
            ("getFile", self._get_file, False),
            ("close", self._ok_true, False),
            ("logOut", self._ok_true, False),
        ):
            # method names are case-insensitive on the real server
            self._methods[name.lower()] = (name, handler, counts)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Starts listening; returns the base url (also in `.url`)."""
        # last, so that the routes a subclass added are matched first
        self._web.app.router.add_route("*", "/{tail:.*}", self._on_unknown)
        self.url = await self._web.start(host, port)
        self._delivery_task = asyncio.create_task(self._delivery.run())
        return self.url

    async def stop(self) -> None:
        # long polls see the flag and answer at once, so the server closes without waiting on them
        self._closing = True
        self._changed.fire()
        if self._delivery_task is not None:
            self._delivery.stop()
            await asyncio.gather(self._delivery_task, return_exceptions=True)
            self._delivery_task = None
        await self._web.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def _webhook(self) -> Webhook | None:
        return self._delivery.webhook

    @_webhook.setter
    def _webhook(self, hook: Webhook | None) -> None:
        self._delivery.webhook = hook

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        """Sandbox monotonic time: real monotonic time plus whatever tests advanced."""
        return time.monotonic() + self._clock_offset

    def _unix_now(self) -> int:
        return int(time.time() + self._clock_offset)

    def advance_clock(self, seconds: float) -> None:
        """Moves the sandbox clock forward (callback answer window, flood buckets, dates)."""
        if seconds < 0:
            raise DriverError("the clock only moves forward")
        self._clock_offset += seconds

    def inject_fault(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """The next `count` calls of `method` fail with this error (429 gets `retry_after`)."""
        if method.lower() not in self._methods:
            raise DriverError(f"unknown Bot API method {method!r}")
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            else:
                description = HTTPStatus(status).phrase
        fault = Fault(status, description, retry_after, max(1, count))
        self._faults.setdefault(method.lower(), deque()).append(fault)

    def stats(self) -> dict[str, Any]:
        """Calls by method (refused ones included) and how many were refused with 429."""
        refused: dict[str, int] = {}
        for record in self._call_log:
            if record.refused:
                refused[record.method] = refused.get(record.method, 0) + 1
        return {"calls": dict(self._calls), "refused": refused, "http_429": self._http_429}

    def call_log(
        self, method: str | None = None, *, chat_id: int | None = None, message_id: int | None = None
    ) -> list[CallRecord]:
        """Every Bot API call of a known method in order, accepted or refused, optionally only
        those of one method, chat or message (`message_id` is the sent message's for a send)."""
        return [
            record
            for record in self._call_log
            if (method is None or record.method.lower() == method.lower())
            and (chat_id is None or record.chat_id == chat_id)
            and (message_id is None or record.message_id == message_id)
        ]

    def calls(self, method: str | None = None, *, chat_id: int | None = None, message_id: int | None = None) -> int:
        """How many calls were made, accepted or refused: `calls("editMessageText", chat_id=c)`."""
        return len(self.call_log(method, chat_id=chat_id, message_id=message_id))

    def refused(
        self,
        method: str | None = None,
        *,
        chat_id: int | None = None,
        message_id: int | None = None,
        description: str | None = None,
    ) -> int:
        """How many of those calls were refused (optionally: whose description contains `description`),
        e.g. `refused("editMessageText", chat_id=c, description="not modified")`."""
        return sum(
            1
            for record in self.call_log(method, chat_id=chat_id, message_id=message_id)
            if record.refused and (description is None or description in (record.description or ""))
        )

    def pending_update_count(self) -> int:
        """Updates not yet confirmed by getUpdates or accepted by the webhook."""
        return len(self._updates)

    def webhook_info(self) -> dict[str, Any]:
        """What getWebhookInfo answers."""
        return self._delivery.info(len(self._updates))

    def set_webhook_instances(self, urls: list[str]) -> None:
        """Sandbox only: the webhook's address is a load balancer in front of these instances.
        Deliveries go round-robin over them, and a failed one is retried on the next. An empty
        list delivers to the webhook's own URL again."""
        for url in urls:
            parsed = urllib.parse.urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise DriverError(f"an instance URL looks like http://127.0.0.1:8080/hook, not {url!r}")
        self._delivery.instances = list(urls)
        self._changed.fire()

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt in order: `{"update_id", "url", "error"}` (error None when
        the receiver took it)."""
        return [dict(entry) for entry in self._delivery.log]

    def _new_message(self, chat_id: int, from_bot: bool) -> StoredMessage:
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = message_id + 1
        message = StoredMessage(chat_id, message_id, from_bot, self._unix_now())
        self._messages[chat_id][message_id] = message
        return message

    def _touch_chat(self, chat_id: int) -> None:
        self._chat_versions[chat_id] = self._chat_versions.get(chat_id, 0) + 1
        self._changed.fire()

    def _queue_update(self, kind: str, payload: dict[str, Any]) -> None:
        if self._webhook is not None and self._webhook.allowed_updates:
            allowed = frozenset(self._webhook.allowed_updates)
        else:
            allowed = self._allowed_updates
        if kind not in allowed:
            return
        self._updates.append({"update_id": self._next_update_id, kind: payload})
        self._next_update_id += 1
        self._changed.fire()

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name, "username": self.bot_username}

    def _message_to_api(self, message: StoredMessage) -> dict[str, Any]:
        user = self._users[message.chat_id]
        result: dict[str, Any] = {
            "message_id": message.message_id,
            "from": self._bot_user() if message.from_bot else user.to_api(),
            "chat": user.chat_to_api(),
            "date": message.date,
        }
        if message.edit_date is not None:
            result["edit_date"] = message.edit_date
        if message.reply_to is not None:
            replied = self._messages[message.chat_id].get(message.reply_to)
            if replied is not None and not replied.deleted:
                result["reply_to_message"] = self._message_to_api(replied)
        if message.text is not None:
            result["text"] = message.text
            if message.entities:
                result["entities"] = message.entities
        if message.photo is not None:
            result["photo"] = message.photo
        if message.document is not None:
            result["document"] = message.document
        if message.caption is not None:
            result["caption"] = message.caption
            if message.caption_entities:
                result["caption_entities"] = message.caption_entities
        if message.reply_markup is not None and "inline_keyboard" in message.reply_markup:
            result["reply_markup"] = message.reply_markup
        return result

    # ------------------------------------------------------------------ internals: HTTP

    async def _on_api(self, request: web.Request) -> web.Response:
        token, _, method = request.match_info["rest"].partition("/")
        status, body = await self._api_call(request, token, method)
        return web.Response(
            status=status, body=json.dumps(body, ensure_ascii=False).encode(), content_type="application/json"
        )

    async def _on_download(self, request: web.Request) -> web.Response:
        token, _, file_path = request.match_info["rest"].partition("/")
        if token != self.token:
            return _api_error_response(TelegramApiError(401, "Unauthorized"))
        for stored in self._files.values():
            if stored.file_path == file_path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return _api_error_response(TelegramApiError(404, "Not Found"))

    async def _on_unknown(self, request: web.Request) -> web.Response:
        return _api_error_response(TelegramApiError(404, "Not Found"))

    async def _api_call(self, request: web.Request, token: str, method: str) -> tuple[int, dict[str, Any]]:
        """Answers one Bot API call and records it (method, chat, message, outcome)."""
        if token != self.token:
            return 401, TelegramApiError(401, "Unauthorized").to_json()
        entry = self._methods.get(method.lower())
        if entry is None:
            return 404, TelegramApiError(404, "Not Found").to_json()
        name, handler, _counts = entry
        self._calls[name] = self._calls.get(name, 0) + 1
        params: Params | None = None
        try:
            params = await _parse_params(request)
            self._raise_injected_fault(method)
            outcome = handler(params)
            if isinstance(outcome, Awaitable):
                outcome = await outcome
        except TelegramApiError as error:
            if error.error_code == 429:
                self._http_429 += 1
            self._record_call(name, params, None, error)
            return error.error_code, error.to_json()
        self._record_call(name, params, outcome, None)
        if isinstance(outcome, WithDescription):
            return 200, {"ok": True, "result": outcome.result, "description": outcome.description}
        return 200, {"ok": True, "result": outcome}

    def _raise_injected_fault(self, method: str) -> None:
        faults = self._faults.get(method.lower())
        if not faults:
            return
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.popleft()
        parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
        raise TelegramApiError(fault.status, fault.description, parameters)

    def _record_call(self, name: str, params: Params | None, outcome: Any, error: TelegramApiError | None) -> None:
        chat_id, message_id = self._call_target(name, params)
        if isinstance(outcome, dict) and isinstance(outcome.get("message_id"), int):
            message_id = outcome["message_id"]  # a send: the message it made
        code, description = (error.error_code, error.description) if error else (None, None)
        self._call_log.append(CallRecord(name, chat_id, message_id, code, description))

    def _call_target(self, name: str, params: Params | None) -> tuple[int | None, int | None]:
        """The chat and message a call was about, as far as its parameters say."""
        if params is None:
            return None, None
        if name == "answerCallbackQuery":
            query = self._queries.get(params.str("callback_query_id") or "")
            return (query.chat_id, query.message_id) if query else (None, None)
        raw_chat = (params.str("chat_id") or "").strip()
        chat_id = _int_or_none(raw_chat)
        if raw_chat.startswith("@"):
            wanted = raw_chat[1:].lower()
            chat_id = next((u.user_id for u in self._users.values() if (u.username or "").lower() == wanted), None)
        return chat_id, _int_or_none(params.str("message_id"))

    # ------------------------------------------------------------------ internals: checks

    def _chat_user(self, params: Params, name: str = "chat_id") -> SandboxUser:
        raw = params.str(name)
        if raw is None or raw == "":
            raise bad_request(f"{name} is empty")
        raw = raw.strip()
        if raw.startswith("@"):
            for user in self._users.values():
                if user.username and user.username.lower() == raw[1:].lower():
                    return user
            raise bad_request("chat not found")
        try:
            chat_id = int(raw)
        except ValueError:
            raise bad_request("chat not found") from None
        found = self._users.get(chat_id)
        if found is None:
            raise bad_request("chat not found")
        return found

    def _sendable_chat(self, params: Params) -> SandboxUser:
        user = self._chat_user(params)
        if user.blocked:
            raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
        return user

    def _formatted(self, params: Params, text: str, entities_name: str) -> tuple[str, list[dict[str, Any]]]:
        explicit = params.json(entities_name, f'can\'t parse entities JSON object in "{entities_name}"')
        if explicit:
            if not isinstance(explicit, list):
                raise bad_request(f'field "{entities_name}" must be an Array')
            return text, explicit
        parse_mode = (params.str("parse_mode") or "").strip()
        if not parse_mode:
            return text, []
        if parse_mode.lower() != "html":
            raise bad_request("unsupported parse_mode")
        try:
            return parse_html(text, strict=self.strict_html)
        except HtmlParseError as error:
            raise bad_request(f"can't parse entities: {error}") from None

    def _message_text(self, params: Params) -> tuple[str, list[dict[str, Any]]]:
        text, entities = self._formatted(params, params.str("text") or "", "entities")
        if not text.strip():
            raise bad_request("message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise bad_request("message is too long")
        return text, entities

    def _caption(self, params: Params) -> tuple[str | None, list[dict[str, Any]]]:
        raw = params.str("caption")
        if raw is None:
            return None, []
        caption, entities = self._formatted(params, raw, "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        return (caption if caption.strip() else None), entities

    def _reply_markup(self, params: Params, inline_only: bool = False) -> dict[str, Any] | None:
        markup = params.json("reply_markup", "can't parse reply keyboard markup JSON object")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if inline_only or not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise bad_request("object expected as reply markup")
            return markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays')
        for row in rows:
            for button in row:
                self._check_button(button)
        return {"inline_keyboard": rows}

    @staticmethod
    def _check_button(button: Any) -> None:
        if not isinstance(button, dict):
            raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        if not isinstance(button.get("text"), str) or not button["text"]:
            raise bad_request("can't parse inline keyboard button: Text must be non-empty")
        actions = [kind for kind in BUTTON_ACTIONS if kind in button]
        if not actions:
            raise bad_request("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
        if len(actions) > 1:
            raise bad_request(
                "can't parse inline keyboard button: exactly one of the optional fields must be used, "
                f"found {', '.join(actions)}"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")
        if "url" in button:
            url = button["url"]
            parsed = urllib.parse.urlparse(url) if isinstance(url, str) else None
            if parsed is None or parsed.scheme not in ("http", "https", "tg") or not (parsed.netloc or parsed.path):
                raise bad_request("BUTTON_URL_INVALID")

    def _flood_check(self, chat_id: int) -> None:
        now = self.now()
        retry: list[int] = []
        chat_bucket = None
        if self.per_chat_rate:
            chat_bucket = self._chat_buckets.get(chat_id)
            if chat_bucket is None:
                chat_bucket = self._chat_buckets[chat_id] = TokenBucket(self.per_chat_rate, self.per_chat_burst, now)
            chat_bucket.refill(now)
            if (after := chat_bucket.retry_after()) is not None:
                retry.append(after)
        if self.global_rate:
            if self._global_bucket is None:
                self._global_bucket = TokenBucket(self.global_rate, self.global_burst, now)
            self._global_bucket.refill(now)
            if (after := self._global_bucket.retry_after()) is not None:
                retry.append(after)
        if retry:
            wait = max(retry)
            raise TelegramApiError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        if chat_bucket is not None:
            chat_bucket.tokens -= 1
        if self._global_bucket is not None and self.global_rate:
            self._global_bucket.tokens -= 1

    def _target_message(self, params: Params, missing: str) -> tuple[SandboxUser, StoredMessage]:
        if params.raw("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        user = self._chat_user(params)
        message_id = params.int("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        message = self._messages[user.user_id].get(message_id)
        if message is None or message.deleted:
            raise bad_request(missing)
        return user, message

    def _reply_to(self, params: Params, chat_id: int) -> int | None:
        reply = params.json("reply_parameters", "can't parse reply parameters JSON object")
        message_id = None
        allow_missing = params.bool("allow_sending_without_reply")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = allow_missing or bool(reply.get("allow_sending_without_reply"))
        elif params.raw("reply_to_message_id") is not None:
            message_id = params.int("reply_to_message_id")
        if message_id is None:
            return None
        target = self._messages[chat_id].get(int(message_id))
        if target is None or target.deleted:
            if allow_missing:
                return None
            raise bad_request("message to be replied not found")
        return int(message_id)

    def _store_bot_message(self, message: StoredMessage) -> dict[str, Any]:
        self._touch_chat(message.chat_id)
        return self._message_to_api(message)

    # ------------------------------------------------------------------ Bot API methods

    def _ok_true(self, params: Params) -> bool:
        return True

    def _get_me(self, params: Params) -> dict[str, Any]:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _pending_updates(self, limit: int) -> list[dict[str, Any]]:
        selected = []
        for update in self._updates:
            kind = next(k for k in update if k != "update_id")
            if kind in self._allowed_updates:
                selected.append(update)
                if len(selected) >= limit:
                    break
        return selected

    async def _get_updates(self, params: Params) -> list[dict[str, Any]]:
        if self._webhook is not None:
            raise TelegramApiError(409, WEBHOOK_CONFLICT)
        offset = params.int("offset", 0) or 0
        limit = min(100, max(1, params.int("limit", 100) or 100))
        timeout = max(0.0, params.float("timeout", 0.0))
        allowed = params.json("allowed_updates", "can't parse allowed updates JSON object")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_UPDATE_TYPES
        # an offset confirms every update before it; a negative one keeps only the last -offset
        if offset > 0:
            while self._updates and self._updates[0]["update_id"] < offset:
                self._updates.popleft()
        elif offset < 0:
            while len(self._updates) > -offset:
                self._updates.popleft()
        # a newer getUpdates ends the one still waiting, as on the real server
        self._poll_generation += 1
        generation = self._poll_generation
        self._changed.fire()

        def ready() -> str | None:
            if self._closing:
                return "closing"
            if self._poll_generation != generation:
                return "conflict"
            if self._webhook is not None:
                return "webhook"
            return "updates" if self._pending_updates(1) else None

        outcome = ready()
        if outcome is None and timeout > 0 and not self._closing:
            with contextlib.suppress(TimeoutError):
                outcome = await self._changed.wait_until(ready, timeout)
        if outcome == "conflict":
            raise TelegramApiError(409, POLL_CONFLICT)
        if outcome == "webhook":
            raise TelegramApiError(409, WEBHOOK_CONFLICT)
        return self._pending_updates(limit)

    def _set_webhook(self, params: Params) -> WithDescription:
        url = (params.str("url") or "").strip()
        if not url:
            return self._delete_webhook(params)
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.str("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.match(secret):
            raise bad_request("secret token contains unallowed characters")
        allowed = params.json("allowed_updates", "can't parse allowed updates JSON object")
        if params.bool("drop_pending_updates"):
            self._updates.clear()
        previous = self._webhook
        unchanged = previous is not None and previous.url == url
        hook = Webhook(
            url, secret, params.int("max_connections", 40) or 40, allowed if isinstance(allowed, list) else None
        )
        if previous is not None and unchanged:
            hook.last_error_date, hook.last_error_message = previous.last_error_date, previous.last_error_message
        self._webhook = hook
        self._changed.fire()
        return WithDescription(True, "Webhook is already set" if unchanged else "Webhook was set")

    def _delete_webhook(self, params: Params) -> WithDescription:
        if params.bool("drop_pending_updates"):
            self._updates.clear()
        had = self._webhook is not None
        self._webhook = None
        self._changed.fire()
        return WithDescription(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _get_webhook_info(self, params: Params) -> dict[str, Any]:
        return self.webhook_info()

    @staticmethod
    def _commands_key(params: Params) -> tuple[str, str]:
        scope = params.json("scope", "can't parse BotCommandScope JSON object") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.str("language_code") or ""

    def _set_my_commands(self, params: Params) -> bool:
        commands = params.json("commands", "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise bad_request("parameter \"commands\" is required")
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand")
            name = str(command.get("command", "")).removeprefix("/")
            description = str(command.get("description", ""))
            if not _BOT_COMMAND_NAME_RE.match(name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        self._commands[self._commands_key(params)] = cleaned
        return True

    def _get_my_commands(self, params: Params) -> list[dict[str, str]]:
        return list(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: Params) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _send_message(self, params: Params) -> dict[str, Any]:
        user = self._sendable_chat(params)
        text, entities = self._message_text(params)
        markup = self._reply_markup(params)
        reply_to = self._reply_to(params, user.user_id)
        self._flood_check(user.user_id)
        message = self._new_message(user.user_id, from_bot=True)
        message.text, message.entities, message.reply_markup, message.reply_to = text, entities, markup, reply_to
        return self._store_bot_message(message)

    def _apply_edit(self, message: StoredMessage, changes: dict[str, Any]) -> dict[str, Any]:
        if all(getattr(message, key) == value for key, value in changes.items()):
            raise TelegramApiError(400, NOT_MODIFIED)
        self._flood_check(message.chat_id)
        for key, value in changes.items():
            setattr(message, key, value)
        message.edits += 1
        message.edit_date = self._unix_now()
        message.edited_at = time.monotonic()
        return self._store_bot_message(message)

    def _editable(self, params: Params) -> StoredMessage:
        _, message = self._target_message(params, "message to edit not found")
        if not message.from_bot:
            raise bad_request("message can't be edited")
        return message

    def _edit_message_text(self, params: Params) -> dict[str, Any]:
        message = self._editable(params)
        text, entities = self._message_text(params)
        markup = self._reply_markup(params, inline_only=True)
        if message.text is None:
            raise bad_request("there is no text in the message to edit")
        # an edit without reply_markup removes the keyboard, as on the real server
        return self._apply_edit(message, {"text": text, "entities": entities, "reply_markup": markup})

    def _edit_message_caption(self, params: Params) -> dict[str, Any]:
        message = self._editable(params)
        caption, entities = self._caption(params)
        markup = self._reply_markup(params, inline_only=True)
        if message.photo is None and message.document is None:
            raise bad_request("there is no caption in the message to edit")
        return self._apply_edit(message, {"caption": caption, "caption_entities": entities, "reply_markup": markup})

    def _edit_message_reply_markup(self, params: Params) -> dict[str, Any]:
        message = self._editable(params)
        markup = self._reply_markup(params, inline_only=True)
        return self._apply_edit(message, {"reply_markup": markup})

    def _delete_message(self, params: Params) -> bool:
        _, message = self._target_message(params, "message to delete not found")
        message.deleted = True
        self._touch_chat(message.chat_id)
        return True

    def _answer_callback_query(self, params: Params) -> bool:
        query = self._queries.get(params.str("callback_query_id") or "")
        if query is None or query.answered or self.now() - query.created_at > self.callback_answer_window_s:
            raise TelegramApiError(400, QUERY_TOO_OLD)
        text = params.str("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")
        query.answered = True
        self._callback_answers[query.chat_id].append(
            {
                "callback_query_id": query.query_id,
                "message_id": query.message_id,
                "data": query.data,
                "text": text,
                "show_alert": params.bool("show_alert"),
                "url": params.str("url"),
                "received_at": time.monotonic(),
            }
        )
        self._touch_chat(query.chat_id)
        return True

    def _store_file(self, prefix: str, data: bytes, extension: str) -> StoredFile:
        file_id = prefix + secrets.token_urlsafe(48)
        unique = "AQAD" + secrets.token_urlsafe(12)
        folder = "photos" if prefix == "AgAC" else "documents"
        stored = StoredFile(file_id, unique, f"{folder}/file_{len(self._files)}.{extension}", data)
        self._files[file_id] = stored
        return stored

    def _input_file(self, params: Params, name: str) -> Upload | StoredFile:
        upload = params.files.get(name)
        value = params.str(name)
        if upload is None and value and value.startswith("attach://"):
            upload = params.files.get(value[len("attach://"):])
        if upload is not None:
            return upload
        if not value:
            raise bad_request(f"there is no {name} in the request")
        if value in self._files:
            return self._files[value]
        if value.startswith(("http://", "https://")):
            raise bad_request("failed to get HTTP URL content")
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _send_photo(self, params: Params) -> dict[str, Any]:
        return self._send_media(params, "photo")

    def _send_document(self, params: Params) -> dict[str, Any]:
        return self._send_media(params, "document")

    def _send_media(self, params: Params, kind: str) -> dict[str, Any]:
        """sendPhoto and sendDocument: an upload or a file id this server issued, with a caption."""
        user = self._sendable_chat(params)
        source = self._input_file(params, kind)
        caption, caption_entities = self._caption(params)
        markup = self._reply_markup(params)
        reply_to = self._reply_to(params, user.user_id)
        media = self._photo_sizes(source) if kind == "photo" else self._document(source)
        self._flood_check(user.user_id)
        message = self._new_message(user.user_id, from_bot=True)
        setattr(message, kind, media)
        message.caption, message.caption_entities = caption, caption_entities
        message.reply_markup, message.reply_to = markup, reply_to
        return self._store_bot_message(message)

    def _photo_sizes(self, source: Upload | StoredFile) -> list[dict[str, Any]]:
        if isinstance(source, Upload):
            try:
                with Image.open(io.BytesIO(source.data)) as image:
                    width, height = image.size
            except Exception:
                raise bad_request("IMAGE_PROCESS_FAILED") from None
            stored = self._store_file("AgAC", source.data, "jpg")
            return [{"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                     "file_size": len(source.data), "width": width, "height": height}]
        for message in self._all_messages():
            if message.photo and message.photo[-1]["file_id"] == source.file_id:
                return message.photo
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _document(self, source: Upload | StoredFile) -> dict[str, Any]:
        if isinstance(source, Upload):
            if not source.data:
                raise bad_request("file must be non-empty")
            extension = source.filename.rsplit(".", 1)[-1] if "." in source.filename else "bin"
            stored = self._store_file("BQAC", source.data, extension)
            return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                    "file_name": source.filename, "mime_type": source.content_type,
                    "file_size": len(source.data)}
        for message in self._all_messages():
            if message.document and message.document["file_id"] == source.file_id:
                return message.document
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _all_messages(self) -> Iterator[StoredMessage]:
        for chat in self._messages.values():
            yield from chat.values()

    def _copy_message(self, params: Params) -> dict[str, int]:
        user = self._sendable_chat(params)
        source_chat = self._chat_user(params, "from_chat_id")
        message_id = params.int("message_id")
        source = self._messages[source_chat.user_id].get(message_id or 0)
        if source is None or source.deleted:
            raise bad_request("message to copy not found")
        caption, caption_entities = source.caption, source.caption_entities
        if params.raw("caption") is not None:
            caption, caption_entities = self._caption(params)
        markup = self._reply_markup(params)
        reply_to = self._reply_to(params, user.user_id)
        self._flood_check(user.user_id)
        message = self._new_message(user.user_id, from_bot=True)
        message.text, message.entities = source.text, list(source.entities)
        message.photo, message.document = source.photo, source.document
        if source.photo is not None or source.document is not None:
            message.caption, message.caption_entities = caption, caption_entities
        message.reply_markup, message.reply_to = markup, reply_to
        self._store_bot_message(message)
        return {"message_id": message.message_id}

    def _send_chat_action(self, params: Params) -> bool:
        self._sendable_chat(params)
        if params.str("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    def _get_chat(self, params: Params) -> dict[str, Any]:
        user = self._chat_user(params)
        return {
            **user.chat_to_api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                "premium_subscription": False, "gifts_from_channels": False,
            },
        }

    def _get_file(self, params: Params) -> dict[str, Any]:
        stored = self._files.get(params.str("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data), "file_path": stored.file_path}


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def _api_error_response(error: TelegramApiError) -> web.Response:
    return web.Response(status=error.error_code, body=json.dumps(error.to_json()).encode(), content_type="application/json")


async def _parse_params(request: web.Request) -> Params:
    """Parameters from the query string and a JSON, form or multipart body. Form values of nested
    objects arrive as JSON strings, numbers and booleans as text."""
    values: dict[str, Any] = dict(request.query.items())
    files: dict[str, Upload] = {}
    if request.content_type == "multipart/form-data":
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or not part.name:
                    continue
                data = bytes(await part.read())
                if part.filename is not None:
                    content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                    files[part.name] = Upload(part.filename, content_type, data)
                else:
                    values[part.name] = data.decode("utf-8", "replace")
        except ValueError:
            raise bad_request("can't parse multipart/form-data request") from None
        return Params(values, files)
    body = await request.read()
    if not body:
        return Params(values, files)
    if request.content_type == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise bad_request("JSON object expected")
        values.update(decoded)
    else:
        values.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return Params(values, files)
