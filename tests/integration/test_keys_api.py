"""Keys and wallet registration against a stand-in of the LaserSell REST API (shapes from openapi.yaml):
a key is checked with GET /v1/account, never by opening a stream session (one session per key), and every
registration error is explained for what it is."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from solders.keypair import Keypair

from bot.accounts import AccountError, AccountService
from bot.lasersell_api import LaserSellApi
from bot.vault import Vault
from storage.db import Database
from storage.users import Users

USER = 11
KEY = "ls_test_" + os.urandom(8).hex()


class StandIn:
    """GET /v1/account, POST /v1/wallets/register and the stream's upgrade path, counting every call."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.account_status = 200
        self.account_body: dict[str, Any] = {
            "tier": 1, "tier_name": "tier_1",
            "limits": {"max_wallets": 5, "max_positions_per_wallet": 100, "max_positions_per_session": 500},
        }
        self.register_status = 200
        self.headers: list[dict[str, str]] = []
        self.unregistered: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def account(self, request: web.Request) -> web.Response:
        self.calls["account"] += 1
        if request.headers.get("x-api-key") != KEY or self.account_status == 401:
            return web.json_response({"error": "invalid api key"}, status=401)
        return web.json_response(self.account_body, status=self.account_status)

    async def register(self, request: web.Request) -> web.Response:
        self.calls["register"] += 1
        body = await request.json()
        if self.register_status == 200:
            return web.json_response({"wallet_pubkey": body["wallet_pubkey"], "registered": True})
        words = {401: "invalid api key", 403: "signature verification failed", 429: "rate limited",
                 400: "malformed message"}.get(self.register_status, "internal error")
        return web.json_response({"error": words}, status=self.register_status)

    async def unregister(self, request: web.Request) -> web.Response:
        self.calls["unregister"] += 1
        body = await request.json()
        self.unregistered.append(body["wallet_pubkey"])
        return web.json_response({"wallet_pubkey": body["wallet_pubkey"], "removed": True})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.calls["stream"] += 1
        self.headers.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    async def __aenter__(self) -> StandIn:
        app = web.Application()
        app.router.add_get("/v1/account", self.account)
        app.router.add_post("/v1/wallets/register", self.register)
        app.router.add_delete("/v1/wallets", self.unregister)
        app.router.add_get("/v1/ws", self.stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    async with StandIn() as server:
        yield server


@pytest.fixture
async def accounts(tmp_path: Path, stand_in: StandIn) -> AsyncIterator[AccountService]:
    db = await Database.open(tmp_path / "bot.db")
    await Users(db).seen(USER, USER, "Ann")
    api = LaserSellApi(stand_in.url, stand_in.url.replace("http", "ws") + "/v1/ws")
    settings = SimpleNamespace(lasersell_api_key="", is_admin=lambda _user: False)
    service = AccountService(settings, db, Vault(os.urandom(32)), api, rpc=None)  # type: ignore[arg-type]
    try:
        yield service
    finally:
        await api.close()
        await db.close()


async def test_a_key_is_checked_with_v1_account_and_no_stream_session_is_opened(
    accounts: AccountService, stand_in: StandIn
) -> None:
    info = await accounts.set_api_key(USER, KEY)
    words = info.limits_words()
    assert words.startswith("Professional plan: up to 5 wallet(s)")
    assert "100 open positions per wallet" in words and "500 in all" in words
    assert stand_in.calls["account"] == 1
    assert stand_in.calls["stream"] == 0
    # the plan is remembered with the key, so /status and the wallet limit use it without asking again
    stored = await accounts.key_info(USER)
    assert stored is not None and stored.max_wallets == 5 and stored.plan == "Professional"
    assert stand_in.calls["account"] == 1


async def test_a_refused_key_is_told_and_not_saved(accounts: AccountService, stand_in: StandIn) -> None:
    stand_in.account_status = 401
    with pytest.raises(AccountError, match="LaserSell refused that key"):
        await accounts.set_api_key(USER, KEY)
    assert await accounts.key_info(USER) is None
    assert stand_in.calls["stream"] == 0


async def test_a_register_403_is_explained_as_the_ownership_signature_not_the_key(
    accounts: AccountService, stand_in: StandIn
) -> None:
    await accounts.set_api_key(USER, KEY)
    stand_in.register_status = 403
    with pytest.raises(AccountError) as caught:
        await accounts.import_wallet(USER, str(Keypair()))
    text = str(caught.value)
    assert "ownership signature" in text and "API key is fine" in text
    assert "refused your API key" not in text
    assert await accounts.wallets.list(USER) == []


async def test_a_register_401_asks_for_the_key_again(accounts: AccountService, stand_in: StandIn) -> None:
    await accounts.set_api_key(USER, KEY)
    stand_in.register_status = 401
    with pytest.raises(AccountError, match="refused your API key.*/apikey"):
        await accounts.import_wallet(USER, str(Keypair()))


async def test_a_busy_register_is_retried_then_says_try_again(accounts: AccountService, stand_in: StandIn) -> None:
    await accounts.set_api_key(USER, KEY)
    stand_in.register_status = 429
    with pytest.raises(AccountError, match="try again in a minute"):
        await accounts.import_wallet(USER, str(Keypair()))
    assert stand_in.calls["register"] == 3  # the client's own retries on 429, then the words


async def test_a_malformed_register_request_is_not_blamed_on_the_key(accounts: AccountService, stand_in: StandIn) -> None:
    await accounts.set_api_key(USER, KEY)
    stand_in.register_status = 400
    with pytest.raises(AccountError) as caught:
        await accounts.import_wallet(USER, str(Keypair()))
    assert "malformed message" in str(caught.value) and "API key" not in str(caught.value)


async def test_a_removed_wallet_is_unregistered_so_its_place_on_the_plan_is_free(
    accounts: AccountService, stand_in: StandIn
) -> None:
    await accounts.set_api_key(USER, KEY)
    wallet = await accounts.import_wallet(USER, str(Keypair()))
    assert stand_in.calls["register"] == 1
    await accounts.remove(USER, wallet.id)
    assert stand_in.unregistered == [wallet.address]
    assert await accounts.wallets.list(USER) == []
