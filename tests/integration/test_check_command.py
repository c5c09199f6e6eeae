"""`lasersell-bot check` against the sandbox: every configured endpoint reached, OK/FAIL per step."""

import asyncio
import sys
from pathlib import Path

from bot.vault import write_new_master_key
from sandbox.services import SandboxServices
from tests.integration.test_keys_api import KEY, StandIn


async def run_check(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "check", cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def check_env(sandbox: SandboxServices, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """An operator's environment wired to the sandbox services, with `overrides`."""
    return {
        "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]),
        "TELEGRAM_BOT_TOKEN": sandbox.telegram.token,
        "TELEGRAM_API_BASE_URL": sandbox.urls["telegram"],
        "SOLANA_RPC_URL": sandbox.urls["rpc"],
        "LASERSELL_API_URL": sandbox.urls["api"],
        "LASERSELL_STREAM_URL": sandbox.urls["stream"],
        "BOT_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "DATABASE_PATH": str(tmp_path / "bot.db"),
        **overrides,
    }


async def test_check_prints_ok_for_every_sandbox_service(tmp_path: Path) -> None:
    write_new_master_key(tmp_path / "master.key")
    async with SandboxServices(seed=3) as sandbox:
        env = check_env(sandbox, tmp_path)
        code, out = await run_check(env, tmp_path)
    assert code == 0, out
    for step in ("Telegram", "Solana RPC", "LaserSell API", "LaserSell stream", "Database", "Master key"):
        assert f"{step}: OK" in out
    assert sandbox.telegram.token not in out


async def test_check_fails_with_exit_1_and_names_the_step(tmp_path: Path) -> None:
    write_new_master_key(tmp_path / "master.key")
    async with SandboxServices(seed=3) as sandbox:
        env = check_env(sandbox, tmp_path, SOLANA_RPC_URL="http://127.0.0.1:9")  # nothing listens there
        code, out = await run_check(env, tmp_path)
    assert code == 1
    assert "Telegram: OK" in out and "Solana RPC: FAIL" in out


async def test_check_verifies_the_operator_key_with_v1_account_without_a_stream_session(tmp_path: Path) -> None:

    write_new_master_key(tmp_path / "master.key")
    async with SandboxServices(seed=3) as sandbox, StandIn() as lasersell:
        env = check_env(sandbox, tmp_path, LASERSELL_API_URL=lasersell.url, LASERSELL_API_KEY=KEY,
                        LASERSELL_STREAM_URL=lasersell.url.replace("http", "ws") + "/v1/ws")
        code, out = await run_check(env, tmp_path)
        lasersell.account_status = 401
        bad_code, bad_out = await run_check(env, tmp_path)
    assert code == 0, out
    assert "LaserSell API: OK (key accepted, plan Professional, up to 5 wallet(s))" in out
    assert lasersell.calls["account"] == 2
    # the stream is only reached, never opened with the key: one session per key
    assert lasersell.headers and all("x-api-key" not in {k.lower() for k in h} for h in lasersell.headers)
    assert bad_code == 1 and "LaserSell API: FAIL" in bad_out and "refused LASERSELL_API_KEY (401)" in bad_out
    assert KEY not in out + bad_out
