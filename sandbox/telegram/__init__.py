"""A local Telegram Bot API server for tests and the demo.

It speaks `/bot<token>/<method>` well enough that python-telegram-bot runs unmodified against it
(`Application.builder().token(t).base_url(f"{url}/bot").base_file_url(f"{url}/file/bot")`), and
it enforces what the real API enforces, with the real error shape and descriptions: entity parsing
of HTML, message and caption lengths, button data limits, "message is not modified", the callback
answer window, blocked users and flood control (429 with `retry_after`). Every call is counted by
method, chat and message, refused ones included (`calls`, `refused`, `call_log`).

Webhooks are delivered as Telegram delivers them (secret token header, re-delivery with the same
`update_id`, in order per chat); the sandbox can also play a load balancer in front of several bot
instances (`set_webhook_instances`).

The rooms:
- `entities`: the HTML entity parser (`parse_html`);
- `model`: limits, error answers, request parameters, stored records;
- `botapi`: `BotApi`, the Bot API's state and methods, injected faults and the call log;
- `webhooks`: webhook delivery and the load balancer;
- `driver`: `SandboxTelegram`, the Bot API plus the users' side (`add_user`, `send`, `press`, the
  chat transcript, waits for the bot), also over HTTP at `/driver/...`.

Deliberate differences from the real service, all in the direction of catching bugs earlier:
- a bare `&` that does not start an entity is rejected (the documentation requires `&amp;`; the
  real server lets it through); pass `strict_html=False` for the real server's leniency;
- only `parse_mode=HTML` is parsed; Markdown modes are refused as unsupported;
- webhooks may use plain http on any port (the real service wants https on 443/80/88/8443);
- photos and documents must be uploaded or be file ids this server issued (no URL fetching).
"""

from sandbox.telegram.botapi import BotApi
from sandbox.telegram.driver import SandboxTelegram
from sandbox.telegram.entities import HtmlParseError, parse_html
from sandbox.telegram.model import (
    NOT_MODIFIED,
    POLL_CONFLICT,
    QUERY_TOO_OLD,
    WEBHOOK_CONFLICT,
    CallRecord,
    DriverError,
    SandboxUser,
    TelegramApiError,
)
from sandbox.telegram.webhooks import SECRET_HEADER

__all__ = [
    "NOT_MODIFIED",
    "POLL_CONFLICT",
    "QUERY_TOO_OLD",
    "SECRET_HEADER",
    "WEBHOOK_CONFLICT",
    "BotApi",
    "CallRecord",
    "DriverError",
    "HtmlParseError",
    "SandboxTelegram",
    "SandboxUser",
    "TelegramApiError",
    "parse_html",
]
