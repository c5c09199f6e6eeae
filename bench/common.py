"""What the benchmarks share: a sandbox service running in another process, measurements, output.

The stream server (and, for the latency benchmark, the sandbox Telegram) runs in a child process so
that the process being measured holds only the bot's side. The parent talks to the child with one JSON
object per line on its stdin / stdout:

    python -m bench.common stream     # the sandbox LaserSell stream, plus flood and burst commands
    python -m bench.common telegram   # the sandbox Telegram Bot API

Timestamps that cross processes are `time.monotonic_ns()`: CLOCK_MONOTONIC is one clock for every
process on a machine, so a send stamped in one process and a receipt stamped in another subtract.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot import runtime

# Everything a bench prints for people goes to stdout before its last line, the JSON figures.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

BENCH_STRATEGY: dict[str, Any] = {"target_profit_pct": 50.0, "stop_loss_pct": 20.0}
BENCH_MINT = "So11111111111111111111111111111111111111112"


# ---------------------------------------------------------------------------------------------
# Measurements of this process


def rss_kib() -> int:
    """Resident set size of this process in KiB (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


def settled_rss_kib() -> int:
    """RSS after a full collection, so garbage waiting for the collector is not counted."""
    gc.collect()
    return rss_kib()


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit to at least `wanted` (up to the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class CpuWindow:
    """CPU time of this process (all threads) over a stretch of wall time, as a share of one core."""

    def __enter__(self) -> CpuWindow:
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()
        self.cpu_s = 0.0
        self.wall_s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s = time.process_time() - self.cpu0
        self.wall_s = time.monotonic() - self.wall0

    @property
    def core_share(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# ---------------------------------------------------------------------------------------------
# Output


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(title)
    for index, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print(flush=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ed25519_sign_us(messages: int = 2000) -> float:
    """This machine's time to sign a 200-byte message with ed25519 (solders), median of 5 runs, in µs.

    Figures from different machines compare once divided by this: it tracks single-core speed.
    """
    from solders.keypair import Keypair

    keypair = Keypair()
    message = bytes(range(200))
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(messages // 5):
            keypair.sign_message(message)
        runs.append((time.perf_counter() - start) / (messages // 5) * 1e6)
    return sorted(runs)[len(runs) // 2]


def load_average() -> float:
    """The 1-minute load average (other work on the machine skews every figure)."""
    return os.getloadavg()[0]


def print_figures(figures: dict[str, Any]) -> None:
    """The last line of every bench: its figures as one JSON object, with the machine's sign time and load."""
    sign_us = ed25519_sign_us()
    load = load_average()
    print(f"machine: ed25519 sign {sign_us:.1f} µs, load average {load:.2f} on {os.cpu_count()} core(s)")
    figures = {**figures, "ed25519_sign_us": round(sign_us, 1), "load_1m": round(load, 2)}
    print(json.dumps(figures, separators=(",", ":")), flush=True)


# ---------------------------------------------------------------------------------------------
# The parent's side of a service process


class ServiceProcess:
    """A `python -m bench.common <role>` child: `await start()`, then `await call(op, ...)`."""

    def __init__(self, role: str, *args: str) -> None:
        self.role = role
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def start(self, timeout: float = 30.0) -> dict[str, Any]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.common", self.role, *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=PROJECT_ROOT, env=env,
            limit=64 * 1024 * 1024,
        )
        self.info = await asyncio.wait_for(self._read(), timeout)
        return self.info

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"bench {self.role} process ended (exit code {code})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"bench {self.role} process: {reply['error']}")
        return reply

    async def call(self, op: str, timeout: float = 120.0, **params: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
            await self.proc.stdin.drain()
            return await asyncio.wait_for(self._read(), timeout)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.write(b'{"op":"quit"}\n')
            await proc.stdin.drain()
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __aenter__(self) -> ServiceProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# ---------------------------------------------------------------------------------------------
# Frames the benches send


def pnl_frame(position_id: int, tick: int, server_time_ms: int) -> dict[str, Any]:
    profit = (tick % 2000) * 10_000 - 5_000_000
    return {
        "type": "pnl_update",
        "position_id": position_id,
        "profit_units": profit,
        "proceeds_units": 100_000_000 + profit,
        "server_time_ms": server_time_ms,
        "token_price_quote": 1_000 + tick % 97,
        "market_cap_quote": 30_000_000_000 + tick % 1_000,
    }


def exit_signal_frame(
    session_id: int, position_id: int, wallet: str, unsigned_tx_b64: str, triggered_at_ms: int
) -> dict[str, Any]:
    return {
        "type": "exit_signal_with_tx",
        "session_id": session_id,
        "position_id": position_id,
        "wallet_pubkey": wallet,
        "mint": BENCH_MINT,
        "position_tokens": 1_000_000_000,
        "profit_units": 60_000_000,
        "reason": "target_profit",
        "triggered_at_ms": triggered_at_ms,
        "market_context": {"market_type": "pump_fun", "pumpfun": {}},
        "unsigned_tx_b64": unsigned_tx_b64,
    }


def unsigned_sell_tx_b64(wallet: str) -> str:
    """A real unsigned v0 transaction paid by `wallet` (a memo), with the placeholder signature."""
    import base64

    from solders.hash import Hash
    from solders.instruction import Instruction
    from solders.message import MessageV0
    from solders.pubkey import Pubkey
    from solders.signature import Signature
    from solders.transaction import VersionedTransaction

    payer = Pubkey.from_string(wallet)
    memo = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TuFNLzvLjXXRqRyH8aYr6m")
    message = MessageV0.try_compile(payer, [Instruction(memo, b"bench sell", [])], [], Hash.default())
    tx = VersionedTransaction.populate(message, [Signature.default()])
    return base64.b64encode(bytes(tx)).decode()


# ---------------------------------------------------------------------------------------------
# The child's side: the stream role


def _ws_text_frame(text: str) -> bytes:
    """A complete unmasked server-to-client text frame (no extensions: the server runs uncompressed)."""
    from websockets.frames import Frame, Opcode

    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def _pnl_ws_frame(position_id: int, tick: int, server_time_ms: int) -> bytes:
    """`pnl_frame` as a server text frame, the same bytes json.dumps(..., separators=(",", ":")) gives."""
    profit = (tick % 2000) * 10_000 - 5_000_000
    payload = (
        f'{{"type":"pnl_update","position_id":{position_id},"profit_units":{profit},'
        f'"proceeds_units":{100_000_000 + profit},"server_time_ms":{server_time_ms},'
        f'"token_price_quote":{1_000 + tick % 97},"market_cap_quote":{30_000_000_000 + tick % 1_000}}}'
    ).encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    return bytes((0x81, 126, size >> 8, size & 0xFF)) + payload


async def _stream_role() -> None:
    from solders.keypair import Keypair

    from sandbox.accounts import Accounts
    from sandbox.chain import Chain
    from sandbox.exit_api import ExitApi
    from sandbox.stream import StreamServer

    accounts = Accounts(seed=5)
    chain = Chain(seed=5)
    server = StreamServer(chain, accounts)
    await server.start("127.0.0.1", 0)
    # The REST API beside it: the bot registers every wallet before each stream connect, as the CLI does.
    api = ExitApi(chain, accounts)
    await api.start("127.0.0.1", 0)
    _reply({"url": server.url, "api_url": api.url})

    def transport_of(key: str) -> tuple[Any, int]:
        session = server.session_for(key)
        if session is None or session.closed or not session.configured:
            raise RuntimeError(f"no configured session for key #{key[-6:]}")
        return session.connection.transport, session.session_id

    async def keys(count: int, wallets: list[str] | None = None, tier: str = "professional") -> dict[str, Any]:
        out_keys, out_wallets = [], []
        for index in range(count):
            wallet = wallets[index] if wallets else str(Keypair().pubkey())
            api_key = accounts.issue(tier)
            accounts.register_wallet(api_key.key, wallet)
            out_keys.append(api_key.key)
            out_wallets.append(wallet)
        return {"keys": out_keys, "wallets": out_wallets}

    async def sessions() -> dict[str, Any]:
        return {"configured": sum(1 for s in server.live_sessions() if s.configured)}

    prepared: dict[str, bytes] = {}

    async def prepare_burst(
        key: str, position_ids: list[int], frames: int, signal_every: int, wallet: str
    ) -> dict[str, Any]:
        """Pre-encode `frames` pnl_update frames round-robin over the positions, an exit signal after
        every `signal_every`, and a final exit signal on position 0 (the end marker)."""
        _transport, session_id = transport_of(key)
        tx = unsigned_sell_tx_b64(wallet)
        now_ms = int(time.time() * 1000)
        parts: list[bytes] = []
        signals = 0
        for tick in range(frames):
            pid = position_ids[tick % len(position_ids)]
            parts.append(_ws_text_frame(json.dumps(pnl_frame(pid, tick, now_ms), separators=(",", ":"))))
            if signal_every and (tick + 1) % signal_every == 0:
                parts.append(_ws_text_frame(json.dumps(exit_signal_frame(session_id, pid, wallet, tx, now_ms))))
                signals += 1
        parts.append(_ws_text_frame(json.dumps(exit_signal_frame(session_id, 0, wallet, tx, now_ms))))
        prepared[key] = blob = b"".join(parts)
        return {"frames": frames + signals + 1, "signals": signals + 1, "bytes": len(blob)}

    async def fire_burst(key: str) -> dict[str, Any]:
        """Write a prepared burst to the socket in one go, so the server is never what limits the rate."""
        transport, _session_id = transport_of(key)
        blob = prepared.pop(key)
        transport.write(blob)
        return {"bytes": len(blob)}

    async def flood(
        keys: list[str], position_ids: list[int], wallets: list[str], pnl_per_s: float, seconds: float,
        signal_keys: list[str],
    ) -> dict[str, Any]:
        """pnl_update at `pnl_per_s` spread round-robin over every session for `seconds`, and one exit
        signal per `signal_keys` entry at even intervals; returns each signal's send time.

        Frames are built from a template and framed by hand (a few µs each), so this process is not
        what limits the rate the bot is asked to take."""
        targets = [(*transport_of(k), pid) for k, pid in zip(keys, position_ids, strict=True)]
        index_of = {k: i for i, k in enumerate(keys)}
        signal_frames = []
        for key in signal_keys:
            i = index_of[key]
            transport, session_id, pid = targets[i]
            message = exit_signal_frame(session_id, pid, wallets[i], unsigned_sell_tx_b64(wallets[i]), 0)
            signal_frames.append((key, transport, message))
        spacing = seconds / max(1, len(signal_frames))
        sent_ns: dict[str, int] = {}
        pnl_sent = 0
        next_target = 0
        next_signal = 0
        start = time.monotonic()
        while True:
            now = time.monotonic()
            elapsed = now - start
            if elapsed >= seconds and next_signal >= len(signal_frames):
                break
            if elapsed < seconds:
                due = int(pnl_per_s * elapsed) - pnl_sent
                server_ms = int(time.time() * 1000)
                for _ in range(due):
                    transport, _sid, pid = targets[next_target]
                    next_target = (next_target + 1) % len(targets)
                    transport.write(_pnl_ws_frame(pid, pnl_sent, server_ms))
                    pnl_sent += 1
            while next_signal < len(signal_frames) and elapsed >= (next_signal + 0.5) * spacing:
                key, transport, message = signal_frames[next_signal]
                message["triggered_at_ms"] = int(time.time() * 1000)
                frame = _ws_text_frame(json.dumps(message, separators=(",", ":")))
                # stamped right at the write: the latency starts when the server sends
                sent_ns[key] = time.monotonic_ns()
                transport.write(frame)
                next_signal += 1
            await asyncio.sleep(0.002)
        elapsed = time.monotonic() - start
        return {"pnl_sent": pnl_sent, "elapsed_s": elapsed, "signal_sent_ns": sent_ns}

    ops = {
        "keys": keys, "sessions": sessions, "prepare_burst": prepare_burst, "fire_burst": fire_burst,
        "flood": flood,
    }
    try:
        await _serve_commands(ops)
    finally:
        await server.stop()


# ---------------------------------------------------------------------------------------------
# The child's side: the telegram role


async def _telegram_role(token: str) -> None:
    from sandbox.telegram import SandboxTelegram

    telegram = SandboxTelegram(token)
    await telegram.start("127.0.0.1", 0)
    _reply({"url": telegram.url, "token": telegram.token})

    async def users(count: int) -> dict[str, Any]:
        return {"ids": [telegram.add_user(f"Trader{i}", f"trader{i}")[0] for i in range(count)]}

    async def bot_messages(chats: list[int]) -> dict[str, Any]:
        """Per chat: when each bot message arrived (monotonic ns) and how it starts."""
        out: dict[str, list[dict[str, Any]]] = {}
        for chat in chats:
            out[str(chat)] = [
                {"received_ns": int(m["received_at"] * 1e9), "text": (m.get("text") or "")[:80]}
                for m in telegram.chat(chat)
                if m["from"] == "bot"
            ]
        return {"chats": out, "stats": telegram.stats()}

    try:
        await _serve_commands({"users": users, "bot_messages": bot_messages})
    finally:
        await telegram.stop()


# ---------------------------------------------------------------------------------------------
# Child plumbing


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _serve_commands(ops: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return  # the parent went away
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            return
        try:
            _reply(await ops[op](**request))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the bench
            _reply({"error": f"{op}: {type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    role = args[0] if args else ""
    if role == "stream":
        runtime.run(_stream_role())
    elif role == "telegram":
        runtime.run(_telegram_role(args[1]))
    else:
        print("usage: python -m bench.common stream | telegram TOKEN", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
