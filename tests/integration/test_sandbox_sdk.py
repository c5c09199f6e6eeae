"""The official lasersell-sdk, unmodified, as a client of the whole sandbox."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from lasersell_sdk.exit_api import ExitApiClient, prove_ownership
from lasersell_sdk.stream import StreamClient, StreamConfigure, StreamEvent, StreamSession
from lasersell_sdk.stream.proto import server_message_from_obj
from lasersell_sdk.tx import (
    SendTargetRpc,
    TxSubmitError,
    encode_signed_tx,
    send_transaction_b64_to,
    sign_unsigned_tx,
)

from sandbox.services import SandboxServices

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


async def test_official_sdk_runs_a_position_from_buy_to_sold() -> None:
    async with (
        SandboxServices(seed=11) as sandbox,
        httpx.AsyncClient(base_url=sandbox.urls["control"]) as control,
    ):

        async def sim(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = await control.post(path, json=body)
            assert response.status_code == 200, response.text
            return response.json()

        api_key = (await sim("/sim/api_keys", {"tier": "professional"}))["api_key"]
        trader = sandbox.chain.keypair("sdk-trader")
        wallet = str(trader.pubkey())
        await sim("/sim/wallets/fund", {"pubkey": wallet, "sol": 5})
        mint = (
            await sim("/sim/mints", {"symbol": "WIF", "decimals": 6, "sol_reserve": 80, "token_reserve": 1e9})
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

            await sim("/sim/buy", {"wallet": wallet, "mint": mint, "sol": 0.5})
            balance = await next_event(session, "balance_update", seen)
            opened = await next_event(session, "position_opened", seen)
            assert opened.handle is not None and opened.handle.market_type == "pump_fun"
            assert balance.message["tokens"] == opened.message["tokens"] > 0
            assert opened.message["entry_quote_units"] == 500_000_000
            await next_event(session, "pnl_update", seen)
            await next_event(session, "liquidity_snapshot", seen)

            await sim("/sim/market", {"mint": mint, "pct": 10})
            pnl = await next_event(session, "pnl_update", seen)
            assert pnl.message["profit_units"] > 0
            await sim("/sim/clock", {"advance_slots": 10})
            snapshot = await next_event(session, "liquidity_snapshot", seen)
            assert [b["slippage_bps"] for b in snapshot.message["bands"]] == [100, 300, 500, 1000, 2000]

            await sim("/sim/market", {"mint": mint, "pct": 25})
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
        api_key = (await control.post("/sim/api_keys", json={"tier": "free"})).json()["api_key"]
        trader = sandbox.chain.keypair("sdk-trader")
        wallet = str(trader.pubkey())
        sandbox.accounts.register_wallet(api_key, wallet)
        await control.post("/sim/wallets/fund", json={"pubkey": wallet, "sol": 2})
        mint = str(sandbox.chain.create_mint("BONK", 5, 60, 5e8))
        client = StreamClient(api_key).with_endpoint(sandbox.urls["stream"])
        configure = StreamConfigure(
            wallet_pubkeys=[wallet], strategy={"target_profit_pct": 30.0, "stop_loss_pct": 0.0}
        )
        session = await StreamSession.connect(client, configure)
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
