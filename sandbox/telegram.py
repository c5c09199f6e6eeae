"""A local Telegram Bot API server for tests and the demo.

It speaks `/bot<token>/<method>` well enough that python-telegram-bot runs unmodified against it
(`Application.builder().token(t).base_url(f"{url}/bot").base_file_url(f"{url}/file/bot")`), and
it enforces what the real API enforces, with the real error shape and descriptions: entity parsing
of HTML, message and caption lengths, button data limits, "message is not modified", the callback
answer window, blocked users and flood control (429 with `retry_after`).

A driver API on the same server plays the users: `/driver/users`, `/driver/send`,
`/driver/press`, `/driver/chat/<id>`, `/driver/block`, `/driver/unblock`, `/driver/faults`,
`/driver/stats`, `/driver/clock`. `SandboxTelegram` offers the same as Python methods for
in-process use, plus event-driven waits for the bot's messages.

Deliberate differences from the real service, all in the direction of catching bugs earlier:
- a bare `&` that does not start an entity is rejected (the documentation requires `&amp;`; the
  real server lets it through); pass `strict_html=False` for the real server's leniency;
- only `parse_mode=HTML` is parsed; Markdown modes are refused as unsupported;
- webhooks may use plain http on any port (the real service wants https on 443/80/88/8443);
- photos and documents must be uploaded or be file ids this server issued (no URL fetching).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import re
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_BODY_BYTES = 50 * 1024 * 1024  # the real upload limit for bots

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"

# Update types delivered when allowed_updates is empty, as the real API does.
DEFAULT_UPDATE_TYPES = frozenset(
    {"message", "edited_message", "callback_query", "inline_query", "my_chat_member", "channel_post"}
)
CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
        "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
    }
)
BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)
_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,64})?(?=\s|$)")
_BOT_COMMAND_NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TOKEN_RE = re.compile(r"^\d{5,12}:[A-Za-z0-9_-]{30,40}$")


class TelegramApiError(Exception):
    """An error answer of the Bot API: `{"ok":false,"error_code":..,"description":..}`."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(text: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {text}")


class DriverError(ValueError):
    """A driver call a real Telegram client could not make (no such user, no such button)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- HTML entity parsing


class HtmlParseError(ValueError):
    pass


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "code": "code", "pre": "pre", "blockquote": "blockquote", "a": "text_link",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _utf16_len(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decodes the entity at `text[pos] == "&"` as the real server does (";" optional)."""
    end = pos + 1
    if text.startswith("#", end):
        end += 1
        base = 10
        if text[end:end + 1] in ("x", "X"):
            base = 16
            end += 1
        digits_begin = end
        allowed = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
        while end < len(text) and text[end] in allowed:
            end += 1
        if end == digits_begin or end - digits_begin > 8:
            return None
        code = int(text[digits_begin:end], base)
        if code == 0 or code >= 0x110000 or 0xD800 <= code <= 0xDFFF:
            return None
        char = chr(code)
    else:
        while end < len(text) and text[end].isascii() and text[end].isalpha():
            end += 1
        char = _NAMED_ENTITIES.get(text[pos + 1:end], "")
        if not char:
            return None
    if text.startswith(";", end):
        end += 1
    return char, end


