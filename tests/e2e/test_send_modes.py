"""Sells in the two tipped send modes, end to end: the signed sell goes to Helius Sender or to Astralane (with the
trader's Astralane key), never through the plain RPC, carries one tip transfer to that sender's own tip account,
lands, and the tip leaves the wallet once. The senders are a stand-in that records each request and hands it
to the sandbox node, as the real senders hand it to the cluster."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.transaction import VersionedTransaction

from tests.e2e.harness import Harness, holding, signal_id, start_harness, stop_harness, stored, take_profit

TRANSFER = 2  # the System program's Transfer instruction


@dataclass
class Senders:
    """Helius Sender at /helius and Astralane at /astralane, in front of the sandbox node."""

    url: str = ""
    node: Any = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.requests.append({"path": request.path, "api_key": request.headers.get("x-api-key"), "payload": payload})
        return web.json_response(self.node.handle(payload))

    def sent(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path and r["payload"].get("method") == "sendTransaction"]


@pytest.fixture
async def senders() -> AsyncIterator[Senders]:
    senders = Senders()
    app = web.Application()
    app.router.add_post("/{sender}", senders.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    senders.url = f"http://127.0.0.1:{port}"
    try:
        yield senders
    finally:
        await runner.cleanup()


@pytest.fixture
async def harness(tmp_path: Path, senders: Senders) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, settings_env={
        "HELIUS_SENDER_URL": f"{senders.url}/helius", "ASTRALANE_URL": f"{senders.url}/astralane",
    })
    senders.node = h.services.rpc
    try:
        yield h
    finally:
        await stop_harness(h)


def tip_transfers(h: Harness, signature: str) -> list[tuple[Pubkey, int]]:
    """(to, lamports) of every System transfer out of the wallet in the landed transaction."""
    record = h.services.chain.get_transaction(signature)
    assert record is not None and record.err is None
    keys = record.account_keys
    found = []
    for ix in record.transaction.message.instructions:
        data = bytes(ix.data)
        if keys[ix.program_id_index] == SYSTEM_PROGRAM and data[:4] == struct.pack("<I", TRANSFER):
            found.append((keys[ix.accounts[1]], struct.unpack("<Q", data[4:12])[0]))
    return found


async def sell_through(h: Harness, senders: Senders, trader: Any, mint: Any, path: str, mode: str) -> None:
    """Tap Sell on a take-profit signal; check the sell went to `path` only, with one tip to the mode's account."""
    chain = h.services.chain
    services = h.runner.services
    assert services is not None
    tip = (await services.accounts.store.get(trader.chat.user_id)).tip_lamports
    assert tip > 0
    tip_account = Pubkey.from_string(h.services.stream.tip_account_for(mode))
    tips_before = {str(a): chain.balance(a) for a in chain.tip_accounts}
    signal = await take_profit(h, trader, mint)

    await trader.chat.press("Sell", message=signal)
    await trader.chat.wait_text(r"Sold .* PEPE for", timeout=15)

    [request] = senders.sent(path)
    assert senders.sent("/helius" if path == "/astralane" else "/astralane") == []
    assert h.services.rpc.calls["sendTransaction"] == 1  # the sender's one: nothing went through the plain RPC
    raw = base64.b64decode(request["payload"]["params"][0])
    signature = str(VersionedTransaction.from_bytes(raw).signatures[0])
    assert (await stored(h, signal_id(signal))).signature == signature
    assert tip_transfers(h, signature) == [(tip_account, tip)]
    # landed: the tokens are gone and the sender's tip account, only it, got the tip
    assert chain.token_balance(trader.wallet, mint) == 0
    tips_after = {str(a): chain.balance(a) for a in chain.tip_accounts}
    assert {a: tips_after[a] - tips_before[a] for a in tips_after if tips_after[a] != tips_before[a]} == {
        str(tip_account): tip
    }


async def test_a_sell_in_helius_sender_mode_goes_to_helius_with_its_tip_and_lands(
    harness: Harness, senders: Senders
) -> None:
    h = harness
    trader, mint = await holding(h)  # new users send through Helius Sender
    await sell_through(h, senders, trader, mint, "/helius", "helius_sender")
    assert senders.sent("/helius")[0]["api_key"] is None


async def test_a_sell_in_astralane_mode_goes_to_astralane_with_the_key_and_its_tip_and_lands(
    harness: Harness, senders: Senders
) -> None:
    h = harness
    trader, mint = await holding(h)
    await trader.chat.send("/settings mode astralane", expect=r"Astralane needs its API key")
    astralane_key = "astralane-key-made-by-this-test"
    await trader.chat.send(astralane_key, expect=r"Astralane key saved; send mode is astralane")

    def configured_for_astralane() -> bool:
        now = h.services.stream.session_for(trader.api_key)
        sent = [m for m in (now.received if now else []) if m.get("type") in ("configure", "update_send_mode")]
        return bool(sent) and sent[-1].get("send_mode") == "astralane"

    await trader.chat.wait_for(lambda _: configured_for_astralane(), what="the stream told of the astralane mode")
    await sell_through(h, senders, trader, mint, "/astralane", "astralane")
    assert senders.sent("/astralane")[0]["api_key"] == astralane_key
    # the key message was deleted and never echoed
    assert all(m.get("deleted") for m in trader.chat.messages() if astralane_key in (m.get("text") or ""))
    assert not any(astralane_key in (m.get("text") or "") for m in trader.chat.bot_messages())
