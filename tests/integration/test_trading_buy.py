"""/buy asks LaserSell for exactly the amount the trader typed: `POST /v1/buy` takes `amount` as a human amount
(0.1 = 0.1 SOL) or `amount_in_total` in atomic units, exactly one of them (openapi.yaml). Lamports sent as
`amount` would ask for a hundred million SOL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from bot.exits.buy import Buyer
from bot.exits.executor import Executor
from bot.lasersell_api import LaserSellApi
from bot.solana_rpc import RpcError
from storage.accounts import SettingsStore, Wallet
from storage.db import Database
from storage.users import Users

USER = 21
KEY = "ls_test_" + os.urandom(8).hex()


class BuyStandIn:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def buy(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        if ("amount" in body) == ("amount_in_total" in body):
            return web.json_response({"error": "exactly one of amount or amount_in_total"}, status=400)
        return web.json_response({"tx": "AA==", "route": {"market_type": "pumpswap", "pool_id": str(Pubkey.new_unique())}})

    async def __aenter__(self) -> BuyStandIn:
        app = web.Application()
        app.router.add_post("/v1/buy", self.buy)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[tuple[Buyer, BuyStandIn]]:
    db = await Database.open(tmp_path / "bot.db")
    await Users(db).seen(USER, USER, "Ann")
    wallet = Wallet(1, USER, str(Keypair().pubkey()), "Main", b"", True, 1, 1)

    async def api_key(_user: int) -> tuple[str, object]:
        return KEY, None

    async def wallets(_user: int) -> list[Wallet]:
        return [wallet]

    async def balance(_address: str) -> int:
        return 2_000_000_000

    async def no_account(*_args: object) -> object:
        raise RpcError("not asked in this test")

    async with BuyStandIn() as lasersell:
        api = LaserSellApi(lasersell.url)
        services = SimpleNamespace(
            db=db, api=api, settings=SimpleNamespace(guard_extra_programs=()),
            accounts=SimpleNamespace(api_key=api_key, wallets=SimpleNamespace(list=wallets), store=SettingsStore(db)),
            rpc=SimpleNamespace(get_balance=balance, call=no_account),
        )
        streams = SimpleNamespace(client={USER: SimpleNamespace(state="connected")}.get)
        executor = Executor(services)  # type: ignore[arg-type]
        buyer = Buyer(services, executor, streams)  # type: ignore[arg-type]
        try:
            yield buyer, lasersell
        finally:
            await buyer.close()
            await executor.close()
            await api.close()
            await db.close()


async def test_buy_0_1_asks_lasersell_for_0_1_sol_and_the_quote_says_0_1_sol(scene: tuple[Buyer, BuyStandIn]) -> None:
    buyer, lasersell = scene
    quote = await buyer.quote(USER, str(Pubkey.new_unique()), "0.1")
    (body,) = lasersell.bodies
    # exactly one amount field, and it means 0.1 SOL: 100,000,000 lamports in the atomic field
    assert body["amount_in_total"] == 100_000_000 and "amount" not in body
    assert body["input"] == "SOL"
    assert "for 0.1 SOL" in buyer.describe(quote.order)
    assert quote.order.lamports == 100_000_000
