"""One LaserSell stream connection for one API key: connect, configure, reconnect, prioritise.

Event-driven throughout: the reader is an `async for` over the socket, consumers wait on an
asyncio.Event, and an idle connection costs only websocket keepalive pings.

Configuration is never cached here. Every (re)connect asks the caller's `get_config` for the
current wallets and strategy, so an update made while the socket was down is applied by the next
`configure` (the official SDK re-sends the configure it started with).

Reconnects follow the official SDK's backoff (100 ms doubling to 2 s), with a little jitter, for
ever: only a refused API key stops the client. A session refused because the key is in use is
retried like any other failure (the old session frees its slot).

Positions across sessions: a `position_id` names a position only within one stream session, and
every reconnect is a new session. The client learns each session's ids from `position_opened`,
labels every event with the position's `token_account`, and addresses one-shot requests by token
account. Callers name positions by their own stable ids and give `position_account` to turn such
an id into the token account. Requests are sent only while connected (`False` otherwise): the
caller re-asks once the position is announced in the new session (an exit signal sent while the
socket was down is never re-sent by the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import re
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State

from bot.stream.events import MalformedMessage, StreamEvent, parse_event

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://stream.lasersell.io/v1/ws"

CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
NEEDS_ATTENTION = "needs_attention"
STOPPED = "stopped"

# Error codes that mean the key itself is refused: reconnecting would only be refused again.
_BAD_KEY_CODES = frozenset(
    {"invalid_api_key", "unauthorized", "forbidden", "api_key_invalid", "api_key_revoked", "invalid_key"}
)
_KEY_IN_USE_CODES = frozenset(
    {
        "session_limit",
        "too_many_sessions",
        "key_in_use",
        "api_key_in_use",
        "session_exists",
        "session_replaced",
        "session_displaced",
        "duplicate_session",
    }
)

# The official SDK's reconnect backoff: 100 ms, doubling, at most 2 s.
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
# Each delay is shortened by up to this share at random, so many users' streams dropped together
# by one server restart do not come back in lockstep.
BACKOFF_JITTER = 0.2
# An error followed this soon by the server hanging up is the reason the connection ended.
_REJECT_CLOSE_WINDOW = 5.0

# A pnl_update as the server writes it: the tag first (serde's internally tagged enum), then the id.
# A frame that matches is held raw and parsed only when handed out; anything else is parsed at once,
# so a frame this test gets wrong costs speed, never a message (the parse still decides its type).
_PNL_HEAD = re.compile(rb'\{\s*"type"\s*:\s*"pnl_update"\s*,\s*"position_id"\s*:\s*(\d{1,18})\s*[,}]')
_PNL_PREFIX = b'{"type":"pnl_update","position_id":'
# How often one position's PnL is handed out at most: the card is edited every few seconds (3 s), the
# live numbers are written every second and the chart keeps a sample per 3 s, so parsing every frame of
# a busy position buys nothing (a thousand positions handed out twice a second were a tenth of the CPU).
PNL_INTERVAL_S = 1.0
# While the socket keeps delivering, PnL waits for at least this many frames (and the noise hold time)
# so that an exit signal behind a long backlog is read and handed out first, however busy the machine.
NOISE_DEFER_MIN_FRAMES = 65_536
# Shed PnL is logged at most this often for the whole process (a thousand streams, one line).
_SHED_LOG_EVERY_S = 10.0
_shed_log: dict[str, float] = {"total": 0, "logged": 0, "at": -_SHED_LOG_EVERY_S}


def pnl_position_id(frame: bytes) -> int | None:
    """The position id of a frame that is certainly a pnl_update, without parsing it (else None)."""
    if frame.startswith(_PNL_PREFIX):
        end = len(_PNL_PREFIX)
        stop = frame.find(b",", end, end + 20)
        if stop < 0:
            stop = frame.find(b"}", end, end + 20)
        digits = frame[end:stop] if stop > 0 else b""
        if digits.isdigit() and (len(digits) == 1 or digits[0] != 0x30):
            return int(digits)
        return None
    match = _PNL_HEAD.match(frame)
    return int(match.group(1)) if match else None


def _note_shed(count: int, now: float) -> None:
    _shed_log["total"] += count
    if now - _shed_log["at"] >= _SHED_LOG_EVERY_S:
        log.warning(
            "overloaded: %d PnL update(s) shed so far (%d since the last note); only each position's "
            "newest is kept, exit signals are never shed",
            _shed_log["total"], _shed_log["total"] - _shed_log["logged"],
        )
        _shed_log["at"], _shed_log["logged"] = now, _shed_log["total"]


def pnl_shed_total() -> int:
    """PnL updates shed under load by every stream in this process since it started."""
    return int(_shed_log["total"])


class _TappedConnection(ClientConnection):
    """Hands each complete text message to `tap` as it comes off the socket, in order.

    The library's own path queues every message and wakes a reader task for each; at thousands of
    PnL frames a second that per-frame wake-up is most of the cost. Binary messages still take the
    library's path (the server sends none).

    Once the handshake is done and the library's parser stands between two frames (nothing buffered,
    no fragmented message open, no extension negotiated), complete unfragmented text frames are cut from
    the bytes here and tapped, without the library's frame objects and generator steps: they were a
    fifth of the bot's time under a flood. At any other frame (ping, pong, close, a fragment, binary, one
    over `max_size`, anything masked or with a reserved bit) the library takes the bytes over from that
    frame's first byte, so it always parses from a frame boundary and answers pings, closes and protocol
    errors as it always does; the cutting resumes once its parser stands between frames again.
    """

    tap: Callable[[bytes], None] | None = None
    _fast = False
    _partial = b""  # the start of a frame not complete yet (fast path)
    _fragments: list[bytes] | None = None  # a fragmented text message so far
    frames_cut = 0  # text frames cut here rather than by the library

    def process_event(self, event: Event) -> None:
        tap = self.tap
        if tap is not None and isinstance(event, Frame) and self.response is not None:
            # the library checked the frame (fragment order, size); put a fragmented message together here
            # so that it keeps its place among the messages tapped around it
            if event.opcode is Opcode.TEXT:
                if event.fin:
                    tap(bytes(event.data))
                else:
                    self._fragments = [bytes(event.data)]
                return
            if event.opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(event.data))
                if event.fin:
                    message, self._fragments = b"".join(self._fragments), None
                    tap(message)
                return
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        if self._fast:
            self._cut(self._partial + data if self._partial else data)
            return
        super().data_received(data)
        self._fast = self._at_frame_boundary()

    def _at_frame_boundary(self) -> bool:
        protocol = self.protocol
        if (
            self.tap is None or self.response is None or protocol.state is not State.OPEN or protocol.extensions
            or protocol.reader.buffer or protocol.cur_size is not None
        ):
            return False
        parser: Any = protocol.parser
        while getattr(parser, "gi_yieldfrom", None) is not None:
            parser = parser.gi_yieldfrom
        # waiting for the first byte of the next frame (a library whose parser looks otherwise keeps its own path)
        return getattr(getattr(parser, "gi_code", None), "co_name", "") == "at_eof"

    def _cut(self, buf: bytes) -> None:
        tap = self.tap
        assert tap is not None
        limit = self.protocol.max_size
        end_of_data = len(buf)
        pos = 0
        while pos < end_of_data:
            first = buf[pos]
            if first == 0x81 and end_of_data - pos < 2:
                break  # the rest of this frame's header is still to come
            second = buf[pos + 1] if first == 0x81 else 0
            length, head = second & 0x7F, 2
            if length == 126:
                if end_of_data - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end_of_data - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if first != 0x81 or second & 0x80 or (limit is not None and length > limit):
                # not an unfragmented, unmasked text frame within the size limit: from this frame boundary on the
                # library reads (it answers a ping, closes on a protocol error or an oversize frame at its header)
                self._fast, self._partial = False, b""
                super().data_received(buf[pos:])
                self._fast = self._at_frame_boundary()
                return
            end = pos + head + length
            if end > end_of_data:
                break
            self.frames_cut += 1
            tap(buf[pos + head : end])
            pos = end
        self._partial = buf[pos:] if pos < end_of_data else b""


class StreamUnavailable(RuntimeError):
    """The stream is not connected, so the message cannot be sent now."""


class StreamClosed(RuntimeError):
    """The client is stopped or needs attention and no events are left."""


class _Terminal(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Refused(Exception):
    """The server refused this connection for a reason worth retrying (said in words)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class StreamConfig:
    """What the trader wants the stream to do right now (built by the caller on every connect)."""

    wallet_pubkeys: list[str]
    strategy: Mapping[str, Any]
    send_mode: str | None = None
    tip_lamports: int | None = None
    watch_wallets: list[Mapping[str, Any]] = field(default_factory=list)
    mirror_config: Mapping[str, Any] | None = None
    # The docs count a deadline towards a valid strategy and carry it on `configure`. The caller runs
    # the deadline timer itself; give it here only when the strategy has no other exit condition.
    deadline_timeout_sec: int | None = None

    def configure_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "configure",
            "wallet_pubkeys": list(self.wallet_pubkeys),
            "strategy": dict(self.strategy),
        }
        if self.send_mode is not None:
            msg["send_mode"] = self.send_mode
        if self.tip_lamports is not None:
            msg["tip_lamports"] = self.tip_lamports
        if self.watch_wallets:
            msg["watch_wallets"] = [dict(w) for w in self.watch_wallets]
        if self.mirror_config is not None:
            msg["mirror_config"] = dict(self.mirror_config)
        if self.deadline_timeout_sec:
            msg["deadline_timeout_sec"] = self.deadline_timeout_sec
        return msg


