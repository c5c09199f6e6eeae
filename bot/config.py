"""Settings from the environment and an optional `.env` file.

Every setting is validated at start; a bad one raises `ConfigError`, which names the variable, says what
is wrong with it and how to fix it. The command line prints that one line and exits with status 2.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

TELEGRAM_TOKEN_RE = re.compile(r"^\d{5,12}:[A-Za-z0-9_-]{30,}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# name -> (default, description); the order and text feed `.env.example` and the README table.
VARIABLES: dict[str, tuple[str, str]] = {
    "TELEGRAM_BOT_TOKEN": ("", "Bot token from @BotFather. Empty: `lasersell-bot` runs the sandbox demo."),
    "TELEGRAM_API_BASE_URL": ("https://api.telegram.org", "Bot API server (a local Bot API server or the sandbox)."),
    "LASERSELL_STREAM_URL": ("wss://stream.lasersell.io/v1/ws", "LaserSell Exit Intelligence Stream endpoint."),
    "LASERSELL_API_URL": ("https://api.lasersell.io", "LaserSell REST API (wallet registration, buy and sell)."),
    "LASERSELL_API_KEY": ("", "Optional operator key for a single-user deployment: admins without a key of their own stream with it."),
    "SOLANA_RPC_URL": ("https://api.mainnet-beta.solana.com", "Solana JSON-RPC for balances, blockhash checks, sending and confirming."),
    "HELIUS_SENDER_URL": ("https://sender.helius-rpc.com/fast", "Where transactions go for users whose send mode is helius_sender."),
    "ASTRALANE_URL": ("https://fr.gateway.astralane.io/iris", "Where transactions go for users whose send mode is astralane (with their Astralane key)."),
    "BOT_MASTER_KEY": ("", "Base64 of 32 random bytes that encrypts every stored secret. Set this or BOT_MASTER_KEY_FILE."),
    "BOT_MASTER_KEY_FILE": ("", "Path of a file holding the master key (written by `lasersell-bot gen-master-key`)."),
    "DATABASE_PATH": ("data/bot.db", "SQLite database file (created with its folder)."),
    "DATABASE_URL": ("", "Empty: SQLite at DATABASE_PATH. Or postgresql://user:password@host:5432/db, shared by several instances."),
    "WEBHOOK_URL": ("", "`run --webhook`: the public HTTPS URL Telegram posts updates to (your reverse proxy, e.g. https://bot.example.com/telegram)."),
    "WEBHOOK_LISTEN": ("127.0.0.1:8080", "`run --webhook`: the address this instance serves the webhook, /healthz and /metrics on."),
    "WEBHOOK_SECRET": ("", "`run --webhook`: 1-256 letters, digits, _ or -; Telegram sends it with every update and others are refused."),
    "ADMIN_USER_IDS": ("", "Comma-separated Telegram user ids allowed to use admin commands."),
    "LOG_LEVEL": ("INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    "LOG_FORMAT": ("text", "`text` for people, `json` for log collectors (one object a line)."),
    "TELEGRAM_GLOBAL_RATE": ("25", "Messages per second the bot sends overall (Telegram allows about 30)."),
    "TELEGRAM_CHAT_RATE": ("1", "Messages per second the bot sends to one chat, sustained (Telegram asks for about 1)."),
    "BROADCAST_RATE": ("25", "Messages per second an admin broadcast may use at most."),
    "GUARD_EXTRA_PROGRAMS": ("", "Comma-separated program ids the transaction guard allows besides the built-in list."),
    # --- the dashboard Mini App (bot/miniapp) ---
    "MINIAPP_LISTEN": ("", "host:port the dashboard Mini App's web server listens on (port 0: any free port). Empty: no dashboard."),
    "MINIAPP_PUBLIC_URL": ("", "The dashboard's public HTTPS address, as Telegram clients reach it (e.g. behind a reverse proxy). Empty: http://MINIAPP_LISTEN."),
    "MINIAPP_INITDATA_MAX_AGE_S": ("3600", "Seconds a dashboard session's signed Telegram initData stays valid."),
    "MINIAPP_SECURITY_DELAY_S": ("86400", "Seconds before a new withdrawal address or a PIN change takes effect (the user is told in the chat)."),
    "MINIAPP_PIN_ATTEMPTS": ("5", "Wrong PINs in a row that lock the PIN."),
    "MINIAPP_PIN_LOCKOUT_S": ("900", "Seconds the PIN stays locked after too many wrong tries."),
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line a person can act on."""

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}. {fix}")


