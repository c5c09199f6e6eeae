"""Issue 14, secrets at rest and in logs: a DEBUG run over careless pastes leaves no secret in the log;
the files holding secrets are the owner's alone; rotating the master key never strands the running bot.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import base58
from mnemonic import Mnemonic
from solders.keypair import Keypair

from bot.app import BotRunner
from bot.logs import setup_logging
from bot.vault import write_new_master_key
from tests.e2e.harness import ChatUser, Harness, setup_trader, start_harness, stop_harness

ROOT = Path(__file__).parents[2]
B58_KEY_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{85,90}")


def b58(keypair: Keypair) -> str:
    return base58.b58encode(bytes(keypair)).decode()


def key_forms(keypair: Keypair) -> list[str]:
    raw = bytes(keypair)
    return [
        b58(keypair), raw.hex(), raw[:32].hex(), json.dumps(list(raw)), json.dumps(list(raw), separators=(",", ":")),
        ", ".join(str(b) for b in raw[:16]),
    ]


def phrase_leaks(phrase: str, log: str) -> bool:
    """Any three consecutive words of the phrase in the log, whatever separates or numbers them."""
    words = phrase.split()
    gap = r"[\s\\n\d.,:;)\"'\[\]-]+"
    return any(re.search(gap.join(words[i : i + 3]), log) for i in range(len(words) - 2))


async def paste(chat: ChatUser, text: str, expect: str) -> None:
    await chat.send(text, expect=expect)
    await chat.wait_for(
        lambda ms: next(m for m in ms if m["from"] == "user" and m.get("text") == text)["deleted"],
        what="the pasted secret to be deleted",
    )


async def test_a_debug_log_of_careless_pastes_holds_no_secret(tmp_path: Path, isolated_logging: None) -> None:
    log_file = tmp_path / "debug.log"
    setup_logging("DEBUG", "text", log_file=log_file)
    h = await start_harness(tmp_path, telegram_options={"per_chat_rate": None})
    try:
        ann = await h.user("Ann")
        await ann.send("/start", expect=r"1/3 LaserSell key")
        api_key = h.services.accounts.issue("professional").key
        # the key typed at the prompt: the update is logged before the bot knows it is a key
        await ann.press("Enter my key", expect=r"Send your LaserSell API key")
        await ann.send(api_key, expect=r"LaserSell key saved")
        imported, at_buy, split, mistyped, as_json = (Keypair() for _ in range(5))
        await ann.wait_text(r"2/3 wallet")
        await ann.press("Import a wallet", expect=r"Send the wallet's secret")
        await paste(ann, b58(imported), r"Wallet .* added")
        phrase = Mnemonic("english").generate(strength=256)
        typo = b58(mistyped)[:40] + ("2" if b58(mistyped)[40] != "2" else "3") + b58(mistyped)[41:]
        for text in (
            f"/buy {b58(at_buy)} 0.1",
            b58(split)[:44] + "\n" + b58(split)[44:],
            typo,
            "\n".join(f"{i}. {w}" for i, w in enumerate(phrase.split(), start=1)),
            json.dumps(list(bytes(as_json)), indent=2),
        ):
            await paste(ann, text, r"looked like a secret key")
        other = await h.user("Bob")
        await other.send(f"/apikey {Keypair().pubkey()}x", expect=r".")  # an ordinary refusal, for contrast
        listing = await ann.send("/wallets", expect=r"Your wallets")
        shown = await ann.press("Generate a new one", message=listing, expect=r"Secret key \(shown once")
        assert shown is not None
        generated = B58_KEY_RE.search(shown["text"])
        assert generated is not None
        await ann.press("I saved it", message=shown)
    finally:
        await stop_harness(h)
    for handler in logging.getLogger().handlers:
        handler.flush()
    log = log_file.read_text(encoding="utf-8")
    # the log really holds PTB's and the HTTP clients' DEBUG lines, updates included
    assert "getUpdates" in log and "DEBUG" in log and "[REDACTED]" in log
    found = [name for name, value in (
        ("the LaserSell key", api_key), ("the generated key", generated.group()), ("the typo'd key", typo),
        ("half of the split key", b58(split)[:44]), ("the other half", b58(split)[44:]),
    ) if value in log]
    for name, keypair in (("imported", imported), ("/buy", at_buy), ("split", split), ("typo'd", mistyped),
                          ("JSON", as_json)):
        found += [f"the {name} key ({i})" for i, form in enumerate(key_forms(keypair)) if form in log]
    if phrase_leaks(phrase, log):
        found.append("the numbered phrase")
    assert found == [], f"secrets in the DEBUG log: {found}"


# --- files ------------------------------------------------------------------------------------------------


async def test_database_wal_shm_and_key_file_are_the_owners_alone(harness: Harness) -> None:
    h = harness
    await setup_trader(h)  # writes go through the WAL
    data = h.data_dir
    for name in ("bot.db", "bot.db-wal", "bot.db-shm", "master.key"):
        mode = stat.S_IMODE(os.stat(data / name).st_mode)
        assert mode == 0o600, f"{name} has mode {mode:04o}"


def run_cli(h: Harness, *args: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    settings = h.runner.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TELEGRAM_", "LASERSELL_", "DATABASE_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=settings.telegram_bot_token or "", TELEGRAM_API_BASE_URL=settings.telegram_api_base_url,
        BOT_MASTER_KEY_FILE=str(key_file), DATABASE_PATH=str(settings.database_path), PYTHONPATH=str(ROOT),
    )
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=h.data_dir, env=env, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )


async def exported_key(chat: ChatUser) -> str:
    listing = await chat.send("/wallets", expect=r"Your wallets")
    await chat.press("Wallet 1", message=listing, expect=r"Export key|default")
    await chat.press("Export key", expect=r"Show the secret key")
    shown = await chat.press("Yes, show the key", expect=r"Secret key of")
    assert shown is not None
    found = B58_KEY_RE.search(shown["text"])
    assert found is not None
    return found.group()


async def test_rotating_the_master_key_while_the_bot_runs_never_leaves_it_unable_to_sign(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h)
    old_key = Path(h.runner.settings.bot_master_key_file or "")
    new_key = h.data_dir / "new-master.key"
    write_new_master_key(new_key)

    refused = run_cli(h, "rotate-master-key", "--new-key-file", str(new_key), key_file=old_key)
    assert refused.returncode == 1, refused.stderr
    assert "the running bot" in refused.stderr and "Stop the bot" in refused.stderr
    assert "Nothing was changed" in refused.stderr
    # the running bot still opens its keys
    assert await exported_key(trader.chat) == b58(trader.keypair)

    await h.runner.stop()
    rotated = run_cli(h, "rotate-master-key", "--new-key-file", str(new_key), key_file=old_key)
    assert rotated.returncode == 0, rotated.stderr
    h.runner = BotRunner(dataclasses.replace(h.runner.settings, bot_master_key_file=str(new_key)), poll_timeout=1)
    await h.runner.start()
    assert await exported_key(trader.chat) == b58(trader.keypair)

