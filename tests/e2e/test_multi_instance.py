"""Several bot instances, each its own process, behind the sandbox Telegram in webhook mode, sharing one
PostgreSQL database: each user's stream has one owner, a Sell tap served by an instance that does not own the
stream sells once, and when the instance holding the most streams is killed -9 its streams resume elsewhere,
an exit signal sent meanwhile still reaches its trader, and nothing is sold twice.

Skipped only when no PostgreSQL server answers (CI starts one)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal as signals
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import base58
import matplotlib
import pytest
from solders.keypair import Keypair

from bot.vault import write_new_master_key
from sandbox.services import SandboxServices
from storage.db import Database
from storage.leases import Leases
from tests.conftest import drop_pg_schema, fresh_pg_schema
from tests.e2e.harness import ChatUser, Harness, Trader, pump, signal_id, until

ROOT = Path(__file__).parents[2]
INSTANCES = 3
SECRET = "multi-instance-secret_0123456789"
BROADCAST_RATE = 0.5


@dataclass
class Instance:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Fleet:
    h: Harness
    admin: ChatUser
    db: Database
    instances: list[Instance]

    def by_pid(self, owner: str) -> Instance | None:
        """The instance a lease owner names (`host-pid-random`)."""
        return next((i for i in self.instances if f"-{i.process.pid}-" in owner), None)

    async def owner_of(self, trader: Trader) -> Instance | None:
        holder = await Leases(self.db).holder(trader.chat.user_id)
        return self.by_pid(holder) if holder else None

    def logs(self) -> str:
        return "\n".join(f"--- {i.name}\n{i.log.read_text(errors='replace')[-3000:]}" for i in self.instances)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_instance(services: Any, data_dir: Path, db_url: str, name: str, admin_id: int) -> Instance:
    """`python -m bot run --webhook`, wired to the sandbox and the shared database by environment."""
    urls = services.urls
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    env = {
        "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(data_dir),
        "TELEGRAM_BOT_TOKEN": services.telegram.token, "TELEGRAM_API_BASE_URL": urls["telegram"],
        "LASERSELL_STREAM_URL": urls["stream"], "LASERSELL_API_URL": urls["api"], "SOLANA_RPC_URL": urls["rpc"],
        "HELIUS_SENDER_URL": urls["rpc"], "ASTRALANE_URL": urls["rpc"],
        "BOT_MASTER_KEY_FILE": str(data_dir / "master.key"), "DATABASE_URL": db_url,
        "DATABASE_PATH": str(data_dir / f"{name}.db"), "TELEGRAM_CHAT_RATE": "10",
        # a broadcast slow enough to be killed half way through
        "ADMIN_USER_IDS": str(admin_id), "BROADCAST_RATE": str(BROADCAST_RATE),
        # the charts' font cache is built once per machine, not once per process start (slow on a busy one)
        "MPLCONFIGDIR": matplotlib.get_cachedir(),
        "WEBHOOK_URL": url, "WEBHOOK_LISTEN": f"127.0.0.1:{port}", "WEBHOOK_SECRET": SECRET,
    }
    log = data_dir / f"{name}.log"
    out = log.open("ab")
    process = subprocess.Popen([sys.executable, "-m", "bot", "run", "--webhook"], cwd=data_dir, env=env,
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return Instance(name, url, process, log)


async def answers_http(instance: Instance) -> bool:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, \
                session.get(instance.url.rsplit("/", 1)[0] + "/healthz") as resp:
            return resp.status in (200, 503)
    return instance.process.poll() is not None  # a dead process ends the wait (and fails below)


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    db_url, pg_admin = await fresh_pg_schema()  # skips when no PostgreSQL server answers
    db = await Database.open(db_url)  # migrated once, before the instances start side by side
    await Leases(db).ensure_tables()
    write_new_master_key(tmp_path / "master.key")  # the instances share the master key, as they share the data
    services = SandboxServices(seed=3, telegram_options={"per_chat_rate": 20.0, "per_chat_burst": 20})
    await services.__aenter__()
    instances: list[Instance] = []
    try:
        h = Harness(services, None, tmp_path)  # type: ignore[arg-type]
        admin = await h.user("Boss")
        instances = [start_instance(services, tmp_path, db_url, f"bot{n}", admin.user_id) for n in range(INSTANCES)]
        for instance in instances:
            await until(functools.partial(answers_http, instance), f"{instance.name} serving its webhook", timeout=60)
            assert instance.process.poll() is None, instance.log.read_text(errors="replace")
        services.telegram.set_webhook_instances([i.url for i in instances])
        yield Fleet(h, admin, db, instances)
    finally:
        for instance in instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signals.SIGTERM)
        for instance in instances:
            try:
                await asyncio.to_thread(instance.process.wait, 15)
            except subprocess.TimeoutExpired:
                instance.process.kill()
                await asyncio.to_thread(instance.process.wait, 5)
        await services.__aexit__(None, None, None)
        await db.close()
        await drop_pg_schema(db_url, pg_admin)


async def setup_trader_by_chat(h: Harness, name: str, strategy: str, instances: list[Instance]) -> Trader:
    """A user set up by chat, each update to the next instance in turn; returns once the user's stream has a
    session (anywhere). "Send the secret as your next message" is asked by one instance and answered at
    another: the open conversation is shared through the database."""
    h.services.telegram.set_webhook_instances([i.url for i in instances])
    chat = await h.user(name)
    key = h.services.accounts.issue("professional").key
    await chat.send("/start", expect=r"1/3")
    await chat.send(f"/apikey {key}", expect=r"LaserSell key saved")
    keypair = Keypair()
    h.services.chain.fund(keypair.pubkey(), 1.0)
    await chat.wait_text(r"2/3 wallet")
    await chat.press("Import a wallet", expect=r"Send the wallet's secret")
    await chat.send(base58.b58encode(bytes(keypair)).decode(), expect=r"Wallet .* added")
    await chat.wait_text(r"3/3 strategy")
    await chat.send(f"/strategy {strategy}", expect=r"Saved")
    stream = h.services.stream
    await until(lambda: stream.session_for(key) is not None, f"{name}'s stream connected", timeout=20)
    return Trader(chat, key, keypair, str(keypair.pubkey()))


def session_keys(stream: Any) -> list[str]:
    """The API key of each live session at the stream."""
    return [s.api_key.key for s in stream.live_sessions()]


async def holds_token(h: Harness, trader: Trader, symbol: str) -> Any:
    chain = h.services.chain
    mint = chain.create_mint(symbol, 6, 30.0, 1_000_000_000.0, name=symbol.title())
    chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    await trader.chat.wait_text(rf"New position: {symbol}", timeout=20)
    return mint


async def signal_reaches(h: Harness, trader: Trader, timeout: float = 30) -> dict[str, Any]:
    """Pump the stream until the trader's take-profit message (with its Sell button) arrives."""

    async def arrived() -> dict[str, Any] | None:
        await pump(h, rounds=1)
        for m in trader.chat.bot_messages():
            if "Take profit reached" in (m.get("text") or "") and not m.get("deleted"):
                return m
        return None

    return await until(arrived, f"{trader.chat.user_id}'s exit signal", timeout=timeout)