def parse_html(text: str, strict: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Returns the visible text and its entities (UTF-16 offsets), or raises HtmlParseError
    with the description the real server gives (byte offsets into the UTF-8 source)."""

    def at(index: int) -> int:
        return len(text[:index].encode("utf-8"))

    out: list[str] = []
    utf16 = 0
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is None:
                if strict:
                    raise HtmlParseError(f'Character "&" at byte offset {at(i)} must be escaped as "&amp;"')
                out.append(c)
                utf16 += 1
                i += 1
                continue
            char, i = decoded
            out.append(char)
            utf16 += _utf16_len(char)
            continue
        if c != "<":
            out.append(c)
            utf16 += _utf16_len(c)
            i += 1
            continue

        begin = i
        i += 1
        if i >= n or text[i] != "/":
            # an opening tag
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            if i == n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
            tag = text[begin + 1:i].lower()
            if tag not in _HTML_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {at(begin)}')
            argument = ""
            expandable = False
            while True:
                while i < n and text[i].isspace():
                    i += 1
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] == ">":
                    break
                name_begin = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                attribute = text[name_begin:i].lower()
                if not attribute:
                    raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {at(begin)}')
                while i < n and text[i].isspace():
                    i += 1
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] != "=":
                    if tag == "blockquote" and attribute == "expandable":
                        expandable = True
                        continue
                    raise HtmlParseError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                        f"at byte offset {at(begin)}"
                    )
                i += 1
                while i < n and text[i].isspace():
                    i += 1
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] in "'\"":
                    quote = text[i]
                    i += 1
                    value_chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&" and (decoded := _decode_html_entity(text, i)) is not None:
                            value_chars.append(decoded[0])
                            i = decoded[1]
                            continue
                        value_chars.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(value_chars)
                else:
                    token_begin = i
                    while i < n and (text[i].isalnum() or text[i] in ".-_:"):
                        i += 1
                    if i == token_begin:
                        raise HtmlParseError(f"Unexpected end of name token at byte offset {at(token_begin)}")
                    value = text[token_begin:i]
                if i == n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if tag == "a" and attribute == "href":
                    argument = value
                elif tag == "code" and attribute == "class" and value.startswith("language-"):
                    argument = value[len("language-"):]
                elif tag == "span" and attribute == "class" and value.startswith("tg-"):
                    argument = value[len("tg-"):]
            if tag == "span" and argument != "spoiler":
                raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}')
            stack.append({"tag": tag, "argument": argument, "offset": utf16, "expandable": expandable})
            i += 1
            continue

        # a closing tag
        if not stack:
            raise HtmlParseError(f"Unexpected end tag at byte offset {at(begin)}")
        i += 1
        name_begin = i
        while i < n and not text[i].isspace() and text[i] != ">":
            i += 1
        end_name = text[name_begin:i].lower()
        while i < n and text[i].isspace():
            i += 1
        if i == n or text[i] != ">":
            raise HtmlParseError(f"Unclosed end tag at byte offset {at(begin)}")
        open_tag = stack[-1]
        if end_name and end_name != open_tag["tag"]:
            raise HtmlParseError(
                f'Unmatched end tag at byte offset {at(begin)}, expected "</{open_tag["tag"]}>", '
                f'found "</{end_name}>"'
            )
        stack.pop()
        i += 1
        length = utf16 - open_tag["offset"]
        tag = open_tag["tag"]
        if tag == "code" and stack and stack[-1]["tag"] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language
            if open_tag["argument"]:
                stack[-1]["argument"] = open_tag["argument"]
            continue
        if length <= 0:
            continue
        entity: dict[str, Any] = {"type": _HTML_TAGS[tag], "offset": open_tag["offset"], "length": length}
        if tag == "a":
            if open_tag["argument"]:
                entity["url"] = open_tag["argument"]
            else:
                entity["type"] = "url"
        elif tag == "pre" and open_tag["argument"]:
            entity["language"] = open_tag["argument"]
        elif tag == "blockquote" and open_tag["expandable"]:
            entity["type"] = "expandable_blockquote"
        entities.append(entity)
    if stack:
        raise HtmlParseError(f"Can't find end tag corresponding to start tag {stack[-1]['tag']}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# --------------------------------------------------------------------------- HTTP plumbing


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


_HEADER_PARAM_RE = re.compile(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))')


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    main = value.split(";", 1)[0].strip().lower()
    params = {}
    for match in _HEADER_PARAM_RE.finditer(value):
        raw = match.group(2) if match.group(2) is not None else match.group(3).strip()
        params[match.group(1).lower()] = raw.replace('\\"', '"')
    if "filename*" in params and "'" in params["filename*"]:
        params["filename"] = urllib.parse.unquote(params["filename*"].split("'", 2)[2])
    return main, params


def _parse_multipart(body: bytes, boundary: str) -> tuple[dict[str, str], dict[str, Upload]]:
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        data = data.removesuffix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        _, disposition = _header_params(headers.get("content-disposition", ""))
        name = disposition.get("name")
        if not name:
            continue
        if "filename" in disposition:
            content_type = headers.get("content-type", "application/octet-stream")
            files[name] = Upload(disposition["filename"], content_type, data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").strip().split(" ", 2)
    except ValueError:
        return None
    headers: dict[str, str] = {}
    while True:
        header_line = await reader.readline()
        if header_line in (b"\r\n", b"\n", b""):
            break
        key, _, value = header_line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    body = b""
    if headers.get("expect", "").lower() == "100-continue":
        # curl asks before sending a large body
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
            if sum(map(len, chunks)) > MAX_BODY_BYTES:
                return None
        body = b"".join(chunks)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY_BYTES:
            return None
        body = await reader.readexactly(length)
    path, _, query = target.partition("?")
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version.upper() != "HTTP/1.0" or connection == "keep-alive")
    return _Request(method.upper(), urllib.parse.unquote(path), query, headers, body, keep_alive)


def _http_response(status: int, body: bytes, content_type: str, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Params:
    """Request parameters from the query string, a JSON, form or multipart body. Form values of
    nested objects arrive as JSON strings, numbers and booleans as text."""

    def __init__(self, values: dict[str, Any], files: dict[str, Upload]) -> None:
        self.values = values
        self.files = files

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def str(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value)
        return str(value)

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            try:
                as_float = float(str(value).strip())
            except ValueError:
                raise bad_request(f'field "{name}" must be a valid Number') from None
            if not as_float.is_integer():
                raise bad_request(f'field "{name}" must be a valid Number') from None
            return int(as_float)

    def float(self, name: str, default: float) -> float:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be a valid Number') from None

    def bool(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def json(self, name: str, error: str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str):
            if not value:
                return None
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(error) from None
        return value


# --------------------------------------------------------------------------- state


class _Signal:
    """Wakes every waiter when something changed; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, check: Callable[[], T], timeout: float | None) -> T:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            event = self._event
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(event.wait(), remaining)


