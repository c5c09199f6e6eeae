"""The official lasersell-sdk, unmodified, as a client of the whole sandbox."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from lasersell_sdk.exit_api import BuildBuyTxRequest, ExitApiClient, prove_ownership
from lasersell_sdk.stream import StreamClient, StreamConfigure, StreamEvent, StreamSession
from lasersell_sdk.stream.proto import server_message_from_obj
from lasersell_sdk.tx import (
    SendTargetRpc,
    TxSubmitError,
    encode_signed_tx,
    send_transaction_b64_to,
    sign_unsigned_tx,
)
from solders.keypair import Keypair

from sandbox.services import SandboxServices
from tests.integration.test_sandbox_exit_api import network_fee

WAIT_S = 10.0


async def next_event(session: StreamSession, kind: str, seen: list[StreamEvent]) -> StreamEvent:
    async def find() -> StreamEvent:
        while True:
            event = await session.recv()
            assert event is not None, f"stream ended before {kind}"
            server_message_from_obj(dict(event.message))  # every message is one the SDK parses
            seen.append(event)
            if event.message["type"] == kind:
                return event

    return await asyncio.wait_for(find(), WAIT_S)


async def sim(control: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A sandbox control call that must succeed."""
    response = await control.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def trader_with_key(
    sandbox: SandboxServices, control: httpx.AsyncClient, tier: str, name: str = "sdk-trader", **funds: float
) -> tuple[str, Keypair, str]:
    """(api key, keypair, wallet): a key of `tier`, its wallet registered and funded with `funds`."""
    api_key = (await sim(control, "/sim/api_keys", {"tier": tier}))["api_key"]
    trader = sandbox.chain.keypair(name)
    wallet = str(trader.pubkey())
    sandbox.accounts.register_wallet(api_key, wallet)
    if funds:
        await sim(control, "/sim/wallets/fund", {"pubkey": wallet, **funds})
    return api_key, trader, wallet


async def sdk_session(
    sandbox: SandboxServices, api_key: str, wallet: str, target_profit_pct: float, **options: Any
) -> StreamSession:
    """The SDK's own session for one wallet, with a take-profit strategy and no stop loss."""
    client = StreamClient(api_key).with_endpoint(sandbox.urls["stream"])
    strategy = {"target_profit_pct": target_profit_pct, "stop_loss_pct": 0.0}
    return await StreamSession.connect(client, StreamConfigure(wallet_pubkeys=[wallet], strategy=strategy, **options))


