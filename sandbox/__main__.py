"""`python -m sandbox serve [--bind 127.0.0.1] [--seed N]`: run every sandbox service.

Prints one JSON line with the services' URLs once all of them are ready, then runs until SIGTERM or
SIGINT and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from bot import runtime
from sandbox.services import SandboxServices


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local LaserSell sandbox")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run chain, RPC, stream, REST, control and Telegram")
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--seed", type=int, default=0, help="seed for deterministic keys and ids")
    return parser


async def serve(bind: str, seed: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with SandboxServices(host=bind, seed=seed, realtime=True) as services:
        print(json.dumps(services.urls), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        runtime.run(serve(args.bind, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