class _TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def retry_after(self) -> int | None:
        if self.tokens >= 1:
            return None
        return max(1, math.ceil((1 - self.tokens) / self.rate))


@dataclass
class SandboxUser:
    user_id: int
    first_name: str
    username: str | None
    blocked: bool = False
    chat_instance: str = field(default_factory=lambda: str(-secrets.randbits(62)))

    def to_api(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.user_id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        user["language_code"] = "en"
        return user

    def chat_to_api(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.user_id, "type": "private", "first_name": self.first_name}
        if self.username:
            chat["username"] = self.username
        return chat


@dataclass
class _Message:
    chat_id: int
    message_id: int
    from_bot: bool
    date: int
    text: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    photo: list[dict[str, Any]] | None = None
    document: dict[str, Any] | None = None
    reply_to: int | None = None
    edit_date: int | None = None
    edits: int = 0
    deleted: bool = False
    # monotonic seconds when the server stored it / last changed it, for latency figures
    received_at: float = field(default_factory=time.monotonic)
    edited_at: float | None = None


@dataclass
class _CallbackQuery:
    query_id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    created_at: float
    answered: bool = False


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None
    remaining: int


Handler = Callable[[_Params], Any]

# --------------------------------------------------------------------------- the server


class SandboxTelegram:
    """The Bot API and the driver API on one asyncio HTTP server."""

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
    ) -> None:
        """`per_chat_rate` / `global_rate` are messages per second of sandbox time; None turns
        that flood limit off."""
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
        self._messages: dict[int, dict[int, _Message]] = {}
        self._next_message_id: dict[int, int] = {}
        self._callback_answers: dict[int, list[dict[str, Any]]] = {}
        self._chat_versions: dict[int, int] = {}
        self._queries: dict[str, _CallbackQuery] = {}
        self._updates: deque[dict[str, Any]] = deque()
        self._next_update_id = 500_000_001
        self._allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._poll_generation = 0
        self._webhook: _Webhook | None = None
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._files: dict[str, _StoredFile] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._calls: dict[str, int] = {}
        self._http_429 = 0
        self._chat_buckets: dict[int, _TokenBucket] = {}
        self._global_bucket: _TokenBucket | None = None

        # one signal for every change; each waiter re-checks its own condition
        self._changed = _Signal()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._webhook_task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
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
        self._server = await asyncio.start_server(self._serve_connection, host, port)
        bound_port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound_port}"
        self._http = httpx.AsyncClient(timeout=10.0)
        self._webhook_task = asyncio.create_task(self._deliver_webhooks())
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in (self._webhook_task, *self._connections) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> SandboxTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

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
            message.entities = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command.group(0))}]
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
        self._queries[query_id] = _CallbackQuery(query_id, user.user_id, user.user_id, message_id, data, self.now())
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
        fault = _Fault(status, description, retry_after, max(1, count))
        self._faults.setdefault(method.lower(), deque()).append(fault)

    def stats(self) -> dict[str, Any]:
        return {"calls": dict(self._calls), "http_429": self._http_429}

    def pending_update_count(self) -> int:
        """Updates not yet confirmed by getUpdates or accepted by the webhook."""
        return len(self._updates)

    def webhook_info(self) -> dict[str, Any]:
        """What getWebhookInfo answers."""
        return self._get_webhook_info(_Params({}, {}))

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

        return await self.wait_for(check, timeout)

    # ------------------------------------------------------------------ internals: state

    def _user(self, user_id: Any) -> SandboxUser:
        try:
            return self._users[int(user_id)]
        except (KeyError, TypeError, ValueError):
            raise DriverError(f"no user {user_id}", status=404) from None

    def _new_message(self, chat_id: int, from_bot: bool) -> _Message:
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = message_id + 1
        message = _Message(chat_id, message_id, from_bot, self._unix_now())
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

    def _message_to_api(self, message: _Message) -> dict[str, Any]:
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

    def _transcript_entry(self, message: _Message) -> dict[str, Any]:
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

    # ------------------------------------------------------------------ internals: HTTP

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader, writer)
                if request is None:
                    break
                status, payload, content_type = await self._route(request)
                writer.write(_http_response(status, payload, content_type, request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections (long polls); ending quietly keeps asyncio's
            # connection callback from logging the cancellation as an error
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, request: _Request) -> tuple[int, bytes, str]:
        path = request.path
        if path.startswith("/bot"):
            token, _, method = path[len("/bot"):].partition("/")
            return await self._api_call(request, token, method)
        if path.startswith("/file/bot"):
            return self._download(path[len("/file/bot"):])
        if path.startswith("/driver/"):
            try:
                status, body = await self._driver_call(request, path[len("/driver/"):])
            except DriverError as error:
                status, body = error.status, {"error": str(error)}
            except (ValueError, TypeError, KeyError) as error:
                status, body = 400, {"error": f"bad driver request: {error}"}
            return status, json.dumps(body).encode(), "application/json"
        return 404, json.dumps({"ok": False, "error_code": 404, "description": "Not Found"}).encode(), "application/json"

    def _parse_params(self, request: _Request) -> _Params:
        values: dict[str, Any] = dict(urllib.parse.parse_qsl(request.query, keep_blank_values=True))
        files: dict[str, Upload] = {}
        content_type, type_params = _header_params(request.headers.get("content-type", ""))
        if request.body:
            if content_type == "application/json":
                try:
                    decoded = json.loads(request.body)
                except ValueError:
                    raise bad_request("can't parse JSON object") from None
                if not isinstance(decoded, dict):
                    raise bad_request("JSON object expected")
                values.update(decoded)
            elif content_type == "multipart/form-data":
                fields, files = _parse_multipart(request.body, type_params.get("boundary", ""))
                values.update(fields)
            else:
                values.update(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        return _Params(values, files)

    async def _api_call(self, request: _Request, token: str, method: str) -> tuple[int, bytes, str]:
        try:
            if token != self.token:
                raise TelegramApiError(401, "Unauthorized")
            entry = self._methods.get(method.lower())
            if entry is None:
                raise TelegramApiError(404, "Not Found")
            name, handler, counts = entry
            self._calls[name] = self._calls.get(name, 0) + 1
            faults = self._faults.get(method.lower())
            if faults:
                fault = faults[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    faults.popleft()
                parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
                raise TelegramApiError(fault.status, fault.description, parameters)
            params = self._parse_params(request)
            outcome = handler(params)
            if isinstance(outcome, Awaitable):
                outcome = await outcome
            body: dict[str, Any] = {"ok": True}
            if isinstance(outcome, _WithDescription):
                body["result"] = outcome.result
                body["description"] = outcome.description
            else:
                body["result"] = outcome
            status = 200
        except TelegramApiError as error:
            if error.error_code == 429:
                self._http_429 += 1
            status, body = error.error_code, error.to_json()
        return status, json.dumps(body, ensure_ascii=False).encode(), "application/json"

    def _download(self, rest: str) -> tuple[int, bytes, str]:
        token, _, file_path = rest.partition("/")
        if token != self.token:
            return 401, json.dumps({"ok": False, "error_code": 401, "description": "Unauthorized"}).encode(), "application/json"
        for stored in self._files.values():
            if stored.file_path == file_path:
                return 200, stored.data, "application/octet-stream"
        return 404, json.dumps({"ok": False, "error_code": 404, "description": "Not Found"}).encode(), "application/json"

    async def _driver_call(self, request: _Request, route: str) -> tuple[int, Any]:
        body: dict[str, Any] = {}
        if request.body:
            body = json.loads(request.body)
            if not isinstance(body, dict):
                raise DriverError("a JSON object is expected")
        query = dict(urllib.parse.parse_qsl(request.query))
        if request.method == "GET" and route.startswith("chat/"):
            chat_id = int(route[len("chat/"):])
            if chat_id not in self._messages:
                raise DriverError(f"no chat {chat_id}", status=404)
            # optional long poll for a terminal client: ?since=<version>&timeout=<seconds>
            if "since" in query:
                since = int(query["since"])
                with contextlib.suppress(TimeoutError):
                    await self._changed.wait_until(
                        lambda: self._chat_versions[chat_id] > since, float(query.get("timeout", 30))
                    )
            return 200, self.transcript(chat_id)
        if request.method == "GET" and route == "stats":
            return 200, self.stats()
        if request.method == "GET" and route == "users":
            return 200, {"users": self.users()}
        if request.method != "POST":
            raise DriverError(f"no driver route {request.method} /driver/{route}", status=404)
        if route == "users":
            user_id, chat_id = self.add_user(str(body.get("first_name", "")), body.get("username"))
            return 200, {"user_id": user_id, "chat_id": chat_id}
        if route == "send":
            return 200, {"message_id": self.send(int(body["user_id"]), str(body.get("text", "")))}
        if route == "press":
            query_id = self.press(int(body["user_id"]), int(body["message_id"]), str(body["data"]))
            return 200, {"callback_query_id": query_id}
        if route == "block":
            self.block(int(body["user_id"]))
            return 200, {"ok": True}
        if route == "unblock":
            self.unblock(int(body["user_id"]))
            return 200, {"ok": True}
        if route == "faults":
            retry_after = body.get("retry_after")
            self.inject_fault(
                str(body["method"]),
                status=int(body.get("status", 500)),
                description=body.get("description"),
                retry_after=int(retry_after) if retry_after is not None else None,
                count=int(body.get("count", 1)),
            )
            return 200, {"ok": True}
        if route == "clock":
            self.advance_clock(float(body["advance_s"]))
            return 200, {"ok": True, "offset_s": self._clock_offset}
        raise DriverError(f"no driver route POST /driver/{route}", status=404)

    # ------------------------------------------------------------------ internals: checks

    def _chat_user(self, params: _Params, name: str = "chat_id") -> SandboxUser:
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
        user = self._users.get(chat_id)
        if user is None:
            raise bad_request("chat not found")
        return user

    def _sendable_chat(self, params: _Params) -> SandboxUser:
        user = self._chat_user(params)
        if user.blocked:
            raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
        return user

    def _formatted(self, params: _Params, text: str, entities_name: str) -> tuple[str, list[dict[str, Any]]]:
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

    def _message_text(self, params: _Params) -> tuple[str, list[dict[str, Any]]]:
        text, entities = self._formatted(params, params.str("text") or "", "entities")
        if not text.strip():
            raise bad_request("message text is empty")
        if len(text) > MAX_MESSAGE_LENGTH:
            raise bad_request("message is too long")
        return text, entities

    def _caption(self, params: _Params) -> tuple[str | None, list[dict[str, Any]]]:
        raw = params.str("caption")
        if raw is None:
            return None, []
        caption, entities = self._formatted(params, raw, "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        return (caption if caption.strip() else None), entities

    def _reply_markup(self, params: _Params, inline_only: bool = False) -> dict[str, Any] | None:
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
                chat_bucket = self._chat_buckets[chat_id] = _TokenBucket(self.per_chat_rate, self.per_chat_burst, now)
            chat_bucket.refill(now)
            if (after := chat_bucket.retry_after()) is not None:
                retry.append(after)
        if self.global_rate:
            if self._global_bucket is None:
                self._global_bucket = _TokenBucket(self.global_rate, self.global_burst, now)
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

    def _target_message(self, params: _Params, missing: str) -> tuple[SandboxUser, _Message]:
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

    def _reply_to(self, params: _Params, chat_id: int) -> int | None:
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

    def _store_bot_message(self, message: _Message) -> dict[str, Any]:
        self._touch_chat(message.chat_id)
        return self._message_to_api(message)

    # ------------------------------------------------------------------ Bot API methods

    def _ok_true(self, params: _Params) -> bool:
        return True

    def _get_me(self, params: _Params) -> dict[str, Any]:
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

    async def _get_updates(self, params: _Params) -> list[dict[str, Any]]:
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
            if self._poll_generation != generation:
                return "conflict"
            if self._webhook is not None:
                return "webhook"
            return "updates" if self._pending_updates(1) else None

        outcome = ready()
        if outcome is None and timeout > 0:
            with contextlib.suppress(TimeoutError):
                outcome = await self._changed.wait_until(ready, timeout)
        if outcome == "conflict":
            raise TelegramApiError(409, POLL_CONFLICT)
        if outcome == "webhook":
            raise TelegramApiError(409, WEBHOOK_CONFLICT)
        return self._pending_updates(limit)

    def _set_webhook(self, params: _Params) -> _WithDescription:
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
        unchanged = self._webhook is not None and self._webhook.url == url
        self._webhook = _Webhook(
            url, secret, params.int("max_connections", 40) or 40, allowed if isinstance(allowed, list) else None
        )
        self._changed.fire()
        return _WithDescription(True, "Webhook is already set" if unchanged else "Webhook was set")

    def _delete_webhook(self, params: _Params) -> _WithDescription:
        if params.bool("drop_pending_updates"):
            self._updates.clear()
        had = self._webhook is not None
        self._webhook = None
        self._changed.fire()
        return _WithDescription(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _get_webhook_info(self, params: _Params) -> dict[str, Any]:
        hook = self._webhook
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            info["ip_address"] = "127.0.0.1"
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    @staticmethod
    def _commands_key(params: _Params) -> tuple[str, str]:
        scope = params.json("scope", "can't parse BotCommandScope JSON object") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.str("language_code") or ""

    def _set_my_commands(self, params: _Params) -> bool:
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

    def _get_my_commands(self, params: _Params) -> list[dict[str, str]]:
        return list(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: _Params) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _send_message(self, params: _Params) -> dict[str, Any]:
        user = self._sendable_chat(params)
        text, entities = self._message_text(params)
        markup = self._reply_markup(params)
        reply_to = self._reply_to(params, user.user_id)
        self._flood_check(user.user_id)
        message = self._new_message(user.user_id, from_bot=True)
        message.text, message.entities, message.reply_markup, message.reply_to = text, entities, markup, reply_to
        return self._store_bot_message(message)

    def _apply_edit(self, message: _Message, changes: dict[str, Any]) -> dict[str, Any]:
        if all(getattr(message, key) == value for key, value in changes.items()):
            raise TelegramApiError(400, NOT_MODIFIED)
        self._flood_check(message.chat_id)
        for key, value in changes.items():
            setattr(message, key, value)
        message.edits += 1
        message.edit_date = self._unix_now()
        message.edited_at = time.monotonic()
        return self._store_bot_message(message)

    def _editable(self, params: _Params) -> _Message:
        _, message = self._target_message(params, "message to edit not found")
        if not message.from_bot:
            raise bad_request("message can't be edited")
        return message

    def _edit_message_text(self, params: _Params) -> dict[str, Any]:
        message = self._editable(params)
        text, entities = self._message_text(params)
        markup = self._reply_markup(params, inline_only=True)
        if message.text is None:
            raise bad_request("there is no text in the message to edit")
        # an edit without reply_markup removes the keyboard, as on the real server
        return self._apply_edit(message, {"text": text, "entities": entities, "reply_markup": markup})

    def _edit_message_caption(self, params: _Params) -> dict[str, Any]:
        message = self._editable(params)
        caption, entities = self._caption(params)
        markup = self._reply_markup(params, inline_only=True)
        if message.photo is None and message.document is None:
            raise bad_request("there is no caption in the message to edit")
        return self._apply_edit(message, {"caption": caption, "caption_entities": entities, "reply_markup": markup})

    def _edit_message_reply_markup(self, params: _Params) -> dict[str, Any]:
        message = self._editable(params)
        markup = self._reply_markup(params, inline_only=True)
        return self._apply_edit(message, {"reply_markup": markup})

    def _delete_message(self, params: _Params) -> bool:
        _, message = self._target_message(params, "message to delete not found")
        message.deleted = True
        self._touch_chat(message.chat_id)
        return True

    def _answer_callback_query(self, params: _Params) -> bool:
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

    def _store_file(self, prefix: str, data: bytes, extension: str) -> _StoredFile:
        file_id = prefix + secrets.token_urlsafe(48)
        unique = "AQAD" + secrets.token_urlsafe(12)
        folder = "photos" if prefix == "AgAC" else "documents"
        stored = _StoredFile(file_id, unique, f"{folder}/file_{len(self._files)}.{extension}", data)
        self._files[file_id] = stored
        return stored

    def _input_file(self, params: _Params, name: str) -> Upload | _StoredFile:
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

    def _send_photo(self, params: _Params) -> dict[str, Any]:
        user = self._sendable_chat(params)
        source = self._input_file(params, "photo")
        caption, caption_entities = self._caption(params)
        markup = self._reply_markup(params)
        reply_to = self._reply_to(params, user.user_id)
        if isinstance(source, Upload):
            try:
                from PIL import Image

                with Image.open(io.BytesIO(source.data)) as image:
                    width, height = image.size
            except Exception:
                raise bad_request("IMAGE_PROCESS_FAILED") from None
            stored = self._store_file("AgAC", source.data, "jpg")
            sizes = [{"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                      "file_size": len(source.data), "width": width, "height": height}]
        else:
            existing = next(
                (m.photo for chat in self._messages.values() for m in chat.values()
                 if m.photo and m.photo[-1]["file_id"] == source.file_id),
                None,
            )
            if existing is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            sizes = existing
        self._flood_check(user.user_id)
        message = self._new_message(user.user_id, from_bot=True)
        message.photo, message.caption, message.caption_entities = sizes, caption, caption_entities
        message.reply_markup, message.reply_to = markup, reply_to
        return self._store_bot_message(message)

    def _send_document(self, params: _Params) -> dict[str, Any]:
        user = self._sendable_chat(params)
        source = self._input_file(params, "document")
        caption, caption_entities = self._caption(params)
        markup = self._reply_markup(params)
        reply_to = self._reply_to(params, user.user_id)
        if isinstance(source, Upload):
            if not source.data:
                raise bad_request("file must be non-empty")
            extension = source.filename.rsplit(".", 1)[-1] if "." in source.filename else "bin"
            stored = self._store_file("BQAC", source.data, extension)
            document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                        "file_name": source.filename, "mime_type": source.content_type,
                        "file_size": len(source.data)}
        else:
            document = next(
                (m.document for chat in self._messages.values() for m in chat.values()
                 if m.document and m.document["file_id"] == source.file_id),
                None,
            )
            if document is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
        self._flood_check(user.user_id)
        message = self._new_message(user.user_id, from_bot=True)
        message.document, message.caption, message.caption_entities = document, caption, caption_entities
        message.reply_markup, message.reply_to = markup, reply_to
        return self._store_bot_message(message)

    def _copy_message(self, params: _Params) -> dict[str, int]:
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

    def _send_chat_action(self, params: _Params) -> bool:
        self._sendable_chat(params)
        if params.str("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    def _get_chat(self, params: _Params) -> dict[str, Any]:
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

    def _get_file(self, params: _Params) -> dict[str, Any]:
        stored = self._files.get(params.str("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data), "file_path": stored.file_path}

    # ------------------------------------------------------------------ webhook delivery

    async def _deliver_webhooks(self) -> None:
        backoff = 0.05
        while True:
            await self._changed.wait_until(lambda: self._webhook is not None and bool(self._updates), None)
            hook = self._webhook
            assert hook is not None and self._http is not None
            update = self._updates[0]
            headers = {"Content-Type": "application/json"}
            if hook.secret_token:
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
            try:
                response = await self._http.post(hook.url, content=json.dumps(update).encode(), headers=headers)
                error = None if 200 <= response.status_code < 300 else (
                    f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
                )
            except httpx.HTTPError as exc:
                error = "Connection refused" if isinstance(exc, httpx.ConnectError) else f"Failed: {exc}"
            if self._webhook is not hook:
                continue
            if error is None:
                if self._updates and self._updates[0] is update:
                    self._updates.popleft()
                backoff = 0.05
                self._changed.fire()
                continue
            hook.last_error_date = self._unix_now()
            hook.last_error_message = error
            self._changed.fire()
            # the real service retries a failing webhook with growing pauses
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


@dataclass
class _WithDescription:
    """A successful result that also carries a top-level description (webhook methods)."""

    result: Any
    description: str
