"""Drive the real bot through the sandbox Telegram's driver API, as a person would, and read the chat."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import BotRunner
from sandbox.terminal import sandbox_settings

DEFAULT_TIMEOUT = 10.0


class ChatUser:
    def __init__(self, harness: Harness, user_id: int, chat_id: int) -> None:
        self.h = harness
        self.user_id = user_id
        self.chat_id = chat_id

    @property
    def tg(self) -> Any:
        return self.h.services.telegram

    def messages(self) -> list[dict[str, Any]]:
        return self.tg.chat(self.chat_id)

    def bot_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m.get("from") == "bot"]

    def transcript(self) -> str:
        lines = []
        for m in self.messages():
            flags = " (deleted)" if m.get("deleted") else ""
            lines.append(f"{m.get('from')}{flags}: {m.get('text') or m.get('caption') or ''}")
        return "\n".join(lines)

    def _state(self) -> list[tuple[int, int, bool]]:
        return [(m["message_id"], m.get("edits", 0), bool(m.get("deleted"))) for m in self.messages()]

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = DEFAULT_TIMEOUT, what: str = ""
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate(self.messages())
            if result:
                return result
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}; chat so far:\n{self.transcript()}")
            await asyncio.sleep(0.02)

    async def wait_text(self, pattern: str, timeout: float = DEFAULT_TIMEOUT, *, after: int = 0) -> dict[str, Any]:
        """The first bot message (not deleted, id > after) whose text matches `pattern` (regex)."""
        regex = re.compile(pattern, re.S | re.I)

        def find(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
            for m in messages:
                text = m.get("text") or m.get("caption") or ""
                if m.get("from") == "bot" and m["message_id"] > after and not m.get("deleted") and regex.search(text):
                    return m
            return None

        return await self.wait_for(find, timeout, what=f"a bot message matching {pattern!r}")

    async def send(self, text: str, *, expect: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Send a message; return the user's message, or the bot's reply matching `expect`."""
        last = max((m["message_id"] for m in self.messages()), default=0)
        self.tg.send(self.user_id, text)
        sent = await self.wait_for(
            lambda ms: next((m for m in ms if m["message_id"] > last and m.get("from") != "bot"), None),
            timeout,
            what="our message",
        )
        if expect is None:
            return sent
        return await self.wait_text(expect, timeout, after=sent["message_id"])

    async def press(
        self, label: str, *, message: dict[str, Any] | None = None, expect: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any] | None:
        """Press the button whose label matches `label` (regex) on `message` or the newest bot message having one."""
        regex = re.compile(label, re.I)
        candidates = [message] if message is not None else list(reversed(self.bot_messages()))
        for m in candidates:
            m = next((x for x in self.messages() if x["message_id"] == m["message_id"]), m)
            if m.get("deleted"):
                continue
            for row in m.get("buttons") or []:
                for button in row:
                    if "data" in button and regex.search(button["text"]):
                        last = max((x["message_id"] for x in self.messages()), default=0)
                        before = self._state()
                        self.tg.press(self.user_id, m["message_id"], button["data"])
                        if expect is None:
                            return None
                        regex_expect = re.compile(expect, re.S | re.I)

                        def changed(ms: list[dict[str, Any]], before=before, last=last, regex_expect=regex_expect) -> dict[str, Any] | None:
                            for x in ms:
                                text = x.get("text") or x.get("caption") or ""
                                key = (x["message_id"], x.get("edits", 0), bool(x.get("deleted")))
                                fresh = x["message_id"] > last or key not in before
                                if x.get("from") == "bot" and fresh and not x.get("deleted") and regex_expect.search(text):
                                    return x
                            return None

                        return await self.wait_for(changed, timeout, what=f"a reply matching {expect!r}")
        raise AssertionError(f"no button matching {label!r}; chat:\n{self.transcript()}")

    def buttons(self, message: dict[str, Any]) -> list[str]:
        return [b["text"] for row in message.get("buttons") or [] for b in row]


@dataclass
class Harness:
    services: Any
    runner: BotRunner
    data_dir: Path

    async def user(self, first_name: str = "Ann", username: str | None = None) -> ChatUser:
        user_id, chat_id = self.services.telegram.add_user(first_name, username or first_name.lower())
        return ChatUser(self, user_id, chat_id)

    async def restart_bot(self, **overrides: Any) -> None:
        await self.runner.stop()
        self.runner = BotRunner(self.runner.settings, poll_timeout=1)
        await self.runner.start()


async def start_harness(
    data_dir: Path, *, admin_ids: tuple[int, ...] = (), seed: int = 1, settings_env: dict[str, str] | None = None,
    **services_kwargs: Any,
):
    """Start the sandbox services and the real bot against them; the caller stops both (see conftest)."""
    from sandbox.services import SandboxServices

    # Tests keep Telegram's rules but not its pace: a chat may take 20 messages a second here, and the
    # bot is set to 10, so a test walks through onboarding in well under a second.
    services_kwargs.setdefault("telegram_options", {"per_chat_rate": 20.0, "per_chat_burst": 20})
    services = SandboxServices(seed=seed, **services_kwargs)
    await services.__aenter__()
    settings = sandbox_settings(
        services.urls, services.telegram.token, data_dir, admin_ids, **{"TELEGRAM_CHAT_RATE": "10", **(settings_env or {})}
    )
    runner = BotRunner(settings, poll_timeout=1)
    try:
        await runner.start()
    except BaseException:
        await services.__aexit__(None, None, None)
        raise
    return Harness(services, runner, data_dir)


async def stop_harness(h: Harness) -> None:
    try:
        await h.runner.stop()
    finally:
        await h.services.__aexit__(None, None, None)


@dataclass
class Trader:
    chat: ChatUser
    api_key: str
    keypair: Any
    wallet: str


async def setup_trader(h: Harness, name: str = "Ann", *, tier: str = "professional", sol: float = 1.0,
                       strategy: str | None = None) -> Trader:
    """A user set up entirely by chat: LaserSell key, an imported wallet, the strategy; the stream connected."""
    import base58
    from solders.keypair import Keypair

    chat = await h.user(name)
    key = h.services.accounts.issue(tier).key
    await chat.send("/start", expect=r"1/3")
    await chat.send(f"/apikey {key}", expect=r"LaserSell key saved")
    keypair = Keypair()
    h.services.chain.fund(keypair.pubkey(), sol)
    await chat.wait_text(r"2/3 wallet")
    await chat.press("Import a wallet", expect=r"Send the wallet's secret")
    await chat.send(base58.b58encode(bytes(keypair)).decode(), expect=r"Wallet .* added")
    await chat.wait_text(r"3/3 strategy")
    if strategy:
        await chat.send(f"/strategy {strategy}", expect=r"Saved")
    else:
        await chat.press("Use this strategy", expect=r"set up")
    services = h.runner.services
    assert services is not None

    async def connected() -> bool:
        worker = services.streams.workers.get(chat.user_id)
        return worker is not None and await worker.client.wait_connected(5)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not await connected():
        if loop.time() > deadline:
            raise AssertionError(f"{name}'s stream did not connect; chat:\n{chat.transcript()}")
        await asyncio.sleep(0.05)
    return Trader(chat, key, keypair, str(keypair.pubkey()))
