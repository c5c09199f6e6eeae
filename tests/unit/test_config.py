import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import VARIABLES, ConfigError, env_example, load_settings, read_dotenv

GOOD_TOKEN = "123456789:" + "A" * 35


def settings_from(**env: str):
    return load_settings(env, dotenv=None)


def test_defaults_when_nothing_is_set() -> None:
    s = settings_from()
    assert s.sandbox_mode
    assert s.telegram_api_base_url == "https://api.telegram.org"
    assert s.lasersell_stream_url == "wss://stream.lasersell.io/v1/ws"
    assert str(s.database_path) == "data/bot.db"
    assert s.admin_user_ids == frozenset()
    assert s.log_level == "INFO" and s.log_format == "text"


def test_admins_and_urls_are_parsed() -> None:
    s = settings_from(TELEGRAM_BOT_TOKEN=GOOD_TOKEN, ADMIN_USER_IDS="12, 34", SOLANA_RPC_URL="http://127.0.0.1:8899/")
    assert not s.sandbox_mode
    assert s.is_admin(12) and s.is_admin(34) and not s.is_admin(56)
    assert s.solana_rpc_url == "http://127.0.0.1:8899"


@pytest.mark.parametrize(
    ("env", "variable", "hint"),
    [
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "TELEGRAM_BOT_TOKEN", "@BotFather"),
        ({"ADMIN_USER_IDS": "12,alice"}, "ADMIN_USER_IDS", "numeric ids"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "DEBUG"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT", "text or json"),
        ({"SOLANA_RPC_URL": "localhost:8899"}, "SOLANA_RPC_URL", "full URL"),
        ({"LASERSELL_STREAM_URL": "https://stream.lasersell.io"}, "LASERSELL_STREAM_URL", "full URL"),
        ({"BOT_MASTER_KEY_FILE": "/nonexistent/master.key"}, "BOT_MASTER_KEY_FILE", "gen-master-key"),
        ({"BOT_MASTER_KEY": "x", "BOT_MASTER_KEY_FILE": "y"}, "BOT_MASTER_KEY", "only one"),
        ({"TELEGRAM_GLOBAL_RATE": "fast"}, "TELEGRAM_GLOBAL_RATE", "messages per second"),
        ({"DATABASE_PATH": "data/"}, "DATABASE_PATH", "file path"),
    ],
)
def test_bad_setting_names_the_variable_and_the_fix(env: dict[str, str], variable: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(**env)
    message = str(info.value)
    assert message.startswith(variable + ":")
    assert hint in message
    assert "\n" not in message


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('# comment\nexport LOG_LEVEL="debug"\nADMIN_USER_IDS=7 # me\nLOG_FORMAT=json\n')
    assert read_dotenv(dotenv)["ADMIN_USER_IDS"] == "7"
    s = load_settings({"LOG_FORMAT": "text"}, dotenv=dotenv)
    assert s.log_level == "DEBUG" and s.admin_user_ids == {7} and s.log_format == "text"


def test_env_example_documents_every_variable() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    assert example == env_example()
    for name in VARIABLES:
        assert f"\n{name}=" in example


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]), "LOG_LEVEL": "LOUD", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "LOG_LEVEL" in lines[0] and "Traceback" not in proc.stderr


def test_cli_run_without_master_key_exits_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]), "TELEGRAM_BOT_TOKEN": GOOD_TOKEN, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "BOT_MASTER_KEY" in proc.stderr and "gen-master-key" in proc.stderr
    assert GOOD_TOKEN not in proc.stderr + proc.stdout
