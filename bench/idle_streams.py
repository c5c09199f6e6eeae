"""Idle streams: what 1,000 connected but quiet user streams cost, next to the official SDK's client.

    python -m bench.idle_streams [--quick] [--streams N] [--sdk-streams N] [--seconds S]

The sandbox stream server runs in another process with one API key per stream (one session per key,
as LaserSell allows). This process opens our `StreamClient`s (each with a consumer waiting on it, as
the user streams run them), waits until all are connected, then measures over the window:
- CPU share of one core: this process's CPU time (all threads) / wall time;
- RSS per stream: VmRSS after connecting minus VmRSS before, divided by the streams.
Then it closes them and does the same for the SDK's `StreamClient` connections (which poll every
10 ms), with as many as the machine comfortably bears.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from lasersell_sdk.stream.client import StreamClient as SdkStreamClient
from lasersell_sdk.stream.client import StreamConfigure

from bench.common import (
    BENCH_STRATEGY,
    CpuWindow,
    ServiceProcess,
    print_figures,
    print_table,
    raise_fd_limit,
    settled_rss_kib,
)
from bot import runtime
from bot.stream.client import StreamClient, StreamClosed, StreamConfig

CONNECT_BATCH = 100  # the server's listen backlog is about this size: connect in waves


async def _drain(client: StreamClient) -> None:
    with contextlib.suppress(StreamClosed):
        while True:
            await client.next_event()


async def measure_ours(url: str, keys: list[str], wallets: list[str], seconds: float) -> dict[str, Any]:
    rss_before = settled_rss_kib()
    clients: list[StreamClient] = []
    consumers: list[asyncio.Task[None]] = []
    for start in range(0, len(keys), CONNECT_BATCH):
        batch = []
        for key, wallet in zip(keys[start:start + CONNECT_BATCH], wallets[start:start + CONNECT_BATCH], strict=True):
            config = StreamConfig(wallet_pubkeys=[wallet], strategy=BENCH_STRATEGY)

            async def get_config(config: StreamConfig = config) -> StreamConfig:
                return config

            client = StreamClient(key, get_config, url=url)
            await client.start()
            consumers.append(asyncio.create_task(_drain(client)))
            batch.append(client)
        connected = await asyncio.gather(*(c.wait_connected(30) for c in batch))
        if not all(connected):
            failed = next(c for c, ok in zip(batch, connected, strict=True) if not ok)
            raise RuntimeError(f"a stream did not connect: {failed.state} {failed.reason}")
        clients.extend(batch)
    await asyncio.sleep(1.0)  # let the hello_ok events drain and the connections settle
    rss_connected = settled_rss_kib()
    with CpuWindow() as window:
        await asyncio.sleep(seconds)
    rss_end = settled_rss_kib()
    still = sum(1 for c in clients if c.state == "connected")
    await asyncio.gather(*(c.stop(timeout=2.0) for c in clients))
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    return {
        "streams": len(clients),
        "connected_at_end": still,
        "cpu_s": window.cpu_s,
        "wall_s": window.wall_s,
        "core_share": window.core_share,
        "rss_kib_per_stream": (max(rss_connected, rss_end) - rss_before) / len(clients),
    }


async def measure_sdk(url: str, keys: list[str], wallets: list[str], seconds: float) -> dict[str, Any]:
    connections: list[Any] = []
    for start in range(0, len(keys), CONNECT_BATCH):
        batch = zip(keys[start:start + CONNECT_BATCH], wallets[start:start + CONNECT_BATCH], strict=True)
        connections += await asyncio.gather(
            *(
                SdkStreamClient(key).with_endpoint(url).connect(
                    StreamConfigure(wallet_pubkeys=[wallet], strategy=dict(BENCH_STRATEGY))  # type: ignore[arg-type]
                )
                for key, wallet in batch
            )
        )
    await asyncio.sleep(1.0)
    with CpuWindow() as window:
        await asyncio.sleep(seconds)
    for connection in connections:
        connection.close()
    await asyncio.sleep(0.5)  # let the workers see the close and end
    return {
        "streams": len(connections),
        "cpu_s": window.cpu_s,
        "wall_s": window.wall_s,
        "core_share": window.core_share,
    }


async def run(streams: int, sdk_streams: int, seconds: float) -> dict[str, Any]:
    raise_fd_limit(streams + sdk_streams + 256)
    async with ServiceProcess("stream") as server:
        url = server.info["url"]
        issued = await server.call("keys", count=streams + sdk_streams)
        keys, wallets = issued["keys"], issued["wallets"]
        ours = await measure_ours(url, keys[:streams], wallets[:streams], seconds)
        theirs = await measure_sdk(url, keys[streams:], wallets[streams:], seconds)

    def per_100(result: dict[str, Any]) -> float:
        return result["core_share"] * 100 / result["streams"] * 100

    print_table(
        f"Idle streams, {seconds:g} s window, stream server in another process",
        ["client", "streams", "CPU s", "% of a core", "% core per 100", "RSS KiB/stream"],
        [
            ["ours (event-driven)", ours["streams"], ours["cpu_s"], ours["core_share"] * 100, per_100(ours),
             ours["rss_kib_per_stream"]],
            # RSS n/a: the SDK's connections reuse the memory ours just freed, so a delta means nothing
            ["SDK (10 ms poll)", theirs["streams"], theirs["cpu_s"], theirs["core_share"] * 100, per_100(theirs),
             float("nan")],
        ],
    )
    ratio = per_100(theirs) / per_100(ours) if per_100(ours) > 0 else float("inf")
    print(
        f"targets at 1,000 streams: <= 2 % of a core, <= 64 KiB per stream; "
        f"{ours['connected_at_end']}/{ours['streams']} of ours still connected at the end; "
        f"per stream the SDK costs {ratio:,.0f}x our CPU\n",
        flush=True,
    )
    return {
        "streams": ours["streams"],
        "cpu_core_share": round(ours["core_share"], 5),
        "rss_kib_per_stream": round(ours["rss_kib_per_stream"], 1),
        "sdk_streams": theirs["streams"],
        "sdk_cpu_core_share": round(theirs["core_share"], 5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_streams", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run: 200 streams (SDK 50) for 5 s")
    parser.add_argument("--streams", type=int, help="our streams (default 1,000)")
    parser.add_argument("--sdk-streams", type=int, help="SDK connections (default 100)")
    parser.add_argument("--seconds", type=float, help="measuring window in seconds (default 30)")
    args = parser.parse_args(argv)
    streams = args.streams or (200 if args.quick else 1000)
    sdk_streams = args.sdk_streams or (50 if args.quick else 100)
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    print_figures(runtime.run(run(streams, sdk_streams, seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
