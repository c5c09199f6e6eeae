"""`lasersell-bot migrate` and `check` on PostgreSQL (DATABASE_URL), as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from storage.db import LATEST_VERSION


def _cli(args: list[str], url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TELEGRAM_", "BOT_MASTER"))}
    env["DATABASE_URL"] = url
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )


async def test_migrate_brings_a_postgresql_database_to_the_latest_version_once(pg_url: str, tmp_path: Path) -> None:

    first = _cli(["migrate"], pg_url, tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"schema version {LATEST_VERSION} (applied {list(range(1, LATEST_VERSION + 1))})" in first.stdout
    again = _cli(["migrate"], pg_url, tmp_path)
    assert again.returncode == 0 and again.stdout.strip().endswith(f"schema version {LATEST_VERSION}")


async def test_check_reports_the_postgresql_database(pg_url: str, tmp_path: Path) -> None:

    result = _cli(["check"], pg_url, tmp_path)
    line = next(x for x in result.stdout.splitlines() if x.startswith("Database:"))
    assert line.startswith("Database: OK (") and f"(postgresql) at schema version {LATEST_VERSION}" in line


def test_a_malformed_database_url_is_refused_with_the_fix(tmp_path: Path) -> None:
    result = _cli(["migrate"], "mysql://localhost/bot", tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr and "postgresql://" in result.stderr
