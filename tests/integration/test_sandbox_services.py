"""SandboxServices: every service up on its own port, and the terminal's `!` commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest

from sandbox.services import SandboxServices


class Chat:
    wallets: list[str] = []
    current_mint: str | None = None


async def test_services_answer_and_terminal_commands_drive_the_chain() -> None:
    async with SandboxServices(seed=4) as sandbox:
        urls = sandbox.urls
        assert set(urls) == {"telegram", "rpc", "stream", "api", "control"}
        assert urls["stream"].startswith("ws://127.0.0.1:") and urls["stream"].endswith("/v1/ws")
        async with httpx.AsyncClient() as http:
            health = await http.post(urls["rpc"], json={"jsonrpc": "2.0", "id": 1, "method": "getHealth"})
            assert health.json()["result"] == "ok"
            assert (await http.get(urls["control"] + "/sim/state")).status_code == 200
            bad = await http.post(urls["control"] + "/sim/mints", json={"symbol": "X"})
            assert bad.status_code == 400 and "sol_reserve" in bad.json()["error"]

        chat = Chat()
        key = sandbox.accounts.issue("free").key
        wallet = str(sandbox.chain.keypair("terminal-trader").pubkey())
        sandbox.accounts.register_wallet(key, wallet)
        assert "1 wallet" in await sandbox.control("fund", ["2"], chat)
        assert "PEPE created" in await sandbox.control("mint", ["pepe"], chat)
        assert chat.current_mint is not None
        await sandbox.control("buy", ["0.5"], chat)
        assert sandbox.chain.token_balance(wallet, chat.current_mint) > 0
        # a wallet someone copies buys by its address (the terminal's line for a watched wallet)
        watched = str(sandbox.chain.keypair("a-wallet-someone-copies").pubkey())
        assert "bought" in await sandbox.control("buy", ["0.25", watched], chat)
        assert sandbox.chain.token_balance(watched, chat.current_mint) > 0
        with pytest.raises(ValueError, match="neither a wallet number nor a wallet address"):
            await sandbox.control("buy", ["0.25", "not-a-wallet"], chat)
        assert "+20%" in await sandbox.control("market", ["20"], chat)
        assert "slot 3" == await sandbox.control("clock", ["3"], chat)
        assert wallet[:6] in await sandbox.control("state", [], chat)
        with pytest.raises(ValueError, match="unknown command"):
            await sandbox.control("moon", [], chat)
        with pytest.raises(ValueError, match="PCT must be a number"):
            await sandbox.control("drain", ["lots"], chat)


async def test_terminal_usd1_market_refusals_and_hostile_exits() -> None:
    async with SandboxServices(seed=6) as sandbox:
        chat = Chat()
        key = sandbox.accounts.issue("professional").key
        wallet = str(sandbox.chain.keypair("terminal-trader").pubkey())
        sandbox.accounts.register_wallet(key, wallet)
        help_text = await sandbox.control("help", [], chat)
        assert "USD1" in help_text and "!hostile" in help_text and "!refuse" in help_text
        assert "added 250 USD1" in await sandbox.control("fund", ["250", "usd1"], chat)
        assert sandbox.chain.token_balance(wallet, sandbox.chain.usd1_mint) == 250_000_000
        assert "5,000 USD1" in await sandbox.control("mint", ["dolr", "USD1"], chat)
        assert "for 20 USD1" in await sandbox.control("buy", ["20"], chat)
        with pytest.raises(ValueError, match="SOL or USD1"):
            await sandbox.control("mint", ["x", "EUR"], chat)
        with pytest.raises(ValueError, match="no live position"):
            await sandbox.control("hostile", ["steal_sol"], chat)
        assert "next 2 connection" in await sandbox.control("refuse", ["2"], chat)
        assert sandbox.stream.faults.refuse_sessions == 2


def test_same_seed_same_sandbox() -> None:
    first, second = SandboxServices(seed=9), SandboxServices(seed=9)
    assert first.telegram.token == second.telegram.token
    assert first.accounts.issue().key == second.accounts.issue().key
    assert first.chain.create_mint("A", 6, 1, 1000) == second.chain.create_mint("A", 6, 1, 1000)


def test_serve_prints_urls_and_exits_cleanly_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--seed", "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        urls = json.loads(line)
        assert set(urls) == {"telegram", "rpc", "stream", "api", "control"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