@dataclass(frozen=True)
class Settings:
    telegram_bot_token: str | None
    telegram_api_base_url: str
    lasersell_stream_url: str
    lasersell_api_url: str
    lasersell_api_key: str | None
    solana_rpc_url: str
    bot_master_key: str | None
    bot_master_key_file: str | None
    database_path: Path
    admin_user_ids: frozenset[int]
    log_level: str
    log_format: str
    telegram_global_rate: float = 25.0
    broadcast_rate: float = 25.0
    telegram_chat_rate: float = 1.0
    guard_extra_programs: tuple[str, ...] = field(default_factory=tuple)
    helius_sender_url: str = "https://sender.helius-rpc.com/fast"
    astralane_url: str = "https://fr.gateway.astralane.io/iris"
    # the dashboard Mini App
    miniapp_listen: str | None = None
    miniapp_public_url: str | None = None
    miniapp_initdata_max_age_s: int = 3600
    miniapp_security_delay_s: int = 86400
    miniapp_pin_attempts: int = 5
    miniapp_pin_lockout_s: int = 900
    database_url: str = ""  # sqlite:///... or postgresql://...; empty: SQLite at database_path
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1:8080"
    webhook_secret: str = ""

    @property
    def database(self) -> str | Path:
        """What `Database.open` takes: the DATABASE_URL, else the SQLite file at DATABASE_PATH."""
        return self.database_url or self.database_path

    @property
    def sandbox_mode(self) -> bool:
        """No bot token: run against the local sandbox services instead of Telegram."""
        return not self.telegram_bot_token

    def is_admin(self, telegram_id: int) -> bool:
        return telegram_id in self.admin_user_ids

    def secrets(self) -> list[str]:
        """Values that must never reach a log line."""
        password = urlparse(self.database_url).password if self.database_url else None
        return [s for s in (self.telegram_bot_token, self.lasersell_api_key, self.bot_master_key, password,
                            self.webhook_secret) if s]

    def require_webhook(self) -> tuple[str, int]:
        """For `run --webhook`: the URL and secret must be set; returns the (host, port) to listen on."""
        if not self.webhook_url:
            raise ConfigError("WEBHOOK_URL", "is not set", "Set the public HTTPS URL of your reverse proxy, e.g. https://bot.example.com/telegram")
        if not self.webhook_secret:
            raise ConfigError("WEBHOOK_SECRET", "is not set", "Set 32 or more random letters and digits (e.g. `openssl rand -hex 32`)")
        host, _, port = self.webhook_listen.rpartition(":")
        return host or "0.0.0.0", int(port)

    def require_master_key(self) -> None:
        if not self.bot_master_key and not self.bot_master_key_file:
            raise ConfigError(
                "BOT_MASTER_KEY",
                "not set (nor BOT_MASTER_KEY_FILE); the bot needs it to encrypt wallet keys",
                "Run `lasersell-bot gen-master-key --out master.key` and set BOT_MASTER_KEY_FILE=master.key",
            )


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (comments, blank lines, `export`, single or double quotes)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"{path.name} line {number}", "is not KEY=VALUE", "Fix or remove that line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or VARIABLES[name][0]
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(
            name,
            f"{value!r} is not a {' or '.join(schemes)} URL",
            f"Set it to a full URL such as {VARIABLES[name][0]}",
        )
    return value.rstrip("/")


