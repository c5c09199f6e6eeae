"""Tap to submit: from the sandbox Telegram handing out a Sell tap to the sandbox RPC receiving the sell.

    python -m bench.tap_to_submit [--quick] [--users N]

Two processes on one machine:
- the sandbox services (`python -m bench.tap_to_submit --serve`: chain, JSON-RPC, Telegram, stream)
  in a child process. It stamps, with `time.monotonic_ns()`, each callback update the moment
  getUpdates hands it out, and each sendTransaction the moment the RPC handler receives it;
- this process: the real bot (`BotRunner`: PTB application with concurrent updates, services, signal
  inbox, seller) on a fresh SQLite database where every user was set up through the storage
  repositories (a sealed wallet key, one open position on the sandbox chain).

Each user gets a real exit signal (an unsigned sell built by the sandbox chain) through
`SignalInbox.on_signal`, shown in their chat with Sell / Skip. Once every message is there and older than
the seller's freshness window (a person reads before tapping, so `isBlockhashValid` is asked too),
all users tap Sell at once. Each tap goes the whole way: getUpdates -> PTB -> handlers.signals ->
Seller.tap (atomic approve) -> the executor: guard (lookup tables, structural check, simulateTransaction
and the accounts read before it, whose wallet lamports are the balance check, beside the freshness check)
-> decrypt -> sign -> signed bytes stored -> sendTransaction. The guard's own time (simulation included)
is printed with its share. The latency is the RPC stamp minus the hand-out stamp (one monotonic clock for
every process on the machine).

Where the time goes (a burst of 100 on this 2-core machine):
- each signal's transaction went through the guard while it was shown (`Executor.check_ahead`: structure,
  simulation, effect), the seller kept the position, settings and decoded transaction it read for that, and
  the sender's connections were warmed (Helius Sender's `/ping`);
- the getUpdates answer is read for Sell taps before python-telegram-bot parses it (`EarlyTaps`), and the
  library's work on the batch (~20 ms) comes after the sells are sent;
- each tap approves its signal (journaled on SQLite, the row written after the burst) and asks for the
  accounts its check ahead simulated again: the taps of the burst read them together, each address once, in
  one batch (`AccountReads`), and a changed account runs the full guard again;
- each sell is signed and written to its kept-alive sender connection in the same step (`HttpSender`), so the
  sandbox takes it while the next is signed;
- what is left is the bot's own Python, one tap after another on one event loop: about 0.1 ms for the tap,
  0.05 ms for the sell's set-up and 0.3 ms for the check of the re-read accounts, the key, the signature,
  the journal and the post.
The taps' answers and the "Sent" edits wait until no tapped sell is left to send. The sandbox answers a
skipPreflight sendTransaction with the signature and lands it once sends pause (as a node answers before the
block), so the burst's reads see the chain as it was before the burst.

In the same run: the cost of our sign path (`decode_unsigned` + `sign_transaction`) against the
official SDK's `lasersell_sdk.tx.sign_unsigned_tx`, median microseconds per transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import base58
from lasersell_sdk.tx import sign_unsigned_tx
from solders.keypair import Keypair

from bench.common import PROJECT_ROOT, ServiceProcess, percentile, print_figures, print_table, raise_fd_limit
from bot import runtime
from bot.accounts import WALLET_KIND
from bot.app import BotRunner
from bot.exits.sell import FRESH_S
from bot.exits.signer import decode_unsigned, sign_transaction
from bot.services import open_vault
from bot.stream.events import StreamEvent
from sandbox.chain import Chain
from sandbox.services import SandboxServices
from sandbox.terminal import sandbox_settings
from storage.accounts import Wallets
from storage.db import Database
from storage.positions import Positions
from storage.users import Users

SEED = 13
TARGET_P99_MS = 30.0
FIRST_POSITION_ID = 20_001
SIGN_ROUNDS = 2000


# ---------------------------------------------------------------------------------------------
# The child: sandbox services with hand-out and receipt stamps


async def _serve() -> None:

    services = SandboxServices(seed=SEED)
    await services.start()
    chain, telegram, rpc = services.chain, services.telegram, services.rpc
    handed_out: dict[str, int] = {}  # callback query id -> when getUpdates returned it
    received: dict[str, int] = {}  # signature -> when sendTransaction arrived

    name, get_updates, counts = telegram._methods["getupdates"]

    async def stamped_get_updates(params: Any) -> Any:
        updates = await get_updates(params)
        now = time.monotonic_ns()
        for update in updates:
            query = update.get("callback_query")
            if query is not None:
                handed_out.setdefault(query["id"], now)
        return updates

    telegram._methods["getupdates"] = (name, stamped_get_updates, counts)
    send_transaction = rpc._methods["sendTransaction"]

    def stamped_send(params: Any) -> Any:
        now = time.monotonic_ns()
        signature = send_transaction(params)
        received.setdefault(str(signature), now)
        return signature

    rpc._methods["sendTransaction"] = stamped_send

    def setup(users: int) -> dict[str, Any]:
        mint = chain.create_mint("TAP", 6, 5000.0, 1_000_000_000.0, name="Tap Bench")
        out = []
        for index in range(users):
            user_id, chat_id = telegram.add_user(f"Trader{index}", f"trader{index}")
            keypair = Keypair()
            chain.fund(keypair.pubkey(), 0.2)
            # big enough that a sale pays more than the routing fee's 0.01 SOL minimum: a sell that would pay
            # nothing back is refused by the guard
            tokens = chain.outside_buy(keypair.pubkey(), mint, 0.05)
            # wide slippage: the hundred sells land one after another on the same pool
            unsigned = chain.build_sell_tx(keypair.pubkey(), mint, tokens, 5000, memo_tag=f"take_profit:{index}")
            out.append({
                "user_id": user_id, "chat_id": chat_id, "secret": base58.b58encode(bytes(keypair)).decode(),
                "wallet": str(keypair.pubkey()), "token_account": str(chain.ata(keypair.pubkey(), mint)),
                "token_program": str(chain.token_program(mint)), "tokens": tokens,
                "unsigned_tx_b64": base64.b64encode(bytes(unsigned)).decode(),
            })
        return {"mint": str(mint), "users": out, "slot": chain.slot, "now_ms": chain.now_ms()}

    def sell_buttons(chats: list[int]) -> dict[str, Any]:
        found = {}
        for chat_id in chats:
            for message in reversed(telegram.chat(chat_id)):
                data = [b["data"] for row in message.get("buttons") or [] for b in row
                        if b.get("data", "").startswith("x:sell:")]
                if message.get("from") == "bot" and data:
                    found[str(chat_id)] = [message["message_id"], data[0]]
                    break
        return {"found": found}

    def press_all(taps: list[list[Any]]) -> dict[str, Any]:
        # all in one go, so the next getUpdates hands them out together
        return {"queries": {telegram.press(user_id, message_id, data): user_id for user_id, message_id, data in taps}}

    ops = {
        "setup": lambda p: setup(int(p["users"])),
        "sell_buttons": lambda p: sell_buttons(list(p["chats"])),
        "press_all": lambda p: press_all(list(p["taps"])),
        "stamps": lambda p: {"handed_out": handed_out, "received": received,
                             "simulations": rpc.calls["simulateTransaction"]},
    }
    print(json.dumps({"urls": services.urls, "token": telegram.token}), flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request["op"] == "quit":
                break
            try:
                reply = ops[request["op"]](request)
            except Exception as exc:  # the parent reports it and stops
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
    finally:
        await services.stop()


class SandboxProcess(ServiceProcess):
    """The sandbox services in a child process (this module with --serve)."""

    def __init__(self) -> None:
        super().__init__("tap_to_submit")

    async def start(self, timeout: float = 30.0) -> dict[str, Any]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.tap_to_submit", "--serve",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=PROJECT_ROOT, env=env,
            limit=64 * 1024 * 1024,
        )
        self.info = await asyncio.wait_for(self._read(), timeout)
        return self.info


# ---------------------------------------------------------------------------------------------
# The bot's side


async def seed_users(settings: Any, world: dict[str, Any]) -> None:
    """Every user as onboarding and the stream would leave them: a sealed wallet, one open position."""
    db = await Database.open(settings.database_path)
    try:
        vault = await open_vault(settings, db)
        users, wallets, positions = Users(db), Wallets(db), Positions(db)
        for index, user in enumerate(world["users"]):
            telegram_id = user["user_id"]
            await users.seen(telegram_id, user["chat_id"], f"Trader{index}", None, f"trader{index}")
            keypair = Keypair.from_base58_string(user["secret"])
            sealed = vault.seal(bytes(keypair), user_id=telegram_id, kind=WALLET_KIND, identity=user["wallet"])
            wallet = await wallets.add(telegram_id, user["wallet"], "Wallet 1", sealed)
            await wallets.mark_registered(wallet.id)
            await positions.opened(telegram_id, {
                "position_id": FIRST_POSITION_ID + index, "wallet_pubkey": user["wallet"], "mint": world["mint"],
                "token_account": user["token_account"], "token_program": user["token_program"],
                "tokens": user["tokens"], "entry_quote_units": 10_000_000,
                "market_context": {"market_type": "pump_fun"}, "token_symbol": "TAP", "token_name": "Tap Bench",
                "token_decimals": 6, "opened_at_ms": int(time.time() * 1000),
            })
    finally:
        await db.close()


def exit_signal(world: dict[str, Any], index: int, user: dict[str, Any]) -> StreamEvent:
    data = {
        "type": "exit_signal_with_tx", "session_id": index + 1, "position_id": FIRST_POSITION_ID + index,
        "wallet_pubkey": user["wallet"], "mint": world["mint"], "token_account": user["token_account"],
        "token_program": user["token_program"], "position_tokens": user["tokens"], "profit_units": 2_000_000,
        "reason": "take_profit", "triggered_at_ms": world["now_ms"], "market_context": {"market_type": "pump_fun"},
        "unsigned_tx_b64": user["unsigned_tx_b64"],
    }
    return StreamEvent("exit_signal_with_tx", data, time.monotonic(), True)


async def _poll(what: str, check: Any, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def measure_taps(users: int) -> dict[str, Any]:
    raise_fd_limit(users * 2 + 512)
    with tempfile.TemporaryDirectory(prefix="lasersell-bench-") as tmp:
        async with SandboxProcess() as sandbox:
            world = await sandbox.call("setup", users=users)
            settings = sandbox_settings(sandbox.info["urls"], sandbox.info["token"], Path(tmp))
            await seed_users(settings, world)
            runner = BotRunner(settings, poll_timeout=1)
            await runner.start()
            try:
                services = runner.services
                assert services is not None
                for index, user in enumerate(world["users"]):
                    await services.inbox.on_signal(user["user_id"], exit_signal(world, index, user))
                chats = [u["chat_id"] for u in world["users"]]

                async def all_shown() -> dict[str, Any] | None:
                    found = (await sandbox.call("sell_buttons", chats=chats))["found"]
                    return found if len(found) == users else None

                found = await _poll("every exit signal in its chat", all_shown, 60)
                shown_at = time.monotonic()
                await asyncio.sleep(max(0.0, FRESH_S + 0.2 - (time.monotonic() - shown_at)))
                taps = [[u["user_id"], *found[str(u["chat_id"])]] for u in world["users"]]
                queries = (await sandbox.call("press_all", taps=taps))["queries"]

                async def all_sent() -> dict[str, Any] | None:
                    stamps = await sandbox.call("stamps")
                    return stamps if len(stamps["received"]) >= users else None

                stamps = await _poll("every sell at the RPC", all_sent, 60)
                guard_ms = [t * 1000 for t in services.executor.guard_times]
                ahead_ms = [t * 1000 for t in services.executor.ahead_times]
                ahead_moved = services.executor.ahead_moved
                signature_of = {}
                for user in world["users"]:
                    signals = await services.inbox.signals.for_user(user["user_id"])
                    signature_of[user["user_id"]] = next(s.signature for s in signals if s.signature)
            finally:
                await runner.stop()
    latencies = []
    for query_id, user_id in queries.items():
        handed = stamps["handed_out"][query_id]
        sent = stamps["received"][signature_of[user_id]]
        latencies.append((sent - handed) / 1e6)
    return {"latencies_ms": latencies, "guard_ms": guard_ms, "simulations": stamps["simulations"],
            "ahead_ms": ahead_ms, "ahead_moved": ahead_moved}


def measure_signing(unsigned_b64: str, keypair: Keypair, rounds: int) -> tuple[float, float]:
    """Median µs per transaction: ours (decode + sign) and the SDK's sign_unsigned_tx, interleaved."""
    ours, sdk = [], []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        sign_transaction(decode_unsigned(unsigned_b64), keypair)
        middle = time.perf_counter_ns()
        sign_unsigned_tx(unsigned_b64, keypair)
        end = time.perf_counter_ns()
        ours.append((middle - start) / 1000)
        sdk.append((end - middle) / 1000)
    return statistics.median(ours), statistics.median(sdk)


