"""Logging set-up with redaction: no secret reaches any handler, whatever path a record takes.

Two layers, because either alone leaves a gap:
- a log record factory (`logging.setLogRecordFactory`) redacts every record as it is created: the
  message merged with its args, the exception traceback (formatted once, redacted into `exc_text`,
  `exc_info` cleared) and `stack_info`; `extra=` fields are redacted as `makeRecord` stores them.
  This covers handlers added later by anyone (pytest's caplog, a library's own handler).
- a `RedactingFilter` on every handler `setup_logging` installs, for records built without the
  factory (`logging.makeLogRecord`, records that arrive from other processes).

What is masked, always as `[REDACTED]`:
- exact values given to `register_secret` (the bot token, API keys, a wallet secret while in
  memory), also in their URL-encoded form, each for a bounded time (at most `_MAX_SECRETS` held);
- secret shapes, before anything is registered (an update is logged before the bot reads it):
  base58 keys also split over lines, spaced or one character off, JSON key arrays also
  pretty-printed, runs of 12+ BIP39 words also numbered, LaserSell keys (`ls_...`), the argument
  of `/apikey`, and Telegram bot tokens (also inside URLs such as `/bot<token>/getMe`, which httpx
  logs for every request python-telegram-bot makes). repr() and JSON show line breaks as `\n`;
  those are read as the line breaks they stand for.
- Transaction signatures have the shape of a key with a typo. Outside what a user typed (the
  `text`/`caption` of an update), a single run shaped like an ed25519 signature is kept, so sells
  stay traceable in the log; inside a user's text everything key-shaped is masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.keys import loose_secret_spans, secret_spans

REDACTED = "[REDACTED]"

_TELEGRAM_TOKEN_RE = re.compile(r"\d{6,12}:[A-Za-z0-9_-]{30,}")
# Shortest shape worth scanning for: a LaserSell key ("ls_" and 16 more).
_MIN_SHAPE_CHARS = 19
# What a user typed, as PTB's DEBUG lines show it (a dict repr, JSON, or an object repr): judged like
# an incoming chat message, without sparing signature-shaped runs (a key with a typo looks like one).
_USER_TEXT_RE = re.compile(r"""\b(?:text|caption)(?:['"]\s*:\s*|=)(['"])((?:\\.|(?!\1).)*)\1""", re.S)
# The argument of a command that takes a secret, whatever its shape (an API key has none we can know).
_SECRET_COMMAND_RE = re.compile(r"(/(?:apikey|astralane)(?:@\w+)?(?:\s|\\n)+)([^\s'\"\\]+)", re.I)
# repr() and JSON show a line break as backslash-n: two characters, so two spaces keep every offset.
_ESCAPED_SPACE_RE = re.compile(r"\\[nrt]")

# Registered values live until their expiry (None: for the life of the process), at most _MAX_SECRETS.
DEFAULT_TTL_S = 900.0
# A wallet secret is masked by its shape anyway; its exact value is held only briefly.
SHAPED_TTL_S = 120.0
_MAX_SECRETS = 256

_lock = threading.Lock()
_secrets: dict[str, float | None] = {}  # value -> expiry (time.monotonic()) or None
_next_expiry: float | None = None
_secret_re: re.Pattern[str] | None = None
_stale = False  # the pattern is rebuilt at the next redaction, not at every registration


def _rebuild() -> None:
    global _secret_re, _next_expiry
    variants: set[str] = set()
    for value in _secrets:
        variants.add(value)
        variants.add(quote(value, safe=""))
    expiries = [e for e in _secrets.values() if e is not None]
    _next_expiry = min(expiries) if expiries else None
    # Longest first, so a secret that contains another is masked whole.
    ordered = sorted((v for v in variants if v), key=len, reverse=True)
    _secret_re = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None


def _prune(now: float) -> None:
    global _stale
    for value, expiry in list(_secrets.items()):
        if expiry is not None and expiry <= now:
            del _secrets[value]
            _stale = True
    while len(_secrets) > _MAX_SECRETS:
        # Over the bound: the registered value closest to its expiry goes first (never a lifelong one).
        timed = [(e, v) for v, e in _secrets.items() if e is not None]
        if not timed:
            break
        del _secrets[min(timed)[1]]
        _stale = True


def register_secret(value: str, *, ttl_s: float | None = DEFAULT_TTL_S) -> None:
    """Mask this exact value (and its URL-encoded form) in every log line for `ttl_s` seconds.

    `ttl_s=None` keeps it for the life of the process (the bot token, the operator's key). Registering
    again extends the time. Wallet secrets, which their shape already gives away, are held briefly.
    """
    if not value or len(value) < 4:
        # Masking "ab" everywhere would shred the log without protecting anything real.
        return
    now = time.monotonic()
    if ttl_s is not None and secret_spans(value) == [(0, len(value))]:
        ttl_s = min(ttl_s, SHAPED_TTL_S)
    expiry = None if ttl_s is None else now + ttl_s
    with _lock:
        global _stale
        if value in _secrets:
            current = _secrets[value]
            expiry = None if current is None or expiry is None else max(current, expiry)
        else:
            _stale = True
        _secrets[value] = expiry
        if expiry is not None and (_next_expiry is None or expiry < _next_expiry):
            _stale = True
        _prune(now)


def forget_secret(value: str) -> None:
    """Stop masking `value` (e.g. a wallet secret that has left memory)."""
    with _lock:
        global _stale
        if value in _secrets:
            del _secrets[value]
            _stale = True


def registered_count() -> int:
    """How many exact values the redactor holds now (expired ones are dropped first)."""
    with _lock:
        _prune(time.monotonic())
        return len(_secrets)


def _merge(spans: list[tuple[int, int]]) -> list[list[int]]:
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _shape_spans(text: str) -> list[tuple[int, int]]:
    scan = _ESCAPED_SPACE_RE.sub("  ", text) if "\\" in text else text
    spans = secret_spans(scan) + loose_secret_spans(scan, spare_signatures=True)
    for match in _USER_TEXT_RE.finditer(scan):
        offset = match.start(2)
        spans += [(offset + a, offset + b) for a, b in loose_secret_spans(match.group(2))]
    for match in _SECRET_COMMAND_RE.finditer(text):
        spans.append(match.span(2))
    return spans


def redact(text: str) -> str:
    """`text` with every registered secret and every secret-shaped part replaced by [REDACTED]."""
    global _stale
    if _stale or (_next_expiry is not None and time.monotonic() >= _next_expiry):
        with _lock:
            _prune(time.monotonic())
            if _stale or (_next_expiry is not None and time.monotonic() >= _next_expiry):
                _rebuild()
                _stale = False
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if ":" in text:
        text = _TELEGRAM_TOKEN_RE.sub(REDACTED, text)
    if len(text) < _MIN_SHAPE_CHARS:
        return text
    spans = _shape_spans(text)
    if not spans:
        return text
    # Cut from the end so earlier offsets stay valid.
    for start, end in reversed(_merge(spans)):
        text = text[:start] + REDACTED + text[end:]
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    try:
        shown = str(value)
    except Exception:  # a broken __str__ must not break logging
        return value
    cleaned = redact(shown)
    return value if cleaned == shown else cleaned


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_MARK = "_lasersell_redacted"


def _format_exception(exc_info: Any) -> str:
    text = "".join(traceback.format_exception(*exc_info))
    return text.rstrip("\n")


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: message with args, traceback, stack, extra fields."""
    try:
        message = record.getMessage()
    except Exception:
        # Bad %-args: keep what the caller wrote, redacted, rather than lose the line.
        message = f"{record.msg!s} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info:
        if record.exc_info[0] is not None:
            record.exc_text = redact(_format_exception(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for key, value in list(record.__dict__.items()):
        if key not in _STANDARD_ATTRS and key != _MARK:
            record.__dict__[key] = _redact_value(value)
    record.__dict__[_MARK] = True


class _RedactingDict(dict):
    """A record's __dict__ that redacts values stored by subscript: `makeRecord` adds `extra=` fields
    with `rv.__dict__[key] = value` after the factory has run, so this is where they can be caught."""

    __slots__ = ()

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _STANDARD_ATTRS and key != _MARK:
            value = _redact_value(value)
        super().__setitem__(key, value)


class _RedactingFactory:
    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        redact_record(record)
        record.__dict__ = _RedactingDict(record.__dict__)
        return record


class RedactingFilter(logging.Filter):
    """Handler filter: redacts any record the factory did not already clean."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.__dict__.get(_MARK):
            redact_record(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, exc / stack when present, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_format_exception(record.exc_info))
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != _MARK and key not in entry:
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)


_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_installed_handlers: list[logging.Handler] = []


def install_redaction(handler: logging.Handler) -> logging.Handler:
    """Attach the redacting filter to a handler created outside `setup_logging`; returns it."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
    return handler


def setup_logging(level: str = "INFO", fmt: str = "text", *, log_file: str | Path | None = None) -> None:
    """Log to stderr (or only to `log_file` when given) as text or JSON lines, with redaction.

    Safe to call again: it replaces the handlers it installed before.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}: use text or json")

    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(current))

    root = logging.getLogger()
    for old in _installed_handlers:
        root.removeHandler(old)
        old.close()
    _installed_handlers.clear()

    if log_file is not None:
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    install_redaction(handler)
    root.addHandler(handler)
    _installed_handlers.append(handler)
    for other in root.handlers:
        install_redaction(other)
    root.setLevel(numeric)

    # httpx logs every Bot API request at INFO (a long poll every few seconds): noise unless debugging.
    logging.getLogger("httpx").setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)
