"""Inbound throughput: our stream pipeline against the official SDK's receive loop, on one stream.

    python -m bench.inbound_throughput [--quick] [--frames N] [--rounds N]

The sandbox stream server runs in another process. Each round it writes a burst of `pnl_update`
frames (round-robin over 50 positions, an exit signal after every 1,000, and a final exit signal
as the end marker) to our `StreamClient`'s socket, then the same burst to the SDK's. Ours counts as
done when its consumer has the end marker and nothing is left pending (parse, route, coalesce);
the SDK's when `recv()` hands out the end marker. Both consumers do the same routing work (count by
type, keep the latest PnL per position). The figure is frames per second, median over rounds,
ours and the SDK's measured alternately in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from lasersell_sdk.stream.client import StreamClient as SdkStreamClient
from lasersell_sdk.stream.client import StreamConfigure

from bench.common import BENCH_STRATEGY, ServiceProcess, print_figures, print_table
from bot import runtime
from bot.stream.client import StreamClient, StreamConfig

POSITIONS = 50
SIGNAL_EVERY = 1000
END_MARKER_POSITION = 0


class Routed:
    """The consumer's work: count messages by type, keep the latest PnL per position."""

    def __init__(self) -> None:
        self.by_type: dict[str, int] = {}
        self.latest_pnl: dict[int, dict[str, Any]] = {}

    def route(self, kind: str, data: dict[str, Any]) -> bool:
        """Returns True for the end marker."""
        self.by_type[kind] = self.by_type.get(kind, 0) + 1
        if kind == "pnl_update":
            self.latest_pnl[data["position_id"]] = data
        elif kind == "exit_signal_with_tx":
            return data["position_id"] == END_MARKER_POSITION
        return False


async def measure_ours(server: ServiceProcess, client: StreamClient, key: str, wallet: str, frames: int) -> tuple[float, int]:
    prepared = await server.call(
        "prepare_burst", key=key, position_ids=list(range(1, POSITIONS + 1)), frames=frames,
        signal_every=SIGNAL_EVERY, wallet=wallet,
    )
    routed = Routed()
    received_before = client.messages_received

    async def consume() -> None:
        marker = False
        while True:
            event = await client.next_event()
            marker = routed.route(event.type, event.data) or marker
            if marker and client.pending_count() == 0:
                return

    consumer = asyncio.create_task(consume())
    start = time.perf_counter()
    await server.call("fire_burst", key=key)
    await asyncio.wait_for(consumer, 120)
    elapsed = time.perf_counter() - start
    received = client.messages_received - received_before
    if received != prepared["frames"]:
        raise RuntimeError(f"our client read {received} frames of {prepared['frames']}")
    return received / elapsed, sum(routed.by_type.values())


async def measure_sdk(server: ServiceProcess, connection: Any, key: str, wallet: str, frames: int) -> float:
    prepared = await server.call(
        "prepare_burst", key=key, position_ids=list(range(1, POSITIONS + 1)), frames=frames,
        signal_every=SIGNAL_EVERY, wallet=wallet,
    )
    routed = Routed()

    async def consume() -> int:
        count = 0
        while True:
            message = await connection.recv()
            if message is None:
                raise RuntimeError("the SDK connection closed during the burst")
            count += 1
            if routed.route(message["type"], message):
                return count

    consumer = asyncio.create_task(consume())
    start = time.perf_counter()
    await server.call("fire_burst", key=key)
    count = await asyncio.wait_for(consumer, 300)
    elapsed = time.perf_counter() - start
    if count != prepared["frames"]:
        raise RuntimeError(f"the SDK handed out {count} messages of {prepared['frames']}")
    return count / elapsed


async def run(frames: int, rounds: int) -> dict[str, Any]:
    async with ServiceProcess("stream") as server:
        url = server.info["url"]
        issued = await server.call("keys", count=2)
        (ours_key, sdk_key), (ours_wallet, sdk_wallet) = issued["keys"], issued["wallets"]

        async def config() -> StreamConfig:
            return StreamConfig(wallet_pubkeys=[ours_wallet], strategy=BENCH_STRATEGY)

        client = StreamClient(ours_key, config, url=url)
        await client.start()
        if not await client.wait_connected(10):
            raise RuntimeError(f"our stream did not connect: {client.reason}")
        await client.next_event()  # hello_ok
        sdk = await SdkStreamClient(sdk_key).with_endpoint(url).connect(
            StreamConfigure(wallet_pubkeys=[sdk_wallet], strategy=dict(BENCH_STRATEGY))  # type: ignore[arg-type]
        )
        await sdk.recv()  # hello_ok
        ours_rates: list[float] = []
        sdk_rates: list[float] = []
        delivered: list[int] = []
        try:
            for _ in range(rounds):
                rate, events = await measure_ours(server, client, ours_key, ours_wallet, frames)
                ours_rates.append(rate)
                delivered.append(events)
                sdk_rates.append(await measure_sdk(server, sdk, sdk_key, sdk_wallet, frames))
        finally:
            sdk.close()
            await client.stop()

    ours = statistics.median(ours_rates)
    theirs = statistics.median(sdk_rates)
    rows = [
        ["ours: StreamClient + consumer", frames, ours, min(ours_rates), max(ours_rates)],
        ["SDK: StreamClient.recv()", frames, theirs, min(sdk_rates), max(sdk_rates)],
    ]
    print_table(
        f"Inbound throughput, burst of {frames:,} pnl_update (+1 exit signal per {SIGNAL_EVERY:,}) "
        f"over {POSITIONS} positions, {rounds} round(s)",
        ["pipeline", "pnl frames", "median msg/s", "min msg/s", "max msg/s"],
        rows,
    )
    print(
        f"ours handed the consumer {statistics.median(delivered):,.0f} events per burst "
        f"(PnL coalesced per position, every exit signal kept); ratio ours/SDK {ours / theirs:.2f}x\n",
        flush=True,
    )
    return {"ours_msgs_per_s": round(ours), "sdk_msgs_per_s": round(theirs), "ratio": round(ours / theirs, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inbound_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run: 20,000 frames, one round")
    parser.add_argument("--frames", type=int, help="pnl_update frames per burst (default 100,000)")
    parser.add_argument("--rounds", type=int, help="bursts per pipeline (default 3)")
    args = parser.parse_args(argv)
    frames = args.frames or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    print_figures(runtime.run(run(frames, rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
