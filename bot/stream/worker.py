"""One user's stream as the bot runs it: what it should run with (`Wanted`) and its live state (`Worker`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bot.strategy import Strategy
from bot.stream.client import StreamClient


@dataclass
class Wanted:
    """What a user's stream should run with, built from storage."""

    api_key: str
    wallets: list[str]
    strategy: Strategy
    send_mode: str
    tip_lamports: int

    def deadline_on_configure(self) -> int | None:
        """The deadline, on `configure` only when it is the strategy's one exit condition (the docs count
        it towards a valid strategy there); the bot's own timer asks for the exit either way."""
        return None if self.strategy.wire_has_exit() or not self.strategy.deadline_s else self.strategy.deadline_s

    def connection_key(self) -> tuple[str, str, int, int | None]:
        # changes to these need a new connection (no update message exists for them)
        return (self.api_key, self.send_mode, self.tip_lamports, self.deadline_on_configure())


@dataclass
class Worker:
    user_id: int
    chat_id: int
    client: StreamClient
    wanted: Wanted
    task: asyncio.Task[None] | None = None
    deadlines: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    clock_offset_ms: int = 0  # server time minus our time, from hello_ok
    told_attention: bool = False
    started_at: float = field(default_factory=time.monotonic)
    # the bot's position number <-> token account, for open positions (stable across sessions)
    accounts: dict[int, str] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    connection: int = 0  # the client connection whose hello_ok the consumer handled last
    asked: dict[int, int] = field(default_factory=dict)  # position number -> connection its exit was asked on
    down_since: float | None = None
    down_reason: str | None = None  # why the last attempt failed, for the down notice
    down_timer: asyncio.TimerHandle | None = None
    up_timer: asyncio.TimerHandle | None = None
    reask_timer: asyncio.TimerHandle | None = None
    told_down: bool = False
    errors_shown: dict[str, float] = field(default_factory=dict)  # error code -> when it was last shown

    def remember(self, number: int, token_account: str | None) -> None:
        if token_account:
            self.accounts[number] = token_account
            self.numbers[token_account] = number

    def forget(self, number: int) -> None:
        account = self.accounts.pop(number, None)
        if account is not None and self.numbers.get(account) == number:
            del self.numbers[account]

    async def ask_exit(self, number: int, slippage_bps: int | None = None) -> bool:
        """Ask this stream for an exit of the bot's position `number`; False when it cannot go out now."""
        sent = await self.client.request_exit_signal(number, slippage_bps)
        if sent:
            # an exit asked on this connection is not asked again when the position is (re)announced on it
            self.asked[number] = self.client.connection
        return sent
