"""The sandbox LaserSell REST API: keys, wallet proofs, sell and buy transactions landed on the chain."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from solders.keypair import Keypair
from solders.rpc.responses import GetSignatureStatusesResp, SendTransactionResp
from solders.transaction import VersionedTransaction

from sandbox.accounts import Accounts
from sandbox.chain import Chain
from sandbox.exit_api import ExitApi
from sandbox.http import JsonHttpServer, Request
from sandbox.rpc import SandboxRpc

NOW = 1_750_000_000


class Api:
    def __init__(
        self, chain: Chain, accounts: Accounts, api: ExitApi, rpc: SandboxRpc, client: httpx.AsyncClient
    ):
        self.chain, self.accounts, self.api, self.rpc, self.client = chain, accounts, api, rpc, client
        self.key = accounts.issue("professional").key
        self.mint = chain.create_mint("MOON", 6, 40, 1_000_000_000, name="Moon")

    async def post(self, path: str, body: Any, key: str | None = "default") -> httpx.Response:
        headers = {} if key is None else {"x-api-key": self.key if key == "default" else key}
        return await self.client.post(self.api.url + path, json=body, headers=headers)

    async def rpc_call(self, method: str, *params: Any) -> str:
        reply = await self.client.post(
            self.rpc.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        )
        return reply.text


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    chain, accounts = Chain(seed=5), Accounts(seed=5)
    exit_api = ExitApi(chain, accounts, clock=lambda: NOW)
    rpc = SandboxRpc(chain)
    await exit_api.start()
    await rpc.start()
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            yield Api(chain, accounts, exit_api, rpc, client)
        finally:
            await exit_api.stop()
            await rpc.stop()


def network_fee(tx_b64: str) -> int:
    """5000 lamports a signature plus the priority fee its compute budget instructions ask for."""
    tx = VersionedTransaction.from_bytes(base64.b64decode(tx_b64))
    keys = tx.message.account_keys
    limit, price = 200_000, 0
    for ix in tx.message.instructions:
        if str(keys[ix.program_id_index]) != "ComputeBudget111111111111111111111111111111":
            continue
        data = bytes(ix.data)
        if data[0] == 2:
            limit = int.from_bytes(data[1:5], "little")
        elif data[0] == 3:
            price = int.from_bytes(data[1:9], "little")
    return 5000 * tx.message.header.num_required_signatures + -(-price * limit // 1_000_000)


def proof(wallet: Keypair, stamp: int = NOW) -> dict[str, str]:
    message = f"lasersell-register:{wallet.pubkey()}:{stamp}"
    return {
        "wallet_pubkey": str(wallet.pubkey()),
        "message": message,
        "signature": str(wallet.sign_message(message.encode())),
    }


async def sign_and_send(api: Api, tx_b64: str, wallet: Keypair) -> Any:
    unsigned = VersionedTransaction.from_bytes(base64.b64decode(tx_b64))
    assert unsigned.message.account_keys[0] == wallet.pubkey()
    assert unsigned.message.header.num_required_signatures == 1
    signed = VersionedTransaction(unsigned.message, [wallet])
    text = await api.rpc_call(
        "sendTransaction",
        base64.b64encode(bytes(signed)).decode(),
        {"encoding": "base64", "skipPreflight": True, "maxRetries": 0},
    )
    signature = SendTransactionResp.from_json(text).value
    statuses = GetSignatureStatusesResp.from_json(
        await api.rpc_call("getSignatureStatuses", [str(signature)], {"searchTransactionHistory": True})
    )
    return statuses.value[0]


async def test_keys_are_checked(api: Api) -> None:
    missing = await api.post("/v1/sell", {}, key=None)
    assert missing.status_code == 401 and missing.json()["reason"] == "missing_api_key"
    wrong = await api.post("/v1/sell", {}, key="ls_nope")
    assert wrong.status_code == 401 and wrong.json() == {
        "error": "this API key is not valid",
        "status": "error",
        "reason": "invalid_api_key",
        "message": "this API key is not valid",
    }


async def test_registration_proof_good_bad_expired(api: Api) -> None:
    wallet = Keypair()
    good = await api.post("/v1/wallets/register", {**proof(wallet), "label": "main"})
    assert good.status_code == 200 and good.json()["status"] == "ok"
    assert api.accounts.is_registered(api.key, str(wallet.pubkey()))
    again = await api.post("/v1/wallets/register", proof(wallet, NOW - 10))
    assert again.status_code == 200 and again.json()["already_registered"] is True
    assert again.json()["label"] == "main"

    other = Keypair()
    forged = {**proof(other), "signature": str(Keypair().sign_message(proof(other)["message"].encode()))}
    bad = await api.post("/v1/wallets/register", forged)
    # openapi: 403 is "Signature verification failed", not a key problem.
    assert bad.status_code == 403 and bad.json()["reason"] == "invalid_signature"
    assert "signature verification failed" in bad.json()["error"]
    stale = await api.post("/v1/wallets/register", proof(other, NOW - 301))
    assert stale.status_code == 400 and stale.json()["reason"] == "message_expired"
    future = await api.post("/v1/wallets/register", proof(other, NOW + 301))
    assert future.status_code == 400 and future.json()["reason"] == "message_expired"
    mismatch = await api.post("/v1/wallets/register", {**proof(wallet), "wallet_pubkey": str(other.pubkey())})
    assert mismatch.status_code == 400 and mismatch.json()["reason"] == "invalid_message"
    assert not api.accounts.is_registered(api.key, str(other.pubkey()))
    junk = await api.post("/v1/wallets/register", {**proof(other), "signature": "zzz"})
    assert junk.status_code == 403
    assert not api.accounts.is_registered(api.key, str(other.pubkey()))


async def test_registration_uses_wall_clock_by_default() -> None:
    chain, accounts = Chain(seed=1), Accounts(seed=1)
    key = accounts.issue().key
    api = ExitApi(chain, accounts)
    wallet = Keypair()
    body = json.dumps(proof(wallet, int(time.time()))).encode()
    request = Request("POST", "/v1/wallets/register", {}, {"x-api-key": key}, body)
    status, answer = await api.register_wallet(request)
    assert status == 200 and answer["status"] == "ok"


def holder(api: Api, sol_in: float) -> tuple[Keypair, int]:
    """A funded wallet that bought `sol_in` SOL of the test market; (wallet, tokens)."""
    wallet = Keypair()
    api.chain.fund(wallet.pubkey(), 1)
    return wallet, api.chain.outside_buy(wallet.pubkey(), api.mint, sol_in)


def sell_request(api: Api, wallet: Keypair, tokens: int, slippage_bps: int = 100, **fields: Any) -> dict[str, Any]:
    return {
        "mint": str(api.mint),
        "user_pubkey": str(wallet.pubkey()),
        "amount_tokens": tokens,
        "slippage_bps": slippage_bps,
        **fields,
    }


async def test_sell_end_to_end(api: Api) -> None:
    wallet, tokens = holder(api, 0.4)
    reply = await api.post(
        "/v1/sell", sell_request(api, wallet, tokens, 150, output="SOL", send_mode="helius_sender", tip_lamports=1000)
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    gross = api.chain.quote_sell(api.mint, tokens)
    # Professional: 0.9 % with a 0.01 SOL minimum, taken from the proceeds.
    expected = gross - max(gross * 90 // 10_000, 10_000_000)
    assert body["status"] == "ok" and body["route"]["expected_out"] == expected
    assert (
        body["route"]["min_out"] == expected * 9850 // 10_000 and body["route"]["market_type"] == "pump_fun"
    )
    before = api.chain.balance(wallet.pubkey())
    status = await sign_and_send(api, body["tx"], wallet)
    assert status is not None and status.err is None
    assert api.chain.token_balance(wallet.pubkey(), api.mint) == 0
    fee = network_fee(body["tx"])
    assert api.chain.balance(wallet.pubkey()) == before + expected - 1000 - fee


async def test_sell_that_slips_fails_on_chain(api: Api) -> None:
    wallet, tokens = holder(api, 0.4)
    body = (await api.post("/v1/sell", sell_request(api, wallet, tokens, output="SOL"))).json()
    api.chain.market_move(api.mint, -5)
    status = await sign_and_send(api, body["tx"], wallet)
    assert status is not None and "6003" in str(status.err)
    assert api.chain.token_balance(wallet.pubkey(), api.mint) == tokens


async def test_buy_end_to_end(api: Api) -> None:
    wallet = Keypair()
    api.chain.fund(wallet.pubkey(), 1)
    reply = await api.post(
        "/v1/buy",
        {
            "mint": str(api.mint),
            "user_pubkey": str(wallet.pubkey()),
            "slippage_bps": 100,
            "input": "SOL",
            "amount_in_total": 250_000_000,
        },
    )
    assert reply.status_code == 200, reply.text
    expected = reply.json()["route"]["expected_out"]
    status = await sign_and_send(api, reply.json()["tx"], wallet)
    assert status is not None and status.err is None
    assert api.chain.token_balance(wallet.pubkey(), api.mint) == expected
    human = await api.post(
        "/v1/buy",
        {
            "mint": str(api.mint),
            "user_pubkey": str(wallet.pubkey()),
            "slippage_bps": 100,
            "input": "SOL",
            "amount": 0.1,
        },
    )
    assert human.status_code == 200 and human.json()["route"]["amount_in"] == 100_000_000


async def test_request_errors(api: Api) -> None:
    wallet = Keypair()
    api.chain.fund(wallet.pubkey(), 0.01)
    base = {"mint": str(api.mint), "user_pubkey": str(wallet.pubkey()), "slippage_bps": 100, "output": "SOL"}
    too_many = await api.post("/v1/sell", {**base, "amount_tokens": 5})
    assert too_many.status_code == 422 and too_many.json()["reason"] == "insufficient_balance"
    unknown = await api.post("/v1/sell", {**base, "mint": str(Keypair().pubkey()), "amount_tokens": 5})
    assert unknown.status_code == 404 and unknown.json()["reason"] == "mint_not_found"
    malformed = await api.post("/v1/sell", {**base, "amount_tokens": "lots"})
    assert malformed.status_code == 400 and malformed.json()["status"] == "error"
    not_json = await api.client.post(api.api.url + "/v1/sell", content=b"{", headers={"x-api-key": api.key})
    assert not_json.status_code == 400
    usd1 = await api.post("/v1/sell", {**base, "amount_tokens": 5, "output": "USD1"})
    assert usd1.status_code == 422
    poor = await api.post("/v1/buy", {**base, "input": "SOL", "amount_in_total": 5_000_000_000})
    assert poor.status_code == 422 and poor.json()["reason"] == "insufficient_balance"
    api.api.fail_next(429)
    api.api.fail_next(503, path="/v1/buy")
    limited = await api.post("/v1/sell", {**base, "amount_tokens": 5})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["reason"] == "rate_limited"
    unavailable = await api.post("/v1/buy", {**base, "input": "SOL", "amount_in_total": 1})
    assert unavailable.status_code == 503
    nowhere = await api.post("/v1/nothing", {})
    assert nowhere.status_code == 404
    wrong_method = await api.client.get(api.api.url + "/v1/sell")
    assert wrong_method.status_code == 405


async def test_http_server_keeps_connections_alive_and_reads_headers() -> None:
    seen: list[str | None] = []

    async def echo(request: Request) -> tuple[int, Any]:
        seen.append(request.header("X-Api-Key"))
        return 201, {
            "path": request.path,
            "sub": request.subpath,
            "query": request.query,
            "body": request.json(),
        }

    server = JsonHttpServer()
    server.route("POST", "/echo", echo)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        for n in range(3):
            payload = f'{{"n":{n}}}'.encode()
            writer.write(
                b"POST /echo/deep?x=1 HTTP/1.1\r\nHost: t\r\nx-api-key: k%d\r\nContent-Length: %d\r\n\r\n%s"
                % (n, len(payload), payload)
            )
            await writer.drain()
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            assert head.startswith("HTTP/1.1 201")  # the same connection serves the next request
            length = int(
                next(line for line in head.split("\r\n") if line.startswith("Content-Length")).split(":")[1]
            )
            body = json.loads(await reader.readexactly(length))
            assert body == {"path": "/echo/deep", "sub": "/deep", "query": {"x": "1"}, "body": {"n": n}}
        writer.close()
        assert seen == ["k0", "k1", "k2"]
    finally:
        await server.stop()


async def test_account_reports_the_tier_and_its_limits(api: Api) -> None:
    reply = await api.client.get(api.api.url + "/v1/account", headers={"x-api-key": api.key})
    assert reply.status_code == 200
    assert reply.json() == {
        "tier": 1,
        "tier_name": "tier_1",
        "limits": {"max_wallets": 5, "max_positions_per_wallet": 100, "max_positions_per_session": 500},
    }
    free = api.accounts.issue("free").key
    answer = (await api.client.get(api.api.url + "/v1/account", headers={"x-api-key": free})).json()
    assert (answer["tier"], answer["tier_name"], answer["limits"]["max_wallets"]) == (0, "free", 1)
    refused = await api.client.get(api.api.url + "/v1/account", headers={"x-api-key": "ls_nope"})
    assert refused.status_code == 401 and refused.json()["error"]


async def test_buy_takes_exactly_one_of_amount_and_amount_in_total(api: Api) -> None:
    wallet = Keypair()
    api.chain.fund(wallet.pubkey(), 1)
    base = {"mint": str(api.mint), "user_pubkey": str(wallet.pubkey()), "slippage_bps": 100, "input": "SOL"}
    both = await api.post("/v1/buy", {**base, "amount": 0.1, "amount_in_total": 100_000_000})
    assert both.status_code == 400
    assert "exactly one of amount" in both.json()["error"] and "both" in both.json()["error"]
    neither = await api.post("/v1/buy", base)
    assert neither.status_code == 400 and "neither" in neither.json()["error"]
    negative = await api.post("/v1/buy", {**base, "amount": -1})
    assert negative.status_code == 400 and "positive" in negative.json()["error"]
    atomic = await api.post("/v1/buy", {**base, "amount_in_total": 100_000_000})
    human = await api.post("/v1/buy", {**base, "amount": 0.1})
    assert atomic.json()["route"]["amount_in"] == human.json()["route"]["amount_in"] == 100_000_000


async def test_unregistered_wallet_is_removed_once(api: Api) -> None:
    wallet = Keypair()
    assert (await api.post("/v1/wallets/register", proof(wallet))).status_code == 200
    body = {"wallet_pubkey": str(wallet.pubkey())}
    headers = {"x-api-key": api.key}
    first = await api.client.request("DELETE", api.api.url + "/v1/wallets", json=body, headers=headers)
    assert first.status_code == 200 and first.json() == {
        "wallet_pubkey": str(wallet.pubkey()),
        "removed": True,
    }
    assert not api.accounts.is_registered(api.key, str(wallet.pubkey()))
    second = await api.client.request("DELETE", api.api.url + "/v1/wallets", json=body, headers=headers)
    assert second.json()["removed"] is False
    nobody = await api.client.request("DELETE", api.api.url + "/v1/wallets", json=body)
    assert nobody.status_code == 401


async def test_sell_without_output_is_refused(api: Api) -> None:
    wallet, tokens = holder(api, 0.1)
    reply = await api.post("/v1/sell", sell_request(api, wallet, tokens))
    assert reply.status_code == 400 and "output is required" in reply.json()["error"]


async def test_usd1_market_buys_and_sells_in_usd1(api: Api) -> None:
    wallet = Keypair()
    api.chain.fund(wallet.pubkey(), 1)
    api.chain.fund_usd1(wallet.pubkey(), 50)
    usd1 = api.chain.usd1_mint
    mint = api.chain.create_mint("DOLR", 6, 20_000, 1_000_000_000, quote="USD1")
    base = {"mint": str(mint), "user_pubkey": str(wallet.pubkey()), "slippage_bps": 100}
    in_sol = await api.post("/v1/buy", {**base, "input": "SOL", "amount": 0.1})
    assert in_sol.status_code == 422 and "USD1" in in_sol.json()["error"]
    reply = await api.post("/v1/buy", {**base, "input": "USD1", "amount": 10.0})
    assert reply.status_code == 200, reply.text
    route = reply.json()["route"]
    assert route["amount_in"] == 10_000_000 and route["input_mint"] == str(usd1)  # 10 USD1, 6 decimals
    status = await sign_and_send(api, reply.json()["tx"], wallet)
    assert status is not None and status.err is None
    assert api.chain.token_balance(wallet.pubkey(), usd1) == 40_000_000
    tokens = api.chain.token_balance(wallet.pubkey(), mint)
    assert tokens == route["expected_out"] > 0
    sold = await api.post("/v1/sell", {**base, "amount_tokens": tokens, "output": "USD1"})
    assert sold.status_code == 200, sold.text
    gross = api.chain.quote_sell(mint, tokens)
    assert sold.json()["route"]["expected_out"] == gross - gross * 90 // 10_000  # USD1: percentage only
    status = await sign_and_send(api, sold.json()["tx"], wallet)
    assert status is not None and status.err is None
    assert api.chain.token_balance(wallet.pubkey(), usd1) == 40_000_000 + gross - gross * 90 // 10_000
    too_much = await api.post("/v1/buy", {**base, "input": "USD1", "amount": 1000.0})
    assert too_much.status_code == 422 and too_much.json()["reason"] == "insufficient_balance"