BROADCAST = "Markets open"


def copies_of(trader: Trader) -> int:
    return sum(BROADCAST in (m.get("text") or "") for m in trader.chat.bot_messages())


def received(traders: list[Trader]) -> int:
    return sum(copies_of(t) > 0 for t in traders)


def sold_messages(trader: Trader, symbol: str) -> int:
    return sum("Sold" in (m.get("text") or "") and symbol in (m.get("text") or "") for m in trader.chat.bot_messages())


async def test_streams_have_one_owner_taps_sell_once_anywhere_and_a_killed_instance_hands_over(fleet: Fleet) -> None:
    h, f = fleet.h, fleet
    rpc, chain, stream = h.services.rpc, h.services.chain, h.services.stream
    names = ["Ann", "Bob", "Cy", "Di"]
    traders = [await setup_trader_by_chat(h, n, "tp 20 sl 50 deadline 0", f.instances[k:] + f.instances[:k])
               for k, n in enumerate(names)]
    h.services.telegram.set_webhook_instances([i.url for i in f.instances])
    symbols = ["PEPE", "WIF", "BONK", "MEW"]
    mints = [await holds_token(h, t, s) for t, s in zip(traders, symbols, strict=True)]

    # one owner per stream: a live lease naming a running instance, one live session per key at the stream
    owners = {t.chat.user_id: await f.owner_of(t) for t in traders}
    assert all(owners.values()), f.logs()
    keys = session_keys(stream)
    assert sorted(Counter(keys).values()) == [1] * len(traders)
    assert {t.api_key for t in traders} <= set(keys)
    assert len({o.name for o in owners.values() if o}) >= 2  # the streams are spread over the instances

    # a Sell tap delivered to an instance that does not own the stream sells once
    first = traders[0]
    chain.market_move(mints[0], 40)
    signal = await signal_reaches(h, first)
    owner = owners[first.chat.user_id]
    assert owner is not None
    others = [i.url for i in f.instances if i is not owner]
    h.services.telegram.set_webhook_instances(others)
    before = len(h.services.telegram.webhook_deliveries())
    first.chat.tg.press(first.chat.user_id, signal["message_id"], f"x:sell:{signal_id(signal)}")
    await first.chat.wait_text(r"Sold .* PEPE for", timeout=30)
    served = [d["url"] for d in h.services.telegram.webhook_deliveries()[before:] if d["error"] is None]
    assert served and owner.url not in served  # the tap was served by an instance not owning the stream
    assert chain.token_balance(first.wallet, mints[0]) == 0
    assert rpc.calls["sendTransaction"] == 1
    # ... and so does Stop tracking, which only the stream's owner can pass on to the stream
    extra = await holds_token(h, first, "TRUMP")
    alert = next(m for m in reversed(first.chat.bot_messages()) if "Stop tracking" in first.chat.buttons(m))
    await first.chat.press("Stop tracking", message=alert, expect=r"Stop tracking TRUMP\?")
    await first.chat.press("Yes, stop tracking", expect=r"Stopped tracking TRUMP")
    session = stream.session_for(first.api_key)
    assert session is not None
    closes = [m for m in session.received if m.get("type") == "close_position"]
    assert len(closes) == 1, session.received
    assert chain.token_balance(first.wallet, extra) > 0  # stopped, not sold
    h.services.telegram.set_webhook_instances([i.url for i in f.instances])

    # kill -9 the instance holding the most streams; a signal comes while its streams move
    counts = Counter(o.name for o in [await f.owner_of(t) for t in traders] if o)
    victim = next(i for i in f.instances if i.name == counts.most_common(1)[0][0])
    moved = [t for t in traders if (await f.owner_of(t)) is victim]
    # ... and which is sending a broadcast: the admin's Send tap goes to it, and it has sent some of it
    h.services.telegram.set_webhook_instances([victim.url])
    await f.admin.send("/broadcast Markets open 🚀", expect=r"Send it to <?b?>?4")
    await f.admin.press("Send")
    await until(lambda: 1 <= received(traders) < len(traders), "the broadcast half way", timeout=20)
    os.kill(victim.process.pid, signals.SIGKILL)
    await asyncio.to_thread(victim.process.wait, 10)
    h.services.telegram.set_webhook_instances([i.url for i in f.instances if i is not victim])
    target = next((t for t in moved if t is not first), moved[0])
    index = traders.index(target)
    chain.market_move(mints[index], 40)
    if target is first:  # already sold: a second signal for it would be wrong; use another token of its
        mints[index] = await holds_token(h, target, "POPCAT")
        chain.market_move(mints[index], 40)

    late = await signal_reaches(h, target, timeout=40)
    for t in moved:  # every stream of the killed instance runs again, on a live instance
        await until(functools.partial(stream.session_for, t.api_key), f"{t.chat.user_id}'s stream back", 30)
        new_owner = await until(functools.partial(f.owner_of, t), "a new owner", 30)
        assert new_owner is not victim and new_owner.process.poll() is None
    keys = session_keys(stream)
    assert sorted(Counter(keys).values()) == [1] * len(traders)

    target.chat.tg.press(target.chat.user_id, late["message_id"], f"x:sell:{signal_id(late)}")
    await target.chat.wait_for(  # the signal's own message turns into the result
        lambda ms: any(m["message_id"] == late["message_id"] and "Sold" in (m.get("text") or "") for m in ms),
        timeout=30, what="the late signal sold")
    await until(lambda: chain.token_balance(target.wallet, mints[index]) == 0, "the late sell landed", 30)
    assert rpc.calls["sendTransaction"] == 2  # two sells, each sent once
    # the broadcast was resumed elsewhere: it finished, and nobody got it twice
    await f.admin.wait_text(r"Broadcast #\d+ finished", timeout=40)
    copies = [copies_of(t) for t in traders]
    assert max(copies) == 1, copies
    assert sum(copies) >= len(traders) - 1  # one cut off mid-send by the kill is never retried (never twice)

    sold = {t.chat.user_id: sold_messages(t, "") for t in traders}
    assert sold == {t.chat.user_id: int(t in (first, target)) + int(t is first is target) for t in traders}, f.logs()
