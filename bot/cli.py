"""The `lasersell-bot` command: run, sandbox, migrate, gen-master-key, rotate-master-key, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from importlib import resources
from pathlib import Path

from bot import runtime
from bot.app import BotRunner
from bot.check import run_checks
from bot.config import ConfigError, Settings, load_settings
from bot.logs import register_secret, setup_logging
from bot.rotation import CHECK_KEY, RotationError, rotate_master_key
from bot.vault import Vault, VaultError, WrongMasterKey, load_master_key, write_new_master_key
from storage.db import Database, DatabaseBusy, ProcessLock, SchemaError, describe, is_postgres
from storage.meta import Meta
from storage.pg import PgProcessLock

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lasersell-bot",
        description="Telegram bot for the LaserSell Exit Intelligence Stream. "
        "With no TELEGRAM_BOT_TOKEN, `run` starts the sandbox demo.",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the bot (default); the sandbox demo when no token is configured")
    run.add_argument(
        "--webhook", action="store_true",
        help="receive updates by webhook (WEBHOOK_URL, WEBHOOK_LISTEN, WEBHOOK_SECRET) instead of polling; "
        "for several instances behind a reverse proxy, with DATABASE_URL=postgresql://...",
    )
    sandbox = sub.add_parser("sandbox", help="chat with the bot in this terminal, against local stand-ins")
    sandbox.add_argument("--script", type=Path, help="play a file of lines and print the transcript")
    sandbox.add_argument("--seed", type=int, default=7, help="seed for the sandbox (default 7)")
    sandbox.add_argument("--data", type=Path, help="keep the sandbox database and master key in this folder")
    sub.add_parser("migrate", help="apply database migrations and exit")
    gen = sub.add_parser("gen-master-key", help="write a new master key file (mode 0600)")
    gen.add_argument("--out", type=Path, default=Path("master.key"), help="file to write (default master.key)")
    rotate = sub.add_parser(
        "rotate-master-key", help="re-seal every stored secret with a new master key (stop the bot first)"
    )
    rotate.add_argument("--new-key-file", type=Path, required=True, help="the new key, written by gen-master-key")
    sub.add_parser("check", help="validate settings and reach every configured endpoint")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    try:
        if command == "gen-master-key":
            return _gen_master_key(args.out)
        if command == "sandbox":
            from sandbox.terminal import run_sandbox  # noqa: PLC0415 - the sandbox is a development tool the bot does not need to run

            return runtime.run(run_sandbox(script=args.script, seed=args.seed, data_dir=args.data))
        settings = load_settings()
        if command == "migrate":
            return runtime.run(_migrate(settings))
        if command == "rotate-master-key":
            return runtime.run(_rotate_master_key(settings, args.new_key_file))
        if command == "check":
            return runtime.run(run_checks(settings))
        if settings.sandbox_mode:
            from sandbox.terminal import run_sandbox  # noqa: PLC0415 - the sandbox is a development tool the bot does not need to run

            print("No TELEGRAM_BOT_TOKEN set: starting the sandbox demo (local stand-ins, no accounts).")
            script = None if sys.stdin.isatty() else _demo_script()
            return runtime.run(run_sandbox(script=script))
        if getattr(args, "webhook", False):
            settings.require_webhook()  # a missing URL or secret is a configuration error, before anything starts
        return _run(settings, webhook=getattr(args, "webhook", False))
    except ConfigError as exc:
        print(f"lasersell-bot: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _demo_script() -> Path:
    return Path(str(resources.files("sandbox") / "scripts" / "demo.txt"))


def _gen_master_key(out: Path) -> int:
    try:
        write_new_master_key(out)
    except (VaultError, OSError) as exc:
        print(f"lasersell-bot: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote a new master key to {out} (mode 0600). Set BOT_MASTER_KEY_FILE={out} and keep a backup offline.")
    return 0


async def _migrate(settings: Settings) -> int:
    db = await Database.open(settings.database, migrate=False, check=False)
    try:
        applied = await db.migrate()
        version = await db.schema_version()
    finally:
        await db.close()
    print(f"Database {describe(settings.database)}: schema version {version}" + (f" (applied {applied})" if applied else ""))
    return 0


async def _rotate_master_key(settings: Settings, new_key_file: Path) -> int:
    settings.require_master_key()
    try:
        old = Vault(load_master_key(settings.bot_master_key, settings.bot_master_key_file))
    except VaultError as exc:
        variable = "BOT_MASTER_KEY_FILE" if settings.bot_master_key_file else "BOT_MASTER_KEY"
        raise ConfigError(variable, str(exc).rstrip("."), "Set the master key the database is sealed with now") from None
    try:
        new = Vault(load_master_key(None, new_key_file))
    except VaultError as exc:
        print(f"lasersell-bot: --new-key-file: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # A running bot holds the old key in memory: rotating under it would leave it unable to open any key.
    # Rotation therefore refuses while the bot holds the database, and the bot cannot start meanwhile.
    try:
        if is_postgres(settings.database):  # every instance holds it shared: rotation waits for all to stop

            pg_lock = await PgProcessLock.acquire(str(settings.database), "rotate-master-key", shared=False)
            try:
                return await _rotate_locked(settings, old, new, new_key_file)
            finally:
                await pg_lock.release()
        lock = ProcessLock.acquire(settings.database_path, "rotate-master-key")
    except DatabaseBusy as exc:
        print(
            f"lasersell-bot: refusing to rotate the master key: {exc}. Stop the bot, run rotate-master-key again, "
            "then start the bot with the new key. Nothing was changed.",
            file=sys.stderr,
        )
        return 1
    try:
        return await _rotate_locked(settings, old, new, new_key_file)
    finally:
        lock.release()


async def _rotate_locked(settings: Settings, old: Vault, new: Vault, new_key_file: Path) -> int:
    try:
        db = await Database.open(settings.database, migrate=False)
    except SchemaError as exc:
        print(f"lasersell-bot: {exc}", file=sys.stderr)
        return 1
    try:
        check = await Meta(db).get(CHECK_KEY)
        if check is not None and old.key_id != new.key_id:
            try:
                new.verify_check(check)
            except WrongMasterKey:
                pass
            else:
                where = describe(settings.database)
                print(f"Nothing to do: {where} is already sealed with the new key (id {new.key_id}).")
                return 0
        try:
            report = await rotate_master_key(db, old, new, now_ms=int(time.time() * 1000))
        except RotationError as exc:
            print(f"lasersell-bot: rotation failed, nothing was changed: {exc}", file=sys.stderr)
            return 1
    finally:
        await db.close()
    counts = report.resealed
    print(
        f"Re-sealed {report.total} secret(s) in {describe(settings.database)} in one transaction: "
        f"{counts.get('wallets', 0)} wallet key(s), {counts.get('lasersell_keys', 0)} LaserSell key(s), "
        f"{counts.get('user_settings', 0)} Astralane key(s), and the master key check value."
    )
    print(f"Old master key id {report.old_key_id} opens nothing any more; new master key id {report.new_key_id}.")
    print(
        f"Next: set BOT_MASTER_KEY_FILE={new_key_file} (and unset BOT_MASTER_KEY), start the bot, "
        "then destroy every copy of the old key."
    )
    return 0


def _check_master_key(settings: Settings) -> None:
    """Refuse a missing, malformed or shared key file before anything is opened or created."""
    try:
        load_master_key(settings.bot_master_key, settings.bot_master_key_file)
    except VaultError as exc:
        variable = "BOT_MASTER_KEY_FILE" if settings.bot_master_key_file else "BOT_MASTER_KEY"
        raise ConfigError(variable, str(exc).rstrip("."), "Nothing was started") from None


def _run(settings: Settings, *, webhook: bool = False) -> int:
    settings.require_master_key()
    _check_master_key(settings)
    setup_logging(settings.log_level, settings.log_format)
    for value in settings.secrets():
        register_secret(value, ttl_s=None)  # configuration secrets live as long as the process

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await BotRunner(settings, webhook=webhook).run_until(stop)

    try:
        runtime.run(serve())
    except DatabaseBusy as exc:
        print(f"lasersell-bot: cannot start: {exc}; wait for it to finish (or stop it) first.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
