"""The stock `solana` Python client (0.41) reads the sandbox RPC as it reads a node.

`solana` cannot be installed beside lasersell-sdk (their websockets pins conflict), so it lives
in its own virtualenv under the user's cache folder, made once per machine, and a small script
runs in it against the sandbox RPC started here. Every answer must parse in the stock client.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from sandbox.chain import Chain, routing_fee
from sandbox.rpc import SandboxRpc

SOLANA_REQUIREMENT = "solana==0.41.*"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lasersell-bot-test"
VENV = CACHE / "solana-venv"
READY = VENV / ".solana-installed"

SCRIPT = r"""
import asyncio, base64, json, sys

from solana.rpc.async_api import AsyncClient
from solana.rpc.models import TokenAccountOpts, TxOpts
from solders.pubkey import Pubkey
from solders.token.state import TokenAccount
from solders.transaction import VersionedTransaction


async def main(args):
    wallet, mint, ata, table = (Pubkey.from_string(args[k]) for k in ("wallet", "mint", "ata", "table"))
    out = {}
    async with AsyncClient(args["url"]) as client:
        latest = await client.get_latest_blockhash()
        out["blockhash"] = str(latest.value.blockhash)
        out["balance"] = (await client.get_balance(wallet)).value
        for name, key in (("mint", mint), ("ata", ata), ("table", table)):
            acc = (await client.get_account_info(key)).value
            out[name] = {"owner": str(acc.owner), "size": len(acc.data)}
        multiple = await client.get_multiple_accounts([mint, ata, table, Pubkey.new_unique()])
        out["multiple"] = [acc is not None for acc in multiple.value]
        by_mint = await client.get_token_accounts_by_owner(wallet, TokenAccountOpts(mint=mint))
        out["by_mint"] = [str(a.pubkey) for a in by_mint.value]
        parsed = await client.get_token_accounts_by_owner_json_parsed(
            wallet, TokenAccountOpts(program_id=Pubkey.from_string(args["token_program"]))
        )
        out["parsed_amounts"] = [a.account.data.parsed["info"]["tokenAmount"]["amount"] for a in parsed.value]
        out["token_balance"] = (await client.get_token_account_balance(ata)).value.amount
        tx = VersionedTransaction.from_bytes(base64.b64decode(args["tx"]))
        sim = await client.simulate_transaction(
            tx, sig_verify=True, inner_instructions=True, accounts_addresses=[ata, wallet]
        )
        out["sim_err"] = None if sim.value.err is None else str(sim.value.err)
        after_ata, after_wallet = sim.value.accounts
        out["sim_tokens_after"] = TokenAccount.from_bytes(bytes(after_ata.data)[:165]).amount
        out["sim_wallet_after"] = after_wallet.lamports
        sent = await client.send_raw_transaction(bytes(tx), TxOpts(skip_preflight=True, max_retries=0))
        out["sent"] = str(sent.value)
        statuses = await client.get_signature_statuses([sent.value], search_transaction_history=True)
        status = statuses.value[0]
        out["status"] = None if status is None else [str(status.confirmation_status), status.err is None]
        got = await client.get_transaction(sent.value, max_supported_transaction_version=0)
        meta = got.value.transaction.meta
        out["tx"] = {
            "fee": meta.fee,
            "err": meta.err,
            "loaded_writable": [str(k) for k in meta.loaded_addresses.writable],
        }
        out["slot"] = (await client.get_slot()).value
        out["block_height"] = (await client.get_block_height()).value
        out["rent"] = (await client.get_minimum_balance_for_rent_exemption(165)).value
    print(json.dumps(out))


asyncio.run(main(json.loads(sys.stdin.read())))
"""


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def solana_python() -> Path:
    """The cached virtualenv's python with `solana` installed; made once per machine."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "solana-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test runs may want it at once
        if READY.exists():
            return _venv_python()
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True)
        install = subprocess.run(
            [str(_venv_python()), "-m", "pip", "install", "--quiet", SOLANA_REQUIREMENT],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if install.returncode != 0:
            pytest.skip(f"could not install {SOLANA_REQUIREMENT} from PyPI: {install.stderr.strip()[-300:]}")
        READY.write_text(SOLANA_REQUIREMENT + "\n")
        return _venv_python()


@pytest.fixture(scope="module")
def python() -> Path:
    return solana_python()


async def test_the_stock_solana_client_parses_every_answer(python: Path) -> None:
    chain = Chain(seed=5)
    rpc = SandboxRpc(chain)
    await rpc.start()
    try:
        mint = chain.create_mint("STOCK", 6, 30, 1_000_000_000)
        wallet = Keypair()
        chain.fund(wallet.pubkey(), 2)
        tokens = chain.outside_buy(wallet.pubkey(), mint, 0.5)
        unsigned = chain.build_sell_tx(wallet.pubkey(), mint, tokens, 100, 100_000)
        tx = VersionedTransaction(unsigned.message, [wallet])
        ata = chain.ata(wallet.pubkey(), mint)
        table = chain.pool(mint).lookup_table
        args = {
            "url": rpc.url,
            "wallet": str(wallet.pubkey()),
            "mint": str(mint),
            "ata": str(ata),
            "table": str(table),
            "token_program": str(chain.token_program(mint)),
            "tx": base64.b64encode(bytes(tx)).decode(),
        }
        balance = chain.balance(wallet.pubkey())
        gross = chain.quote_sell(mint, tokens)
        net = gross - routing_fee("professional", "SOL", gross) - chain.fee_for(tx) - 100_000
        process = await asyncio.create_subprocess_exec(
            str(python),
            "-c",
            SCRIPT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(json.dumps(args).encode()), 60)
        assert process.returncode == 0, stderr.decode()[-2000:]
        out = json.loads(stdout)
    finally:
        await rpc.stop()
    assert out["balance"] == balance
    assert out["mint"]["size"] == 82 and out["ata"]["size"] == 165
    assert out["table"]["owner"] == "AddressLookupTab1e1111111111111111111111111"
    assert out["multiple"] == [True, True, True, False]
    assert out["by_mint"] == [str(ata)] and out["parsed_amounts"] == [str(tokens)]
    assert out["token_balance"] == str(tokens)
    assert out["sim_err"] is None and out["sim_tokens_after"] == 0
    assert out["sim_wallet_after"] == balance + net
    assert out["sent"] == str(tx.signatures[0])
    assert out["status"] == ["TransactionConfirmationStatus.Confirmed", True]
    assert out["tx"]["fee"] == chain.fee_for(tx) and out["tx"]["err"] is None
    assert str(chain.pool(mint).token_account) in out["tx"]["loaded_writable"]
    assert out["slot"] == chain.slot and out["block_height"] == chain.block_height
    assert out["rent"] == chain.rent_exempt_minimum(165)
    assert chain.balance(wallet.pubkey()) == balance + net  # the client's send landed the sell
