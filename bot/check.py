"""`lasersell-bot check`: validate the settings and reach every configured endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import websockets

from bot.config import Settings
from bot.lasersell_api import InvalidApiKey, LaserSellApi
from bot.rotation import CHECK_KEY
from bot.vault import Vault, load_master_key
from storage.db import Database, describe
from storage.meta import Meta

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
    """GET /v1/account: with the operator key it checks the key and shows its plan; without one, reachability."""
    api = LaserSellApi(settings.lasersell_api_url, timeout=TIMEOUT_S)
    try:
        if not settings.lasersell_api_key:
            try:
                await api.account("")
            except InvalidApiKey:
                return "reachable (no LASERSELL_API_KEY set; each user checks their own key)"
            return "reachable"
        try:
            account = await api.account(settings.lasersell_api_key)
        except InvalidApiKey:
            raise RuntimeError("LaserSell refused LASERSELL_API_KEY (401): copy it again from the dashboard") from None
        return f"key accepted, plan {account.plan}, up to {account.max_wallets} wallet(s)"
    finally:
        await api.close()


async def _lasersell_stream(settings: Settings) -> str:
    # Reachability only, without the key: one stream session per key, so opening one here could push a running
    # bot's session off. The key itself is checked by GET /v1/account above.
    try:
        async with websockets.connect(settings.lasersell_stream_url, open_timeout=TIMEOUT_S) as ws:
            await ws.close()
        return "connected"
    except websockets.InvalidStatus as exc:  # the server answered: reachable
        return f"reachable (HTTP {exc.response.status_code} without a key)"


async def _database(settings: Settings) -> str:
    db = await Database.open(settings.database)
    try:
        return f"{describe(settings.database)} ({db.backend}) at schema version {await db.schema_version()}"
    finally:
        await db.close()


async def _master_key(settings: Settings) -> str:
    settings.require_master_key()
    vault = Vault(load_master_key(settings.bot_master_key, settings.bot_master_key_file))
    db = await Database.open(settings.database)
    try:
        check = await Meta(db).get(CHECK_KEY)
    finally:
        await db.close()
    if check is None:
        return f"key id {vault.key_id} (no secrets stored yet)"
    vault.verify_check(check)  # raises WrongMasterKey when this key does not open the database
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
