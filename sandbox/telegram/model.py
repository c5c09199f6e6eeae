"""The sandbox Bot API's vocabulary: limits, error answers, request parameters and stored records."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class WithDescription:
    """A successful result that also carries a top-level description (webhook methods)."""

    result: Any
    description: str


class Params:
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

    def int(self, name: builtins.str, default: builtins.int | None = None) -> builtins.int | None:
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

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be a valid Number') from None

    def bool(self, name: builtins.str) -> builtins.bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def json(self, name: builtins.str, error: builtins.str) -> Any:
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


class Signal:
    """Wakes every waiter when something changed; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def next_change(self, timeout: float | None) -> None:
        """Returns at the next change, or after `timeout` seconds without one."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)

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


class TokenBucket:
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
class StoredMessage:
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
class CallbackQuery:
    query_id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    created_at: float
    answered: bool = False


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes


@dataclass
class Fault:
    status: int
    description: str
    retry_after: int | None
    remaining: int


@dataclass(frozen=True)
class CallRecord:
    """One Bot API call as the server saw it: accepted (`error_code` None) or refused."""

    method: str
    chat_id: int | None
    message_id: int | None
    error_code: int | None = None
    description: str | None = None

    @property
    def refused(self) -> bool:
        return self.error_code is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "chat_id": self.chat_id, "message_id": self.message_id,
            "error_code": self.error_code, "description": self.description,
        }


Handler = Callable[[Params], Any]