async def test_official_sdk_runs_a_position_from_buy_to_sold() -> None:
    async with (
        SandboxServices(seed=11) as sandbox,
        httpx.AsyncClient(base_url=sandbox.urls["control"]) as control,
    ):
        api_key = (await sim(control, "/sim/api_keys", {"tier": "professional"}))["api_key"]
        trader = sandbox.chain.keypair("sdk-trader")
        wallet = str(trader.pubkey())
        await sim(control, "/sim/wallets/fund", {"pubkey": wallet, "sol": 5})
        mint = (
            await sim(control, "/sim/mints", {"symbol": "WIF", "decimals": 6, "sol_reserve": 80, "token_reserve": 1e9})
        )["mint"]
        await (
            ExitApiClient.with_api_key(api_key)
            .with_base_url(sandbox.urls["api"])
            .register_wallet(prove_ownership(trader))
        )

        strategy = {"target_profit_pct": 25.0, "stop_loss_pct": 20.0}
        client = StreamClient(api_key).with_endpoint(sandbox.urls["stream"])
        session = await StreamSession.connect(
            client, StreamConfigure(wallet_pubkeys=[wallet], strategy=strategy)
        )
        seen: list[StreamEvent] = []
        try:
            hello = await next_event(session, "hello_ok", seen)
            assert hello.message["limits"]["max_wallets_per_session"] == 5

            await sim(control, "/sim/buy", {"wallet": wallet, "mint": mint, "sol": 0.5})
            balance = await next_event(session, "balance_update", seen)
            opened = await next_event(session, "position_opened", seen)
            assert opened.handle is not None and opened.handle.market_type == "pump_fun"
            assert balance.message["tokens"] == opened.message["tokens"] > 0
            assert opened.message["entry_quote_units"] == 500_000_000
            await next_event(session, "pnl_update", seen)
            await next_event(session, "liquidity_snapshot", seen)

            await sim(control, "/sim/market", {"mint": mint, "pct": 10})
            pnl = await next_event(session, "pnl_update", seen)
            assert pnl.message["profit_units"] > 0
            await sim(control, "/sim/clock", {"advance_slots": 10})
            snapshot = await next_event(session, "liquidity_snapshot", seen)
            assert [b["slippage_bps"] for b in snapshot.message["bands"]] == [100, 300, 500, 1000, 2000]

            await sim(control, "/sim/market", {"mint": mint, "pct": 25})
            signal = await next_event(session, "exit_signal_with_tx", seen)
            assert signal.message["reason"] == "take_profit"
            assert signal.handle is not None and signal.handle.position_id == opened.message["position_id"]

            sol_before = sandbox.chain.balance(wallet)
            signed = sign_unsigned_tx(signal.message["unsigned_tx_b64"], trader)
            signature = await send_transaction_b64_to(
                SendTargetRpc(sandbox.urls["rpc"]), encode_signed_tx(signed)
            )
            closed = await next_event(session, "position_closed", seen)
            assert closed.message["reason"] == "sold"
            assert sandbox.chain.signature_status(signature)["err"] is None
            assert sandbox.chain.token_balance(wallet, mint) == 0
            assert sandbox.chain.balance(wallet) > sol_before + 500_000_000
            state = (await control.get("/sim/state")).json()
            assert state["balances"][wallet]["tokens"][mint] == 0
            assert state["sessions"][0]["strategy"] == strategy
        finally:
            session.close()

        kinds = {event.message["type"] for event in seen}
        assert {"hello_ok", "balance_update", "position_opened", "pnl_update", "liquidity_snapshot"} <= kinds
        assert {"exit_signal_with_tx", "position_closed"} <= kinds


async def test_official_sdk_survives_garbage_and_a_dropped_connection() -> None:
    async with (
        SandboxServices(seed=12) as sandbox,
        httpx.AsyncClient(base_url=sandbox.urls["control"]) as control,
    ):
        api_key, trader, wallet = await trader_with_key(sandbox, control, "free", sol=2)
        mint = str(sandbox.chain.create_mint("BONK", 5, 60, 5e8))
        session = await sdk_session(sandbox, api_key, wallet, 30.0)
        seen: list[StreamEvent] = []
        try:
            await next_event(session, "hello_ok", seen)
            await control.post("/sim/buy", json={"wallet": wallet, "mint": mint, "sol": 1})
            opened = await next_event(session, "position_opened", seen)

            await control.post("/sim/faults", json={"send_garbage_frame": True})
            await control.post("/sim/faults", json={"drop_connections": True})
            # The SDK skips the garbage, reconnects, re-sends configure; the server re-announces.
            # A new session numbers positions afresh: the same position (token account) has a new id.
            again = await next_event(session, "position_opened", seen)
            assert again.message["token_account"] == opened.message["token_account"]
            assert again.message["position_id"] != opened.message["position_id"]
            assert [e.message["type"] for e in seen].count("hello_ok") == 2

            await control.post("/sim/faults", json={"unknown_market_type": True})
            await control.post("/sim/market", json={"mint": mint, "pct": 40})
            # The SDK drops an exit signal with an unknown market type (PROTOCOL.md); the next one arrives.
            session.request_exit_signal(opened.handle)
            manual = await next_event(session, "exit_signal_with_tx", seen)
            assert manual.message["reason"] == "manual"
            assert [e.message.get("reason") for e in seen if e.message["type"] == "exit_signal_with_tx"] == [
                "manual"
            ]

            # A send the RPC refuses once (fault), then lands on the retry with the same bytes.
            await control.post(
                "/sim/faults", json={"fail_next_send": {"error": {"code": -32005, "message": "behind"}}}
            )
            signed = encode_signed_tx(sign_unsigned_tx(manual.message["unsigned_tx_b64"], trader))
            with pytest.raises(TxSubmitError, match="behind"):
                await send_transaction_b64_to(SendTargetRpc(sandbox.urls["rpc"]), signed)
            await send_transaction_b64_to(SendTargetRpc(sandbox.urls["rpc"]), signed)
            assert (await next_event(session, "position_closed", seen)).message["reason"] == "sold"
        finally:
            session.close()


