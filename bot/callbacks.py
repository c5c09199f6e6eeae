"""Callback data: one small dataclass per button kind, packed into Telegram's 64 bytes and checked on return.

A button is built as `(label, SellTap(...))` and its data comes back as the same typed object:

    keyboard([("Sell 25%", PositionTap("s", position_id, 25))])      # packs to "pc:s:42:25"
    tap = PositionTap.read(update)                                  # PositionTap(action="s", position_id=42, share=25)

Fields are `int`, `str` or a `Literal` of strings, separated by ':' behind the kind's prefix. Trailing fields
left at their default are not written, so old and new buttons of a kind read alike. Data that is not ours,
not of this kind, or names an action this version does not know is refused with `CallbackError`, whose text is
the answer the user sees. Anything too long for a button (a free text, several ids) is kept server-side in a
`Stash` and the button carries its short key; `take` hands it out once.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self, get_args, get_origin, get_type_hints

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

MAX_BYTES = 64  # Telegram's limit on callback_data
SEP = ":"
_INT = re.compile(r"^-?\d{1,19}$")
STALE = "That button is out of date. Open the menu again (/home) and tap the new one."


class CallbackError(ValueError):
    """Callback data we cannot act on; `str()` is the answer for the user."""


class CallbackTooLong(ValueError):
    """A button's data would not fit in 64 bytes (a programming error: keep the value in a `Stash`)."""


_KINDS: dict[str, type[CallbackData]] = {}


