"""`lasersell-bot check`: validate the settings and reach every configured endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import websockets

from bot.config import Settings

TIMEOUT_S = 5.0


async def _telegram(settings: Settings) -> str:
    if not settings.telegram_bot_token:
        raise RuntimeError("TELEGRAM_BOT_TOKEN is not set")
    url = f"{settings.telegram_api_base_url}/bot{settings.telegram_bot_token}/getMe"
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        reply = await client.get(url)
    body = reply.json()
    if not body.get("ok"):
        raise RuntimeError(f"Telegram refused the token: {body.get('description', reply.status_code)}")
    return f"@{body['result'].get('username')}"


async def _solana(settings: Settings) -> str:
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        reply = await client.post(settings.solana_rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "getSlot"})
    body = reply.json()
    if "result" not in body:
        raise RuntimeError(f"getSlot failed: {body.get('error')}")
    return f"slot {body['result']}"


async def _lasersell_api(settings: Settings) -> str:
    # Any HTTP answer proves the service is reachable; a key is checked per user.
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        reply = await client.post(f"{settings.lasersell_api_url}/v1/wallets/register", json={})
    return f"HTTP {reply.status_code}"


async def _lasersell_stream(settings: Settings) -> str:
    headers = {"x-api-key": settings.lasersell_api_key} if settings.lasersell_api_key else {}
    try:
        async with websockets.connect(
            settings.lasersell_stream_url, additional_headers=headers, open_timeout=TIMEOUT_S
        ) as ws:
            await ws.close()
        return "connected"
    except websockets.InvalidStatus as exc:  # the server answered: reachable, the key is per user
        return f"reachable (HTTP {exc.response.status_code} without a key)"


async def _database(settings: Settings) -> str:
    from storage.db import Database

    db = await Database.open(settings.database_path)
    try:
        return f"{settings.database_path} at schema version {await db.schema_version()}"
    finally:
        await db.close()


async def _master_key(settings: Settings) -> str:
    from bot.services import CHECK_KEY
    from bot.vault import Vault, load_master_key
    from storage.db import Database

    settings.require_master_key()
    vault = Vault(load_master_key(settings.bot_master_key, settings.bot_master_key_file))
    db = await Database.open(settings.database_path)
    try:
        row = await db.fetchone("SELECT value FROM meta WHERE key=?", (CHECK_KEY,))
    finally:
        await db.close()
    if row is None:
        return f"key id {vault.key_id} (no secrets stored yet)"
    vault.verify_check(bytes(row[0]))  # raises WrongMasterKey when this key does not open the database
    return f"key id {vault.key_id}, opens the database's secrets"


CHECKS: list[tuple[str, Callable[[Settings], Awaitable[str]]]] = [
    ("Telegram", _telegram),
    ("Solana RPC", _solana),
    ("LaserSell API", _lasersell_api),
    ("LaserSell stream", _lasersell_stream),
    ("Database", _database),
    ("Master key", _master_key),
]


async def run_checks(settings: Settings) -> int:
    print("Settings: OK")
    failed = 0
    for name, check in CHECKS:
        try:
            detail = await asyncio.wait_for(check(settings), TIMEOUT_S * 2)
            print(f"{name}: OK ({detail})")
        except Exception as exc:  # every failure is reported, none stops the others
            failed += 1
            reason = f"{type(exc).__name__}: {exc}"
            for secret in settings.secrets():  # e.g. a URL holding the bot token inside an httpx error
                reason = reason.replace(secret, "[REDACTED]")
            print(f"{name}: FAIL ({reason})")
    return 1 if failed else 0