def is_refused_key(code: str) -> bool:
    """The error says the API key itself is refused: the only error not worth a reconnect."""
    lowered = code.lower()
    return lowered in _BAD_KEY_CODES or lowered.startswith("auth")


def describe_error(code: str, message: str) -> str:
    """A stream error in words a trader can act on."""
    lowered = code.lower()
    detail = f" ({message})" if message else ""
    if is_refused_key(code):
        return f"LaserSell rejected the API key{detail}. Check the key or set a new one."
    if lowered in _KEY_IN_USE_CODES or (
        "session" in lowered and any(word in lowered for word in ("limit", "many", "in_use", "exists"))
    ):
        return (
            "This API key is already streaming somewhere else (LaserSell allows one session per key)"
            f"{detail}. Stop the other session or use another key."
        )
    if lowered == "invalid_strategy":
        return f"LaserSell rejected the exit strategy{detail}. Change it with /strategy."
    if lowered == "wallet_not_registered":
        return f"A wallet is not registered with LaserSell{detail}. Register it again from /wallets."
    if lowered == "too_many_wallets":
        return f"More wallets than the LaserSell plan allows{detail}. Remove a wallet or upgrade the plan."
    return f"LaserSell answered with an error [{code}]{detail}."


StateCallback = Callable[[str, "str | None"], Any]
ConfigProvider = Callable[[], Awaitable[StreamConfig]]


