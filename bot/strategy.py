"""A trader's exit strategy: validation, the one-line chat form, plain words, and the wire form."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any


class StrategyError(ValueError):
    """A value is out of range or malformed; the message names the field, the value and the allowed range."""


@dataclass(frozen=True)
class Level:
    profit_pct: float
    sell_pct: float
    trailing_stop_pct: float = 0.0


@dataclass(frozen=True)
class Strategy:
    take_profit_pct: float = 6.0  # 0 = off
    stop_loss_pct: float = 10.0  # 0 = off
    trailing_stop_pct: float = 0.0
    deadline_s: int = 45  # 0 = off; runs on the bot, not on the wire
    sell_on_graduation: bool = False
    liquidity_guard: bool = False
    breakeven_trail_pct: float = 0.0
    ladder: tuple[Level, ...] = field(default_factory=tuple)

    # --- validation -------------------------------------------------------------------------------------
    def validated(self) -> Strategy:
        _pct("take profit (tp)", self.take_profit_pct, 10000, allow_off=True)
        _pct("stop loss (sl)", self.stop_loss_pct, 100, allow_off=True)
        _pct("trailing stop (trail)", self.trailing_stop_pct, 10000, allow_off=True)
        _pct("breakeven trail (breakeven)", self.breakeven_trail_pct, 10000, allow_off=True)
        if not isinstance(self.deadline_s, int) or not 0 <= self.deadline_s <= 86400:
            raise StrategyError(f"deadline {self.deadline_s!r} is out of range: use 0 (off) to 86400 seconds")
        previous = 0.0
        total = 0.0
        for index, level in enumerate(self.ladder, start=1):
            _pct(f"ladder level {index} profit", level.profit_pct, 10000, allow_off=False)
            _pct(f"ladder level {index} sell", level.sell_pct, 100, allow_off=False)
            _pct(f"ladder level {index} trail", level.trailing_stop_pct, 10000, allow_off=True)
            if level.profit_pct <= previous:
                raise StrategyError(
                    f"ladder level {index} profit {_num(level.profit_pct)}% must be higher than the level before "
                    f"({_num(previous)}%): list levels in increasing profit"
                )
            previous = level.profit_pct
            total += level.sell_pct
        if total > 100 + 1e-9:
            raise StrategyError(f"ladder sells add up to {_num(total)}%: they may add up to at most 100%")
        if not self.has_stream_exit():
            raise StrategyError(
                "no exit condition is on: turn on at least one of take profit, stop loss, trailing stop, "
                "ladder, sell on graduation, liquidity guard or breakeven trail"
            )
        return self

    def has_stream_exit(self) -> bool:
        return bool(
            self.take_profit_pct
            or self.stop_loss_pct
            or self.trailing_stop_pct
            or self.ladder
            or self.sell_on_graduation
            or self.liquidity_guard
            or self.breakeven_trail_pct
        )

    # --- forms ------------------------------------------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        """The `strategy` object of configure / update_strategy."""
        wire: dict[str, Any] = {
            "target_profit_pct": float(self.take_profit_pct),
            "stop_loss_pct": float(self.stop_loss_pct),
        }
        if self.trailing_stop_pct:
            wire["trailing_stop_pct"] = float(self.trailing_stop_pct)
        if self.sell_on_graduation:
            wire["sell_on_graduation"] = True
        if self.ladder:
            wire["take_profit_levels"] = [
                {"profit_pct": lv.profit_pct, "sell_pct": lv.sell_pct, "trailing_stop_pct": lv.trailing_stop_pct}
                for lv in self.ladder
            ]
        if self.liquidity_guard:
            wire["liquidity_guard"] = True
        if self.breakeven_trail_pct:
            wire["breakeven_trail_pct"] = float(self.breakeven_trail_pct)
        return wire

    def to_json(self) -> str:
        data = asdict(self)
        data["ladder"] = [asdict(lv) for lv in self.ladder]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Strategy:
        data = json.loads(text)
        data["ladder"] = tuple(Level(**lv) for lv in data.get("ladder", []))
        return cls(**data)

    def describe(self) -> list[str]:
        """The strategy in plain words, one line a condition."""
        lines = []
        if self.ladder:
            steps = ", ".join(
                f"at +{_num(lv.profit_pct)}% sell {_num(lv.sell_pct)}%"
                + (f" (trail {_num(lv.trailing_stop_pct)}%)" if lv.trailing_stop_pct else "")
                for lv in self.ladder
            )
            lines.append(f"Take-profit ladder: {steps}")
        else:
            lines.append(f"Take profit: {'+' + _num(self.take_profit_pct) + '%' if self.take_profit_pct else 'off'}")
        lines.append(f"Stop loss: {'-' + _num(self.stop_loss_pct) + '%' if self.stop_loss_pct else 'off'}")
        lines.append(
            f"Trailing stop: {_num(self.trailing_stop_pct) + '% below the peak' if self.trailing_stop_pct else 'off'}"
        )
        lines.append(f"Deadline: {_duration(self.deadline_s) + ' after the buy' if self.deadline_s else 'off'}")
        lines.append(f"Sell on graduation: {'on' if self.sell_on_graduation else 'off'}")
        lines.append(f"Liquidity guard: {'on' if self.liquidity_guard else 'off'}")
        lines.append(
            "Breakeven trail: "
            + (f"after +{_num(self.breakeven_trail_pct)}%, exit if back to entry" if self.breakeven_trail_pct else "off")
        )
        return lines


DEFAULT_STRATEGY = Strategy()

# one-line form: keyword -> (field, kind)
KEYWORDS: dict[str, tuple[str, str]] = {
    "tp": ("take_profit_pct", "pct"),
    "sl": ("stop_loss_pct", "pct"),
    "trail": ("trailing_stop_pct", "pct"),
    "deadline": ("deadline_s", "seconds"),
    "graduation": ("sell_on_graduation", "switch"),
    "guard": ("liquidity_guard", "switch"),
    "breakeven": ("breakeven_trail_pct", "pct"),
}
# allowed values in words, for errors about a value that is not a number at all
RANGES: dict[str, str] = {
    "tp": "more than 0 and at most 10000 (0 or off turns it off)",
    "sl": "more than 0 and at most 100 (0 or off turns it off)",
    "trail": "more than 0 and at most 10000 (0 or off turns it off)",
    "breakeven": "more than 0 and at most 10000 (0 or off turns it off)",
    "deadline": "whole seconds from 0 (off) to 86400",
}
ONE_LINE_USAGE = "/strategy tp 25 sl 10 trail 5 deadline 120 graduation on guard off breakeven 3"
LADDER_USAGE = "/ladder 25:30 50:50 100:100  (profit%:sell%, optional :trail%; /ladder off to clear)"


def apply_one_line(current: Strategy, args: list[str]) -> Strategy:
    """Apply `tp 25 sl 10 ...` to `current`; raises StrategyError naming the field and the range."""
    if not args:
        raise StrategyError(f"nothing to change: for example {ONE_LINE_USAGE}")
    if len(args) % 2:
        raise StrategyError(f"{args[-1]!r} needs a value after it: for example {ONE_LINE_USAGE}")
    changes: dict[str, Any] = {}
    for key, raw in zip(args[::2], args[1::2], strict=True):
        key = key.lower()
        if key not in KEYWORDS:
            raise StrategyError(
                f"unknown setting {key!r}: use {', '.join(KEYWORDS)} (for example {ONE_LINE_USAGE})"
            )
        name, kind = KEYWORDS[key]
        changes[name] = _parse_value(key, raw, kind)
    return replace(current, **changes).validated()


def parse_ladder(current: Strategy, args: list[str]) -> Strategy:
    if not args:
        raise StrategyError(f"give the levels: {LADDER_USAGE}")
    if len(args) == 1 and args[0].lower() in ("off", "clear", "none"):
        return replace(current, ladder=()).validated()
    levels = []
    for index, item in enumerate(args, start=1):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise StrategyError(f"ladder level {index} {item!r} is not profit%:sell% (or profit%:sell%:trail%)")
        numbers = [
            _number(f"ladder level {index}", p.rstrip("%"), "percent numbers like 25:30 (profit%:sell%, sell at most 100)")
            for p in parts
        ]
        levels.append(Level(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 0.0))
    if len(levels) > 10:
        raise StrategyError(f"{len(levels)} ladder levels is too many: use at most 10")
    return replace(current, ladder=tuple(levels)).validated()


def _parse_value(key: str, raw: str, kind: str) -> Any:
    low = raw.lower()
    if kind == "switch":
        if low in ("on", "yes", "true", "1"):
            return True
        if low in ("off", "no", "false", "0"):
            return False
        raise StrategyError(f"{key} {raw!r} must be on or off")
    if low in ("off", "none"):
        return 0 if kind == "seconds" else 0.0
    if kind == "seconds":
        seconds = _number(key, low.rstrip("s"), RANGES.get(key, ""))
        if seconds != int(seconds):
            raise StrategyError(f"deadline {raw!r} must be whole seconds from 0 (off) to 86400")
        return int(seconds)
    return _number(key, raw.rstrip("%"), RANGES.get(key, ""))


def _number(name: str, raw: str, allowed: str = "") -> float:
    hint = f": use {allowed}" if allowed else ""
    try:
        value = float(raw)
    except ValueError:
        raise StrategyError(f"{name} {raw!r} is not a number{hint}") from None
    if not math.isfinite(value):
        raise StrategyError(f"{name} {raw!r} is not a finite number{hint}")
    return value


def _pct(name: str, value: float, upper: float, *, allow_off: bool) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise StrategyError(f"{name} {value!r} is not a finite number")
    if allow_off and value == 0:
        return
    if not 0 < value <= upper:
        raise StrategyError(
            f"{name} {_num(value)}% is out of range: use more than 0 and at most {_num(upper)}"
            + (" (0 or off turns it off)" if allow_off else "")
        )


def _num(value: float) -> str:
    return f"{value:g}"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
