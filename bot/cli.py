"""The `lasersell-bot` command: run, sandbox, migrate, gen-master-key, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from bot.config import ConfigError, Settings, load_settings

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lasersell-bot",
        description="Telegram bot for the LaserSell Exit Intelligence Stream. "
        "With no TELEGRAM_BOT_TOKEN, `run` starts the sandbox demo.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (default); the sandbox demo when no token is configured")
    sandbox = sub.add_parser("sandbox", help="chat with the bot in this terminal, against local stand-ins")
    sandbox.add_argument("--script", type=Path, help="play a file of lines and print the transcript")
    sandbox.add_argument("--seed", type=int, default=7, help="seed for the sandbox (default 7)")
    sandbox.add_argument("--data", type=Path, help="keep the sandbox database and master key in this folder")
    sub.add_parser("migrate", help="apply database migrations and exit")
    gen = sub.add_parser("gen-master-key", help="write a new master key file (mode 0600)")
    gen.add_argument("--out", type=Path, default=Path("master.key"), help="file to write (default master.key)")
    sub.add_parser("check", help="validate settings and reach every configured endpoint")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "gen-master-key":
            return _gen_master_key(args.out)
        if command == "sandbox":
            from sandbox.terminal import run_sandbox

            return asyncio.run(run_sandbox(script=args.script, seed=args.seed, data_dir=args.data))
        settings = load_settings()
        if command == "migrate":
            return asyncio.run(_migrate(settings))
        if command == "check":
            from bot.check import run_checks

            return asyncio.run(run_checks(settings))
        if settings.sandbox_mode:
            from sandbox.terminal import run_sandbox

            print("No TELEGRAM_BOT_TOKEN set: starting the sandbox demo (local stand-ins, no accounts).")
            script = None if sys.stdin.isatty() else _demo_script()
            return asyncio.run(run_sandbox(script=script))
        return _run(settings)
    except ConfigError as exc:
        print(f"lasersell-bot: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _demo_script() -> Path:
    from importlib import resources

    return Path(str(resources.files("sandbox") / "scripts" / "demo.txt"))


def _gen_master_key(out: Path) -> int:
    from bot.vault import VaultError, write_new_master_key

    try:
        write_new_master_key(out)
    except (VaultError, OSError) as exc:
        print(f"lasersell-bot: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote a new master key to {out} (mode 0600). Set BOT_MASTER_KEY_FILE={out} and keep a backup offline.")
    return 0


async def _migrate(settings: Settings) -> int:
    from storage.db import Database

    db = await Database.open(settings.database_path, migrate=False)
    try:
        applied = await db.migrate()
        version = await db.schema_version()
    finally:
        await db.close()
    print(f"Database {settings.database_path}: schema version {version}" + (f" (applied {applied})" if applied else ""))
    return 0


def _run(settings: Settings) -> int:
    from bot.app import BotRunner
    from bot.logs import register_secret, setup_logging

    settings.require_master_key()
    setup_logging(settings.log_level, settings.log_format)
    for value in settings.secrets():
        register_secret(value)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await BotRunner(settings).run_until(stop)

    asyncio.run(serve())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