class StreamClient:
    """A self-healing stream connection with urgent-first event delivery.

    Consume with `async for event in client` (or `await client.next_event()`); iteration ends when
    the client is stopped or needs attention and every event has been handed out.
    """

    def __init__(
        self,
        api_key: str,
        get_config: ConfigProvider,
        *,
        url: str = DEFAULT_URL,
        on_state_change: StateCallback | None = None,
        hello_timeout: float = 10.0,
        backoff_base: float = BACKOFF_BASE_S,
        backoff_cap: float = BACKOFF_CAP_S,
        healthy_after: float = 10.0,
        position_account: Callable[[int], str | None] | None = None,
        ping_interval: float | None = 30.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 2.0,
        trade_tick_keep: int = 64,
        max_tracked_positions: int = 4096,
        pnl_interval_s: float = PNL_INTERVAL_S,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self._get_config = get_config
        self.url = url
        self._on_state_change = on_state_change
        self.hello_timeout = hello_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # a connection that stayed up this long starts the backoff again from its first step (one that a
        # server accepts and drops at once keeps backing off, up to the cap)
        self.healthy_after = healthy_after
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._max_tracked_positions = max_tracked_positions
        self.pnl_interval_s = pnl_interval_s
        # the longest PnL waits for a busy socket to go quiet before it is handed out anyway; PnL due for
        # longer than this and replaced by a newer frame counts as shed (the consumer is behind)
        self.noise_hold_max_s = max(4 * pnl_interval_s, 1.0)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock
        # The caller's position id -> its token account (None: send the id as it is).
        self._position_account = position_account

        self._state = STOPPED
        self.reason: str | None = None
        self._state_changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._ws: ClientConnection | None = None
        self._attempt_connected_at: float | None = None
        self._ready = False  # configure sent, hello_ok received, pending flushed: sends go straight out

        # Stats the streams show and tests check.
        self.reconnect_count = 0
        self.connected_since: float | None = None
        self.last_message_at: float | None = None
        self.session_id: int | None = None
        self.limits: dict[str, Any] = {}
        self.messages_received = 0
        self.frames_skipped = 0
        # PnL frames replaced by a newer one for the same position before they were handed out: while
        # the position waited for its next turn (by design), or while it was due but the consumer was
        # busy (shed: the bot is behind).
        self.pnl_coalesced = 0
        self.pnl_shed = 0
        # Counts connections that completed the handshake; every event carries the one it came on.
        self.connection = 0

        # Config updates made while not ready: key -> (generation, message). Entries older than the
        # configure being sent are covered by it; newer ones are sent after it.
        self._config_generation = 0
        self._pending_config: dict[Any, tuple[int, dict[str, Any]]] = {}
        # This session's positions, from position_opened: id <-> token account. Ids mean nothing
        # in another session, so both maps are emptied whenever a connection opens.
        self._session_accounts: dict[int, str] = {}
        self._session_ids: dict[str, int] = {}

        # Delivery: urgent first, then unknown types, then the coalesced noise (oldest first).
        self._urgent: deque[StreamEvent] = deque()
        self._unknown: deque[StreamEvent] = deque(maxlen=64)
        self._unknown_types_seen: set[str] = set()
        self._latest: OrderedDict[tuple[str, int], StreamEvent] = OrderedDict()
        self._ticks: deque[StreamEvent] = deque(maxlen=trade_tick_keep)
        self._wakeup = asyncio.Event()
        # PnL, raw and unparsed: position id -> (frame, received_at, due since). Due now, oldest first:
        self._pnl_due: OrderedDict[int, tuple[bytes, float, float]] = OrderedDict()
        # handed out less than pnl_interval_s ago: the newest frame since (None: nothing new yet)
        self._pnl_resting: dict[int, tuple[bytes, float] | None] = {}
        self._pnl_rest_until: deque[tuple[float, int]] = deque()
        self._pnl_timer: asyncio.TimerHandle | None = None

        # One connection's plumbing: frames before the handshake is done, and a refusal seen by the tap.
        self._live = False
        self._inbox: deque[tuple[str | bytes, float]] = deque()
        self._inbox_ready = asyncio.Event()
        self._fatal: asyncio.Future[None] | None = None
        self._last_error: StreamEvent | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def state(self) -> str:
        return self._state

    async def start(self) -> None:
        """Start (or restart after needs_attention / stop) the connection task."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self.reason = None
        self._set_state(CONNECTING, None)
        self._task = asyncio.create_task(self._run(), name="lasersell-stream")

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the socket and end the connection task, waiting at most about `timeout` seconds."""
        self._stopping = True
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None:
            try:
                async with asyncio.timeout(timeout / 2):
                    await ws.close()
            except Exception:  # noqa: BLE001 - closing is best effort; the task is cancelled below
                pass
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=timeout / 2)
            if not done:
                log.warning("stream task did not end within %.1fs after cancel", timeout)
        if self._state != NEEDS_ATTENTION:
            self._set_state(STOPPED, None)
        self._wakeup.set()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """True once connected; False on timeout or if the client stopped or needs attention."""
        try:
            async with asyncio.timeout(timeout):
                while self._state != CONNECTED:
                    if self._state in (NEEDS_ATTENTION, STOPPED):
                        return False
                    await self._state_changed.wait()
        except TimeoutError:
            return False
        return True

    def _set_state(self, state: str, reason: str | None) -> None:
        if state == self._state:
            # Same state, fresher reason (e.g. another failed reconnect): no new notification.
            self.reason = reason
            return
        self._state = state
        self.reason = reason
        # Wake every waiter, then give the next change a fresh Event.
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()
        if state in (NEEDS_ATTENTION, STOPPED):
            self._wakeup.set()
        if self._on_state_change is not None:
            try:
                result = self._on_state_change(state, reason)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._callback_tasks.add(task)
                    task.add_done_callback(self._callback_tasks.discard)
            except Exception:
                log.exception("on_state_change callback failed")

    # ---------------------------------------------------------------- connection loop

    def backoff_delay(self, attempt: int) -> float:
        """The SDK's delay (base doubling per attempt, capped), shortened at random by up to BACKOFF_JITTER."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** min(attempt, 32)))
        return ceiling * (1 - BACKOFF_JITTER * self._rng.random())

    async def _run(self) -> None:
        attempt = 0
        first = True
        while not self._stopping:
            if not first:
                self.reconnect_count += 1
            first = False
            self._attempt_connected_at = None
            try:
                await self._connect_once()
            except _Terminal as terminal:
                log.warning("stream stopped: %s", terminal.reason)
                self._set_state(NEEDS_ATTENTION, terminal.reason)
                return
            except asyncio.CancelledError:
                raise
            except _Refused as refused:
                log.info("stream connection refused: %s", refused.reason)
                failure = refused.reason
            except Exception as exc:  # noqa: BLE001 - every other failure is worth a retry
                log.info("stream connection failed: %s", _describe(exc))
                failure = _describe(exc)
            else:
                failure = "the stream server closed the connection"
            finally:
                self._ws = None
                self._ready = False
                self.connected_since = None
            if self._stopping:
                break
            connected_at = self._attempt_connected_at
            if connected_at is not None and self._clock() - connected_at >= self.healthy_after:
                attempt = 0
            delay = self.backoff_delay(attempt)
            attempt += 1
            self._set_state(RECONNECTING, failure)
            await self._sleep(delay)

    async def _connect_once(self) -> None:
        """One connection from open to close; sets _attempt_connected_at once the handshake is done."""
        # One deadline covers opening the socket, configure and hello_ok.
        deadline = asyncio.get_running_loop().time() + self.hello_timeout
        self._live = False
        self._inbox.clear()
        self._last_error = None
        try:
            async with asyncio.timeout_at(deadline):
                ws = await connect(
                    self.url,
                    additional_headers={"x-api-key": self._api_key},
                    open_timeout=None,
                    ping_interval=self._ping_interval,
                    ping_timeout=self._ping_timeout,
                    close_timeout=self._close_timeout,
                    # no permessage-deflate: frames are a few hundred bytes of JSON, inflating each costs
                    # CPU where CPU is the limit, and uncompressed frames are cut straight off the socket
                    compression=None,
                    create_connection=self._tapped_connection,  # type: ignore[arg-type]  # a factory, as websockets calls it
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise _Terminal(
                    f"LaserSell refused the connection (HTTP {status}): the API key is invalid or not allowed."
                ) from None
            raise
        except TimeoutError:
            raise TimeoutError("no answer from the stream server within the hello timeout") from None

        self._ws = ws
        # Reads what the tap leaves to the library (fragmented or binary messages); ends with the socket.
        reader = asyncio.ensure_future(self._read_assembled(ws))
        fatal = self._fatal = asyncio.get_running_loop().create_future()
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    generation = self._config_generation
                    config = await self._get_config()
                    try:
                        await ws.send(json.dumps(config.configure_message()))
                    except ConnectionClosed as exc:
                        # A server that refuses the key says why and hangs up before reading configure:
                        # read what it said (frames already received first, then the close reason).
                        await self._read_refusal(reader, exc)
                        raise
                    while True:
                        event = await self._handshake_event(ws, reader)
                        if event.type == "error":
                            # The answer to configure: this connection is refused. Not handed out as an
                            # event, so a refusal retried every two seconds is not a message each time.
                            self._refuse(event)
                        if event.type == "hello_ok":
                            self._on_hello(event)
                            break
                        self._file(event)
            except TimeoutError:
                raise TimeoutError("no hello_ok from the stream server within the hello timeout") from None

            await self._after_hello(ws, generation)
            # Frames that came during the handshake, then the tap takes over: no await in between, so
            # they keep their order.
            while self._inbox:
                queued = self._counted(*self._inbox.popleft())
                if queued is not None:
                    self._live_event(queued)
            self._live = True
            self._attempt_connected_at = self.connected_since = self._clock()
            self._set_state(CONNECTED, None)

            await asyncio.wait({reader, fatal}, return_when=asyncio.FIRST_COMPLETED)
            if fatal.done():
                fatal.result()  # raises the refusal the tap saw
            reader.result()  # raises ConnectionClosed unless the server closed cleanly
        except ConnectionClosed:
            self._refused_on_close(self._last_error)
            raise
        finally:
            self._ready = False
            self._live = False
            self._fatal = None
            if not fatal.done():
                fatal.cancel()
            reader.cancel()
            await _close_quietly(ws)
        self._refused_on_close(self._last_error)

    def _tapped_connection(self, *args: Any, **kwargs: Any) -> ClientConnection:
        connection = _TappedConnection(*args, **kwargs)
        connection.tap = self._on_text
        return connection

    async def _read_assembled(self, ws: ClientConnection) -> None:
        async for frame in ws:
            self._on_frame(frame, self._clock())

    async def _handshake_event(self, ws: ClientConnection, reader: asyncio.Future[None]) -> StreamEvent:
        """The next event received before the handshake is done; raises ConnectionClosed if it closes."""
        while True:
            while self._inbox:
                event = self._counted(*self._inbox.popleft())
                if event is not None:
                    return event
            if reader.done():
                reader.result()
                await ws.recv()  # a clean close: raises ConnectionClosedOK with the server's reason
            self._inbox_ready.clear()
            ready: asyncio.Future[Any] = asyncio.ensure_future(self._inbox_ready.wait())
            either: set[asyncio.Future[Any]] = {ready, reader}
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()

    def _refuse(self, event: StreamEvent) -> None:
        code, message = event.data["code"], event.data["message"]
        if is_refused_key(code):
            raise _Terminal(describe_error(code, message))
        raise _Refused(describe_error(code, message))

    def _refused_on_close(self, last_error: StreamEvent | None) -> None:
        """An error followed at once by the server hanging up says why the connection ended (a server
        that sends hello_ok before reading configure answers it after the handshake)."""
        if last_error is None or self._clock() - last_error.received_at > _REJECT_CLOSE_WINDOW:
            return
        self._refuse(last_error)

    async def _read_refusal(self, reader: asyncio.Future[None], closed: ConnectionClosed) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.wait({reader})  # every frame the server sent before hanging up is read
        while self._inbox:
            event = self._counted(*self._inbox.popleft())
            if event is not None and event.type == "error":
                self._refuse(event)
        reason = closed.rcvd.reason if closed.rcvd is not None else ""
        if reason:
            if is_refused_key(reason):
                raise _Terminal(describe_error(reason, ""))
            raise _Refused(describe_error(reason, ""))

    def _on_hello(self, event: StreamEvent) -> None:
        """A new session: ids and PnL noise of the last one mean nothing any more."""
        self.connection += 1
        self._session_accounts.clear()
        self._session_ids.clear()
        self._latest.clear()
        self._ticks.clear()
        self._drop_pnl()
        session_id = event.data.get("session_id")
        self.session_id = session_id if isinstance(session_id, int) else None
        limits = event.data.get("limits")
        self.limits = dict(limits) if isinstance(limits, dict) else {}
        self._file(event)

    async def _after_hello(self, ws: ClientConnection, generation: int) -> None:
        """Send the configuration changes made while we were not ready that the configure missed."""
        for key, (gen, _msg) in list(self._pending_config.items()):
            if gen <= generation:
                del self._pending_config[key]  # the configure we sent already carries it
        # Loop until nothing is pending, then go ready with no await in between, so an update made
        # during these sends is either sent here or goes straight out afterwards.
        while self._pending_config:
            batch = [msg for _, msg in self._pending_config.values()]
            self._pending_config.clear()
            for msg in batch:
                await ws.send(json.dumps(msg))
        self._ready = True

    # ---------------------------------------------------------------- reading

    def _on_text(self, frame: bytes) -> None:
        """A complete text frame, straight off the socket. PnL is held raw; the rest is parsed now."""
        now = self._clock()
        if self._live:
            position_id = pnl_position_id(frame)
            if position_id is not None:
                self.last_message_at = now
                self.messages_received += 1
                self._last_error = None
                self._hold_pnl(position_id, frame, now)
                return
        try:
            text = frame.decode()
        except UnicodeDecodeError:
            text = "\ufffd"  # not JSON either: skipped and counted like any bad frame
        self._on_frame(text, now)

    def _on_frame(self, frame: str | bytes, now: float) -> None:
        if not self._live:
            # read by the handshake, in order (and counted as read then)
            self._inbox.append((frame, now))
            self._inbox_ready.set()
            return
        event = self._counted(frame, now)
        if event is not None:
            self._live_event(event)

    def _counted(self, frame: str | bytes, now: float) -> StreamEvent | None:
        self.last_message_at = now
        self.messages_received += 1
        return self._decode(frame, now)

    def _live_event(self, event: StreamEvent) -> None:
        """File an event that arrived after the handshake; a refused key ends the connection."""
        self._file(event)
        if event.type != "error":
            self._last_error = None
            return
        self._last_error = event
        if is_refused_key(event.data["code"]) and self._fatal is not None and not self._fatal.done():
            self._fatal.set_exception(_Terminal(describe_error(event.data["code"], event.data["message"])))

    def _decode(self, frame: str | bytes, now: float) -> StreamEvent | None:
        try:
            return parse_event(frame, now)
        except MalformedMessage as exc:
            self._skipped(exc)
            return None

    def _skipped(self, exc: Exception) -> None:
        self.frames_skipped += 1
        # A flood of bad frames must not become a flood of log lines.
        if self.frames_skipped <= 10 or self.frames_skipped % 1000 == 0:
            log.warning("skipped a stream frame (%d so far): %s", self.frames_skipped, exc)

    # ---------------------------------------------------------------- PnL: latest per position, parsed late

    def _hold_pnl(self, position_id: int, frame: bytes, now: float) -> None:
        if self._latest and self._latest.pop(("pnl_update", position_id), None) is not None:
            self.pnl_coalesced += 1  # one read during the handshake, parsed then: this newer one replaces it
        resting = self._pnl_resting
        if position_id in resting:
            if resting[position_id] is not None:
                self.pnl_coalesced += 1
            resting[position_id] = (frame, now)
            return
        due = self._pnl_due
        held = due.get(position_id)
        if held is not None:
            due_since = held[2]
            if now - due_since > self.noise_hold_max_s:
                # due for long and still not taken: the consumer is behind, this detail is lost
                self.pnl_shed += 1
                _note_shed(1, now)
            else:
                self.pnl_coalesced += 1  # a burst still being read: only the newest matters
            due[position_id] = (frame, now, due_since)  # keeps its place in line
        else:
            due[position_id] = (frame, now, now)
            if len(due) + len(resting) > self._max_tracked_positions and due:
                due.popitem(last=False)  # the position waiting longest gives way
                self.pnl_shed += 1
                _note_shed(1, now)
        self._wakeup.set()

    def _take_pnl(self) -> StreamEvent | None:
        position_id, (frame, received_at, _due_since) = self._pnl_due.popitem(last=False)
        if self.pnl_interval_s > 0:
            self._pnl_resting[position_id] = None
            self._pnl_rest_until.append((self._clock() + self.pnl_interval_s, position_id))
            if self._pnl_timer is None:
                self._pnl_timer = asyncio.get_running_loop().call_later(self.pnl_interval_s, self._pnl_rested)
        try:
            text: str = frame.decode()
        except UnicodeDecodeError:
            text = "\ufffd"  # skipped and counted below like any bad frame
        event = self._decode(text, received_at)
        if event is not None:
            self._label(event)
        return event

    def _pnl_rested(self) -> None:
        """Positions whose rest is over are due again if a newer frame came meanwhile."""
        self._pnl_timer = None
        now = self._clock()
        queue, resting, due = self._pnl_rest_until, self._pnl_resting, self._pnl_due
        woke = False
        while queue and queue[0][0] <= now:
            _, position_id = queue.popleft()
            if position_id not in resting:
                continue  # cleared by a new session
            held = resting.pop(position_id)
            if held is not None:
                due[position_id] = (*held, now)
                woke = True
        if queue:
            self._pnl_timer = asyncio.get_running_loop().call_later(max(0.0, queue[0][0] - now), self._pnl_rested)
        if woke:
            self._wakeup.set()

    def _drop_pnl(self) -> None:
        self._pnl_due.clear()
        self._pnl_resting.clear()
        self._pnl_rest_until.clear()
        if self._pnl_timer is not None:
            self._pnl_timer.cancel()
            self._pnl_timer = None

    def _label(self, event: StreamEvent) -> None:
        """Stamp the connection and the position's token account on the event; learn this session's ids."""
        event.connection = self.connection
        data = event.data
        position_id = data.get("position_id")
        account = data.get("token_account")
        if not isinstance(account, str):
            account = self._session_accounts.get(position_id) if isinstance(position_id, int) else None
        event.token_account = account
        if not isinstance(position_id, int) or account is None:
            return
        if event.type == "position_opened":
            stale = self._session_ids.pop(account, None)
            if stale is not None:
                self._session_accounts.pop(stale, None)
            self._session_accounts[position_id] = account
            self._session_ids[account] = position_id
            if len(self._session_accounts) > self._max_tracked_positions:
                oldest = next(iter(self._session_accounts))
                self._session_ids.pop(self._session_accounts.pop(oldest), None)
        elif event.type == "position_closed":
            self._session_accounts.pop(position_id, None)
            if self._session_ids.get(account) == position_id:
                del self._session_ids[account]

    def _file(self, event: StreamEvent) -> None:
        self._label(event)
        if event.urgent:
            if event.known:
                self._urgent.append(event)
            else:
                if event.type not in self._unknown_types_seen and len(self._unknown_types_seen) < 100:
                    self._unknown_types_seen.add(event.type)
                    log.warning("unknown stream message type %r kept as a raw event", event.type)
                self._unknown.append(event)
        elif event.type == "trade_tick":
            self._ticks.append(event)
        else:
            latest = self._latest
            latest[(event.type, event.data["position_id"])] = event
            if len(latest) > self._max_tracked_positions:
                latest.popitem(last=False)
        self._wakeup.set()

    def pending_count(self) -> int:
        resting = sum(1 for held in self._pnl_resting.values() if held is not None)
        return (
            len(self._urgent) + len(self._unknown) + len(self._latest) + len(self._ticks)
            + len(self._pnl_due) + resting
        )

    def _take(self) -> StreamEvent | None:
        if self._urgent:
            return self._urgent.popleft()
        if self._unknown:
            return self._unknown.popleft()
        return self._take_noise()

    def _has_noise(self) -> bool:
        return bool(self._pnl_due or self._latest or self._ticks)

    def _take_noise(self) -> StreamEvent | None:
        # the noise, oldest first: PnL (parsed now), liquidity, trade ticks
        while True:
            latest, ticks, due = self._latest, self._ticks, self._pnl_due
            oldest: float | None = None
            source = ""
            if due:
                oldest, source = next(iter(due.values()))[1], "pnl"
            if latest:
                at = next(iter(latest.values())).received_at
                if oldest is None or at < oldest:
                    oldest, source = at, "latest"
            if ticks and (oldest is None or ticks[0].received_at < oldest):
                source = "ticks"
            if source == "pnl":
                event = self._take_pnl()
                if event is None:
                    continue  # a malformed frame, counted and skipped
                return event
            if source == "latest":
                return latest.popitem(last=False)[1]
            if source == "ticks":
                return ticks.popleft()
            return None

    async def next_event(self) -> StreamEvent:
        """The next event, urgent ones first. Raises StreamClosed once stopped and drained."""
        deferred_at: float | None = None
        deferred_from = 0
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._unknown:
                return self._unknown.popleft()
            if self._has_noise():
                # Noise waits while the socket is still delivering: whatever urgent message is behind it
                # in the same burst is read and handed out first. Bounded, so a connection that never
                # goes quiet still gets its PnL.
                read = self.messages_received
                # Two turns: a task resumed by the loop runs before that turn's socket reads.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                now = self._clock()
                if deferred_at is None:
                    deferred_at, deferred_from = now, read
                # Bounded by time AND by frames: a slow (busy) machine reads a burst more slowly, and
                # must still reach an exit signal queued behind a long backlog before the PnL in front.
                if self.messages_received != read and (
                    now - deferred_at < self.noise_hold_max_s
                    or self.messages_received - deferred_from < NOISE_DEFER_MIN_FRAMES
                ):
                    continue
                event = self._take_noise()
                if event is not None:
                    return event
                continue
            if self._state in (STOPPED, NEEDS_ATTENTION):
                raise StreamClosed(self.reason or "the stream is stopped")
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        while True:
            try:
                yield await self.next_event()
            except StreamClosed:
                return

    # ---------------------------------------------------------------- sending

    @property
    def is_ready(self) -> bool:
        return self._ready and self._ws is not None

    async def send(self, msg: Mapping[str, Any]) -> None:
        """Send one message now; raises StreamUnavailable when not connected."""
        ws = self._ws
        if not self._ready or ws is None:
            raise StreamUnavailable("the LaserSell stream is not connected")
        try:
            await ws.send(json.dumps(msg))
        except ConnectionClosed as exc:
            raise StreamUnavailable("the LaserSell stream connection closed") from exc

    async def _send_config(self, key: Any, msg: dict[str, Any]) -> bool:
        self._config_generation += 1
        if self.is_ready:
            try:
                await self.send(msg)
                return True
            except StreamUnavailable:
                # The next configure is built from the caller's current state, which has this.
                return False
        self._pending_config[key] = (self._config_generation, msg)
        return False

    async def _send_now(self, msg: dict[str, Any]) -> bool:
        if not self.is_ready:
            return False
        try:
            await self.send(msg)
        except StreamUnavailable:
            return False
        return True

    def _selector(self, position_id: int) -> dict[str, Any] | None:
        """How to name the caller's position on the wire: by token account when known (it does not
        change between sessions), by id when the caller uses the stream's own ids."""
        if self._position_account is None:
            return {"position_id": position_id}
        account = self._position_account(position_id)
        return {"token_account": account} if account else None

    def wire_position_id(self, token_account: str) -> int | None:
        """The current session's id for the position in this token account, once it was announced."""
        return self._session_ids.get(token_account)

    # Each method below returns True if sent now. Config updates made while down are applied by the next
    # connection (False); one-shot requests are not kept (False): re-ask once connected.

    async def update_strategy(self, strategy: Mapping[str, Any]) -> bool:
        return await self._send_config("strategy", {"type": "update_strategy", "strategy": dict(strategy)})

    async def update_wallets(self, wallet_pubkeys: list[str]) -> bool:
        return await self._send_config(
            "wallets", {"type": "update_wallets", "wallet_pubkeys": list(wallet_pubkeys)}
        )

    async def update_watch_wallets(self, watch_wallets: Sequence[Mapping[str, Any]]) -> bool:
        """Replace the copy-trading watch list (the full list, as the docs define it)."""
        return await self._send_config(
            "watch_wallets", {"type": "update_watch_wallets", "watch_wallets": [dict(w) for w in watch_wallets]}
        )

    async def mirror_buy_result(self, mint: str, success: bool) -> bool:
        """Report a mirror buy's outcome (true = signed and submitted); not kept while down."""
        return await self._send_now({"type": "mirror_buy_result", "mint": mint, "success": bool(success)})

    async def update_position_strategy(self, position_id: int, strategy: Mapping[str, Any]) -> bool:
        """Override one position's strategy. The message needs this session's id: without one yet
        (the position was not announced since the last reconnect) nothing is sent; re-send it when
        the position is announced (overrides do not outlive a session on the server)."""
        wire_id: int | None = position_id
        if self._position_account is not None:
            account = self._position_account(position_id)
            wire_id = self._session_ids.get(account) if account else None
        if wire_id is None:
            return False
        return await self._send_now(
            {"type": "update_position_strategy", "position_id": wire_id, "strategy": dict(strategy)}
        )

    async def close_position(self, position_id: int) -> bool:
        selector = self._selector(position_id)
        if selector is None:
            return False
        return await self._send_now({"type": "close_position", **selector})

    async def request_exit_signal(self, position_id: int, slippage_bps: int | None = None) -> bool:
        selector = self._selector(position_id)
        if selector is None:
            return False
        msg: dict[str, Any] = {"type": "request_exit_signal", **selector}
        if slippage_bps is not None:
            msg["slippage_bps"] = slippage_bps
        return await self._send_now(msg)

    async def ping(self) -> bool:
        """JSON ping (the server answers with a pong event). False when not connected."""
        try:
            await self.send({"type": "ping", "client_time_ms": int(time.time() * 1000)})
        except StreamUnavailable:
            return False
        return True


async def _close_quietly(ws: ClientConnection) -> None:
    try:
        await ws.close()
    except Exception:  # noqa: BLE001 - the connection is being thrown away
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"the stream server answered HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        return f"connection closed ({exc})"
    return str(exc) or type(exc).__name__
