"""The sandbox LaserSell Exit Intelligence Stream.

A websockets server at `/v1/ws` that speaks the LaserSell stream wire protocol closely enough that
the official `lasersell_sdk.stream` client works against it unmodified (market_context sub-objects go
under the keys that SDK reads: `pumpfun`, `pumpswap`). It watches the configured
wallets on the sandbox `Chain`, opens positions when tokens arrive, prices them on the pool curve,
runs each session's exit strategy and hands out real unsigned exit transactions.

What the official docs (api/stream/*.mdx) and the protocol crate say, and the readings where they
leave things open (the docs win over the crate where they disagree):
- Profit is measured against the cost basis of the tokens still held:
  `basis = entry_quote_units * tokens / original_tokens`, `profit_units = proceeds - basis`, where
  `proceeds` is what selling every held token on the curve would pay right now. Quote units are
  lamports in SOL pools and USD1 base units (6 decimals) in USD1 pools.
- A valid strategy has target_profit_pct, stop_loss_pct or trailing_stop_pct > 0, a non-empty
  take_profit_levels, or configure's deadline_timeout_sec > 0; otherwise `error` `invalid_strategy`.
  Every percentage is >= 0; stop loss and trailing stops must be below 100 (they could never fire).
- `trailing_stop_pct`: activates only once the position is in profit; as in the docs' table, it arms
  when the peak profit reaches the trail and fires when profit falls that many points from its peak.
- `breakeven_trail_pct`: arms once profit reaches 0 (breakeven) and fires when profit then falls to
  minus that many percent.
- `take_profit_levels`: evaluated from the lowest `profit_pct` up; each level's `sell_pct` is a
  share of what REMAINS when it fires (25 / 50 / 100 sells a quarter, then half the rest, then the
  rest). A level with its own `trailing_stop_pct` arms at `profit_pct` and sells when profit falls
  that many points from its peak. `target_profit_pct` still applies as a hard cap: reached before
  every level fired, it sells what is left.
- `liquidity_guard` never causes an exit. It holds an exit back while the pool cannot take the sell
  within the exit's slippage (`default_slippage_bps`), and sends it once liquidity allows or
  `liquidity_guard_timeout_ms` of sandbox time after the first held exit (the docs' "deferred until
  liquidity improves or a timeout forces the exit"). A ladder level that is not the last is scaled
  down to what the pool can take instead, the unsold part left for the next level (the crate's and
  desktop docs' "scale down chained sells ... redistribute overflow"). Exits the trader asks for are
  not held.
- Sessions: one per key (`max_sessions_per_api_key` 1 on every tier); a second connection gets
  `error` `session_limit` and is closed, and a client should retry it. Each session has a new
  `session_id`, and numbers positions afresh: after a reconnect the same position (same
  `token_account`) has a new `position_id`. configure re-sends `balance_update` and
  `position_opened` for what the wallets hold.
- Exits are built for `configure`'s send_mode (default `rpc`, as client-messages.mdx says): `rpc`
  has no tip, the tipped modes a System transfer of `tip_lamports` (default 1000) to a tip account;
  the routing fee of the key's tier comes off the proceeds (pnl_update's proceeds are the curve's,
  before that fee).
- `deadline_timeout_sec` on configure: client-messages.mdx has the server generate the exit itself
  (reason `deadline`) once a position is that old; the SDKs also run the timer client side, so a
  client may see both. 0 or absent: no deadline.
- Liquidity bands: `max_tokens` is the most that can be sold with the average price no more than
  `slippage_bps` below the spot price (pool fee aside); the trend compares the pool's depth
  sqrt(sol_reserve * token_reserve) with its depth `trend_window_ms` of sandbox time earlier, so trades
  (which keep the product) read as stable and a drain reads as draining.
- `close_position` stops tracking without selling; the tokens are not re-opened as a position until
  the wallet sells out or buys more of that mint.
- Each automatic exit fires once. After a full exit fired, no other automatic full exit fires for that
  position until the trader asks (`request_exit_signal`) or changes the strategy; take-profit levels
  fire independently, once each.
- Copy trading (desktop/mirror-trading.mdx, the `mirror_*` messages): `watch_wallets` (2 / 10 / 25 per
  tier) come with configure and are replaced by `update_watch_wallets`; `mirror_config` only with
  configure, its documented defaults for what is omitted (the crate: 0 = unlimited). When a watched
  wallet with an `auto_buy` buys on the chain, the limits apply in order (cooldown per watched wallet,
  open plus pending mirrored positions per watched wallet, SOL exposure of the open mirrored
  positions, pool liquidity, the buying wallet's balance): a miss is `mirror_buy_failed` with its
  reason, else `mirror_buy_signal` with an unsigned router buy of the auto_buy amount for the
  auto_buy wallet (tipped like exits). The position that results carries `mirror_source`. A
  `mirror_buy_result` with success false frees the pending slot and the cooldown. A mirrored
  position that sells out for less than it cost is a loss; `max_consecutive_losses` in a row sends
  `mirror_wallet_auto_disabled`; dropping the wallet from the list and listing it again re-enables it.

Time (`server_time_ms`, `opened_at_ms`, snapshot pacing) is the chain's sandbox clock, so tests advance
it instead of sleeping. `flush()` emits due `pnl_update` and `liquidity_snapshot` messages; the server
runs it every `pnl_flush_ms` of real time only when started with `realtime=True` (the demo).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from solders.pubkey import Pubkey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from sandbox.accounts import TIERS, Accounts, ApiKey
from sandbox.chain import Chain, UnknownMint

log = logging.getLogger(__name__)

WS_PATH = "/v1/ws"
HI_CAPACITY = 256
PNL_FLUSH_MS = 100
BAND_SLIPPAGE_BPS = (100, 300, 500, 1000, 2000)
DEFAULT_SLIPPAGE_BPS = 500
DEFAULT_MIRROR_SLIPPAGE_BPS = 2500
LAMPORTS_PER_SOL = 1_000_000_000
# configure's defaults, as api/stream/client-messages.mdx gives them: send_mode "rpc" (no tip), and
# tip_lamports 1000 when a tipped mode is named without one.
DEFAULT_TIP_LAMPORTS = 1000
TIPPED_SEND_MODES = ("helius_sender", "astralane")
# Watch-wallet slots per tier (desktop/mirror-trading.mdx) and mirror_config's documented defaults.
WATCH_SLOTS = {"free": 2, "professional": 10, "advanced": 25}
MIRROR_DEFAULTS: dict[str, Any] = {
    "max_positions_per_wallet": 1, "cooldown_sec": 30, "skip_creator_tokens": False, "max_active_sol": 5.0,
    "buy_slippage_bps": 2500, "min_liquidity_sol": None, "max_entry_drift_pct": None, "max_consecutive_losses": None,
}
SEND_MODES = ("rpc", "helius_sender", "astralane")
DEFAULT_SEND_MODE = "rpc"
MAX_TAKE_PROFIT_LEVELS = 10  # desktop/exit-strategy.mdx: "up to 10 levels"
LIQUIDITY_GUARD_TIMEOUT_MS = 60_000
# The code a second connection for a key gets while its one session is open. The docs allow one
# session per key but name no code; the client is expected to retry.
SESSION_IN_USE_CODE = "session_limit"
FREE_TIER_INACTIVITY_S = 45 * 60
TREND_THRESHOLD = 0.02
UNKNOWN_MARKET_TYPE = "moonshot_v9"


def _derived_address(label: str, seed: str) -> str:
    """A stable made-up account address (market_context fields the sandbox has no account for)."""
    return str(Pubkey.from_bytes(hashlib.sha256(f"lasersell-sandbox:{label}:{seed}".encode()).digest()))


class ProtocolError(Exception):
    """A client mistake answered with an `error` message; the session stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Strategy


@dataclass(frozen=True)
class TakeProfitLevel:
    profit_pct: float
    sell_pct: float
    trailing_stop_pct: float = 0.0


