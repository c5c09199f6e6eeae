"""The sandbox JSON-RPC over HTTP: every answer parses with solders' typed RPC responses."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import base58
import httpx
import pytest
from solders.address_lookup_table_account import AddressLookupTable
from solders.keypair import Keypair
from solders.pubkey import Pubkey
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
from solders.token.state import TokenAccount
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


def holder(
    chain: Chain, symbol: str, decimals: int, sol_reserve: float, token_reserve: float, fund: float, sol_in: float
) -> tuple[Keypair, Pubkey, int]:
    """(wallet, mint, tokens): a new market, and a funded wallet that bought `sol_in` SOL of it."""
    mint = chain.create_mint(symbol, decimals, sol_reserve, token_reserve)
    wallet = Keypair()
    chain.fund(wallet.pubkey(), fund)
    return wallet, mint, chain.outside_buy(wallet.pubkey(), mint, sol_in)


def signed_sell(chain: Chain, wallet: Keypair, mint: Pubkey, tokens: int, slippage_bps: int) -> VersionedTransaction:
    return VersionedTransaction(chain.build_sell_tx(wallet.pubkey(), mint, tokens, slippage_bps).message, [wallet])


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
    wallet, mint, tokens = holder(chain, "WIF", 6, 20, 500_000_000, fund=1.5, sol_in=0.5)
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
    wallet, mint, tokens = holder(chain, "BONK", 5, 30, 90_000_000_000, fund=1, sol_in=0.2)
    half = tokens // 2
    first = signed_sell(chain, wallet, mint, half, 100)
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
    wallet, mint, tokens = holder(chain, "DOGE", 6, 30, 1_000_000_000, fund=1, sol_in=0.3)
    tx = signed_sell(chain, wallet, mint, tokens, 200)
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
    stale = signed_sell(chain, wallet, mint, tokens, 5000)
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
    wallet, mint, tokens = holder(node.chain, "F", 6, 10, 1000, fund=1, sol_in=0.1)
    tx = signed_sell(node.chain, wallet, mint, tokens, 100)
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


async def test_simulate_with_accounts_shows_the_state_after_the_router_sell(node: Node) -> None:
    chain = node.chain
    wallet, mint, tokens = holder(chain, "POPCAT", 6, 30, 1_000_000_000, fund=1, sol_in=0.5)
    tx = signed_sell(chain, wallet, mint, tokens, 100)
    ata = chain.ata(wallet.pubkey(), mint)
    nobody = Keypair().pubkey()
    config = {
        "encoding": "base64",
        "accounts": {"addresses": [str(ata), str(wallet.pubkey()), str(nobody)], "encoding": "base64"},
        "innerInstructions": True,
    }
    simulated = SimulateTransactionResp.from_json(await node.call("simulateTransaction", b64(tx), config))
    value = simulated.value
    assert value.err is None
    after_ata, after_wallet, missing = value.accounts
    assert TokenAccount.from_bytes(bytes(after_ata.data)[:165]).amount == 0
    assert after_wallet.lamports > chain.balance(wallet.pubkey())  # the proceeds, net of every fee
    assert missing is None
    router_legs = [group for group in value.inner_instructions if group.index == 2]
    assert router_legs and router_legs[0].instructions
    parsed = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "simulateTransaction",
            "params": [
                b64(tx),
                {"encoding": "base64", "accounts": {"addresses": [str(ata)], "encoding": "jsonParsed"}},
            ],
        }
    )
    info = parsed["result"]["value"]["accounts"][0]["data"]["parsed"]["info"]
    assert info["tokenAmount"]["amount"] == "0" and info["owner"] == str(wallet.pubkey())
    assert chain.token_balance(wallet.pubkey(), mint) == tokens  # a simulation writes nothing
    too_many = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "simulateTransaction",
            "params": [b64(tx), {"encoding": "base64", "accounts": {"addresses": [str(ata)] * 40}}],
        }
    )
    assert too_many["error"]["code"] == -32602 and "Too many accounts" in too_many["error"]["message"]


async def test_sig_verify_and_replace_recent_blockhash(node: Node) -> None:
    chain = node.chain
    wallet, mint, tokens = holder(chain, "MEW", 6, 30, 1_000_000_000, fund=1, sol_in=0.2)
    unsigned = chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100)
    bad = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "simulateTransaction",
            "params": [b64(unsigned), {"encoding": "base64", "sigVerify": True}],
        }
    )
    assert bad["error"]["code"] == -32003
    # Without sigVerify the unsigned transaction simulates: that is how a wallet previews it.
    preview = SimulateTransactionResp.from_json(
        await node.call("simulateTransaction", b64(unsigned), {"encoding": "base64"})
    )
    assert preview.value.err is None
    chain.advance_slots(200)
    stale = SimulateTransactionResp.from_json(
        await node.call("simulateTransaction", b64(unsigned), {"encoding": "base64"})
    )
    assert stale.value.err is not None and stale.value.replacement_blockhash is None
    replaced = SimulateTransactionResp.from_json(
        await node.call(
            "simulateTransaction", b64(unsigned), {"encoding": "base64", "replaceRecentBlockhash": True}
        )
    )
    blockhash, last_valid = chain.latest_blockhash()
    assert replaced.value.err is None
    assert replaced.value.replacement_blockhash.blockhash == blockhash
    assert replaced.value.replacement_blockhash.last_valid_block_height == last_valid
    both = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "simulateTransaction",
            "params": [
                b64(unsigned),
                {"encoding": "base64", "sigVerify": True, "replaceRecentBlockhash": True},
            ],
        }
    )
    assert both["error"]["code"] == -32602


async def test_get_transaction_reports_the_lookup_table_and_loaded_addresses(node: Node) -> None:
    chain = node.chain
    wallet, mint, tokens = holder(chain, "SLERF", 6, 30, 1_000_000_000, fund=1, sol_in=0.2)
    tx = signed_sell(chain, wallet, mint, tokens, 100)
    await node.call("sendTransaction", b64(tx), {"encoding": "base64"})
    pool = chain.pool(mint)
    raw = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getTransaction",
            "params": [str(tx.signatures[0]), {"encoding": "json", "maxSupportedTransactionVersion": 0}],
        }
    )
    result = raw["result"]
    assert result["version"] == 0
    (lookup,) = result["transaction"]["message"]["addressTableLookups"]
    assert lookup["accountKey"] == str(pool.lookup_table)
    loaded = result["meta"]["loadedAddresses"]
    assert str(pool.token_account) in loaded["writable"]
    keys = result["transaction"]["message"]["accountKeys"] + loaded["writable"] + loaded["readonly"]
    assert len(keys) == len(result["meta"]["preBalances"]) == len(result["meta"]["postBalances"])
    pool_index = keys.index(str(pool.address))
    assert result["meta"]["postBalances"][pool_index] < result["meta"]["preBalances"][pool_index]
    typed = GetTransactionResp.from_json(json.dumps(raw))
    assert typed.value.transaction.meta.loaded_addresses.writable[0] in [Pubkey.from_string(k) for k in keys]
    for encoding in ("json", "base64"):
        refused = await node.raw(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "getTransaction",
                "params": [str(tx.signatures[0]), {"encoding": encoding}],
            }
        )
        assert refused["error"]["code"] == -32015


async def test_a_lookup_table_reads_back_in_its_on_chain_layout(node: Node) -> None:
    chain = node.chain
    mint = chain.create_mint("BOME", 6, 30, 1_000_000_000)
    pool = chain.pool(mint)
    info = GetAccountInfoResp.from_json(
        await node.call("getAccountInfo", str(pool.lookup_table), {"encoding": "base64"})
    )
    assert str(info.value.owner) == "AddressLookupTab1e1111111111111111111111111"
    data = bytes(info.value.data)
    assert data[:4] == (1).to_bytes(4, "little") and data[4:12] == b"\xff" * 8
    table = AddressLookupTable.deserialize(data)
    assert list(table.addresses) == [
        Pubkey.from_bytes(data[56 + 32 * i : 88 + 32 * i]) for i in range((len(data) - 56) // 32)
    ]
    assert pool.token_account in table.addresses
    parsed = await node.raw(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "getAccountInfo",
            "params": [str(pool.lookup_table), {"encoding": "jsonParsed"}],
        }
    )
    assert parsed["result"]["value"]["data"]["parsed"]["info"]["addresses"] == [
        str(a) for a in table.addresses
    ]
