"""`lasersell-bot check` against the sandbox: every configured endpoint reached, OK/FAIL per step."""

import asyncio
import sys
from pathlib import Path

from bot.vault import write_new_master_key
from sandbox.services import SandboxServices


async def run_check(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "check", cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_check_prints_ok_for_every_sandbox_service(tmp_path: Path) -> None:
    write_new_master_key(tmp_path / "master.key")
    async with SandboxServices(seed=3) as sandbox:
        env = {
            "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]),
            "TELEGRAM_BOT_TOKEN": sandbox.telegram.token,
            "TELEGRAM_API_BASE_URL": sandbox.urls["telegram"],
            "SOLANA_RPC_URL": sandbox.urls["rpc"],
            "LASERSELL_API_URL": sandbox.urls["api"],
            "LASERSELL_STREAM_URL": sandbox.urls["stream"],
            "BOT_MASTER_KEY_FILE": str(tmp_path / "master.key"),
            "DATABASE_PATH": str(tmp_path / "bot.db"),
        }
        code, out = await run_check(env, tmp_path)
    assert code == 0, out
    for step in ("Telegram", "Solana RPC", "LaserSell API", "LaserSell stream", "Database", "Master key"):
        assert f"{step}: OK" in out
    assert sandbox.telegram.token not in out


async def test_check_fails_with_exit_1_and_names_the_step(tmp_path: Path) -> None:
    write_new_master_key(tmp_path / "master.key")
    async with SandboxServices(seed=3) as sandbox:
        env = {
            "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]),
            "TELEGRAM_BOT_TOKEN": sandbox.telegram.token,
            "TELEGRAM_API_BASE_URL": sandbox.urls["telegram"],
            "SOLANA_RPC_URL": "http://127.0.0.1:9",  # nothing listens there
            "LASERSELL_API_URL": sandbox.urls["api"],
            "LASERSELL_STREAM_URL": sandbox.urls["stream"],
            "BOT_MASTER_KEY_FILE": str(tmp_path / "master.key"),
            "DATABASE_PATH": str(tmp_path / "bot.db"),
        }
        code, out = await run_check(env, tmp_path)
    assert code == 1
    assert "Telegram: OK" in out and "Solana RPC: FAIL" in out