@dataclass(frozen=True)
class Strategy:
    target_profit_pct: float = 0.0
    stop_loss_pct: float = 0.0
    trailing_stop_pct: float = 0.0
    sell_on_graduation: bool = False
    take_profit_levels: tuple[TakeProfitLevel, ...] = ()
    liquidity_guard: bool = False
    breakeven_trail_pct: float = 0.0

    @classmethod
    def from_wire(cls, value: object, deadline_timeout_sec: float = 0.0) -> Strategy:
        """Validates a wire strategy; raises ProtocolError('invalid_strategy').

        `deadline_timeout_sec` is the configure message's: the docs count a deadline as an exit
        condition even though the client runs its timer.
        """
        if not isinstance(value, dict):
            raise ProtocolError("invalid_strategy", "strategy must be an object")

        def pct(name: str, required: bool = False) -> float:
            raw = value.get(name)
            if raw is None:
                if required:
                    raise ProtocolError("invalid_strategy", f"strategy.{name} is required")
                return 0.0
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                raise ProtocolError("invalid_strategy", f"strategy.{name} must be a finite number")
            if raw < 0:
                raise ProtocolError("invalid_strategy", f"{name} must be >= 0")
            return float(raw)

        def flag(name: str) -> bool:
            raw = value.get(name, False)
            if raw is None:
                return False
            if not isinstance(raw, bool):
                raise ProtocolError("invalid_strategy", f"strategy.{name} must be a boolean")
            return raw

        target = pct("target_profit_pct", required=True)
        stop = pct("stop_loss_pct", required=True)
        # A loss or a fall from the peak of 100 % or more can never be reached: refused rather than
        # accepted as a stop that silently never fires.
        if stop >= 100:
            raise ProtocolError("invalid_strategy", "stop_loss_pct must be below 100")
        trailing = pct("trailing_stop_pct")
        if trailing >= 100:
            raise ProtocolError("invalid_strategy", "trailing_stop_pct must be below 100")
        breakeven = pct("breakeven_trail_pct")
        if breakeven >= 100:
            raise ProtocolError("invalid_strategy", "breakeven_trail_pct must be below 100")
        levels = _parse_levels(value.get("take_profit_levels"))
        strategy = cls(
            target_profit_pct=target,
            stop_loss_pct=stop,
            trailing_stop_pct=trailing,
            sell_on_graduation=flag("sell_on_graduation"),
            take_profit_levels=levels,
            liquidity_guard=flag("liquidity_guard"),
            breakeven_trail_pct=breakeven,
        )
        if not strategy.has_exit_condition() and not deadline_timeout_sec > 0:
            raise ProtocolError(
                "invalid_strategy",
                "strategy has no exit condition: at least one of target_profit_pct, stop_loss_pct, "
                "trailing_stop_pct (or deadline_timeout_sec on configure) "
                "must be greater than 0",
            )
        return strategy

    def has_exit_condition(self) -> bool:
        """The docs' rule: target, stop loss or trailing stop > 0 (or a deadline on configure, checked there).

        A ladder alone, sell_on_graduation, liquidity_guard and breakeven_trail_pct alone do not count
        (api/stream/strategy-configuration.mdx lists only these four fields).
        """
        return bool(self.target_profit_pct > 0 or self.stop_loss_pct > 0 or self.trailing_stop_pct > 0)