async def next_message(receiver: Any, kind: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """The next message of this type through the SDK's own receiver (it drops frames it cannot parse)."""

    async def find() -> dict[str, Any]:
        while True:
            message = await receiver.recv()
            assert message is not None, f"stream ended before {kind}"
            seen.append(dict(message))
            if message["type"] == kind:
                return dict(message)

    return await asyncio.wait_for(find(), WAIT_S)


async def test_official_sdk_parses_every_frame_the_sandbox_sends() -> None:
    async with (
        SandboxServices(seed=13) as sandbox,
        httpx.AsyncClient(base_url=sandbox.urls["control"]) as control,
    ):
        api_key, _, wallet = await trader_with_key(sandbox, control, "professional", sol=3, usd1=200)
        sol_mint = (
            await control.post("/sim/mints", json={"symbol": "SOLX", "sol_reserve": 80, "token_reserve": 1e9})
        ).json()["mint"]
        usd1_mint = (
            await control.post(
                "/sim/mints",
                json={"symbol": "DOLR", "quote": "USD1", "quote_reserve": 40_000, "token_reserve": 1e9},
            )
        ).json()["mint"]
        strategy = {"target_profit_pct": 50.0, "stop_loss_pct": 40.0}
        connection = await (
            StreamClient(api_key)
            .with_endpoint(sandbox.urls["stream"])
            .connect(StreamConfigure(wallet_pubkeys=[wallet], strategy=strategy))
        )
        sender, receiver = connection.split()
        seen: list[dict[str, Any]] = []
        try:
            await next_message(receiver, "hello_ok", seen)
            await control.post("/sim/buy", json={"wallet": wallet, "mint": sol_mint, "sol": 0.5})
            await control.post("/sim/buy", json={"wallet": wallet, "mint": usd1_mint, "amount": 50})
            opened = [await next_message(receiver, "position_opened", seen) for _ in range(2)]
            usd1 = next(m for m in opened if m["mint"] == usd1_mint)
            assert usd1["entry_quote_units"] == 50_000_000
            assert usd1["market_context"]["raydium_launchpad"]["quote_mint"] == str(sandbox.chain.usd1_mint)
            await control.post("/sim/market", json={"mint": sol_mint, "pct": 5})
            await control.post("/sim/clock", json={"advance_slots": 10})
            await next_message(receiver, "liquidity_snapshot", seen)
            sender.ping(1)
            await next_message(receiver, "pong", seen)
            sender.request_exit_signal(usd1["token_account"])
            await next_message(receiver, "exit_signal_with_tx", seen)
            for kind in ("steal_position", "cpi_drain", "tip_over_cap"):
                reply = await control.post(
                    "/sim/hostile", json={"api_key": api_key, "mint": usd1_mint, "kind": kind}
                )
                assert reply.status_code == 200, reply.text
                await next_message(receiver, "exit_signal_with_tx", seen)
            sender.update_strategy({"target_profit_pct": 0.0, "stop_loss_pct": 0.0})
            assert (await next_message(receiver, "error", seen))["code"] == "invalid_strategy"
            sender.close_by_id(usd1["position_id"])
            await next_message(receiver, "position_closed", seen)
        finally:
            connection.close()

        kinds = {m["type"] for m in seen}
        assert {
            "hello_ok",
            "balance_update",
            "position_opened",
            "pnl_update",
            "liquidity_snapshot",
            "trade_tick",
            "pong",
            "exit_signal_with_tx",
            "error",
            "position_closed",
        } <= kinds
        assert sum(m["type"] == "exit_signal_with_tx" for m in seen) == 4  # the hostile ones too


async def test_official_sdk_retries_a_session_refused_as_in_use() -> None:
    async with (
        SandboxServices(seed=14) as sandbox,
        httpx.AsyncClient(base_url=sandbox.urls["control"]) as control,
    ):
        api_key, _, wallet = await trader_with_key(sandbox, control, "professional")
        session = await sdk_session(sandbox, api_key, wallet, 20.0)
        seen: list[StreamEvent] = []
        try:
            first = await next_event(session, "hello_ok", seen)
            reply = await control.post("/sim/faults", json={"refuse_sessions": 2})
            assert reply.json()["applied"]["refuse_sessions"]["code"] == "session_limit"
            await control.post("/sim/faults", json={"drop_connections": True})
            again = await next_event(session, "hello_ok", seen)
            assert again.message["session_id"] != first.message["session_id"]
            # One first connection, two refused as in use, then the one that got in.
            assert sandbox.stream.connection_attempts[api_key] == 4
        finally:
            session.close()


async def test_official_sdk_buy_of_amount_point_one_spends_point_one_sol() -> None:
    async with SandboxServices(seed=15) as sandbox:
        key = sandbox.accounts.issue("professional").key
        trader = sandbox.chain.keypair("sdk-buyer")
        wallet = str(trader.pubkey())
        sandbox.chain.fund(wallet, 1)
        mint = str(sandbox.chain.create_mint("BUYME", 6, 80, 1e9))
        api = ExitApiClient.with_api_key(key).with_base_url(sandbox.urls["api"])
        built = await api.build_buy_tx(
            BuildBuyTxRequest(mint=mint, user_pubkey=wallet, slippage_bps=300, amount=0.1)
        )
        before = sandbox.chain.balance(wallet)
        signed = sign_unsigned_tx(built.tx, trader)
        signature = await send_transaction_b64_to(
            SendTargetRpc(sandbox.urls["rpc"]), encode_signed_tx(signed)
        )
        assert sandbox.chain.signature_status(signature)["err"] is None
        token_account_rent = 2_039_280  # the new associated token account
        spent = before - sandbox.chain.balance(wallet)
        assert spent == 100_000_000 + network_fee(built.tx) + token_account_rent
        assert sandbox.chain.token_balance(wallet, mint) > 0


async def test_official_sdk_lands_a_router_exit_net_of_routing_fee_and_tip() -> None:
    async with (
        SandboxServices(seed=16) as sandbox,
        httpx.AsyncClient(base_url=sandbox.urls["control"]) as control,
    ):
        api_key, trader, wallet = await trader_with_key(sandbox, control, "professional", "sdk-seller", sol=2)
        mint = (await sim(control, "/sim/mints", {"symbol": "EXIT", "sol_reserve": 60, "token_reserve": 1e9}))["mint"]
        session = await sdk_session(
            sandbox, api_key, wallet, 20.0, send_mode="helius_sender", tip_lamports=300_000
        )
        seen: list[StreamEvent] = []
        try:
            await next_event(session, "hello_ok", seen)
            await control.post("/sim/buy", json={"wallet": wallet, "mint": mint, "sol": 1})
            opened = await next_event(session, "position_opened", seen)
            await control.post("/sim/market", json={"mint": mint, "pct": 30})
            signal = await next_event(session, "exit_signal_with_tx", seen)
            assert signal.message["reason"] == "take_profit"
            tokens = signal.message["position_tokens"]
            assert tokens == opened.message["tokens"]
            # The constant-product curve, from the pool's reserves on chain, then the tier's fee.
            state = (await control.get("/sim/state")).json()
            pool = next(p for p in state["mints"] if p["mint"] == mint)
            gross = pool["sol_reserve"] * tokens // (pool["token_reserve"] + tokens)
            routing_fee = max(gross * 90 // 10_000, 10_000_000)  # professional: 0.9 %, at least 0.01 SOL
            before = sandbox.chain.balance(wallet)
            signed = sign_unsigned_tx(signal.message["unsigned_tx_b64"], trader)
            await send_transaction_b64_to(SendTargetRpc(sandbox.urls["rpc"]), encode_signed_tx(signed))
            assert (await next_event(session, "position_closed", seen)).message["reason"] == "sold"
            change = sandbox.chain.balance(wallet) - before
            assert change == gross - routing_fee - 300_000 - network_fee(signal.message["unsigned_tx_b64"])
        finally:
            session.close()