class CallbackData:
    """Base of every callback-data class; subclasses are frozen dataclasses declared with a prefix."""

    prefix: ClassVar[str] = ""

    def __init_subclass__(cls, prefix: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not re.fullmatch(r"[a-z]{1,4}", prefix):
            raise TypeError(f"{cls.__name__}: a prefix is 1 to 4 lowercase letters, not {prefix!r}")
        if prefix in _KINDS:
            raise TypeError(f"{cls.__name__}: prefix {prefix!r} is already {_KINDS[prefix].__name__}'s")
        cls.prefix = prefix
        _KINDS[prefix] = cls

    # --- building a button --------------------------------------------------------------------------------
    def pack(self) -> str:
        parts = [self.prefix]
        values = [(f, getattr(self, f.name)) for f in _fields(type(self))]
        while values and _has_default(values[-1][0]) and values[-1][1] == values[-1][0].default:
            values.pop()  # trailing defaults are not written
        for field, value in values:
            parts.append(_encode(type(self), field, value))
        data = SEP.join(parts)
        if len(data.encode()) > MAX_BYTES:
            raise CallbackTooLong(f"{type(self).__name__} packs to {len(data.encode())} bytes (at most {MAX_BYTES})")
        return data

    # --- reading a tap --------------------------------------------------------------------------------------
    @classmethod
    def matches(cls, data: object) -> bool:
        """Whether `data` is of this kind (used as the CallbackQueryHandler pattern)."""
        return isinstance(data, str) and (data == cls.prefix or data.startswith(cls.prefix + SEP))

    @classmethod
    def unpack(cls, data: object) -> Self:
        if not isinstance(data, str) or not cls.matches(data) or len(data.encode()) > MAX_BYTES:
            raise CallbackError(STALE)
        raw = data.split(SEP)[1:]
        fields = _fields(cls)
        required = sum(1 for f in fields if not _has_default(f))
        if not required <= len(raw) <= len(fields):
            raise CallbackError(STALE)
        values: dict[str, Any] = {}
        for field, text in zip(fields, raw, strict=False):
            values[field.name] = _decode(cls, field, text)
        return cls(**values)

    @classmethod
    def read(cls, update: Update) -> Self:
        """The typed data of the button pressed in `update`; CallbackError when there is none of this kind."""
        query = update.callback_query
        return cls.unpack(query.data if query is not None else None)


def kind_of(data: object) -> type[CallbackData] | None:
    """The class whose prefix `data` carries (None for data that is not ours)."""
    if not isinstance(data, str):
        return None
    return _KINDS.get(data.split(SEP, 1)[0])


def keyboard(*rows: Sequence[tuple[str, CallbackData]]) -> InlineKeyboardMarkup:
    """Rows of (label, callback data object); each is packed and checked against the 64 bytes here."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data.pack()) for label, data in row] for row in rows]
    )


# --- field codec ------------------------------------------------------------------------------------------------
_FIELDS: dict[type[CallbackData], tuple[dataclasses.Field[Any], ...]] = {}
_HINTS: dict[type[CallbackData], dict[str, Any]] = {}


def _fields(cls: type[CallbackData]) -> tuple[dataclasses.Field[Any], ...]:
    if cls not in _FIELDS:
        _FIELDS[cls] = dataclasses.fields(cls)  # type: ignore[arg-type]
    return _FIELDS[cls]


def _hints(cls: type[CallbackData]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return field.default is not dataclasses.MISSING


def _encode(cls: type[CallbackData], field: dataclasses.Field[Any], value: object) -> str:
    kind = _hints(cls)[field.name]
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{cls.__name__}.{field.name} must be an int, not {value!r}")
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"{cls.__name__}.{field.name} must be a str, not {value!r}")
    if get_origin(kind) is Literal and value not in get_args(kind):
        raise ValueError(f"{cls.__name__}.{field.name}: {value!r} is not one of {get_args(kind)}")
    if SEP in value:
        raise ValueError(f"{cls.__name__}.{field.name} may not hold {SEP!r}: keep such a value in a Stash")
    return value


def _decode(cls: type[CallbackData], field: dataclasses.Field[Any], text: str) -> Any:
    kind = _hints(cls)[field.name]
    if kind is int:
        if not _INT.match(text):
            raise CallbackError(STALE)
        return int(text)
    if get_origin(kind) is Literal and text not in get_args(kind):
        raise CallbackError(STALE)
    return text


# --- the kinds --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SignalTap(CallbackData, prefix="x"):
    """Sell / Skip / Retry / Refresh on an exit signal's message (the signal id is stored server-side)."""

    action: Literal["sell", "skip", "retry", "refresh"]
    signal_id: str


@dataclasses.dataclass(frozen=True)
class PositionTap(CallbackData, prefix="pc"):
    """A position's buttons: on its card, in /positions, on the live position message and liquidity alerts."""

    action: Literal["open", "ref", "s", "max", "now", "edit", "stop", "stopok", "keep", "chart", "liq"]
    position_id: int
    share: int = 0  # for "s": the percentage of the holding to sell


@dataclasses.dataclass(frozen=True)
class LegacyPositionTap(CallbackData, prefix="p"):
    """The buttons position messages carried before they were PositionTap; read as the same actions."""

    action: Literal["sell", "stop", "stopok", "keep"]
    position_id: int

    def upgraded(self) -> PositionTap:
        return PositionTap("now" if self.action == "sell" else self.action, self.position_id)


@dataclasses.dataclass(frozen=True)
class BuyTap(CallbackData, prefix="b"):
    """Buy / Cancel under a quoted buy (the order id is stored server-side and consumed once)."""

    action: Literal["go", "no"]
    order_id: str


@dataclasses.dataclass(frozen=True)
class CopyTap(CallbackData, prefix="cp"):
    """Copy / Skip under a copy-trading buy offer."""

    action: Literal["go", "no"]
    order_id: str


@dataclasses.dataclass(frozen=True)
class CopyModeTap(CallbackData, prefix="cpm"):
    """Yes / No to auto-copying a watched wallet."""

    action: Literal["auto", "no"]
    address: str


@dataclasses.dataclass(frozen=True)
class BroadcastTap(CallbackData, prefix="bc"):
    """Send / Cancel under a broadcast preview (admins only)."""

    action: Literal["send", "drop"]
    broadcast_id: int


@dataclasses.dataclass(frozen=True)
class OnboardingTap(CallbackData, prefix="ob"):
    """The setup steps' buttons."""

    action: Literal["key", "skip", "strategy"]
    step: Literal["", "apikey", "wallet", "strategy"] = ""


@dataclasses.dataclass(frozen=True)
class WalletTap(CallbackData, prefix="w"):
    """/wallets and a wallet's own buttons."""

    action: Literal["list", "import", "gen", "saved", "open", "ren", "def", "rm", "rmok", "exp", "expok"]
    wallet_id: int = 0


@dataclasses.dataclass(frozen=True)
class StrategyTap(CallbackData, prefix="s"):
    """The strategy editor: step a value down / up, toggle it, save, cancel."""

    action: Literal["edit", "up", "dn", "tg", "done", "cancel", "noop"]
    key: Literal["", "tp", "sl", "tr", "dl", "be", "gr", "lg"] = ""


@dataclasses.dataclass(frozen=True)
class SettingsTap(CallbackData, prefix="cfg"):
    """/settings buttons and /forget's confirmation."""

    action: Literal["mode", "ask", "tip", "cap", "slip", "auto", "al", "pause", "forget", "keep"]
    arg: Literal["", "+", "-", "tip", "slippage", "cap", "retries", "position", "liquidity", "cards", "signals"] = ""


@dataclasses.dataclass(frozen=True)
class HomeTap(CallbackData, prefix="h"):
    """The home panel's buttons: open a view, or refresh the panel."""

    action: Literal["home", "pos", "buy", "wal", "set", "hist"]


@dataclasses.dataclass(frozen=True)
class TokenTap(CallbackData, prefix="t"):
    """The token panel: choose the wallet (w), refresh (r), change the buy amounts (p)."""

    action: Literal["w", "r", "p"]
    wallet_id: int
    mint: str


@dataclasses.dataclass(frozen=True)
class TokenBuyTap(CallbackData, prefix="tb"):
    """A buy-amount button on the token panel: buy preset `index` from wallet `wallet_id`."""

    wallet_id: int
    index: int
    mint: str


# --- values too long for a button ---------------------------------------------------------------------------------
class Stash:
    """Values too long for callback data, kept here under a short random key that a button carries.

    `take` hands a value out once (the pop is atomic on the event loop) and forgets it; values older than
    `ttl_s`, or beyond `max_items`, are dropped, so a stale button gets a clear "out of date" answer.
    """

    def __init__(self, *, ttl_s: float = 3600.0, max_items: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def put(self, value: str) -> str:
        key = secrets.token_urlsafe(9)  # 12 characters
        self._items[key] = (time.monotonic(), value)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return key

    def take(self, key: str) -> str:
        """The value kept under `key`, once; CallbackError when it is unknown, used or too old."""
        found = self._items.pop(key, None)
        if found is None or time.monotonic() - found[0] > self.ttl_s:
            raise CallbackError(STALE)
        return found[1]
