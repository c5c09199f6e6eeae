"""The sandbox LaserSell Exit Intelligence Stream.

A websockets server at `/v1/ws` that speaks the LaserSell stream wire protocol closely enough that
the official `lasersell_sdk.stream` client works against it unmodified (market_context sub-objects go
under the keys that SDK reads: `pumpfun`, `pumpswap`). It watches the configured
wallets on the sandbox `Chain`, opens positions when tokens arrive, prices them on the pool curve,
runs each session's exit strategy and hands out real unsigned exit transactions.

Readings of the semantics the public sources leave open (the bot shows the user what they set):
- Profit is measured against the cost basis of the tokens still held:
  `basis = entry_quote_units * tokens / original_tokens`, `profit_units = proceeds - basis`, where
  `proceeds` is what selling every held token on the curve would pay right now.
- `trailing_stop_pct`: exit when proceeds fall that many percent below their peak since the position
  opened (the peak starts at the opening value).
- `breakeven_trail_pct`: once profit has reached that many percent, exit when it falls back to 0.
- `take_profit_levels`: each level's `sell_pct` is of the ORIGINAL position; a level fires once when
  profit reaches `profit_pct` (or, with its own `trailing_stop_pct`, when proceeds then fall that many
  percent from their peak since the level was reached). With levels present `target_profit_pct` is
  ignored. The level that brings the total to 100 % sells everything left.
- `liquidity_guard`: an exit (`liquidity_guard`) when the pool's liquidity trend is `draining` and the
  500 bps band covers less than `liquidity_guard_coverage_pct` of the position.
- Liquidity bands: `max_tokens` is the most that can be sold with the average price no more than
  `slippage_bps` below the spot price (pool fee aside); the trend compares the pool's depth
  sqrt(sol_reserve * token_reserve) with its depth `trend_window_ms` of sandbox time earlier, so trades
  (which keep the product) read as stable and a drain reads as draining.
- `close_position` stops tracking without selling; the tokens are not re-opened as a position until
  the wallet sells out or buys more of that mint.
- Each automatic exit fires once. After a full exit fired, no other automatic full exit fires for that
  position until the trader asks (`request_exit_signal`) or changes the strategy; take-profit levels
  fire independently, once each.

Time (`server_time_ms`, `opened_at_ms`, snapshot pacing) is the chain's sandbox clock, so tests advance
it instead of sleeping. `flush()` emits due `pnl_update` and `liquidity_snapshot` messages; the server
runs it every `pnl_flush_ms` of real time only when started with `realtime=True` (the demo).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from sandbox.accounts import Accounts, ApiKey
from sandbox.chain import Chain

log = logging.getLogger(__name__)

WS_PATH = "/v1/ws"
HI_CAPACITY = 256
PNL_FLUSH_MS = 100
MAX_POSITIONS_PER_SESSION = 1000
MAX_POSITIONS_PER_WALLET = 100
BAND_SLIPPAGE_BPS = (100, 300, 500, 1000, 2000)
DEFAULT_SLIPPAGE_BPS = 500
# Helius Sender asks for at least 0.0002 SOL of tip; used when configure names a tipped send mode
# without tip_lamports.
DEFAULT_TIP_LAMPORTS = 200_000
TIPPED_SEND_MODES = ("helius_sender", "astralane")
SEND_MODES = ("rpc", "helius_sender", "astralane")
FREE_TIER_INACTIVITY_S = 45 * 60
TREND_THRESHOLD = 0.02
UNKNOWN_MARKET_TYPE = "moonshot_v9"


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
    def from_wire(cls, value: object) -> Strategy:
        """Validates a wire strategy; raises ProtocolError('invalid_strategy')."""
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
                raise ProtocolError("invalid_strategy", f"strategy.{name} must be >= 0")
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
        if stop >= 100:
            raise ProtocolError("invalid_strategy", "strategy.stop_loss_pct must be below 100")
        trailing = pct("trailing_stop_pct")
        if trailing >= 100:
            raise ProtocolError("invalid_strategy", "strategy.trailing_stop_pct must be below 100")
        breakeven = pct("breakeven_trail_pct")
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
        if not strategy.has_exit_condition():
            raise ProtocolError(
                "invalid_strategy",
                "strategy has no exit condition: set a take profit, stop loss, trailing stop, "
                "take-profit levels, breakeven trail, sell on graduation or liquidity guard",
            )
        return strategy

    def has_exit_condition(self) -> bool:
        return bool(
            self.target_profit_pct > 0
            or self.stop_loss_pct > 0
            or self.trailing_stop_pct > 0
            or self.take_profit_levels
            or self.breakeven_trail_pct > 0
            or self.sell_on_graduation
            or self.liquidity_guard
        )


def _parse_levels(raw: object) -> tuple[TakeProfitLevel, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProtocolError("invalid_strategy", "strategy.take_profit_levels must be an array")
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
        levels.append(TakeProfitLevel(**numbers))
    if sum(level.sell_pct for level in levels) > 100.0001:
        raise ProtocolError("invalid_strategy", "take_profit_levels sell more than 100% in total")
    # Levels fire in order of profit, whatever order the client listed them in.
    return tuple(levels)


# ---------------------------------------------------------------------------------------------
# Positions and sessions


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
    peak_proceeds: int = 0
    breakeven_armed: bool = False
    exit_pending: str | None = None
    levels_fired: set[int] = field(default_factory=set)
    level_peaks: dict[int, int] = field(default_factory=dict)
    graduation_fired: bool = False
    last_pnl: tuple[int, int] | None = None
    last_snapshot_ms: int | None = None

    def basis(self) -> int:
        if self.original_tokens <= 0:
            return 0
        return self.entry_quote_units * self.tokens // self.original_tokens

    def rearm(self) -> None:
        self.exit_pending = None
        self.breakeven_armed = False
        self.graduation_fired = False


@dataclass(frozen=True)
class Exit:
    reason: str
    sell_tokens: int | None = None
    level_index: int | None = None


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


@dataclass
class KeyBook:
    """What the server remembers for one API key across connections."""

    positions: dict[int, Position] = field(default_factory=dict)
    session: Session | None = None
    wallets: list[str] = field(default_factory=list)
    last_configure: dict[str, Any] | None = None
    # (wallet, mint) -> tokens held when the trader closed it: not re-opened until that changes.
    closed_by_user: dict[tuple[str, str], int] = field(default_factory=dict)

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
        liquidity_guard_coverage_pct: float = 50.0,
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
        self.liquidity_guard_coverage_pct = liquidity_guard_coverage_pct
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
            }
            for p in self.positions()
        ]
        return {"sessions": sessions, "positions": positions}

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
                "session_limit",
                "this API key already has an open session (one session per key on every tier)",
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
                    "max_positions_per_session": MAX_POSITIONS_PER_SESSION,
                    "max_wallets_per_session": tier_wallets,
                    "max_positions_per_wallet": MAX_POSITIONS_PER_WALLET,
                    "max_sessions_per_api_key": 1,
                    "max_watch_wallets_per_session": 0 if session.api_key.tier == "free" else 10,
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
        if kind == "update_strategy":
            session.strategy = Strategy.from_wire(message.get("strategy"))
            for position in book.positions.values():
                if position.override is None:
                    position.rearm()
            self._evaluate_all(session, book)
        elif kind == "update_wallets":
            wallets = self._checked_wallets(session, message)
            self._set_wallets(session, book, wallets)
        elif kind == "update_position_strategy":
            position = self._find_position(book, message, require_id=True)
            position.override = Strategy.from_wire(message.get("strategy"))
            position.rearm()
            self._evaluate(session, position)
        elif kind == "close_position":
            position = self._find_position(book, message)
            del book.positions[position.position_id]
            book.closed_by_user[(position.wallet, position.mint)] = position.tokens
            session.send(self._position_closed(position, "closed_by_user"))
        elif kind in ("request_exit_signal", "sell_now"):
            position = self._find_position(book, message)
            slippage = message.get("slippage_bps")
            if slippage is not None and (
                isinstance(slippage, bool) or not isinstance(slippage, int) or not 0 < slippage <= 10_000
            ):
                raise ProtocolError("invalid_message", "slippage_bps must be an integer in 1..10000")
            position.rearm()
            reason = "sell_now" if kind == "sell_now" else "manual"
            self._send_exit(session, position, Exit(reason), slippage_bps=slippage)
        elif kind in ("update_watch_wallets", "mirror_buy_result"):
            pass  # copy trading is not simulated; accepted so clients that send it keep working
        else:
            raise ProtocolError("invalid_message", f"unknown message type {kind!r}")

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
                "too_many_wallets",
                f"{len(wallets)} wallets requested; the {session.api_key.tier} tier allows {limit} per session",
            )
        for wallet in wallets:
            if not self.accounts.is_registered(session.api_key.key, wallet):
                raise ProtocolError(
                    "wallet_not_registered",
                    f"wallet {wallet} is not registered for this API key (POST /v1/wallets/register)",
                )
        return wallets

    async def _configure(self, session: Session, book: KeyBook, message: dict[str, Any]) -> None:
        wallets = self._checked_wallets(session, message)
        strategy = Strategy.from_wire(message.get("strategy"))
        send_mode = message.get("send_mode")
        if send_mode is not None and send_mode not in SEND_MODES:
            raise ProtocolError("invalid_message", f"send_mode must be one of {', '.join(SEND_MODES)}")
        tip = message.get("tip_lamports")
        if tip is not None and (isinstance(tip, bool) or not isinstance(tip, int) or tip < 0):
            raise ProtocolError("invalid_message", "tip_lamports must be a non-negative integer")
        session.strategy = strategy
        session.send_mode = send_mode
        session.tip_lamports = tip
        session.last_configure = message
        book.last_configure = message
        if not session.hello_sent:
            await self._send_hello(session)
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
                position.tokens = held
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
        sol = int(event.sol_amount)
        tokens = int(event.token_amount)
        if side == "buy":
            self._cost_paid[(wallet, mint)] = self._cost_paid.get((wallet, mint), 0) + sol
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
                if amount > 0 and not book.ignores(wallet, mint, amount):
                    self._open_position(session, book, wallet, mint, amount)
                elif amount == 0:
                    book.ignores(wallet, mint, amount)
                continue
            session.send(self._balance_update(wallet, mint, amount, slot))
            if amount == 0:
                del book.positions[position.position_id]
                session.send(self._position_closed(position, "sold"))
                continue
            if amount > position.tokens:
                # A top-up buy: the position grows and so does what it cost.
                paid = self._cost_paid.pop((wallet, mint), 0)
                added = amount - position.tokens
                position.entry_quote_units += paid
                position.original_tokens += added
            position.tokens = amount
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
        position.peak_proceeds = self.quote_sell(mint, amount)
        book.positions[position.position_id] = position
        session.send(self._balance_update(wallet, mint, amount, position.slot))
        session.send(self._position_opened(position))

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
            "market_context": self._market_context(position.mint),
            "slot": position.slot,
            "token_name": info["name"],
            "token_symbol": info["symbol"],
            "token_decimals": decimals,
            "token_price_quote": price,
            "market_cap_quote": self.market_cap(position.mint),
            "pool_liquidity_quote": market["sol_reserve"],
            "opened_at_ms": position.opened_at_ms,
        }
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
        }

    def _market_context(self, mint: str) -> dict[str, Any]:
        if self.faults.unknown_market_type:
            market_type, self.faults.unknown_market_type = self.faults.unknown_market_type, None
            return {"market_type": market_type, market_type: {"pool": self.market(mint)["pool"]}}
        market = self.market(mint)
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
        # Peaks are tracked per token held so a partial sell does not read as a crash.
        position.peak_proceeds = max(position.peak_proceeds, proceeds)
        for exit_ in self.decide_exits(strategy, position, proceeds, graduated_now=graduated_now):
            self._send_exit(session, position, exit_)

    def decide_exits(
        self, strategy: Strategy, position: Position, proceeds: int, graduated_now: bool = False
    ) -> list[Exit]:
        """The exits this price fires for the position, marking them fired."""
        basis = position.basis()
        profit_pct = (proceeds - basis) * 100.0 / basis if basis > 0 else 0.0
        exits: list[Exit] = []
        if strategy.breakeven_trail_pct > 0 and profit_pct >= strategy.breakeven_trail_pct:
            position.breakeven_armed = True
        if position.exit_pending is None:
            reason = self._full_exit_reason(strategy, position, proceeds, profit_pct, graduated_now)
            if reason is not None:
                position.exit_pending = reason
                return [Exit(reason)]
        order = sorted(
            range(len(strategy.take_profit_levels)), key=lambda i: strategy.take_profit_levels[i].profit_pct
        )
        sold_pct = sum(
            strategy.take_profit_levels[i].sell_pct
            for i in position.levels_fired
            if i < len(strategy.take_profit_levels)
        )
        for index in order:
            level = strategy.take_profit_levels[index]
            if (
                index in position.levels_fired
                or profit_pct < level.profit_pct
                and index not in position.level_peaks
            ):
                continue
            if level.trailing_stop_pct > 0:
                peak = max(position.level_peaks.get(index, 0), proceeds)
                position.level_peaks[index] = peak
                if proceeds > peak * (1 - level.trailing_stop_pct / 100):
                    continue
            position.levels_fired.add(index)
            sold_pct += level.sell_pct
            if sold_pct >= 99.999:
                sell = position.tokens
            else:
                sell = min(position.tokens, math.floor(position.original_tokens * level.sell_pct / 100))
            exits.append(Exit("take_profit", sell_tokens=sell, level_index=index))
        return exits

    def _full_exit_reason(
        self, strategy: Strategy, position: Position, proceeds: int, profit_pct: float, graduated_now: bool
    ) -> str | None:
        if graduated_now and strategy.sell_on_graduation and not position.graduation_fired:
            position.graduation_fired = True
            return "graduation"
        if strategy.stop_loss_pct > 0 and profit_pct <= -strategy.stop_loss_pct:
            return "stop_loss"
        if strategy.trailing_stop_pct > 0 and proceeds <= position.peak_proceeds * (
            1 - strategy.trailing_stop_pct / 100
        ):
            return "trailing_stop"
        if position.breakeven_armed and profit_pct <= 0:
            return "breakeven_trail"
        if (
            not strategy.take_profit_levels
            and strategy.target_profit_pct > 0
            and profit_pct >= strategy.target_profit_pct
        ):
            return "take_profit"
        if strategy.liquidity_guard:
            coverage = self._coverage(position, 500)
            if (
                self.liquidity_trend(position.mint) == "draining"
                and coverage < self.liquidity_guard_coverage_pct
            ):
                return "liquidity_guard"
        return None

    # -- exit signals -----------------------------------------------------------------------

    def _send_exit(
        self, session: Session, position: Position, exit_: Exit, slippage_bps: int | None = None
    ) -> None:
        sell = position.tokens if exit_.sell_tokens is None else exit_.sell_tokens
        if sell <= 0:
            return
        tip = 0
        if session.send_mode in TIPPED_SEND_MODES:
            tip = DEFAULT_TIP_LAMPORTS if session.tip_lamports is None else session.tip_lamports
        unsigned = self.build_sell_tx(
            position.wallet,
            position.mint,
            sell,
            slippage_bps or self.default_slippage_bps,
            tip,
            f"{exit_.reason}:{position.position_id}",
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
            "market_context": self._market_context(position.mint),
            "unsigned_tx_b64": unsigned,
        }
        if exit_.sell_tokens is not None:
            message["sell_tokens"] = sell
        if exit_.level_index is not None:
            message["level_index"] = exit_.level_index
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
                if (
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
        return [
            {"mint": str(mint), "amount": int(amount)}
            for mint, amount in self.chain.token_balances(wallet).items()
            if int(amount) > 0
        ]

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
            "token_reserve": int(pool.token_reserve),
            "graduated": bool(pool.graduated),
            "pool": str(pool.address),
        }

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
        self, wallet: str, mint: str, amount: int, slippage_bps: int, tip_lamports: int, memo_tag: str
    ) -> str:
        tx = self.chain.build_sell_tx(
            wallet,
            mint,
            amount,
            slippage_bps,
            tip_lamports,
            self.tip_account if tip_lamports else None,
            memo_tag,
        )
        return base64.b64encode(bytes(tx)).decode()