def _parse_levels(raw: object) -> tuple[TakeProfitLevel, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProtocolError("invalid_strategy", "strategy.take_profit_levels must be an array")
    if len(raw) > MAX_TAKE_PROFIT_LEVELS:
        raise ProtocolError(
            "invalid_strategy", f"take_profit_levels has {len(raw)} levels; at most {MAX_TAKE_PROFIT_LEVELS}"
        )
    levels: list[TakeProfitLevel] = []
    for idx, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ProtocolError("invalid_strategy", f"take_profit_levels[{idx}] must be an object")
        numbers: dict[str, float] = {}
        for name in ("profit_pct", "sell_pct", "trailing_stop_pct"):
            v = item.get(name, 0.0 if name == "trailing_stop_pct" else None)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ProtocolError(
                    "invalid_strategy", f"take_profit_levels[{idx}].{name} must be a number >= 0"
                )
            numbers[name] = float(v)
        if numbers["profit_pct"] <= 0:
            raise ProtocolError("invalid_strategy", f"take_profit_levels[{idx}].profit_pct must be > 0")
        if not 0 < numbers["sell_pct"] <= 100:
            raise ProtocolError("invalid_strategy", f"take_profit_levels[{idx}].sell_pct must be in (0, 100]")
        if numbers["trailing_stop_pct"] >= 100:
            raise ProtocolError(
                "invalid_strategy", f"take_profit_levels[{idx}].trailing_stop_pct must be below 100"
            )
        levels.append(TakeProfitLevel(**numbers))
    # Each level sells a share of what remains, so shares need not add up to 100; and the server
    # evaluates levels from the lowest profit_pct up, whatever order the client listed them in.
    return tuple(levels)


# ---------------------------------------------------------------------------------------------
# Positions and sessions


@dataclass(frozen=True)
class Exit:
    reason: str
    sell_tokens: int | None = None
    level_index: int | None = None
    # A hostile frame from the control API: this unsigned transaction instead of a real exit.
    unsigned_tx_b64: str | None = None


@dataclass
class Position:
    position_id: int
    api_key: str
    wallet: str
    mint: str
    token_account: str
    token_program: str
    tokens: int
    original_tokens: int
    entry_quote_units: int
    opened_at_ms: int
    slot: int
    override: Strategy | None = None
    peak_profit_pct: float | None = None
    trail_armed: bool = False
    breakeven_armed: bool = False
    exit_pending: str | None = None
    levels_fired: set[int] = field(default_factory=set)
    level_peaks: dict[int, float] = field(default_factory=dict)
    # Tokens the ladder has not yet signalled for sale: a level's share is of this.
    ladder_remaining: int = 0
    graduation_fired: bool = False
    # Exits decided but held back by liquidity_guard, and since when (sandbox ms).
    held: list[Exit] = field(default_factory=list)
    held_since_ms: int | None = None
    last_pnl: tuple[int, int] | None = None
    last_snapshot_ms: int | None = None
    # The watched wallet whose buy this position mirrors (mirror_source on the wire).
    mirror_source: str | None = None

    def basis(self) -> int:
        if self.original_tokens <= 0:
            return 0
        return self.entry_quote_units * self.tokens // self.original_tokens

    def rearm(self) -> None:
        self.exit_pending = None
        self.breakeven_armed = False
        self.trail_armed = False
        self.peak_profit_pct = None
        self.graduation_fired = False
        # Held exits were decided under the old strategy: undo them so the new one decides afresh.
        for exit_ in self.held:
            if exit_.level_index is not None:
                self.levels_fired.discard(exit_.level_index)
                self.ladder_remaining += exit_.sell_tokens or 0
        self.held = []
        self.held_since_ms = None


@dataclass
class Session:
    session_id: int
    api_key: ApiKey
    connection: ServerConnection
    outbox: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    configured: bool = False
    hello_sent: bool = False
    wallets: list[str] = field(default_factory=list)
    strategy: Strategy | None = None
    send_mode: str | None = None
    tip_lamports: int | None = None
    deadline_timeout_sec: float = 0.0
    last_configure: dict[str, Any] | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    sent_types: deque[str] = field(default_factory=lambda: deque(maxlen=1000))  # recent, for debugging
    closed: bool = False

    def send(self, message: dict[str, Any] | str) -> None:
        if self.closed:
            return
        if isinstance(message, dict):
            self.sent_types.append(str(message.get("type")))
            text = json.dumps(message, separators=(",", ":"))
        else:
            text = message
        self.outbox.put_nowait(text)

    def error(self, code: str, message: str) -> None:
        self.send({"type": "error", "code": code, "message": message})

    def effective_send_mode(self) -> str:
        return self.send_mode or DEFAULT_SEND_MODE

    def effective_tip(self) -> int:
        """The tip built into each exit: none for plain RPC, else tip_lamports or the default."""
        if self.effective_send_mode() not in TIPPED_SEND_MODES:
            return 0
        return DEFAULT_TIP_LAMPORTS if self.tip_lamports is None else self.tip_lamports


@dataclass
class KeyBook:
    """What the server remembers for one API key across connections."""

    positions: dict[int, Position] = field(default_factory=dict)
    session: Session | None = None
    wallets: list[str] = field(default_factory=list)
    last_configure: dict[str, Any] | None = None
    # (wallet, mint) -> tokens held when the trader closed it: not re-opened until that changes.
    closed_by_user: dict[tuple[str, str], int] = field(default_factory=dict)
    # (wallet, mint) refused for capacity: told once, not re-told on every balance change.
    over_capacity: set[tuple[str, str]] = field(default_factory=set)
    # Copy trading: the watch list and limits of the latest configure / update_watch_wallets.
    watch_wallets: list[dict[str, Any]] = field(default_factory=list)
    mirror_config: dict[str, Any] = field(default_factory=dict)
    mirror_last_buy_ms: dict[str, int] = field(default_factory=dict)  # watched -> last mirror buy
    mirror_pending: dict[tuple[str, str], str] = field(default_factory=dict)  # (user wallet, mint) -> watched
    mirror_losses: dict[str, int] = field(default_factory=dict)  # watched -> consecutive losses
    mirror_disabled: set[str] = field(default_factory=set)

    def ignores(self, wallet: str, mint: str, amount: int) -> bool:
        held_at_close = self.closed_by_user.get((wallet, mint))
        if held_at_close is None:
            return False
        if 0 < amount <= held_at_close:
            self.closed_by_user[(wallet, mint)] = amount
            return True
        # Sold out or bought more: a new position from here on.
        del self.closed_by_user[(wallet, mint)]
        return False


@dataclass
class Faults:
    refuse_until: float = 0.0
    delay_hello_s: float = 0.0
    garbage_pending: bool = False
    unknown_market_type: str | None = None
    # The next N connections are refused with this code, as if the key's session were still open.
    refuse_sessions: int = 0
    refuse_sessions_code: str = SESSION_IN_USE_CODE
    # The next mirror buy transaction harms the wallet: "overspend" pays 3x the frame's amount,
    # "steal_sol" also sends half the wallet's SOL to a stranger.
    mirror_hostile: str | None = None


# ---------------------------------------------------------------------------------------------
# The server


class StreamServer:
    """The sandbox stream. `await start(host, port)`, then clients connect to `.url`."""

    def __init__(
        self,
        chain: Chain,
        accounts: Accounts,
        *,
        hello_first: bool = False,
        pnl_flush_ms: int = PNL_FLUSH_MS,
        liquidity_interval_ms: int = 3000,
        trend_window_ms: int = 30_000,
        liquidity_guard_timeout_ms: int = LIQUIDITY_GUARD_TIMEOUT_MS,
        default_slippage_bps: int = DEFAULT_SLIPPAGE_BPS,
        free_inactivity_timeout_s: float = FREE_TIER_INACTIVITY_S,
        realtime: bool = False,
        tip_account: str | None = None,
    ) -> None:
        self.chain = chain
        self.accounts = accounts
        self.hello_first = hello_first
        self.pnl_flush_ms = pnl_flush_ms
        self.liquidity_interval_ms = liquidity_interval_ms
        self.trend_window_ms = trend_window_ms
        self.liquidity_guard_timeout_ms = liquidity_guard_timeout_ms
        self.default_slippage_bps = default_slippage_bps
        self.free_inactivity_timeout_s = free_inactivity_timeout_s
        self.realtime = realtime
        self.connection_attempts: Counter[str] = Counter()  # per x-api-key, refused ones included
        self.tip_account = tip_account
        self.faults = Faults()
        self.books: dict[str, KeyBook] = {}
        self._next_session_id = 1
        self._next_position_id = 1
        # SOL each wallet paid for each mint, from trades seen on chain: the entry of the next position.
        self._cost_paid: dict[tuple[str, str], int] = {}
        self._proceeds: dict[tuple[str, str], int] = {}  # quote a wallet got selling a mint: win or loss at close
        self.mirror_results: list[dict[str, Any]] = []  # every mirror_buy_result received
        self.mirror_sent: list[dict[str, Any]] = []  # every mirror_* event sent
        self._depth_history: dict[str, deque[tuple[int, float]]] = {}
        self._events: deque[Any] = deque()
        self._events_scheduled = False
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        chain.subscribe(self._on_chain_event)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
        )
        sock = next(iter(self._server.sockets))
        self.host, self.port = sock.getsockname()[:2]
        if self.realtime:
            self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> StreamServer:
        await self.start(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.pnl_flush_ms / 1000)
            try:
                self.flush()
            except Exception:  # a bad tick must not end the demo's stream
                log.exception("stream flush failed")

    # -- faults (set by the control API) ----------------------------------------------------

    async def drop_connections(self) -> int:
        sessions = self.live_sessions()
        for session in sessions:
            self._end_session(session)
            await session.connection.close(1012, "sandbox: connection dropped")
        return len(sessions)

    def refuse_connections_for(self, seconds: float) -> None:
        self.faults.refuse_until = time.monotonic() + max(0.0, seconds)

    def delay_hello(self, seconds: float) -> None:
        self.faults.delay_hello_s = max(0.0, seconds)

    def send_garbage_frame(self) -> None:
        sessions = [s for s in self.live_sessions() if s.hello_sent]
        if not sessions:
            self.faults.garbage_pending = True
        for session in sessions:
            session.send("}{ this is not json")

    def use_unknown_market_type(self, market_type: str = UNKNOWN_MARKET_TYPE) -> None:
        self.faults.unknown_market_type = market_type

    def refuse_sessions(self, count: int, code: str = SESSION_IN_USE_CODE) -> None:
        """The next `count` connections get an `error` frame with `code` and are closed."""
        self.faults.refuse_sessions = max(0, count)
        self.faults.refuse_sessions_code = code

    def send_hostile(
        self,
        api_key: str,
        position: Position,
        unsigned_tx_b64: str,
        reason: str = "stop_loss",
        count: int = 1,
    ) -> int:
        """Sends `count` exit_signal_with_tx frames for a live position carrying this transaction.

        The frame is what a genuine exit looks like (session, position, reason, tokens); only the
        transaction differs. Returns how many frames were queued (0 when the key has no session).
        """
        session = self.session_for(api_key)
        if session is None or session.closed or not session.configured:
            return 0
        for _ in range(count):
            self._send_exit(session, position, Exit(reason, unsigned_tx_b64=unsigned_tx_b64))
        return count

    def send_burst(self, api_key: str, position: Position, reason: str = "stop_loss", count: int = 2) -> int:
        """The same genuine-looking exit signal (one real transaction) sent `count` times."""
        session = self.session_for(api_key)
        if session is None or session.closed or not session.configured:
            return 0
        unsigned = self.build_sell_tx(
            position.wallet,
            position.mint,
            position.tokens,
            self.default_slippage_bps,
            session.effective_tip(),
            f"{reason}:{position.position_id}",
            send_mode=session.effective_send_mode(),
            tier=session.api_key.tier,
        )
        return self.send_hostile(api_key, position, unsigned, reason, count)

    def find_position(
        self, api_key: str, *, mint: str | None = None, token_account: str | None = None
    ) -> Position | None:
        book = self.books.get(api_key)
        if book is None:
            return None
        for position in book.positions.values():
            if (mint is not None and position.mint == mint) or (
                token_account is not None and position.token_account == token_account
            ):
                return position
        return None

    # -- inspection -----------------------------------------------------------------------

    def live_sessions(self) -> list[Session]:
        return [b.session for b in self.books.values() if b.session is not None and not b.session.closed]

    def session_for(self, api_key: str) -> Session | None:
        book = self.books.get(api_key)
        return None if book is None else book.session

    def positions(self, api_key: str | None = None) -> list[Position]:
        books = [self.books[api_key]] if api_key in self.books else ([] if api_key else self.books.values())
        return [p for b in books for p in b.positions.values()]

    def state(self) -> dict[str, Any]:
        """A JSON-ready view for `GET /sim/state`."""
        sessions = []
        for key, book in self.books.items():
            session = book.session
            sessions.append(
                {
                    "api_key": key,
                    "connected": session is not None and not session.closed,
                    "session_id": None if session is None else session.session_id,
                    "wallets": list(book.wallets),
                    "last_configure": book.last_configure,
                    "strategy": None
                    if session is None or session.last_configure is None
                    else session.last_configure.get("strategy"),
                    "received": [] if session is None else [m.get("type") for m in session.received],
                }
            )
        positions = [
            {
                "position_id": p.position_id,
                "api_key": p.api_key,
                "wallet_pubkey": p.wallet,
                "mint": p.mint,
                "token_account": p.token_account,
                "tokens": p.tokens,
                "original_tokens": p.original_tokens,
                "entry_quote_units": p.entry_quote_units,
                "exit_pending": p.exit_pending,
                "levels_fired": sorted(p.levels_fired),
                "mirror_source": p.mirror_source,
                # Exits liquidity_guard is holding back (reason, tokens).
                "exits_held": [
                    {"reason": e.reason, "sell_tokens": p.tokens if e.sell_tokens is None else e.sell_tokens}
                    for e in p.held
                ],
            }
            for p in self.positions()
        ]
        return {"sessions": sessions, "positions": positions, "mirror_results": list(self.mirror_results),
                "mirror_events": [{k: v for k, v in m.items() if k != "unsigned_tx_b64"} for m in self.mirror_sent]}

    # -- websocket handling ---------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != WS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no stream here; connect to {WS_PATH}\n")
        if time.monotonic() < self.faults.refuse_until:
            response = connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "stream temporarily unavailable (sandbox fault)\n"
            )
            response.headers["Retry-After"] = "1"
            return response
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        raw_key = connection.request.headers.get("x-api-key") if connection.request else None
        self.connection_attempts[raw_key or ""] += 1
        api_key = self.accounts.get(raw_key)
        if api_key is None:
            await self._refuse(connection, "invalid_api_key", "unknown or missing API key (x-api-key header)")
            return
        book = self.books.setdefault(api_key.key, KeyBook())
        current = book.session
        if current is not None and current.connection.state is not State.OPEN:
            self._end_session(current)  # closing already: its handler just has not finished
        if book.session is not None and not book.session.closed:
            await self._refuse(
                connection,
                SESSION_IN_USE_CODE,
                "this API key already has an open session (max_sessions_per_api_key is 1); "
                "close it or retry once it has ended",
            )
            return
        if self.faults.refuse_sessions > 0:
            self.faults.refuse_sessions -= 1
            await self._refuse(
                connection,
                self.faults.refuse_sessions_code,
                "this API key already has an open session (sandbox fault); retry shortly",
            )
            return
        session = Session(session_id=self._next_session_id, api_key=api_key, connection=connection)
        self._next_session_id += 1
        book.session = session
        writer = asyncio.create_task(self._write(session))
        try:
            if self.hello_first:
                await self._send_hello(session)
            await self._read(session, book)
        except ConnectionClosed:
            pass
        finally:
            session.closed = True
            if book.session is session:
                book.session = None
            session.outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer

    async def _refuse(self, connection: ServerConnection, code: str, message: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await connection.send(
                json.dumps({"type": "error", "code": code, "message": message}, separators=(",", ":"))
            )
            await connection.close(1008, code)

    async def _write(self, session: Session) -> None:
        while True:
            text = await session.outbox.get()
            if text is None:
                return
            try:
                await session.connection.send(text)
            except ConnectionClosed:
                return

    async def _send_hello(self, session: Session) -> None:
        if self.faults.delay_hello_s > 0:
            await asyncio.sleep(self.faults.delay_hello_s)
        tier_wallets = session.api_key.max_wallets_per_session
        session.send(
            {
                "type": "hello_ok",
                "session_id": session.session_id,
                "server_time_ms": self.now_ms(),
                "limits": {
                    "hi_capacity": HI_CAPACITY,
                    "pnl_flush_ms": self.pnl_flush_ms,
                    "max_positions_per_session": TIERS[session.api_key.tier]["max_positions_per_session"],
                    "max_wallets_per_session": tier_wallets,
                    "max_positions_per_wallet": TIERS[session.api_key.tier]["max_positions_per_wallet"],
                    "max_sessions_per_api_key": 1,
                    "max_watch_wallets_per_session": WATCH_SLOTS[session.api_key.tier],
                },
            }
        )
        session.hello_sent = True
        if self.faults.garbage_pending:
            self.faults.garbage_pending = False
            session.send("}{ this is not json")

    async def _read(self, session: Session, book: KeyBook) -> None:
        free = session.api_key.tier == "free"
        while True:
            try:
                if free:
                    frame = await asyncio.wait_for(session.connection.recv(), self.free_inactivity_timeout_s)
                else:
                    frame = await session.connection.recv()
            except TimeoutError:
                session.error("inactivity_timeout", "free tier session closed after inactivity; reconnect")
                await asyncio.sleep(0)
                await self._drain_and_close(session, 1000, "inactivity")
                return
            if isinstance(frame, bytes):
                session.error("invalid_message", "binary frames are not part of the protocol")
                continue
            try:
                message = json.loads(frame)
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    raise ProtocolError("invalid_message", "a message is a JSON object with a string type")
                session.received.append(message)
                await self._dispatch(session, book, message)
            except json.JSONDecodeError as exc:
                session.error("invalid_message", f"not JSON: {exc}")
            except ProtocolError as exc:
                session.error(exc.code, exc.message)
            except Exception as exc:  # a sandbox bug answers an error instead of dropping the session
                log.exception("stream could not handle %r", frame[:200])
                session.error("internal_error", f"the sandbox stream failed on that message: {exc}")

    async def _drain_and_close(self, session: Session, code: int, reason: str) -> None:
        # Let the writer send what is queued (the error) before the close frame.
        for _ in range(100):
            if session.outbox.empty():
                break
            await asyncio.sleep(0)
        self._end_session(session)
        await session.connection.close(code, reason)

    def _end_session(self, session: Session) -> None:
        """Frees the key's one session slot at once, so a reconnect is not refused as a second one."""
        session.closed = True
        book = self.books.get(session.api_key.key)
        if book is not None and book.session is session:
            book.session = None

    # -- client messages ------------------------------------------------------------------

    async def _dispatch(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "configure":
            await self._configure(session, book, message)
            return
        if kind == "ping":
            session.send({"type": "pong", "server_time_ms": self.now_ms()})
            return
        if not session.configured:
            raise ProtocolError("invalid_message", f"send configure before {kind}")
        handler = self._client_messages.get(kind)
        if handler is None:
            raise ProtocolError("invalid_message", f"unknown message type {kind!r}")
        handler(session, book, message)

    @property
    def _client_messages(self) -> dict[str, Callable[[Session, KeyBook, dict[str, Any]], None]]:
        """What a configured session may send, beside configure and ping."""
        return {
            "update_strategy": self._on_update_strategy,
            "update_wallets": self._on_update_wallets,
            "update_position_strategy": self._on_update_position_strategy,
            "close_position": self._on_close_position,
            "request_exit_signal": self._on_exit_request,
            "sell_now": self._on_exit_request,
            "update_watch_wallets": self._on_update_watch_wallets,
            "mirror_buy_result": self._on_mirror_buy_result,
        }

    def _on_update_strategy(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        session.strategy = Strategy.from_wire(message.get("strategy"), session.deadline_timeout_sec)
        for position in book.positions.values():
            if position.override is None:
                position.rearm()
        self._evaluate_all(session, book)

    def _on_update_wallets(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        wallets = self._checked_wallets(session, message)
        self._set_wallets(session, book, wallets)

    def _on_update_position_strategy(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        position = self._find_position(book, message, require_id=True)
        position.override = Strategy.from_wire(message.get("strategy"), session.deadline_timeout_sec)
        position.rearm()
        self._evaluate(session, position)

    def _on_close_position(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        position = self._find_position(book, message)
        del book.positions[position.position_id]
        book.closed_by_user[(position.wallet, position.mint)] = position.tokens
        session.send(self._position_closed(position, "closed_by_user"))

    def _on_exit_request(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        position = self._find_position(book, message)
        slippage = message.get("slippage_bps")
        if slippage is not None and (
            isinstance(slippage, bool) or not isinstance(slippage, int) or not 0 < slippage <= 10_000
        ):
            raise ProtocolError("invalid_message", "slippage_bps must be an integer in 1..10000")
        position.rearm()
        reason = "sell_now" if message["type"] == "sell_now" else "manual"
        self._send_exit(session, position, Exit(reason), slippage_bps=slippage)

    def _on_update_watch_wallets(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        book.watch_wallets = self._checked_watch_wallets(session, message)
        # A wallet dropped from the list is forgotten: listed again, it is re-enabled afresh.
        listed = {str(w["pubkey"]) for w in book.watch_wallets}
        for watched in list(book.mirror_disabled):
            if watched not in listed:
                book.mirror_disabled.discard(watched)
                book.mirror_losses.pop(watched, None)

    def _on_mirror_buy_result(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        mint, success = message.get("mint"), message.get("success")
        if not isinstance(mint, str) or not isinstance(success, bool):
            raise ProtocolError("invalid_message", "mirror_buy_result needs mint (string) and success (boolean)")
        self.mirror_results.append({"api_key": session.api_key.key, "mint": mint, "success": success})
        if not success:
            # a buy that never went out holds no slot: its cooldown and pending tag are cleared
            for key, watched in list(book.mirror_pending.items()):
                if key[1] == mint:
                    del book.mirror_pending[key]
                    book.mirror_last_buy_ms.pop(watched, None)

    def _checked_wallets(self, session: Session, message: dict[str, Any]) -> list[str]:
        raw = message.get("wallet_pubkeys", message.get("wallet_pubkey"))
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(w, str) for w in raw):
            raise ProtocolError("invalid_message", "wallet_pubkeys must be a list of strings")
        wallets = list(dict.fromkeys(raw))
        limit = session.api_key.max_wallets_per_session
        if len(wallets) > limit:
            raise ProtocolError(
                "capacity_exceeded",
                f"{len(wallets)} wallets requested; the {session.api_key.tier} tier allows {limit} per session",
            )
        for wallet in wallets:
            if not self.accounts.is_registered(session.api_key.key, wallet):
                raise ProtocolError(
                    "wallet_not_registered",
                    f"wallet {wallet} is not registered for this API key (POST /v1/wallets/register)",
                )
        return wallets

    def _checked_watch_wallets(self, session: Session, message: dict[str, Any]) -> list[dict[str, Any]]:
        raw = message.get("watch_wallets", [])
        if raw is None:
            raw = []
        if not isinstance(raw, list) or not all(isinstance(w, dict) and isinstance(w.get("pubkey"), str) for w in raw):
            raise ProtocolError("invalid_message", "watch_wallets must be a list of {pubkey, auto_buy?}")
        limit = WATCH_SLOTS[session.api_key.tier]
        if len(raw) > limit:
            raise ProtocolError(
                "capacity_exceeded",
                f"{len(raw)} watch wallets requested; the {session.api_key.tier} tier allows {limit}",
            )
        for entry in raw:
            auto = entry.get("auto_buy")
            if auto is None:
                continue
            amount = auto.get("amount_quote_units") if isinstance(auto, dict) else None
            if (not isinstance(auto, dict) or not isinstance(auto.get("wallet_pubkey"), str)
                    or isinstance(amount, bool) or not isinstance(amount, int) or amount < 0):
                raise ProtocolError("invalid_message", "auto_buy needs wallet_pubkey and amount_quote_units >= 0")
        return [dict(w) for w in raw]

    async def _configure(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        wallets = self._checked_wallets(session, message)
        book.watch_wallets = self._checked_watch_wallets(session, message)
        mirror = message.get("mirror_config")
        if mirror is not None and not isinstance(mirror, dict):
            raise ProtocolError("invalid_message", "mirror_config must be an object")
        book.mirror_config = dict(mirror or {})
        deadline = message.get("deadline_timeout_sec", 0) or 0
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline < 0:
            raise ProtocolError("invalid_strategy", "deadline_timeout_sec must be >= 0")
        strategy = Strategy.from_wire(message.get("strategy"), deadline_timeout_sec=float(deadline))
        send_mode = message.get("send_mode")
        if send_mode is not None and send_mode not in SEND_MODES:
            raise ProtocolError("invalid_message", f"send_mode must be one of {', '.join(SEND_MODES)}")
        tip = message.get("tip_lamports")
        if tip is not None and (isinstance(tip, bool) or not isinstance(tip, int) or tip < 0):
            raise ProtocolError("invalid_message", "tip_lamports must be a non-negative integer")
        session.strategy = strategy
        session.send_mode = send_mode
        session.tip_lamports = tip
        session.deadline_timeout_sec = float(deadline)
        session.last_configure = message
        book.last_configure = message
        if not session.hello_sent:
            await self._send_hello(session)
        if not session.configured:
            # position_id is unique only within a session: a new session numbers the positions it
            # re-announces afresh (token_account is what identifies a position across sessions).
            renumbered: dict[int, Position] = {}
            for position in book.positions.values():
                position.position_id = self._next_position_id
                self._next_position_id += 1
                renumbered[position.position_id] = position
            book.positions = renumbered
        session.configured = True
        # Per-position overrides belong to the connection: the client re-applies them.
        for position in book.positions.values():
            position.override = None
            position.rearm()
        self._set_wallets(session, book, wallets, resend=True)

    def _set_wallets(self, session: Session, book: KeyBook, wallets: list[str], resend: bool = False) -> None:
        old = set(session.wallets)
        session.wallets = wallets
        book.wallets = list(wallets)
        slot = self.chain_slot()
        for position in list(book.positions.values()):
            if position.wallet not in wallets:
                continue  # kept for when the wallet comes back; not reported meanwhile
            held = self.token_balance(position.wallet, position.mint)
            if held == 0:
                del book.positions[position.position_id]
                session.send(self._position_closed(position, "sold"))
            elif held != position.tokens or resend:
                if held > position.tokens:
                    # Bought more while nobody was listening: the position grows with its cost.
                    position.entry_quote_units += self._cost_paid.pop((position.wallet, position.mint), 0)
                    position.original_tokens += held - position.tokens
                    position.ladder_remaining += held - position.tokens
                position.tokens = held
                position.ladder_remaining = min(position.ladder_remaining, held)
                session.send(self._balance_update(position.wallet, position.mint, held, slot))
                if resend:
                    session.send(self._position_opened(position))
        for wallet in wallets:
            if wallet in old and not resend:
                continue
            for holding in self.holdings(wallet):
                if any(p.wallet == wallet and p.mint == holding["mint"] for p in book.positions.values()):
                    continue
                if book.ignores(wallet, holding["mint"], holding["amount"]):
                    continue
                self._open_position(session, book, wallet, holding["mint"], holding["amount"])
        self._evaluate_all(session, book)

    def _find_position(self, book: KeyBook, message: dict[str, Any], require_id: bool = False) -> Position:
        position_id = message.get("position_id")
        token_account = message.get("token_account")
        if require_id and position_id is None:
            raise ProtocolError("invalid_message", "position_id is required")
        if (position_id is None) == (token_account is None):
            raise ProtocolError("invalid_message", "give exactly one of position_id and token_account")
        if position_id is not None:
            if isinstance(position_id, bool) or not isinstance(position_id, int):
                raise ProtocolError("invalid_message", "position_id must be an integer")
            position = book.positions.get(position_id)
            if position is None:
                raise ProtocolError("unknown_position", f"no open position {position_id}")
            return position
        for position in book.positions.values():
            if position.token_account == token_account:
                return position
        raise ProtocolError("unknown_position", f"no open position for token account {token_account}")

    # -- chain events -----------------------------------------------------------------------

    def _on_chain_event(self, event: Any) -> None:
        # Chain callbacks arrive mid-operation; handle them once the chain call has finished.
        self._events.append(event)
        if self._events_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: processed at the next flush()
        self._events_scheduled = True
        loop.call_soon(self.process_events)

    def process_events(self) -> None:
        """Applies queued chain events now (also run by `flush()`)."""
        self._events_scheduled = False
        while self._events:
            event = self._events.popleft()
            try:
                self._apply_event(event)
            except Exception:  # one bad event must not stall the stream
                log.exception("stream could not apply chain event %r", event)

    def _apply_event(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "TradeExecuted":
            self._on_trade(event)
        elif kind == "TokenBalanceChanged":
            self._on_balance(event)
        elif kind == "PoolChanged":
            self._on_pool(event)

    def _on_trade(self, event: Any) -> None:
        wallet, mint = str(event.wallet), str(event.mint)
        side = str(event.side)
        sol = int(event.sol_amount)  # in the pool's quote units (lamports, or USD1 base units)
        tokens = int(event.token_amount)
        if side == "buy":
            self._cost_paid[(wallet, mint)] = self._cost_paid.get((wallet, mint), 0) + sol
            for session in self.live_sessions():
                if session.configured:
                    self._mirror(session, self.books[session.api_key.key], wallet, mint, sol)
        else:
            self._proceeds[(wallet, mint)] = self._proceeds.get((wallet, mint), 0) + sol
        now = self.now_ms()
        price = int(event.price)
        for session in self.live_sessions():
            book = self.books[session.api_key.key]
            for position in book.positions.values():
                if position.mint != mint or position.wallet not in session.wallets:
                    continue
                tick: dict[str, Any] = {
                    "type": "trade_tick",
                    "position_id": position.position_id,
                    "time_ms": now,
                    "side": side,
                    "token_amount": tokens,
                    "quote_amount": sol,
                    "price_quote": price,
                    "maker": wallet,
                }
                signature = getattr(event, "signature", None)
                if signature:
                    tick["tx_signature"] = str(signature)
                session.send(tick)

    def _on_balance(self, event: Any) -> None:
        wallet, mint = str(event.wallet), str(event.mint)
        amount = int(event.amount)
        slot = self.chain_slot()
        for session in self.live_sessions():
            if not session.configured or wallet not in session.wallets:
                continue
            book = self.books[session.api_key.key]
            position = next(
                (p for p in book.positions.values() if p.wallet == wallet and p.mint == mint), None
            )
            if position is None:
                if not self.tradable(mint):
                    continue  # no market for it (USD1 is a quote asset): never a position
                if amount > 0 and not book.ignores(wallet, mint, amount):
                    self._open_position(session, book, wallet, mint, amount)
                elif amount == 0:
                    book.ignores(wallet, mint, amount)
                continue
            session.send(self._balance_update(wallet, mint, amount, slot))
            if amount == 0:
                del book.positions[position.position_id]
                session.send(self._position_closed(position, "sold"))
                self._mirror_closed(session, book, position)
                continue
            if amount > position.tokens:
                # A top-up buy: the position grows and so does what it cost.
                paid = self._cost_paid.pop((wallet, mint), 0)
                added = amount - position.tokens
                position.entry_quote_units += paid
                position.original_tokens += added
                position.ladder_remaining += added
            position.tokens = amount
            position.ladder_remaining = min(position.ladder_remaining, amount)
            self._evaluate(session, position)

    def _on_pool(self, event: Any) -> None:
        mint = str(event.mint)
        self._record_depth(mint)
        graduated = getattr(event, "reason", "") == "graduation"
        for session in self.live_sessions():
            book = self.books[session.api_key.key]
            for position in list(book.positions.values()):
                if position.mint != mint or position.wallet not in session.wallets:
                    continue
                self._evaluate(session, position, graduated_now=graduated)

    # -- opening and pricing ------------------------------------------------------------------

    def _open_position(self, session: Session, book: KeyBook, wallet: str, mint: str, amount: int) -> None:
        limits = TIERS[session.api_key.tier]
        in_session = [p for p in book.positions.values() if p.wallet in session.wallets]
        per_wallet = sum(p.wallet == wallet for p in in_session)
        full = None
        if per_wallet >= limits["max_positions_per_wallet"]:
            full = "max_positions_per_wallet"
        elif len(in_session) >= limits["max_positions_per_session"]:
            full = "max_positions_per_session"
        if full is not None:
            # rate-limits.mdx: an error, the session stays open; close positions to free capacity.
            if (wallet, mint) not in book.over_capacity:
                book.over_capacity.add((wallet, mint))
                session.error(
                    "capacity_exceeded",
                    f"{full} limit reached ({limits[full]} on the {session.api_key.tier} tier): "
                    f"{mint} is not tracked; close a position to free capacity",
                )
            return
        book.over_capacity.discard((wallet, mint))
        paid = self._cost_paid.pop((wallet, mint), None)
        if paid is None or paid <= 0:
            # Tokens that arrived without a buy we saw: value them at the curve as the entry.
            paid = self.quote_sell(mint, amount)
        position = Position(
            position_id=self._next_position_id,
            api_key=session.api_key.key,
            wallet=wallet,
            mint=mint,
            token_account=self.token_account(wallet, mint),
            token_program=self.token_program(mint),
            tokens=amount,
            original_tokens=amount,
            entry_quote_units=paid,
            opened_at_ms=self.now_ms(),
            slot=self.chain_slot(),
        )
        self._next_position_id += 1
        position.ladder_remaining = amount
        position.mirror_source = book.mirror_pending.pop((wallet, mint), None)
        book.positions[position.position_id] = position
        session.send(self._balance_update(wallet, mint, amount, position.slot))
        session.send(self._position_opened(position))

    # -- copy trading -------------------------------------------------------------------------

    def _mirror_failed(self, session: Session, watched: str, mint: str, reason: str) -> None:
        message = {"type": "mirror_buy_failed", "watched_wallet": watched, "mint": mint, "reason": reason}
        self.mirror_sent.append({"api_key": session.api_key.key, **message})
        session.send(message)

    def _mirror(self, session: Session, book: KeyBook, watched: str, mint: str, paid: int) -> None:
        """A watched wallet bought: apply mirror_config as documented, then a buy for the user or why not."""
        entry = next((w for w in book.watch_wallets if w.get("pubkey") == watched), None)
        if entry is None or watched in book.mirror_disabled or not self.tradable(mint):
            return
        auto = entry.get("auto_buy")
        if not isinstance(auto, dict):
            return  # watched without a buy: its trades are only reported
        config = {**MIRROR_DEFAULTS, **{k: v for k, v in book.mirror_config.items() if v is not None or k in (
            "min_liquidity_sol", "max_entry_drift_pct", "max_consecutive_losses")}}
        user_wallet = str(auto.get("wallet_pubkey"))
        market = self.market(mint)
        usd1 = market.get("quote") == "USD1"
        amount = int(auto.get("amount_usd1_units") or 0) if usd1 else int(auto.get("amount_quote_units") or 0)
        if amount <= 0:
            return  # no amount for this market's quote: skipped (the crate's rule for USD1)
        now = self.now_ms()
        # skip_creator_tokens: sandbox mints are made by the control API, never by a watched wallet.
        cooldown_ms = int(config.get("cooldown_sec") or 0) * 1000
        last = book.mirror_last_buy_ms.get(watched)
        if cooldown_ms and last is not None and now - last < cooldown_ms:
            self._mirror_failed(session, watched, mint, "cooldown_active")
            return
        mirrored = [p for p in book.positions.values() if p.mirror_source is not None]
        per_wallet = sum(p.mirror_source == watched for p in mirrored) + sum(
            w == watched for w in book.mirror_pending.values())
        cap = int(config.get("max_positions_per_wallet") or 0)
        if cap and per_wallet >= cap:
            self._mirror_failed(session, watched, mint, "max_positions_reached")
            return
        max_sol = float(config.get("max_active_sol") or 0.0)
        exposure = sum(p.basis() for p in mirrored if self.market(p.mint).get("quote") != "USD1")
        if max_sol and not usd1 and exposure + amount > max_sol * LAMPORTS_PER_SOL:
            self._mirror_failed(session, watched, mint, "max_exposure_reached")
            return
        minimum = config.get("min_liquidity_sol")
        if minimum is not None and not usd1 and market["quote_reserve"] < float(minimum) * LAMPORTS_PER_SOL:
            self._mirror_failed(session, watched, mint, "below_min_liquidity")
            return
        if not usd1 and self.chain.balance(user_wallet) < amount:
            self._mirror_failed(session, watched, mint, "insufficient_balance")
            return
        slippage = int(config.get("buy_slippage_bps") or DEFAULT_MIRROR_SLIPPAGE_BPS)
        tip = session.effective_tip()
        send_mode = session.effective_send_mode()
        hostile, self.faults.mirror_hostile = self.faults.mirror_hostile, None
        try:
            tip_account: Any = self.tip_account_for(send_mode) if tip else None
            if hostile == "steal_sol":  # a genuine buy whose "tip" sends half the wallet to a stranger
                tip, tip_account = self.chain.balance(user_wallet) // 2, self.chain.keypair("mirror:stranger").pubkey()
            tx = self.chain.build_buy_tx(
                user_wallet, mint, amount * 3 if hostile == "overspend" else amount, slippage, tip,
                tip_account, f"mirror:{send_mode}", tier=session.api_key.tier,
            )
        except Exception as exc:  # no route, bad wallet: the documented failure event
            log.info("mirror buy not built: %s", exc)
            self._mirror_failed(session, watched, mint, "no_route")
            return
        book.mirror_last_buy_ms[watched] = now
        book.mirror_pending[(user_wallet, mint)] = watched
        message: dict[str, Any] = {
            "type": "mirror_buy_signal",
            "session_id": session.session_id,
            "watched_wallet": watched,
            "mint": mint,
            "user_wallet": user_wallet,
            "amount_quote_units": amount,
            "input": "USD1" if usd1 else "SOL",
            "unsigned_tx_b64": base64.b64encode(bytes(tx)).decode(),
            "slippage_bps": slippage,
            "send_mode": send_mode,
            "tip_lamports": tip,
            "market_context": self._market_context(mint, user_wallet),
        }
        self.mirror_sent.append({"api_key": session.api_key.key, **message})
        session.send(message)

    def _mirror_closed(self, session: Session, book: KeyBook, position: Position) -> None:
        """A mirrored position sold out: a loss counts towards the breaker, a win resets it."""
        watched = position.mirror_source
        got = self._proceeds.pop((position.wallet, position.mint), 0)
        if watched is None:
            return
        if got >= position.entry_quote_units:
            book.mirror_losses[watched] = 0
            return
        losses = book.mirror_losses.get(watched, 0) + 1
        book.mirror_losses[watched] = losses
        limit = book.mirror_config.get("max_consecutive_losses")
        if isinstance(limit, int) and limit > 0 and losses >= limit and watched not in book.mirror_disabled:
            book.mirror_disabled.add(watched)
            message = {"type": "mirror_wallet_auto_disabled", "watched_wallet": watched,
                       "reason": "consecutive_loss_limit_reached", "loss_count": losses}
            self.mirror_sent.append({"api_key": session.api_key.key, **message})
            session.send(message)

    def _position_opened(self, position: Position) -> dict[str, Any]:
        info = self.mint_info(position.mint)
        market = self.market(position.mint)
        decimals = info["decimals"]
        price = self.spot_price(position.mint)
        message: dict[str, Any] = {
            "type": "position_opened",
            "position_id": position.position_id,
            "wallet_pubkey": position.wallet,
            "mint": position.mint,
            "token_account": position.token_account,
            "token_program": position.token_program,
            "tokens": position.tokens,
            "entry_quote_units": position.entry_quote_units,
            "market_context": self._market_context(position.mint, position.wallet),
            "slot": position.slot,
            "token_name": info["name"],
            "token_symbol": info["symbol"],
            "token_decimals": decimals,
            "token_price_quote": price,
            "market_cap_quote": self.market_cap(position.mint),
            "pool_liquidity_quote": market["quote_reserve"],
            "opened_at_ms": position.opened_at_ms,
        }
        if position.mirror_source:
            message["mirror_source"] = position.mirror_source
        return message

    def _balance_update(self, wallet: str, mint: str, amount: int, slot: int) -> dict[str, Any]:
        return {
            "type": "balance_update",
            "wallet_pubkey": wallet,
            "mint": mint,
            "token_account": self.token_account(wallet, mint),
            "token_program": self.token_program(mint),
            "tokens": amount,
            "slot": slot,
        }

    def _position_closed(self, position: Position, reason: str) -> dict[str, Any]:
        return {
            "type": "position_closed",
            "position_id": position.position_id,
            "wallet_pubkey": position.wallet,
            "mint": position.mint,
            "token_account": position.token_account,
            "reason": reason,
            "slot": self.chain_slot(),
            **({"mirror_source": position.mirror_source} if position.mirror_source else {}),
        }

    def _market_context(self, mint: str, wallet: str) -> dict[str, Any]:
        """market_context as api/reference/market-context.mdx spells it.

        SOL pools read as Pump.fun (bonding curve) then PumpSwap (graduated). USD1 pools read as
        Raydium Launchpad then Raydium CPMM, the venues that quote in USD1; their `quote_mint` is
        the USD1 mint and `user_quote_account` the wallet's USD1 token account.
        """
        if self.faults.unknown_market_type:
            market_type, self.faults.unknown_market_type = self.faults.unknown_market_type, None
            return {"market_type": market_type, market_type: {"pool": self.market(mint)["pool"]}}
        market = self.market(mint)
        if market["quote"] == "USD1":
            usd1 = self.usd1_mint()
            common = {
                "pool": market["pool"],
                "config": _derived_address("raydium-config", market["pool"]),
                "quote_mint": usd1,
                "user_quote_account": self.token_account(wallet, usd1),
            }
            if market["graduated"]:
                return {"market_type": "raydium_cpmm", "raydium_cpmm": common}
            launchpad = {**common, "platform": _derived_address("raydium-platform", "sandbox")}
            return {"market_type": "raydium_launchpad", "raydium_launchpad": launchpad}
        if market["graduated"]:
            return {"market_type": "pump_swap", "pumpswap": {"pool": market["pool"]}}
        return {"market_type": "pump_fun", "pumpfun": {}}

    # -- strategy engine --------------------------------------------------------------------

    def _evaluate_all(self, session: Session, book: KeyBook) -> None:
        for position in list(book.positions.values()):
            if position.wallet in session.wallets:
                self._evaluate(session, position)

    def _evaluate(self, session: Session, position: Position, graduated_now: bool = False) -> None:
        strategy = position.override or session.strategy
        if strategy is None or position.tokens <= 0:
            return
        proceeds = self.quote_sell(position.mint, position.tokens)
        decided = position.held + self.decide_exits(
            strategy,
            position,
            proceeds,
            graduated_now=graduated_now,
            deadline_timeout_sec=session.deadline_timeout_sec,
        )
        position.held = []
        for exit_ in decided:
            if strategy.liquidity_guard and not self._liquidity_allows(position, exit_):
                position.held.append(exit_)
                if position.held_since_ms is None:
                    position.held_since_ms = self.now_ms()
                continue
            self._send_exit(session, position, exit_)
        if not position.held:
            position.held_since_ms = None

    def _liquidity_allows(self, position: Position, exit_: Exit) -> bool:
        """liquidity_guard: may this exit go out now?

        The docs: the signal is deferred while the pool cannot absorb the sell at a reasonable
        slippage, until liquidity improves or a timeout forces the exit. Here "reasonable" is the
        slippage the exit transaction is built with (`default_slippage_bps`), and the timeout is
        `liquidity_guard_timeout_ms` of sandbox time from when the first exit was held.
        """
        if (
            position.held_since_ms is not None
            and self.now_ms() - position.held_since_ms >= self.liquidity_guard_timeout_ms
        ):
            return True
        sell = position.tokens if exit_.sell_tokens is None else exit_.sell_tokens
        return sell <= self.max_tokens_within(position.mint, self.default_slippage_bps)

    def decide_exits(
        self,
        strategy: Strategy,
        position: Position,
        proceeds: int,
        graduated_now: bool = False,
        deadline_timeout_sec: float = 0.0,
    ) -> list[Exit]:
        """The exits this price fires for the position, marking them fired."""
        basis = position.basis()
        profit_pct = (proceeds - basis) * 100.0 / basis if basis > 0 else 0.0
        if position.peak_profit_pct is None or profit_pct > position.peak_profit_pct:
            position.peak_profit_pct = profit_pct
        # The docs' table: a 5 % trail is "not active" at 3 % profit and active at 8 %: it arms once
        # the peak profit reaches the trail, so it can only lock in a gain.
        if strategy.trailing_stop_pct > 0 and position.peak_profit_pct >= strategy.trailing_stop_pct:
            position.trail_armed = True
        if profit_pct >= 0:
            position.breakeven_armed = True
        if position.exit_pending is None:
            reason = self._full_exit_reason(strategy, position, profit_pct, graduated_now)
            if (
                reason is None
                and deadline_timeout_sec > 0
                and self.now_ms() - position.opened_at_ms >= deadline_timeout_sec * 1000
            ):
                reason = "deadline"
            if reason is not None:
                position.exit_pending = reason
                return [Exit(reason)]
        exits: list[Exit] = []
        order = sorted(
            range(len(strategy.take_profit_levels)), key=lambda i: strategy.take_profit_levels[i].profit_pct
        )
        for index in order:
            level = strategy.take_profit_levels[index]
            if index in position.levels_fired:
                continue
            if index not in position.level_peaks and profit_pct < level.profit_pct:
                continue
            if level.trailing_stop_pct > 0:
                # The level arms a trailing stop instead of selling: it sells once profit falls that
                # many points from its peak since the level was reached.
                peak = max(position.level_peaks.get(index, profit_pct), profit_pct)
                position.level_peaks[index] = peak
                if peak - profit_pct < level.trailing_stop_pct:
                    continue
            remaining = min(position.ladder_remaining, position.tokens)
            if level.sell_pct >= 100:
                sell = remaining
            else:
                sell = math.floor(remaining * level.sell_pct / 100)
            if strategy.liquidity_guard and index != order[-1]:
                # What the pool cannot take now stays for the next level.
                sell = min(sell, self.max_tokens_within(position.mint, self.default_slippage_bps))
            position.levels_fired.add(index)
            if sell <= 0:
                continue
            position.ladder_remaining = remaining - sell
            exits.append(Exit("take_profit", sell_tokens=sell, level_index=index))
        return exits

    def _full_exit_reason(
        self, strategy: Strategy, position: Position, profit_pct: float, graduated_now: bool
    ) -> str | None:
        if graduated_now and strategy.sell_on_graduation and not position.graduation_fired:
            position.graduation_fired = True
            return "graduation"
        if strategy.stop_loss_pct > 0 and profit_pct <= -strategy.stop_loss_pct:
            return "stop_loss"
        peak = position.peak_profit_pct if position.peak_profit_pct is not None else profit_pct
        if position.trail_armed and peak - profit_pct >= strategy.trailing_stop_pct > 0:
            return "trailing_stop"
        # The docs' table: armed at breakeven (profit >= 0), fires once profit falls the trail below it.
        if (
            strategy.breakeven_trail_pct > 0
            and position.breakeven_armed
            and profit_pct <= -strategy.breakeven_trail_pct
        ):
            return "breakeven_trail"
        # With a ladder, target_profit_pct still applies as a hard cap on what the levels left
        # (the docs' "Exit Ladder: How it works", point 4).
        if strategy.target_profit_pct > 0 and profit_pct >= strategy.target_profit_pct:
            return "take_profit"
        return None

    # -- exit signals -----------------------------------------------------------------------

    def _send_exit(
        self, session: Session, position: Position, exit_: Exit, slippage_bps: int | None = None
    ) -> None:
        sell = position.tokens if exit_.sell_tokens is None else exit_.sell_tokens
        if sell <= 0:
            return
        if exit_.unsigned_tx_b64 is not None:
            unsigned = exit_.unsigned_tx_b64
        else:
            send_mode = session.effective_send_mode()
            unsigned = self.build_sell_tx(
                position.wallet,
                position.mint,
                sell,
                slippage_bps or self.default_slippage_bps,
                session.effective_tip(),
                f"{exit_.reason}:{position.position_id}",
                send_mode=send_mode,
                tier=session.api_key.tier,
            )
        proceeds = self.quote_sell(position.mint, position.tokens)
        message: dict[str, Any] = {
            "type": "exit_signal_with_tx",
            "session_id": session.session_id,
            "position_id": position.position_id,
            "wallet_pubkey": position.wallet,
            "mint": position.mint,
            "token_account": position.token_account,
            "token_program": position.token_program,
            "position_tokens": position.tokens,
            "profit_units": proceeds - position.basis(),
            "reason": exit_.reason,
            "triggered_at_ms": self.now_ms(),
            "market_context": self._market_context(position.mint, position.wallet),
            "unsigned_tx_b64": unsigned,
        }
        if exit_.sell_tokens is not None:
            message["sell_tokens"] = sell
        if exit_.level_index is not None:
            message["level_index"] = exit_.level_index
        if position.mirror_source:
            message["mirror_source"] = position.mirror_source
        session.send(message)

    # -- periodic work ------------------------------------------------------------------------

    def flush(self) -> None:
        """Applies pending chain events, then sends due pnl_update and liquidity_snapshot messages."""
        self.process_events()
        now = self.now_ms()
        for session in self.live_sessions():
            if not session.configured:
                continue
            book = self.books[session.api_key.key]
            for position in list(book.positions.values()):
                if position.wallet not in session.wallets:
                    continue
                self._evaluate(session, position)
                proceeds = self.quote_sell(position.mint, position.tokens)
                pnl = (proceeds, position.tokens)
                if pnl != position.last_pnl:
                    position.last_pnl = pnl
                    price = self.spot_price(position.mint)
                    session.send(
                        {
                            "type": "pnl_update",
                            "position_id": position.position_id,
                            "profit_units": proceeds - position.basis(),
                            "proceeds_units": proceeds,
                            "server_time_ms": now,
                            "token_price_quote": price,
                            "market_cap_quote": self.market_cap(position.mint),
                        }
                    )
                if session.api_key.tier != "free" and (
                    position.last_snapshot_ms is None
                    or now - position.last_snapshot_ms >= self.liquidity_interval_ms
                ):
                    position.last_snapshot_ms = now
                    session.send(self.liquidity_snapshot(position))

    def liquidity_snapshot(self, position: Position) -> dict[str, Any]:
        self._record_depth(position.mint)
        return {
            "type": "liquidity_snapshot",
            "position_id": position.position_id,
            "bands": [
                {
                    "slippage_bps": bps,
                    "max_tokens": self.max_tokens_within(position.mint, bps),
                    "coverage_pct": self._coverage(position, bps),
                }
                for bps in BAND_SLIPPAGE_BPS
            ],
            "liquidity_trend": self.liquidity_trend(position.mint),
            "server_time_ms": self.now_ms(),
        }

    def max_tokens_within(self, mint: str, slippage_bps: int) -> int:
        # Selling d into a constant-product pool averages price y/(y+d) of spot: solve for d.
        token_reserve = self.market(mint)["token_reserve"]
        s = slippage_bps / 10_000
        return math.floor(token_reserve * s / (1 - s))

    def _coverage(self, position: Position, slippage_bps: int) -> float:
        if position.tokens <= 0:
            return 100.0
        return round(
            min(100.0, self.max_tokens_within(position.mint, slippage_bps) * 100.0 / position.tokens), 2
        )

    def _record_depth(self, mint: str) -> None:
        market = self.market(mint)
        depth = math.sqrt(market["sol_reserve"] * market["token_reserve"])
        history = self._depth_history.setdefault(mint, deque(maxlen=512))
        now = self.now_ms()
        if history and history[-1][1] == depth:
            return
        # Every change is kept, even within one sandbox millisecond: a drain must show at once.
        history.append((now, depth))
        # Keep one sample at or before the window's start so the trend has something to compare.
        while len(history) > 2 and history[1][0] <= now - self.trend_window_ms:
            history.popleft()

    def liquidity_trend(self, mint: str) -> str:
        """growing / stable / draining: pool depth now against `trend_window_ms` ago."""
        history = self._depth_history.get(mint)
        if not history or len(history) < 2:
            return "stable"
        now = self.now_ms()
        then = history[0][1]
        # A window that has moved past every change but the last reads as stable.
        if len(history) == 2 and history[1][0] <= now - self.trend_window_ms:
            then = history[1][1]
        if then <= 0:
            return "stable"
        change = (history[-1][1] - then) / then
        if change >= TREND_THRESHOLD:
            return "growing"
        if change <= -TREND_THRESHOLD:
            return "draining"
        return "stable"

    # -- the chain, through one narrow seam ------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.chain.now_ms())

    def chain_slot(self) -> int:
        return int(self.chain.slot)

    def token_balance(self, wallet: str, mint: str) -> int:
        return int(self.chain.token_balance(wallet, mint))

    def holdings(self, wallet: str) -> list[dict[str, Any]]:
        """Tokens the wallet holds in a market the stream trades (USD1 itself is a quote, not a position)."""
        return [
            {"mint": str(mint), "amount": int(amount)}
            for mint, amount in self.chain.token_balances(wallet).items()
            if int(amount) > 0 and self.tradable(str(mint))
        ]

    def tradable(self, mint: str) -> bool:
        try:
            self.chain.pool(mint)
        except UnknownMint:
            return False
        return True

    def token_account(self, wallet: str, mint: str) -> str:
        return str(self.chain.token_account(wallet, mint))

    def token_program(self, mint: str) -> str:
        return str(self.chain.token_program(mint))

    def mint_info(self, mint: str) -> dict[str, Any]:
        info = self.chain.mint_info(mint)
        return {
            "name": str(info.name),
            "symbol": str(info.symbol),
            "decimals": int(info.decimals),
            "supply": int(info.supply),
        }

    def market(self, mint: str) -> dict[str, Any]:
        pool = self.chain.pool(mint)
        return {
            "sol_reserve": int(pool.sol_reserve),
            "quote": str(pool.quote),
            # Quote units: lamports in SOL pools, USD1 base units in USD1 pools.
            "quote_reserve": int(pool.quote_reserve),
            "token_reserve": int(pool.token_reserve),
            "graduated": bool(pool.graduated),
            "pool": str(pool.address),
        }

    def usd1_mint(self) -> str:
        return str(self.chain.usd1_mint)

    def tip_account_for(self, send_mode: str) -> str:
        """The tip account an exit for this send mode pays (Helius Sender and Astralane each have
        their own among the chain's tip accounts); `tip_account` overrides it."""
        if self.tip_account is not None:
            return self.tip_account
        accounts = list(self.chain.tip_accounts)
        return str(accounts[SEND_MODES.index(send_mode) % len(accounts)])

    def quote_sell(self, mint: str, amount: int) -> int:
        if amount <= 0:
            return 0
        return int(self.chain.quote_sell(mint, amount))

    def spot_price(self, mint: str) -> int:
        """Lamports per whole token at the pool's spot price."""
        return int(self.chain.price(mint))

    def market_cap(self, mint: str) -> int:
        return int(self.chain.market_cap(mint))

    def build_sell_tx(
        self,
        wallet: str,
        mint: str,
        amount: int,
        slippage_bps: int,
        tip_lamports: int,
        memo_tag: str,
        *,
        send_mode: str = DEFAULT_SEND_MODE,
        tier: str = "professional",
    ) -> str:
        """The exit transaction: the router sells `amount`, the routing fee for `tier` comes off the
        proceeds, and a tipped send mode adds its tip transfer."""
        tx = self.chain.build_sell_tx(
            wallet,
            mint,
            amount,
            slippage_bps,
            tip_lamports,
            self.tip_account_for(send_mode) if tip_lamports else None,
            memo_tag,
            tier=tier,
        )
        return base64.b64encode(bytes(tx)).decode()
