"""Every sandbox service in one place: chain, JSON-RPC, LaserSell stream and REST, control API and
the Telegram Bot API, each on its own free port.

    async with SandboxServices(seed=7) as sandbox:
        sandbox.urls  # {"telegram", "rpc", "stream", "api", "control"}
        sandbox.chain, sandbox.accounts, sandbox.stream, sandbox.control_api, sandbox.telegram, ...
        await sandbox.control("buy", ["0.5"], chat)  # the terminal chat's `!buy 0.5`

The same seed gives the same keys, mints, API keys and bot token. With `realtime=True` (the demo)
the chain's slot clock ticks every 400 ms and the stream flushes PnL every `pnl_flush_ms`; without it
time moves only through `POST /sim/clock` / `chain.advance_slots`, and `stream.flush()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import time
from typing import Any

from solders.pubkey import Pubkey

from sandbox.accounts import Accounts
from sandbox.chain import Chain
from sandbox.control import BURST, HOSTILE_KINDS, ControlApi
from sandbox.exit_api import ExitApi
from sandbox.http import HttpError
from sandbox.rpc import SandboxRpc
from sandbox.stream import StreamServer
from sandbox.telegram import SandboxTelegram


def bot_token_for_seed(seed: int) -> str:
    """A well-formed bot token that depends only on the seed."""
    rng = random.Random(f"telegram:{seed}")
    alphabet = string.ascii_letters + string.digits + "_-"
    return f"{rng.randrange(10**9, 10**10)}:" + "".join(rng.choice(alphabet) for _ in range(35))

# `!until TEXT` gives up after this long
UNTIL_TIMEOUT_S = 60.0


class SandboxServices:
    """Starts and stops all sandbox services together (an async context manager)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        seed: int = 0,
        realtime: bool = False,
        hello_first: bool = False,
        stream_options: dict[str, Any] | None = None,
        telegram_options: dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.seed = seed
        self.realtime = realtime
        # In real time (the demo) sandbox time starts now, so times shown in the chat read right.
        self.chain = Chain(seed=seed, epoch_ms=int(time.time() * 1000)) if realtime else Chain(seed=seed)
        self.accounts = Accounts(seed=seed)
        self.rpc = SandboxRpc(self.chain)
        self.stream = StreamServer(
            self.chain, self.accounts, hello_first=hello_first, realtime=realtime, **(stream_options or {})
        )
        self.api = ExitApi(self.chain, self.accounts)
        self.control_api = ControlApi(self.chain, self.accounts, self.stream, self.rpc)
        self.telegram = SandboxTelegram(bot_token_for_seed(seed), **(telegram_options or {}))
        self._clock: asyncio.Task[None] | None = None
        self._started: list[Any] = []

    @property
    def urls(self) -> dict[str, str]:
        return {
            "telegram": self.telegram.url,
            "rpc": self.rpc.url,
            "stream": self.stream.url,
            "api": self.api.url,
            "control": self.control_api.url,
        }

    async def start(self) -> None:
        try:
            for service in (self.rpc, self.stream, self.api, self.control_api, self.telegram):
                await service.start(self.host, 0)
                self._started.append(service)
        except BaseException:
            await self.stop()
            raise
        if self.realtime:
            self._clock = asyncio.create_task(self.chain.run_clock())

    async def stop(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        # Stop in reverse so nothing is left talking to a service already gone.
        while self._started:
            service = self._started.pop()
            with contextlib.suppress(Exception):
                await service.stop()

    # -- terminal commands (`!fund 2`, `!mint PEPE`, ... in the sandbox chat) ----------------------

    def trader_wallets(self, chat: Any = None) -> list[str]:
        """The chat's wallets if it tracks them, else every wallet registered with the stream."""
        wallets = list(getattr(chat, "wallets", None) or [])
        for key in self.accounts.all():
            wallets += [w for w in sorted(key.registered_wallets) if w not in wallets]
        return wallets

    async def control(self, name: str, args: list[str], chat: Any = None) -> str | None:
        """Runs one terminal sandbox command; returns what to print. Raises ValueError on bad input."""
        command = _COMMANDS.get(name)
        if command is None:
            raise ValueError(f"unknown command !{name}; try !help")
        return await command(self, args, chat)

    def _current_mint(self, chat: Any) -> str:
        mint = getattr(chat, "current_mint", None)
        if mint is None:
            pools = self.chain.pools()
            if not pools:
                raise ValueError("no token yet: create one with !mint SYMBOL")
            mint = str(pools[-1].mint)
        return mint

    async def _cmd_help(self, args: list[str], chat: Any) -> str:
        return "\n".join(f"!{name:<10} {text}" for name, text in _HELP.items())

    async def _cmd_key(self, args: list[str], chat: Any) -> str:
        tier = args[0].lower() if args else "professional"
        key = self.accounts.issue(tier).key
        if chat is not None:
            chat.api_key = key
        return f"LaserSell {tier} key issued: {key}  (send it with /apikey $KEY)"

    async def _cmd_fund(self, args: list[str], chat: Any) -> str:
        amount = _float_arg(args, 0, "AMOUNT")
        asset = _quote_arg(args, 1)
        wallets = self.trader_wallets(chat)
        if not wallets:
            raise ValueError("no wallets yet: add one to the bot first")
        for wallet in wallets:
            if asset == "USD1":
                self.control_api.fund_usd1(wallet, amount)
            else:
                self.chain.fund(wallet, amount)
        self.stream.flush()
        return f"added {amount:g} {asset} to {len(wallets)} wallet(s)"

    async def _cmd_mint(self, args: list[str], chat: Any) -> str:
        if not args:
            raise ValueError("usage: !mint SYMBOL [SOL|USD1]")
        symbol = args[0].upper()
        quote = _quote_arg(args, 1)
        # About the same market either way: 30 SOL or 5,000 USD1 against a billion tokens.
        reserve = 30.0 if quote == "SOL" else 5_000.0
        mint = str(self.control_api.create_mint(symbol, 6, reserve, 1_000_000_000.0, None, quote))
        if chat is not None:
            chat.current_mint = mint
        self.stream.flush()
        return f"{symbol} created: mint {mint} ({reserve:,g} {quote} / 1,000,000,000 tokens in the pool)"

    async def _cmd_buy(self, args: list[str], chat: Any) -> str:
        amount = _float_arg(args, 0, "AMOUNT")
        mint = self._current_mint(chat)
        if len(args) > 1 and not args[1].isdigit():
            # any other wallet: a wallet someone copies (the stream mirrors its buys to them)
            buyer = args[1]
            try:
                Pubkey.from_string(buyer)
            except ValueError:
                raise ValueError(f"{buyer} is neither a wallet number nor a wallet address") from None
        else:
            wallets = self.trader_wallets(chat)
            index = int(args[1]) if len(args) > 1 else 1
            if not 1 <= index <= len(wallets):
                raise ValueError(f"no wallet #{index}; there are {len(wallets)}")
            buyer = wallets[index - 1]
        tokens = self.chain.outside_buy(buyer, mint, amount)
        self.stream.flush()
        pool = self.chain.pool(mint)
        quote = pool.quote
        return f"bought {tokens} atomic units of {pool.symbol} for {amount:g} {quote}"

    async def _cmd_hostile(self, args: list[str], chat: Any) -> str:
        if not args:
            raise ValueError(
                "usage: !hostile KIND [COUNT] (kinds: " + ", ".join((*HOSTILE_KINDS, BURST)) + ")"
            )
        kind = args[0].lower()
        if kind not in (*HOSTILE_KINDS, BURST):
            raise ValueError(f"unknown kind {kind}; use one of " + ", ".join((*HOSTILE_KINDS, BURST)))
        count = int(_float_arg(args, 1, "COUNT")) if len(args) > 1 else (2 if kind == BURST else 1)
        mint = self._current_mint(chat)
        wallets = self.trader_wallets(chat)
        for wallet in wallets:
            try:
                result = self.control_api.hostile(kind, wallet=wallet, mint=mint, count=count)
            except HttpError:
                continue
            return f"sent {result['sent']} {kind} exit signal(s) for position {result['position_id']}"
        raise ValueError("no live position in the current token: buy some while the bot is streaming")

    async def _cmd_refuse(self, args: list[str], chat: Any) -> str:
        count = int(_float_arg(args, 0, "N"))
        self.stream.refuse_sessions(count)
        return f"the stream refuses the next {count} connection(s) with session_limit"

    async def _cmd_market(self, args: list[str], chat: Any) -> str:
        pct = _float_arg(args, 0, "PCT")
        mint = self._current_mint(chat)
        self.chain.market_move(mint, pct)
        self.stream.flush()
        return (
            f"{self.chain.pool(mint).symbol} price {pct:+g}%: {self.chain.price(mint):.2f} lamports per token"
        )

    async def _cmd_drain(self, args: list[str], chat: Any) -> str:
        pct = _float_arg(args, 0, "PCT")
        mint = self._current_mint(chat)
        self.chain.drain(mint, pct)
        self.stream.flush()
        return f"{pct:g}% of the {self.chain.pool(mint).symbol} pool's liquidity pulled"

    async def _cmd_graduate(self, args: list[str], chat: Any) -> str:
        mint = self._current_mint(chat)
        self.chain.graduate(mint)
        self.stream.flush()
        return f"{self.chain.pool(mint).symbol} graduated to its PumpSwap pool"

    async def _cmd_clock(self, args: list[str], chat: Any) -> str:
        slots = int(_float_arg(args, 0, "SLOTS"))
        self.chain.advance_slots(slots)
        self.stream.flush()
        return f"slot {self.chain.slot}"

    async def _cmd_wait(self, args: list[str], chat: Any) -> None:
        await asyncio.sleep(_float_arg(args, 0, "SECONDS"))
        return None

    async def _cmd_until(self, args: list[str], chat: Any) -> str:
        """Wait until a bot message in this chat (new or edited) contains the words, up to UNTIL_TIMEOUT_S."""
        words = " ".join(args).strip().lower()
        if not words or chat is None:
            raise ValueError("usage: !until TEXT (waits for a bot message containing TEXT)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UNTIL_TIMEOUT_S
        while loop.time() < deadline:
            for message in self.telegram.chat(chat.chat_id):
                shown = (message.get("text") or message.get("caption") or "").lower()
                if message.get("from") == "bot" and words in shown:
                    return f"seen: {words}"
            await asyncio.sleep(0.05)
        raise ValueError(f"no bot message containing {words!r} within {UNTIL_TIMEOUT_S:g} s")

    async def _cmd_state(self, args: list[str], chat: Any) -> str:
        state = self.control_api.state()
        lines = [f"slot {state['slot']}"]
        for wallet, balance in state["balances"].items():
            tokens = ", ".join(
                f"{amount} of {mint[:6]}…" for mint, amount in balance["tokens"].items() if amount
            )
            lines.append(
                f"{wallet[:6]}…: {balance['lamports'] / 1e9:.4f} SOL" + (f"; {tokens}" if tokens else "")
            )
        for position in state["positions"]:
            pool = self.chain.pool(position["mint"])
            quote = pool.quote
            decimals = 6 if quote == "USD1" else 9  # entry is in the pool's quote atomic units
            lines.append(
                f"position {position['position_id']}: {position['tokens']} of {position['mint'][:6]}…"
                f" entry {position['entry_quote_units'] / 10**decimals:.4f} {quote}"
            )
        return "\n".join(lines)

    async def __aenter__(self) -> SandboxServices:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _quote_arg(args: list[str], index: int) -> str:
    asset = args[index].upper() if len(args) > index else "SOL"
    if asset not in ("SOL", "USD1"):
        raise ValueError("the asset must be SOL or USD1")
    return asset


def _float_arg(args: list[str], index: int, name: str) -> float:
    try:
        return float(args[index])
    except (IndexError, ValueError):
        raise ValueError(f"{name} must be a number") from None


_HELP = {
    "key": "[TIER]: issue a sandbox LaserSell API key (free, professional, advanced); $KEY stands for it",
    "fund": "AMOUNT [SOL|USD1]: add SOL (default) or USD1 to your sandbox wallets",
    "mint": "SYMBOL [SOL|USD1]: create a token with a SOL (default) or USD1 pool; it becomes the current token",
    "buy": "AMOUNT [WALLET# | ADDRESS]: an outside buy of the current token, paid in its pool's SOL or USD1, by "
    "your wallet # (default 1) or by any ADDRESS, e.g. a wallet you copy (the stream mirrors its buy)",
    "market": "PCT: move the current token's price by PCT percent",
    "drain": "PCT: pull PCT percent of the current token's liquidity",
    "graduate": "graduate the current token to its AMM pool",
    "clock": "SLOTS: advance the sandbox chain clock",
    "wait": "SECONDS: wait for streams and timers",
    "until": "TEXT: wait until a bot message in this chat contains TEXT (at most a minute)",
    "state": "balances and positions as the sandbox sees them",
    "hostile": "KIND [COUNT]: the stream sends a genuine-looking exit for your position in the current token "
    "carrying a hostile transaction (steal_position, steal_sol, steal_other_token, set_authority, approve, "
    "cpi_drain, tip_over_cap), or `burst`: one real exit signal COUNT times",
    "refuse": "N: the stream refuses the next N connections with session_limit (a client should retry)",
}

_COMMANDS = {
    "help": SandboxServices._cmd_help,
    "key": SandboxServices._cmd_key,
    "fund": SandboxServices._cmd_fund,
    "mint": SandboxServices._cmd_mint,
    "buy": SandboxServices._cmd_buy,
    "market": SandboxServices._cmd_market,
    "drain": SandboxServices._cmd_drain,
    "graduate": SandboxServices._cmd_graduate,
    "clock": SandboxServices._cmd_clock,
    "wait": SandboxServices._cmd_wait,
    "until": SandboxServices._cmd_until,
    "state": SandboxServices._cmd_state,
    "hostile": SandboxServices._cmd_hostile,
    "refuse": SandboxServices._cmd_refuse,
}
