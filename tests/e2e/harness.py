"""Drive the real bot through the sandbox Telegram's driver API, as a person would, and read the chat."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import base58
from solders.keypair import Keypair

from bot.app import BotRunner
from sandbox.services import SandboxServices
from sandbox.terminal import sandbox_settings
from storage.positions import ExitSignal

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
) -> Harness:
    """Start the sandbox services and the real bot against them; the caller stops both (see conftest)."""

    # Tests keep Telegram's rules but not its pace: a chat may take 20 messages a second here, and the
    # bot is set to 10, so a test walks through onboarding in well under a second.
    services_kwargs.setdefault("telegram_options", {"per_chat_rate": 20.0, "per_chat_burst": 20})
    services = SandboxServices(seed=seed, **services_kwargs)
    await services.__aenter__()
    settings = sandbox_settings(
        services.urls, services.telegram.token, data_dir, admin_ids, **{"TELEGRAM_CHAT_RATE": "10", **(settings_env or {})}
    )
    return await start_bot(services, settings, data_dir)


async def start_bot(services: Any, settings: Any, data_dir: Path) -> Harness:
    """The real bot against sandbox services already started; on failure the services are stopped too."""
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


async def deletions_looked(h: Harness, chat: ChatUser) -> None:
    """Returns once the bot's deletion job has run a whole round after this call: whatever was due by its clock
    is deleted (or its retry stored) by then, and a clock moved now is read by its next round."""
    services = h.runner.services
    assert services is not None
    deletions = services.deletions
    for _ in range(2):  # the second round begins only after the first one is done
        rounds = deletions.rounds
        deletions.wake()
        await chat.wait_for(lambda _, rounds=rounds: deletions.rounds > rounds, what="a round of the deletion job")


# --- a trader holding a token, and the sell that follows ---------------------------------------------------

async def pump(h: Harness, rounds: int = 3, slots: int = 5) -> None:
    """Advance sandbox time (8 slots = 3.2 s of stream time: one liquidity snapshot) and let the stream flush.
    Time moves by the sandbox clock; the pause only lets the bot read the frames. Callers then wait for what
    must follow (a message, a counter)."""
    for _ in range(rounds):
        h.services.chain.advance_slots(slots)
        h.services.stream.flush()
        await asyncio.sleep(0.05)


async def until(check: Callable[[], Any], what: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Poll `check` (a plain or async callable) until it returns something true; fail saying `what` otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def buys(h: Harness, trader: Trader, symbol: str = "PEPE", sol: float = 0.5, **mint: Any) -> Any:
    """The trader's wallet buys a new token outside the bot; returns the mint once the bot has announced it."""
    chain = h.services.chain
    token = chain.create_mint(symbol, 6, 30.0, 1_000_000_000.0, name=symbol.title(), **mint)
    chain.outside_buy(trader.wallet, token, sol)
    await pump(h)
    await trader.chat.wait_text(rf"New position: {symbol}", timeout=15)
    return token


async def holding(
    h: Harness, name: str = "Ann", symbol: str = "PEPE", *, strategy: str = "tp 20 sl 50 deadline 0",
    sol: float = 0.5, **mint: Any,
) -> tuple[Trader, Any]:
    """A trader set up by chat who bought `symbol` for `sol` outside the bot; the bot has announced the position."""
    trader = await setup_trader(h, name, strategy=strategy)
    return trader, await buys(h, trader, symbol, sol, **mint)


async def take_profit(h: Harness, trader: Trader, mint: Any, move: float = 40) -> dict[str, Any]:
    """The price rises past take profit; returns the exit signal message."""
    h.services.chain.market_move(mint, move)
    await pump(h)
    return await trader.chat.wait_text(r"Take profit reached")


async def sell_part(trader: Trader, symbol: str = "PEPE", button: str = "Sell 25%") -> dict[str, Any]:
    """From /positions, open the position's card and tap a part sell; returns the exit signal message it brings."""
    listing = await trader.chat.send("/positions", expect=r"Open positions")
    card = await trader.chat.press(symbol, message=listing, expect=r"Holding .* tokens")
    assert card is not None
    signal = await trader.chat.press(button, message=card, expect=r"You asked to sell")
    assert signal is not None
    return signal


def signal_id(message: dict[str, Any]) -> str:
    """The stored signal behind a message's Sell button."""
    data = next(b["data"] for row in message.get("buttons") or [] for b in row if b.get("data", "").startswith("x:sell:"))
    return data.split(":", 2)[2]


async def age(h: Harness, sid: str, ms: int) -> ExitSignal:
    """The trader comes back `ms` later: the stored signal was received that much earlier. Returns it as it was."""
    services = h.runner.services
    assert services is not None
    old = await stored(h, sid)
    await services.inbox.signals.set(sid, received_at_ms=old.received_at_ms - ms)
    return old


async def stored(h: Harness, sid: str) -> ExitSignal:
    services = h.runner.services
    assert services is not None
    signal = await services.inbox.signals.get(sid)
    assert signal is not None
    return signal


def sends(h: Harness) -> int:
    """sendTransaction calls that reached the sandbox node (it stands in for Helius Sender and Astralane too)."""
    return int(h.services.rpc.calls["sendTransaction"])


def answers(trader: Trader) -> list[str]:
    """The texts of every callback answer the trader was shown, oldest first."""
    return [a["text"] or "" for a in trader.chat.tg.callback_answers(trader.chat.chat_id)]


def exit_requests(h: Harness, trader: Trader) -> list[dict[str, Any]]:
    """The exits the bot asked the stream for (request_exit_signal, sell_now)."""
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None
    return [m for m in session.received if m.get("type") in ("request_exit_signal", "sell_now")]
