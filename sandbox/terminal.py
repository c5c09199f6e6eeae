"""Chat with the bot in a terminal, against the sandbox services (`lasersell-bot sandbox`).

Lines you type are sent as your messages, exactly as typed (a line like `[1, 2, 3]` is text too). Lines
starting with `!` talk to the sandbox instead: `!7.2` presses button 2 of bot message #7 (numbers stay
with their message through edits), `!2` button 2 of the newest message with buttons, `!press Sell` the
newest button whose label says "Sell"; `!user NAME` switches to (or creates) another chat user; the rest
are sandbox commands (see `!help`). `#` starts a comment. `--script FILE` plays such lines and prints
the transcript; `$KEY` and `$MINT` stand for the last `!key` and `!mint`. Pop-up answers to taps are printed, and pictures are saved to a folder with their path shown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import BotRunner
from bot.config import LOG_LEVELS, Settings, load_settings
from bot.logs import setup_logging
from bot.vault import write_new_master_key
from sandbox.services import SandboxServices
from sandbox.webapp_host import WebAppHost

log = logging.getLogger("lasersell_bot.sandbox")

SETTLE_S = 1.2  # the bot is done answering when nothing changed for this long (replies are paced ~1/s)
FIRST_REPLY_TIMEOUT_S = 15.0
PRESS_RE = re.compile(r"^(?:(\d+)\.)?(\d+)$")
TERMINAL_HELP = (
    "!N.M       press button M of bot message #N (!M: of the newest message with buttons)\n"
    "!press TEXT press the newest button whose label contains TEXT\n"
    "!user NAME switch to another chat user (created on first use); !user lists them"
)


@dataclass
class ChatView:
    """What the terminal has shown of one chat, to print only what is new or changed."""

    seen: dict[int, tuple[int, bool, str]] = field(default_factory=dict)  # message_id -> (edits, deleted, text)
    numbers: dict[int, int] = field(default_factory=dict)  # message_id -> the number shown, fixed once given
    buttons: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # number -> [(label, data)]
    answers_seen: int = 0

    def number(self, message_id: int) -> int:
        if message_id not in self.numbers:
            self.numbers[message_id] = len(self.numbers) + 1
        return self.numbers[message_id]

    def message_of(self, number: int) -> int | None:
        return next((mid for mid, n in self.numbers.items() if n == number), None)


def _links(message: dict[str, Any]) -> list[str]:
    """Hidden links in the text (an <a href> shows only its words in a chat)."""
    text = message.get("text") or message.get("caption") or ""
    out = []
    for entity in message.get("entities") or []:
        if entity.get("type") == "text_link" and entity.get("url"):
            # offsets count UTF-16 units; close enough for a label in a terminal
            words = text.encode("utf-16-le")[entity["offset"] * 2:(entity["offset"] + entity["length"]) * 2]
            out.append(f"  🔗 {words.decode('utf-16-le', 'replace')}: {entity['url']}")
    return out


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
    number = f" #{view.number(message['message_id'])}" if who == "bot" else ""
    head = f"{who}{number}" + (f" ({', '.join(tags)})" if tags else "") + ":"
    text = message.get("text") or message.get("caption") or ""
    lines = [head] + ["  " + line for line in text.splitlines()]
    if message.get("deleted"):
        lines = [head + " " + (text.splitlines()[0][:60] + "…" if text else "")]
        return lines
    lines += _links(message)
    rows = message.get("buttons") or []
    pressable: list[tuple[str, str]] = []
    for row in rows:
        cells = []
        for button in row:
            if "url" in button:
                cells.append(f"<{button['text']}: {button['url']}>")
                continue
            pressable.append((button["text"], button.get("data", "")))
            cells.append(f"[{view.number(message['message_id'])}.{len(pressable)}] {button['text']}")
        lines.append("  " + "   ".join(cells))
    if who == "bot":
        view.buttons[view.number(message["message_id"])] = pressable
    return lines


class TerminalChat:
    def __init__(self, services: Any, out: Any = sys.stdout, pictures: Path | None = None) -> None:
        self.services = services
        self.telegram = services.telegram
        self.out = out
        self.pictures = pictures
        self.view = ChatView()
        self.user_id = 0
        self.chat_id = 0
        self.name = ""
        self.people: dict[str, tuple[int, int, ChatView]] = {}  # name -> (user id, chat id, what they saw)
        self.wallets: list[str] = []
        self.current_mint: str | None = None
        self.api_key: str | None = None  # the sandbox key `!key` issued, typed as $KEY

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def open(self, first_name: str = "Trader", username: str = "trader") -> None:
        self.user_id, self.chat_id = self.telegram.add_user(first_name, username)
        self.name = first_name
        self.people[first_name.lower()] = (self.user_id, self.chat_id, self.view)

    def _who(self) -> str:
        """`you`, or `you (Bob)` once the chat has more than one user."""
        return "you" if len(self.people) <= 1 else f"you ({self.name})"

    def switch_user(self, name: str) -> str:
        key = name.lower()
        if key not in self.people:
            user_id, chat_id = self.telegram.add_user(name, re.sub(r"\W", "", key) or "user")
            self.people[key] = (user_id, chat_id, ChatView())
        self.user_id, self.chat_id, self.view = self.people[key]
        self.name = name
        return f"now chatting as {name}"

    def _snapshot(self) -> list[tuple[int, int, bool]]:
        answers = len(self.telegram.callback_answers(self.chat_id))
        return [(m["message_id"], m.get("edits", 0), bool(m.get("deleted"))) for m in self.telegram.chat(self.chat_id)] \
            + [(-1, answers, False)]

    async def settle(self, before: list[tuple[int, int, bool]], expect_reply: bool) -> None:
        """Wait until the bot has answered (if an answer is expected) and then stayed quiet. A tap's pop-up
        answer counts as an answer, so a tap that changes nothing returns as soon as it is answered."""
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
            if message.get("photo") and not message.get("deleted"):
                self._save_picture(message)
        answers = self.telegram.callback_answers(self.chat_id)
        for answer in answers[self.view.answers_seen:]:
            if answer.get("text"):
                kind = "alert" if answer.get("show_alert") else "pop-up"
                self.print(f"  💬 {kind}: {answer['text']}")
        self.view.answers_seen = len(answers)

    def _save_picture(self, message: dict[str, Any]) -> None:
        data = self.telegram.photo_bytes(self.chat_id, message["message_id"])
        if data is None or self.pictures is None:
            return
        self.pictures.mkdir(parents=True, exist_ok=True)
        extension = "png" if data.startswith(b"\x89PNG") else "jpg"
        path = self.pictures / f"{self.name.lower() or 'chat'}-{self.view.number(message['message_id'])}-" \
            f"{message.get('edits', 0)}.{extension}"
        path.write_bytes(data)
        self.print(f"  🖼 picture saved: {path}")

    async def handle_line(self, line: str) -> bool:
        """Act on one input line; False when the chat should end."""
        line = line.rstrip("\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            return True
        if stripped in ("!quit", "!exit"):
            return False
        for name, value in (("$KEY", self.api_key), ("$MINT", self.current_mint)):
            if name in stripped and value:
                line, stripped = line.replace(name, value), stripped.replace(name, value)
        before = self._snapshot()
        command = stripped[1:].strip() if stripped.startswith("!") else None
        if command is not None and (PRESS_RE.match(command) or command.lower().startswith("press ")):
            self.print(f"{self._who()}: (taps {command.removeprefix('press ').strip()[:40]})")
            if not await self.press(command):
                return True
            await self.settle(before, expect_reply=True)
        elif command is not None and command.split()[:1] == ["user"]:
            names = command.split()[1:]
            self.print(f"you: {stripped}")
            if names:
                self.print("  " + self.switch_user(" ".join(names)))
            else:
                self.print("  users: " + ", ".join(self.people) + f" (you are {self.name})")
        elif command is not None:
            self.print(f"you: {stripped}")
            if command.split()[:1] == ["help"]:
                self.print("  " + TERMINAL_HELP.replace("\n", "\n  "))
            await self.sandbox_command(command)
            await self.settle(before, expect_reply=False)
        else:
            self.print(f"{self._who()}: {stripped}")
            self.telegram.send(self.user_id, line)
            await self.settle(before, expect_reply=True)
        self.show_new()
        return True

    async def press(self, which: str) -> bool:
        """Press a button by `N.M`, `M` or `press LABEL`; a failed press never repeats what was typed
        (it may be a secret pasted by mistake)."""
        choice: tuple[int, str, str] | None = None
        match = PRESS_RE.match(which)
        if match:
            number = int(match.group(1)) if match.group(1) else next(
                (n for n in sorted(self.view.buttons, reverse=True) if self.view.buttons[n]), 0)
            index = int(match.group(2))
            buttons = self.view.buttons.get(number, [])
            message_id = self.view.message_of(number)
            if message_id is not None and 1 <= index <= len(buttons):
                choice = (message_id, *buttons[index - 1])
        else:
            wanted = which[len("press "):].strip()

            def plain(label: str) -> str:
                return " ".join("".join(c for c in label.lower() if c.isalnum() or c.isspace()).split())

            for number in sorted(self.view.buttons, reverse=True):
                for label, data in self.view.buttons[number]:
                    if plain(wanted) and plain(wanted) in plain(label):
                        message_id = self.view.message_of(number)
                        if message_id is not None:
                            choice = (message_id, label, data)
                        break
                if choice is not None:
                    break
        if choice is None:
            self.print("  (no such button: type !N.M with the numbers shown next to a button, or !press LABEL)")
            return False
        try:
            self.telegram.press(self.user_id, choice[0], choice[2])
        except Exception:  # e.g. the button is gone after an edit
            self.print("  (that button can't be pressed any more: it was removed or changed)")
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


async def _open_dashboard(runner: Any, chat: TerminalChat) -> Any:
    """The dashboard Mini App as the sandbox Telegram client opens it: a page to open in a browser."""
    if runner.services.dashboard is None or runner.settings.telegram_bot_token is None:
        return None
    host = WebAppHost(runner.settings.telegram_bot_token, runner.services.dashboard.url)
    await host.start()
    chat.print(f"Dashboard (Mini App) for this chat: {host.page_url(chat.user_id, 'You')}")
    return host


async def _run_chat(chat: TerminalChat, script: Path | None) -> int:
    if script is not None:
        for line in script.read_text(encoding="utf-8").splitlines():
            if not await chat.handle_line(line):
                break
        return 0
    chat.print("Sandbox chat. Type messages and /commands; !N.M presses button M of message #N; !help for sandbox "
               "commands; Ctrl-D quits.")
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
    if script is not None and not script.is_file():
        print(f"lasersell-bot sandbox: script {script} not found", file=sys.stderr)
        return 2
    tmp = None
    # pictures outlive a throwaway data folder, so they can still be opened after the chat ends
    pictures = data_dir / "pictures" if data_dir is not None else Path(tempfile.mkdtemp(prefix="lasersell-pictures-"))
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lasersell-sandbox-")
        data_dir = Path(tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    # The chat owns the terminal: the bot's log goes to a file in the data folder, at LOG_LEVEL if set.
    level = os.environ.get("LOG_LEVEL", "").strip().upper()
    setup_logging(level if level in LOG_LEVELS else "INFO", "text", log_file=data_dir / "bot.log")
    try:
        async with SandboxServices(seed=seed, realtime=True) as services:
            chat = TerminalChat(services, pictures=pictures)
            await chat.open()
            settings = sandbox_settings(services.urls, services.telegram.token, data_dir, (chat.user_id,),
                                        MINIAPP_LISTEN="127.0.0.1:0")  # the dashboard Mini App
            runner = BotRunner(settings, poll_timeout=1)
            await runner.start()
            host = await _open_dashboard(runner, chat)
            try:
                return await _run_chat(chat, script)
            finally:
                if host is not None:
                    await host.stop()
                await runner.stop()
    finally:
        if tmp is not None:
            tmp.cleanup()
