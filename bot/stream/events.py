"""Typed events from the LaserSell stream and the parsing that produces them.

Validation is the official SDK's (`lasersell_sdk.stream.proto.server_message_from_obj`), with three
deliberate differences that keep messages the SDK would throw away:

- `market_context` is kept as the server sent it. The SDK raises on a market type it does not know
  (so it would drop a whole exit signal) and keeps only the sub-objects it knows by name.
- A message type the SDK does not know becomes a raw event instead of an error.
- `error` and `hello_ok` are read leniently: a terminal error or a session must never be lost to a
  missing optional-looking field.

`pnl_update` is the hot path (a busy session sends many per second), so it is checked by a fast
path that accepts exactly what the SDK accepts when every field already has its exact type, and
falls back to the SDK otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lasersell_sdk.stream.proto import server_message_from_obj

# Noisy types are coalesced; everything else is urgent and must never wait behind them.
NOISY_TYPES: frozenset[str] = frozenset({"pnl_update", "liquidity_snapshot", "trade_tick"})

# Server message types the SDK parser validates.
KNOWN_TYPES: frozenset[str] = frozenset(
    {
        "hello_ok",
        "pong",
        "error",
        "pnl_update",
        "liquidity_snapshot",
        "balance_update",
        "position_opened",
        "position_closed",
        "exit_signal_with_tx",
        "trade_tick",
        "mirror_buy_signal",
        "mirror_buy_failed",
        "mirror_wallet_auto_disabled",
    }
)

# `market_type` values the docs list; others still arrive and are kept. The sub-object holding the
# pool details is keyed without the underscore for pump.fun and PumpSwap (`pumpfun`, `pumpswap`).
KNOWN_MARKET_TYPES: frozenset[str] = frozenset(
    {"pump_fun", "pump_swap", "meteora_dbc", "meteora_damm_v2", "raydium_launchpad", "raydium_cpmm"}
)
MARKET_CONTEXT_KEYS: dict[str, str] = {
    "pump_fun": "pumpfun",
    "pump_swap": "pumpswap",
    "meteora_dbc": "meteora_dbc",
    "meteora_damm_v2": "meteora_damm_v2",
    "raydium_launchpad": "raydium_launchpad",
    "raydium_cpmm": "raydium_cpmm",
}
# USD1's mint, as the official LaserSell client publishes it; a market quoted in anything else is SOL.
USD1_MINT = "USD1ttGY1N17NEEHLmELoaybftRBUSErhqYiQzvEmuB"


def quote_of(market_context: object) -> str:
    """"USD1" when the market's quote mint is USD1, else "SOL" (markets without a quote_mint are SOL).

    The quote mint sits in the sub-object for the market type; an unknown market type still has its
    sub-object looked at, so a new USD1 market is not shown in SOL.
    """
    if not isinstance(market_context, dict):
        return "SOL"
    market_type = market_context.get("market_type")
    key = MARKET_CONTEXT_KEYS.get(market_type, market_type) if isinstance(market_type, str) else None
    candidates = [market_context.get(key)] if key else []
    candidates += [v for k, v in market_context.items() if k != key]
    for sub in candidates:
        if isinstance(sub, dict) and sub.get("quote_mint") == USD1_MINT:
            return "USD1"
    return "SOL"

_WITH_MARKET_CONTEXT: frozenset[str] = frozenset(
    {"position_opened", "exit_signal_with_tx", "mirror_buy_signal"}
)
_PNL_REQUIRED = ("position_id", "profit_units", "proceeds_units", "server_time_ms")
_PNL_OPTIONAL_INT = ("token_price_quote", "market_cap_quote")


class MalformedMessage(ValueError):
    """A frame that is not a valid stream message (bad JSON, not an object, failed validation)."""


@dataclass(slots=True)
class StreamEvent:
    """One message from the stream.

    `data` is the validated message (it includes `type`). `received_at` is `time.monotonic()` when
    the frame arrived. `urgent` is False only for pnl_update, liquidity_snapshot and trade_tick.
    `known` is False for a message type this client does not understand (data is then raw).
    """

    type: str
    data: dict[str, Any]
    received_at: float
    urgent: bool
    server_time_ms: int | None = None
    known: bool = True
    # Set by the client: the position's token account (from the message, or from this session's
    # position_opened), and which connection the event came on. A position_id means something only
    # within its connection's session; the token account names the position across sessions.
    token_account: str | None = None
    connection: int = 0

    @property
    def position_id(self) -> int | None:
        value = self.data.get("position_id")
        return value if isinstance(value, int) else None

    @property
    def market_type(self) -> str | None:
        """The market type of a message's market_context, as the server spelled it."""
        context = self.data.get("market_context")
        if isinstance(context, dict):
            value = context.get("market_type")
            return value if isinstance(value, str) else None
        return None

    @property
    def market_type_known(self) -> bool:
        return self.market_type in KNOWN_MARKET_TYPES

    @property
    def is_exit_signal(self) -> bool:
        return self.type == "exit_signal_with_tx"


