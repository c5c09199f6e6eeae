"""Telegram's `initData`: the signed query string a Mini App is opened with, verified as Telegram documents it.

    secret_key = HMAC_SHA256(key="WebAppData", message=bot_token)
    data_check_string = every field but `hash`, as "key=value", sorted by key, joined by "\\n"
    valid when hex(HMAC_SHA256(key=secret_key, message=data_check_string)) == hash (constant-time compare)
    and `auth_date` is fresh.

The user id is taken from the verified `user` field and from nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode


class InitDataError(Exception):
    """The initData is missing, forged, tampered with or stale; ``str()`` says which, without echoing it."""


@dataclass(frozen=True)
class WebAppUser:
    id: int
    first_name: str
    username: str | None
    auth_date: int


def _secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def _check_string(fields: dict[str, str]) -> str:
    return "\n".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "hash")


def sign_init_data(fields: dict[str, str], bot_token: str) -> str:
    """The initData query string Telegram would hand a Mini App for `fields` (used by the sandbox and tests)."""
    digest = hmac.new(_secret_key(bot_token), _check_string(fields).encode(), hashlib.sha256).hexdigest()
    return urlencode({**fields, "hash": digest})


def init_data_for(user_id: int, first_name: str, bot_token: str, auth_date: int, username: str | None = None) -> str:
    user = {"id": user_id, "first_name": first_name, "language_code": "en", "allows_write_to_pm": True}
    if username:
        user["username"] = username
    fields = {
        "query_id": f"AA{user_id:x}",
        "user": json.dumps(user, separators=(",", ":")),
        "auth_date": str(auth_date),
    }
    return sign_init_data(fields, bot_token)


def verify_init_data(raw: str, bot_token: str, *, max_age_s: int, now: float) -> WebAppUser:
    """The user the initData vouches for; raises InitDataError unless it is signed with `bot_token` and fresh."""
    if not raw or len(raw) > 8192:
        raise InitDataError("no initData: open the dashboard from the bot's menu button")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InitDataError("initData is not a query string") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:  # a repeated key could make two parsers read two different values
            raise InitDataError("initData repeats a field")
        fields[key] = value
    received = fields.get("hash", "")
    expected = hmac.new(_secret_key(bot_token), _check_string(fields).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), received.encode()):
        raise InitDataError("initData signature does not match: reopen the dashboard from the bot")
    try:
        auth_date = int(fields["auth_date"])
    except (KeyError, ValueError):
        raise InitDataError("initData has no auth_date") from None
    if auth_date > now + 60:
        raise InitDataError("initData is dated in the future")
    if now - auth_date > max_age_s:
        raise InitDataError("initData is too old: close the dashboard and open it again from the bot")
    try:
        user = json.loads(fields["user"])
        user_id = int(user["id"])
    except (KeyError, ValueError, TypeError):
        raise InitDataError("initData names no user") from None
    if user_id <= 0 or isinstance(user.get("id"), bool):
        raise InitDataError("initData names no user")
    return WebAppUser(user_id, str(user.get("first_name") or ""), user.get("username"), auth_date)


__all__ = ["InitDataError", "WebAppUser", "init_data_for", "sign_init_data", "verify_init_data"]
