"""The walking skeleton: the real bot, polling the sandbox Telegram over HTTP, answers /start and /help."""

import subprocess
import sys
from pathlib import Path

from handlers.registry import user_commands
from tests.e2e.harness import Harness

ROOT = Path(__file__).parents[2]
# subprocesses import this checkout, whatever copy of the package is installed
CHILD_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}


async def test_start_and_help_are_answered(harness: Harness) -> None:
    ann = await harness.user("Ann")
    reply = await ann.send("/start", expect=r"Hi Ann")
    assert "LaserSell" in reply["text"] and "/help" in reply["text"]
    help_reply = await ann.send("/help", expect=r"/start")
    assert "/help" in help_reply["text"]


async def test_unknown_command_gets_a_clear_reply(harness: Harness) -> None:
    ann = await harness.user("Ann")
    reply = await ann.send("/frobnicate now", expect="don't know")
    assert "/frobnicate" in reply["text"] and "/help" in reply["text"]


async def test_commands_menu_comes_from_the_registry(harness: Harness) -> None:

    ann = await harness.user("Ann")
    await ann.send("/start", expect="Hi Ann")
    menu = await harness.runner.app.bot.get_my_commands()
    assert [c.command for c in menu] == [c.name for c in user_commands()]


def test_sandbox_script_prints_a_transcript(tmp_path: Path) -> None:
    script = tmp_path / "two.txt"
    script.write_text("/start\n/help\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "sandbox", "--script", str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**CHILD_ENV, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "you: /start" in out and "you: /help" in out
    # each bot message carries its number (`bot #3:`), which its buttons are pressed by
    assert out.index("you: /start") < out.index("bot #1:") < out.index("you: /help")
    after_help = out[out.index("you: /help"):]
    assert "bot #" in after_help and "/start" in after_help


def test_run_without_token_and_terminal_plays_the_demo_to_the_end(tmp_path: Path) -> None:
    env = {**CHILD_ENV, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "sandbox demo" in out
    assert "Take profit reached" in out and "Sold" in out and "PnL +" in out
    assert "(photo)" in out
    assert "Traceback" not in out + proc.stderr