def parse_event(text: str | bytes, received_at: float) -> StreamEvent:
    """Parse one text frame into a StreamEvent; raise MalformedMessage when it is not one."""
    if not isinstance(text, str):
        raise MalformedMessage("binary frame (the stream sends JSON text only)")
    try:
        obj = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and bad unicode
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedMessage("message is not a JSON object")
    return event_from_obj(obj, received_at)


def event_from_obj(obj: dict[str, Any], received_at: float) -> StreamEvent:
    """Validate a decoded message object and wrap it in a StreamEvent."""
    message_type = obj.get("type")
    if not isinstance(message_type, str):
        raise MalformedMessage("message has no string `type`")

    if message_type == "pnl_update":
        data = _fast_pnl(obj)
        if data is None:
            data = _sdk_parse(obj)
        return StreamEvent("pnl_update", data, received_at, False, data["server_time_ms"])

    if message_type not in KNOWN_TYPES:
        server_time = obj.get("server_time_ms")
        return StreamEvent(
            message_type,
            obj,
            received_at,
            True,
            server_time if type(server_time) is int else None,
            known=False,
        )

    if message_type == "error":
        # Lenient on purpose: the code decides whether the session is dead.
        code = obj.get("code")
        message = obj.get("message")
        data = {
            "type": "error",
            "code": code if isinstance(code, str) else str(code or ""),
            "message": message if isinstance(message, str) else str(message or ""),
        }
        return StreamEvent("error", data, received_at, True, None)

    if message_type == "hello_ok":
        try:
            data = _sdk_parse(obj)
        except MalformedMessage:
            # A session that works must not fail over a limits field we only display.
            data = dict(obj)
        server_time = data.get("server_time_ms")
        return StreamEvent(
            "hello_ok", data, received_at, True, server_time if type(server_time) is int else None
        )

    if message_type in _WITH_MARKET_CONTEXT and "market_context" in obj:
        data = _parse_with_raw_market_context(obj)
    else:
        data = _sdk_parse(obj)
    server_time = data.get("server_time_ms")
    return StreamEvent(
        message_type,
        data,
        received_at,
        message_type not in NOISY_TYPES,
        server_time if type(server_time) is int else None,
    )


def _sdk_parse(obj: dict[str, Any]) -> dict[str, Any]:
    try:
        return server_message_from_obj(obj)
    except ValueError as exc:
        raise MalformedMessage(str(exc)) from None


def _parse_with_raw_market_context(obj: dict[str, Any]) -> dict[str, Any]:
    raw_context = obj.get("market_context")
    if raw_context is None:
        return _sdk_parse(obj)
    if not isinstance(raw_context, dict) or not isinstance(raw_context.get("market_type"), str):
        raise MalformedMessage(f"{obj['type']}.market_context must be an object with a string market_type")
    rest = dict(obj)
    del rest["market_context"]
    data = _sdk_parse(rest)
    data["market_context"] = raw_context
    return data


def _fast_pnl(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Return obj itself when the SDK would accept it unchanged, else None (take the SDK path).

    Exact-type checks only: anything the SDK would coerce (an integral float) or reject goes the
    slow way, so the result is never more permissive than the SDK.
    """
    get = obj.get
    for key in _PNL_REQUIRED:
        if type(get(key)) is not int:
            return None
    for key in _PNL_OPTIONAL_INT:
        value = get(key)
        if value is not None and type(value) is not int:
            return None
    watched = get("watched")
    if watched is not None and type(watched) is not bool:
        return None
    return obj