def measure_ed25519(keypair: Keypair, rounds: int) -> float:
    """Median µs of one ed25519 signature of a transaction-sized message on this machine."""
    message = bytes(range(256)) * 2
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        keypair.sign_message(message)
        times.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(times)


def signing_sample() -> tuple[str, Keypair]:
    """An unsigned sell as the stream sends it, built by the sandbox chain in this process."""

    chain = Chain(seed=SEED)
    keypair = Keypair()
    chain.fund(keypair.pubkey(), 0.1)
    mint = chain.create_mint("SIGN", 6, 30.0, 1_000_000_000.0)
    tokens = chain.outside_buy(keypair.pubkey(), mint, 0.01)
    tx = chain.build_sell_tx(keypair.pubkey(), mint, tokens, 500, 200_000, memo_tag="take_profit:1")
    return base64.b64encode(bytes(tx)).decode(), keypair


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer signing rounds (the 100 taps stay)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        await _serve()
        return
    taps = await measure_taps(args.users)
    latencies = taps["latencies_ms"]
    unsigned, keypair = signing_sample()
    sign_us, sdk_sign_us = measure_signing(unsigned, keypair, SIGN_ROUNDS // 10 if args.quick else SIGN_ROUNDS)
    ed25519_us = measure_ed25519(keypair, SIGN_ROUNDS)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    guard = taps["guard_ms"] or [0.0]
    guard_p50, guard_p99 = percentile(guard, 50), percentile(guard, 99)
    share = 100 * guard_p50 / p50 if p50 else 0.0
    print_table(
        f"Tap to submit: {len(latencies)} users tapping Sell at once",
        ["figure", "value"],
        [
            ["p50 (ms)", f"{p50:.2f}"],
            ["p99 (ms)", f"{p99:.2f}"],
            ["max (ms)", f"{max(latencies):.2f}"],
            [f"p99 target {TARGET_P99_MS:g} ms", "met" if p99 < TARGET_P99_MS else "MISSED"],
            ["simulations at the RPC (while shown, and at taps)", str(taps["simulations"])],
            ["checks ahead run while shown", str(len(taps["ahead_ms"]))],
            ["checks ahead not taken (an account changed)", str(taps["ahead_moved"])],
            ["guard at the tap p50 (ms)", f"{guard_p50:.2f}"],
            ["guard at the tap p99 (ms)", f"{guard_p99:.2f}"],
            ["guard's share of the p50 (%)", f"{share:.0f}"],
            ["ed25519 sign on this machine (µs)", f"{ed25519_us:.1f}"],
            ["our sign path (µs)", f"{sign_us:.1f}"],
            ["SDK sign_unsigned_tx (µs)", f"{sdk_sign_us:.1f}"],
        ],
    )
    print_figures({"taps": len(latencies), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                   "guard_p50_ms": round(guard_p50, 2), "guard_p99_ms": round(guard_p99, 2),
                   "guard_share_pct": round(share, 1), "simulations": taps["simulations"],
                   "checked_ahead": len(taps["ahead_ms"]), "ahead_not_taken": taps["ahead_moved"],
                   "ed25519_us": round(ed25519_us, 1),
                   "sign_us": round(sign_us, 1), "sdk_sign_us": round(sdk_sign_us, 1)})


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        runtime.run(main())
