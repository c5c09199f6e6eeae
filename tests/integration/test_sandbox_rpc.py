"""The sandbox JSON-RPC over HTTP: every answer parses with solders' typed RPC responses."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import base58
import httpx
import pytest
from solders.keypair import Keypair
from solders.rpc.responses import (
    GetAccountInfoJsonParsedResp,
    GetAccountInfoResp,
    GetBalanceResp,
    GetBlockHeightResp,
    GetHealthResp,
    GetLatestBlockhashResp,
    GetSignatureStatusesResp,
    GetSlotResp,
    GetTokenAccountBalanceResp,
    GetTokenAccountsByOwnerJsonParsedResp,
    GetTransactionResp,
    GetVersionResp,
    IsBlockhashValidResp,
    SendTransactionResp,
    SimulateTransactionResp,
)
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from sandbox.chain import Chain, RpcError
from sandbox.rpc import SandboxRpc


class Node:
    def __init__(self, chain: Chain, rpc: SandboxRpc, client: httpx.AsyncClient) -> None:
        self.chain, self.rpc, self.client = chain, rpc, client

    async def raw(self, payload: Any) -> Any:
        reply = await self.client.post(self.rpc.url, json=payload)
        assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
        return reply.json()

    async def call(self, method: str, *params: Any) -> str:
        """The response text, for the typed parsers."""
        body = await self.raw({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        return json.dumps(body)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    chain = Chain(seed=11)
    rpc = SandboxRpc(chain)
    await rpc.start()
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            yield Node(chain, rpc, client)
        finally:
            await rpc.stop()


def b64(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


async def test_cluster_state_answers(node: Node) -> None:
    node.chain.advance_slots(3)
    assert GetHealthResp.from_json(await node.call("getHealth")).value == "ok"
    assert GetVersionResp.from_json(await node.call("getVersion")).value.solana_core
    assert GetSlotResp.from_json(await node.call("getSlot")).value == 3
    assert GetBlockHeightResp.from_json(await node.call("getBlockHeight")).value == 3
    latest = GetLatestBlockhashResp.from_json(
        await node.call("getLatestBlockhash", {"commitment": "confirmed"})
    )
    blockhash, last_valid = node.chain.latest_blockhash()
    assert latest.value.blockhash == blockhash and latest.value.last_valid_block_height == last_valid
    assert latest.context.slot == 3
    valid = IsBlockhashValidResp.from_json(await node.call("isBlockhashValid", str(blockhash)))
    assert valid.value is True
    node.chain.advance_slots(151)
    assert IsBlockhashValidResp.from_json(await node.call("isBlockhashValid", str(blockhash))).value is False


async def test_accounts_and_token_accounts(node: Node) -> None:
    chain = node.chain
    mint = chain.create_mint("WIF", 6, 20, 500_000_000)
    wallet = Keypair()
    chain.fund(wallet.pubkey(), 1.5)
    tokens = chain.outside_buy(wallet.pubkey(), mint, 0.5)
    balance = GetBalanceResp.from_json(await node.call("getBalance", str(wallet.pubkey())))
    assert balance.value == 1_000_000_000
    ata = chain.ata(wallet.pubkey(), mint)
    info = GetAccountInfoResp.from_json(await node.call("getAccountInfo", str(ata), {"encoding": "base64"}))
    assert (
        info.value is not None
        and len(info.value.data) == 165
        and info.value.owner == chain.token_program(mint)
    )
    parsed = GetAccountInfoJsonParsedResp.from_json(
        await node.call("getAccountInfo", str(ata), {"encoding": "jsonParsed"})
    )
    assert parsed.value.data.parsed["info"]["tokenAmount"]["amount"] == str(tokens)
    missing = GetAccountInfoResp.from_json(await node.call("getAccountInfo", str(Keypair().pubkey())))
    assert missing.value is None
    amount = GetTokenAccountBalanceResp.from_json(await node.call("getTokenAccountBalance", str(ata)))
    assert amount.value.amount == str(tokens) and amount.value.decimals == 6
    for selector in ({"mint": str(mint)}, {"programId": str(chain.token_program(mint))}):
        by_owner = GetTokenAccountsByOwnerJsonParsedResp.from_json(
            await node.call(
                "getTokenAccountsByOwner", str(wallet.pubkey()), selector, {"encoding": "jsonParsed"}
            )
        )
        assert [a.pubkey for a in by_owner.value] == [ata]
        assert by_owner.value[0].account.data.parsed["info"]["mint"] == str(mint)
    mint_parsed = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "getAccountInfo",
            "params": [str(mint), {"encoding": "jsonParsed"}],
        }
    )
    assert mint_parsed["result"]["value"]["data"]["parsed"]["type"] == "mint"


async def test_send_land_and_confirm_in_both_encodings(node: Node) -> None:
    chain = node.chain
    mint = chain.create_mint("BONK", 5, 30, 90_000_000_000)
    wallet = Keypair()
    chain.fund(wallet.pubkey(), 1)
    tokens = chain.outside_buy(wallet.pubkey(), mint, 0.2)
    half = tokens // 2
    first = VersionedTransaction(chain.build_sell_tx(wallet.pubkey(), mint, half, 100).message, [wallet])
    simulated = SimulateTransactionResp.from_json(
        await node.call("simulateTransaction", b64(first), {"encoding": "base64", "sigVerify": True})
    )
    assert simulated.value.err is None and simulated.value.logs
    sent = SendTransactionResp.from_json(
        await node.call(
            "sendTransaction",
            b64(first),
            {
                "encoding": "base64",
                "skipPreflight": True,
                "maxRetries": 0,
                "preflightCommitment": "processed",
            },
        )
    )
    assert sent.value == first.signatures[0]
    chain.advance_slots(1)
    second = VersionedTransaction(
        chain.build_sell_tx(wallet.pubkey(), mint, tokens - half, 100).message, [wallet]
    )
    sent2 = SendTransactionResp.from_json(
        await node.call("sendTransaction", base58.b58encode(bytes(second)).decode())
    )
    assert sent2.value == second.signatures[0]
    statuses = GetSignatureStatusesResp.from_json(
        await node.call(
            "getSignatureStatuses",
            [str(first.signatures[0]), str(second.signatures[0]), str(Keypair().sign_message(b"x"))],
            {"searchTransactionHistory": True},
        )
    )
    one, two, unknown = statuses.value
    assert one.err is None and one.confirmation_status == TransactionConfirmationStatus.Confirmed
    assert one.confirmations == 1 and two.slot == 1 and unknown is None
    assert chain.token_balance(wallet.pubkey(), mint) == 0
    fetched = GetTransactionResp.from_json(
        await node.call("getTransaction", str(first.signatures[0]), {"maxSupportedTransactionVersion": 0})
    )
    meta = fetched.value.transaction.meta
    assert meta.err is None and meta.fee == chain.fee_for(first)
    assert meta.post_balances[0] > meta.pre_balances[0]  # the proceeds arrived
    as_b64 = GetTransactionResp.from_json(
        await node.call(
            "getTransaction",
            str(first.signatures[0]),
            {"encoding": "base64", "maxSupportedTransactionVersion": 0},
        )
    )
    assert as_b64.value.slot == 0
    assert node.rpc.calls["sendTransaction"] == 2


async def test_preflight_errors_have_node_shapes(node: Node) -> None:
    chain = node.chain
    mint = chain.create_mint("DOGE", 6, 30, 1_000_000_000)
    wallet = Keypair()
    chain.fund(wallet.pubkey(), 1)
    tokens = chain.outside_buy(wallet.pubkey(), mint, 0.3)
    tx = VersionedTransaction(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 200).message, [wallet])
    chain.market_move(mint, -15)
    refused = await node.raw(
        {"jsonrpc": "2.0", "id": 9, "method": "sendTransaction", "params": [b64(tx), {"encoding": "base64"}]}
    )
    assert refused["id"] == 9 and refused["error"]["code"] == -32002
    assert refused["error"]["message"].endswith("custom program error: 0x1773")
    assert refused["error"]["data"]["err"] == {"InstructionError": [2, {"Custom": 6003}]}
    simulated = SimulateTransactionResp.from_json(
        await node.call("simulateTransaction", b64(tx), {"encoding": "base64"})
    )
    assert simulated.value.err is not None
    # Expired: refused with preflight, accepted and never landed without.
    stale = VersionedTransaction(chain.build_sell_tx(wallet.pubkey(), mint, tokens, 5000).message, [wallet])
    chain.advance_slots(151)
    expired = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "sendTransaction",
            "params": [b64(stale), {"encoding": "base64"}],
        }
    )
    assert expired["error"]["code"] == -32002
    assert expired["error"]["message"] == "Transaction simulation failed: Blockhash not found"
    sent = SendTransactionResp.from_json(
        await node.call("sendTransaction", b64(stale), {"encoding": "base64", "skipPreflight": True})
    )
    statuses = GetSignatureStatusesResp.from_json(await node.call("getSignatureStatuses", [str(sent.value)]))
    assert statuses.value == [None]
    replaced = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "simulateTransaction",
            "params": [b64(stale), {"encoding": "base64", "replaceRecentBlockhash": True}],
        }
    )
    value = replaced["result"]["value"]
    assert value["err"] is None and value["replacementBlockhash"]["blockhash"] == str(
        chain.latest_blockhash()[0]
    )


async def test_protocol_errors_batches_and_fault_hook(node: Node) -> None:
    unknown = await node.raw({"jsonrpc": "2.0", "id": 1, "method": "getNothing"})
    assert unknown["error"] == {"code": -32601, "message": "Method not found"}
    bad = await node.raw({"jsonrpc": "2.0", "id": 2, "method": "getBalance", "params": ["not-a-key"]})
    assert bad["error"]["code"] == -32602
    garbage = await node.raw(
        {"jsonrpc": "2.0", "id": 3, "method": "sendTransaction", "params": ["!!!", {"encoding": "base64"}]}
    )
    assert garbage["error"]["code"] == -32602
    no_version = await node.raw({"id": 4, "method": "getSlot"})
    assert no_version["error"]["code"] == -32600
    reply = await node.client.post(node.rpc.url, content=b"{not json")
    assert reply.json()["error"]["code"] == -32700
    batch = await node.raw(
        [{"jsonrpc": "2.0", "id": 1, "method": "getSlot"}, {"jsonrpc": "2.0", "id": 2, "method": "nope"}]
    )
    assert batch[0] == {"jsonrpc": "2.0", "result": 0, "id": 1} and batch[1]["error"]["code"] == -32601
    assert GetSlotResp.from_json(json.dumps(batch[0])).value == 0
    wallet = Keypair()
    node.chain.fund(wallet.pubkey(), 1)
    mint = node.chain.create_mint("F", 6, 10, 1000)
    tokens = node.chain.outside_buy(wallet.pubkey(), mint, 0.1)
    tx = VersionedTransaction(node.chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100).message, [wallet])
    node.rpc.fail_next_send({"code": -32005, "message": "Node is behind by 42 slots"})
    node.rpc.fail_next_send(RpcError(-32603, "Internal error"))
    params = [b64(tx), {"encoding": "base64", "skipPreflight": True}]
    first = await node.raw({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": params})
    second = await node.raw({"jsonrpc": "2.0", "id": 1, "method": "sendTransaction", "params": params})
    assert first["error"]["code"] == -32005 and second["error"]["code"] == -32603
    assert node.chain.token_balance(wallet.pubkey(), mint) == tokens  # faults land nothing
    third = SendTransactionResp.from_json(await node.call("sendTransaction", *params))
    assert third.value == tx.signatures[0] and node.chain.token_balance(wallet.pubkey(), mint) == 0
    v0_without_version = await node.raw(
        {"jsonrpc": "2.0", "id": 1, "method": "getTransaction", "params": [str(tx.signatures[0])]}
    )
    assert v0_without_version["error"]["code"] == -32015