def _rate(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip() or VARIABLES[name][0]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= 1000:
        raise ConfigError(name, f"{raw!r} is not a rate", "Use messages per second, a number from 0.1 to 1000")
    return value


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build Settings from `env` (default: the process environment) over values from `.env`."""
    merged: dict[str, str] = {}
    if dotenv is not None:
        merged.update(read_dotenv(dotenv))
    merged.update(os.environ if env is None else env)

    token = merged.get("TELEGRAM_BOT_TOKEN", "").strip() or None
    if token and not TELEGRAM_TOKEN_RE.match(token):
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN",
            "does not look like a bot token (expected digits, a colon and about 35 letters)",
            "Copy the token @BotFather gave you, or leave it empty to run the sandbox",
        )

    api_key = merged.get("LASERSELL_API_KEY", "").strip() or None
    if api_key is not None and (len(api_key) < 8 or any(c.isspace() for c in api_key)):
        raise ConfigError(
            "LASERSELL_API_KEY", "is too short or contains spaces", "Paste the key from the LaserSell dashboard"
        )

    master = merged.get("BOT_MASTER_KEY", "").strip() or None
    master_file = merged.get("BOT_MASTER_KEY_FILE", "").strip() or None
    if master and master_file:
        raise ConfigError(
            "BOT_MASTER_KEY", "is set together with BOT_MASTER_KEY_FILE", "Set only one of the two"
        )
    if master_file and not Path(master_file).is_file():
        raise ConfigError(
            "BOT_MASTER_KEY_FILE",
            f"file {master_file!r} does not exist",
            "Create it with `lasersell-bot gen-master-key --out FILE` or fix the path",
        )

    db_raw, db_url = _database_settings(merged)
    webhook_url, webhook_listen, webhook_secret = _webhook_settings(merged)

    admins: set[int] = set()
    for part in merged.get("ADMIN_USER_IDS", "").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ConfigError(
                "ADMIN_USER_IDS",
                f"{part!r} is not a Telegram user id",
                "List numeric ids separated by commas, e.g. 12345678,87654321 (ask @userinfobot for yours)",
            )
        admins.add(int(part))

    level = (merged.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"{level!r} is not a log level", f"Use one of {', '.join(LOG_LEVELS)}")
    fmt = (merged.get("LOG_FORMAT", "").strip() or "text").lower()
    if fmt not in ("text", "json"):
        raise ConfigError("LOG_FORMAT", f"{fmt!r} is not a log format", "Use text or json")

    extra_programs = tuple(p.strip() for p in merged.get("GUARD_EXTRA_PROGRAMS", "").split(",") if p.strip())
    for program in extra_programs:
        if not re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{32,44}", program):
            raise ConfigError(
                "GUARD_EXTRA_PROGRAMS", f"{program!r} is not a program id", "List base58 program ids separated by commas"
            )

    return Settings(
        telegram_bot_token=token,
        telegram_api_base_url=_url(merged, "TELEGRAM_API_BASE_URL", ("http", "https")),
        lasersell_stream_url=_url(merged, "LASERSELL_STREAM_URL", ("ws", "wss")),
        lasersell_api_url=_url(merged, "LASERSELL_API_URL", ("http", "https")),
        lasersell_api_key=api_key,
        solana_rpc_url=_url(merged, "SOLANA_RPC_URL", ("http", "https")),
        bot_master_key=master,
        bot_master_key_file=master_file,
        database_path=Path(db_raw),
        admin_user_ids=frozenset(admins),
        log_level=level,
        log_format=fmt,
        telegram_global_rate=_rate(merged, "TELEGRAM_GLOBAL_RATE"),
        broadcast_rate=_rate(merged, "BROADCAST_RATE"),
        telegram_chat_rate=_rate(merged, "TELEGRAM_CHAT_RATE"),
        guard_extra_programs=extra_programs,
        helius_sender_url=_url(merged, "HELIUS_SENDER_URL", ("http", "https")),
        astralane_url=_url(merged, "ASTRALANE_URL", ("http", "https")),
        **_miniapp_settings(merged),
        database_url=db_url,
        webhook_url=webhook_url,
        webhook_listen=webhook_listen,
        webhook_secret=webhook_secret,
    )


def _database_settings(merged: Mapping[str, str]) -> tuple[str, str]:
    """DATABASE_PATH and DATABASE_URL: (the SQLite path, the PostgreSQL URL or "")."""
    db_raw = merged.get("DATABASE_PATH", "").strip() or VARIABLES["DATABASE_PATH"][0]
    if db_raw.endswith(("/", os.sep)):
        raise ConfigError("DATABASE_PATH", f"{db_raw!r} is a folder", "Give a file path such as data/bot.db")

    db_url = merged.get("DATABASE_URL", "").strip()
    if db_url.startswith("sqlite:///"):
        db_raw, db_url = db_url[len("sqlite:///"):] or db_raw, ""
    elif db_url and (urlparse(db_url).scheme not in ("postgresql", "postgres") or not urlparse(db_url).hostname):
        raise ConfigError(
            "DATABASE_URL",
            "is neither sqlite:///path nor a postgresql://host/database URL",
            "Leave it empty for SQLite at DATABASE_PATH, or set e.g. postgresql://bot:secret@127.0.0.1:5432/lasersell",
        )
    return db_raw, db_url


def _webhook_settings(merged: Mapping[str, str]) -> tuple[str, str, str]:
    """WEBHOOK_URL, WEBHOOK_LISTEN and WEBHOOK_SECRET, checked."""
    webhook_url = merged.get("WEBHOOK_URL", "").strip()
    if webhook_url and (urlparse(webhook_url).scheme not in ("https", "http") or not urlparse(webhook_url).netloc):
        raise ConfigError("WEBHOOK_URL", f"{webhook_url!r} is not a URL", "Set e.g. https://bot.example.com/telegram")
    webhook_listen = merged.get("WEBHOOK_LISTEN", "").strip() or VARIABLES["WEBHOOK_LISTEN"][0]
    if not re.fullmatch(r"[^\s:]*:\d{1,5}", webhook_listen) or not 0 < int(webhook_listen.rsplit(":", 1)[1]) < 65536:
        raise ConfigError("WEBHOOK_LISTEN", f"{webhook_listen!r} is not host:port", "Set e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
    webhook_secret = merged.get("WEBHOOK_SECRET", "").strip()
    if webhook_secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", webhook_secret):
        raise ConfigError(
            "WEBHOOK_SECRET", "may hold only 1-256 letters, digits, _ and -", "Use e.g. the output of `openssl rand -hex 32`"
        )
    return webhook_url, webhook_listen, webhook_secret


def _seconds(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    raw = env.get(name, "").strip() or VARIABLES[name][0]
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(name, f"{raw!r} is out of range", f"Use a whole number from {low} to {high}")
    return int(raw)


def _miniapp_settings(env: Mapping[str, str]) -> dict[str, Any]:
    listen = env.get("MINIAPP_LISTEN", "").strip() or None
    if listen is not None:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError("MINIAPP_LISTEN", f"{listen!r} is not host:port", "Use e.g. 127.0.0.1:8088")
    public = env.get("MINIAPP_PUBLIC_URL", "").strip() or None
    if public is not None:
        public = _url(env, "MINIAPP_PUBLIC_URL", ("http", "https"))
    return {
        "miniapp_listen": listen,
        "miniapp_public_url": public,
        "miniapp_initdata_max_age_s": _seconds(env, "MINIAPP_INITDATA_MAX_AGE_S", 60, 86400),
        "miniapp_security_delay_s": _seconds(env, "MINIAPP_SECURITY_DELAY_S", 0, 30 * 86400),
        "miniapp_pin_attempts": _seconds(env, "MINIAPP_PIN_ATTEMPTS", 1, 100),
        "miniapp_pin_lockout_s": _seconds(env, "MINIAPP_PIN_LOCKOUT_S", 1, 7 * 86400),
    }


def env_example() -> str:
    """The text of `.env.example`, generated from VARIABLES so the two never drift apart."""
    lines = ["# lasersell-bot settings. Copy to .env and fill in; every line shows its default.", ""]
    for name, (default, description) in VARIABLES.items():
        lines.append(f"# {description}")
        lines.append(f"{name}={default}")
        lines.append("")
    return "\n".join(lines)
