"""Chat with the bot in a terminal, against the sandbox services (`lasersell-bot sandbox`).

Lines you type are sent as your messages. The bot's messages are printed with numbered buttons; press one by
typing its number in brackets, e.g. `[1]`, or its label, e.g. `[Sell]`. Lines starting with `!` talk to the
sandbox itself (see `!help`); `#` starts a comment. `--script FILE` plays such lines and prints the transcript.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings, load_settings

log = logging.getLogger("lasersell_bot.sandbox")

SETTLE_S = 1.2  # the bot is done answering when nothing changed for this long (replies are paced ~1/s)
FIRST_REPLY_TIMEOUT_S = 15.0

@dataclass
class ChatView:
    """What the terminal has shown of the chat, to print only what is new or changed."""

    seen: dict[int, tuple[int, bool, str]] = field(default_factory=dict)  # message_id -> (edits, deleted, text)
    buttons: list[tuple[int, str, str]] = field(default_factory=list)  # (message_id, label, data), numbered


def render_message(message: dict[str, Any], view: ChatView, *, changed: bool) -> list[str]:
    who = "bot" if message.get("from") == "bot" else "you"
    tags = []
    if changed and not message.get("deleted"):
        tags.append("edited")
    if message.get("deleted"):
        tags.append("deleted")
    if message.get("photo"):
        tags.append("photo")
    if message.get("document"):
        tags.append("document")
    head = f"{who}" + (f" ({', '.join(tags)})" if tags else "") + ":"
    text = message.get("text") or message.get("caption") or ""
    lines = [head] + ["  " + line for line in text.splitlines()]
    if message.get("deleted"):
        lines = [head + " " + (text.splitlines()[0][:60] + "…" if text else "")]
        return lines
    rows = message.get("buttons") or []
    for row in rows:
        cells = []
        for button in row:
            if "url" in button:
                cells.append(f"<{button['text']}: {button['url']}>")
                continue
            view.buttons.append((message["message_id"], button["text"], button.get("data", "")))
            cells.append(f"[{len(view.buttons)}] {button['text']}")
        lines.append("  " + "   ".join(cells))
    return lines


class TerminalChat:
    def __init__(self, services: Any, out: Any = sys.stdout) -> None:
        self.services = services
        self.telegram = services.telegram
        self.out = out
        self.view = ChatView()
        self.user_id = 0
        self.chat_id = 0
        self.wallets: list[str] = []
        self.current_mint: str | None = None
        self.api_key: str | None = None  # the sandbox key `!key` issued, typed as $KEY

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def open(self, first_name: str = "Trader", username: str = "trader") -> None:
        self.user_id, self.chat_id = self.telegram.add_user(first_name, username)

    def _snapshot(self) -> list[tuple[int, int, bool]]:
        return [(m["message_id"], m.get("edits", 0), bool(m.get("deleted"))) for m in self.telegram.chat(self.chat_id)]

    async def settle(self, before: list[tuple[int, int, bool]], expect_reply: bool) -> None:
        """Wait until the bot has answered (if an answer is expected) and then stayed quiet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (FIRST_REPLY_TIMEOUT_S if expect_reply else SETTLE_S)
        last = before
        quiet_since = loop.time()
        changed = False
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            now = self._snapshot()
            if now != last:
                last, quiet_since, changed = now, loop.time(), True
                deadline = max(deadline, loop.time() + SETTLE_S)
            elif (changed or not expect_reply) and loop.time() - quiet_since >= SETTLE_S:
                return

    def show_new(self) -> None:
        for message in self.telegram.chat(self.chat_id):
            key = (message.get("edits", 0), bool(message.get("deleted")), message.get("text") or "")
            previous = self.view.seen.get(message["message_id"])
            if previous == key:
                continue
            self.view.seen[message["message_id"]] = key
            if message.get("from") != "bot" and previous is None:
                continue  # the user's own line is echoed when typed
            for line in render_message(message, self.view, changed=previous is not None):
                self.print(line)

    async def handle_line(self, line: str) -> bool:
        """Act on one input line; False when the chat should end."""
        line = line.rstrip("\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            return True
        if stripped in ("!quit", "!exit"):
            return False
        if "$KEY" in stripped and getattr(self, "api_key", None):
            line = line.replace("$KEY", self.api_key)
            stripped = stripped.replace("$KEY", self.api_key)
        self.print(f"you: {stripped}")
        before = self._snapshot()
        if stripped.startswith("!"):
            await self.sandbox_command(stripped[1:])
            await self.settle(before, expect_reply=False)
        elif stripped.startswith("[") and stripped.endswith("]"):
            if not await self.press(stripped[1:-1].strip()):
                return True
            await self.settle(before, expect_reply=True)
        else:
            self.telegram.send(self.user_id, line)
            await self.settle(before, expect_reply=True)
        self.show_new()
        return True

    async def press(self, which: str) -> bool:
        choice = None
        if which.isdigit() and 1 <= int(which) <= len(self.view.buttons):
            choice = self.view.buttons[int(which) - 1]
        else:
            def plain(label: str) -> str:
                return " ".join("".join(c for c in label.lower() if c.isalnum() or c.isspace()).split())

            for matches in (lambda b: plain(b) == plain(which), lambda b: plain(which) in plain(b)):
                choice = next((b for b in reversed(self.view.buttons) if matches(b[1])), None)
                if choice is not None:
                    break
        if choice is None:
            self.print(f"  (no button {which!r}; type [N] with a number shown next to a button)")
            return False
        try:
            self.telegram.press(self.user_id, choice[0], choice[2])
        except Exception as exc:  # e.g. the button is gone after an edit
            self.print(f"  (that button can't be pressed any more: {exc})")
            return False
        return True

    async def sandbox_command(self, text: str) -> None:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            self.print(f"  ({exc})")
            return
        if not words:
            return
        name, args = words[0].lower(), words[1:]
        try:
            result = await self.services.control(name, args, self)
        except Exception as exc:
            self.print(f"  (sandbox: {exc})")
            return
        if result:
            self.print("  " + result.replace("\n", "\n  "))


async def _run_chat(chat: TerminalChat, script: Path | None) -> int:
    if script is not None:
        for line in script.read_text(encoding="utf-8").splitlines():
            if not await chat.handle_line(line):
                break
        return 0
    chat.print("Sandbox chat. Type messages and /commands; [N] presses button N; !help for sandbox commands; Ctrl-D quits.")
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return 0
        if not await chat.handle_line(line):
            return 0


def sandbox_settings(
    urls: dict[str, str], token: str, data_dir: Path, admin_ids: tuple[int, ...] = (), **extra: str
) -> Settings:
    """Settings that wire the real bot to the sandbox services; the master key lives in the data folder."""
    from bot.vault import write_new_master_key

    key_file = data_dir / "master.key"
    if not key_file.exists():
        write_new_master_key(key_file)
    env = {
        "TELEGRAM_BOT_TOKEN": token,
        "TELEGRAM_API_BASE_URL": urls["telegram"],
        "LASERSELL_STREAM_URL": urls["stream"],
        "LASERSELL_API_URL": urls["api"],
        "SOLANA_RPC_URL": urls["rpc"],
        # the sandbox node stands in for Helius Sender and Astralane too (new users send through Helius Sender)
        "HELIUS_SENDER_URL": urls["rpc"],
        "ASTRALANE_URL": urls["rpc"],
        "BOT_MASTER_KEY_FILE": str(key_file),
        "DATABASE_PATH": str(data_dir / "bot.db"),
        "ADMIN_USER_IDS": ",".join(str(i) for i in admin_ids),
        **extra,
    }
    return load_settings(env, dotenv=None)


async def run_sandbox(script: Path | None = None, seed: int = 7, data_dir: Path | None = None) -> int:
    """Start the sandbox services and the real bot wired to them, then chat (or play `script`)."""
    from bot.app import BotRunner
    from bot.logs import setup_logging
    from sandbox.services import SandboxServices

    if script is not None and not script.is_file():
        print(f"lasersell-bot sandbox: script {script} not found", file=sys.stderr)
        return 2
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lasersell-sandbox-")
        data_dir = Path(tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    # The chat owns the terminal: the bot's log goes to a file in the data folder.
    setup_logging("INFO", "text", log_file=data_dir / "bot.log")
    try:
        async with SandboxServices(seed=seed, realtime=True) as services:
            chat = TerminalChat(services)
            await chat.open()
            settings = sandbox_settings(services.urls, services.telegram.token, data_dir, (chat.user_id,))
            runner = BotRunner(settings, poll_timeout=1)
            await runner.start()
            try:
                return await _run_chat(chat, script)
            finally:
                await runner.stop()
    finally:
        if tmp is not None:
            tmp.cleanup()
