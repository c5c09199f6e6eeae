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
    """One take-profit level: at `profit_pct` sell `sell_pct` % of what REMAINS of the position."""

    profit_pct: float
    sell_pct: float
    trailing_stop_pct: float = 0.0  # > 0: from that profit on, sell once the price falls this far from its peak


@dataclass(frozen=True)
class Strategy:
    take_profit_pct: float = 6.0  # 0 = off
    stop_loss_pct: float = 10.0  # 0 = off
    trailing_stop_pct: float = 0.0
    # 0 = off, as in the official SDK and CLI: a default deadline would sell every position seconds after
    # the buy. The bot runs the timer (on `configure` only when it is the one exit).
    deadline_s: int = 0
    sell_on_graduation: bool = False
    liquidity_guard: bool = False
    breakeven_trail_pct: float = 0.0
    ladder: tuple[Level, ...] = field(default_factory=tuple)

    # --- validation -------------------------------------------------------------------------------------
    def validated(self) -> Strategy:
        """The strategy if LaserSell would accept it (and the bot can run its deadline), else StrategyError.

        The rules are the stream's: percentages are finite and not negative, a loss or a trail from a
        peak is below 100 %, ladder levels rise in profit and each sells (0, 100] % of what is left,
        and at least one of take profit, stop loss, trailing stop or the deadline is above 0.
        """
        _pct("take profit (tp)", self.take_profit_pct, None, allow_off=True)
        _pct("stop loss (sl)", self.stop_loss_pct, 100, allow_off=True, below=True)
        _pct("trailing stop (trail)", self.trailing_stop_pct, 100, allow_off=True, below=True)
        _pct("breakeven trail (breakeven)", self.breakeven_trail_pct, 100, allow_off=True, below=True)
        if not isinstance(self.deadline_s, int) or not 0 <= self.deadline_s <= 86400:
            raise StrategyError(f"deadline {self.deadline_s!r} is out of range: use 0 (off) to 86400 seconds")
        if len(self.ladder) > MAX_LEVELS:
            raise StrategyError(f"{len(self.ladder)} ladder levels is too many: use at most {MAX_LEVELS}")
        previous = 0.0
        for index, level in enumerate(self.ladder, start=1):
            _pct(f"ladder level {index} profit", level.profit_pct, None, allow_off=False)
            _pct(f"ladder level {index} sell", level.sell_pct, 100, allow_off=False)
            _pct(f"ladder level {index} trail", level.trailing_stop_pct, 100, allow_off=True, below=True)
            if level.profit_pct <= previous:
                raise StrategyError(
                    f"ladder level {index} profit {_num(level.profit_pct)}% must be higher than the level before "
                    f"({_num(previous)}%): list levels in increasing profit"
                )
            if level.sell_pct >= 100 and index < len(self.ladder):
                # selling 100 % of what is left empties the position: a later level would have nothing to sell
                raise StrategyError(
                    f"ladder level {index} sells 100% of what is left, so the levels after it would sell nothing: "
                    "only the last level may sell 100%"
                )
            previous = level.profit_pct
        if self.ladder and 0 < self.take_profit_pct <= self.ladder[-1].profit_pct:
            # LaserSell's take profit stays a hard cap over the ladder: at or below a level it sells everything first
            raise StrategyError(
                f"take profit +{_num(self.take_profit_pct)}% would sell the whole position before the ladder's "
                f"level at +{_num(self.ladder[-1].profit_pct)}%: turn it off (tp 0) or set it above "
                f"{_num(self.ladder[-1].profit_pct)}"
            )
        if not self.has_stream_exit():
            raise StrategyError(
                "no exit condition is on: LaserSell needs at least one of take profit (tp), stop loss (sl), "
                "trailing stop (trail) or a deadline above 0 (a ladder, sell on graduation, breakeven trail or "
                "the liquidity guard alone do not count)"
            )
        return self

    def has_stream_exit(self) -> bool:
        """LaserSell's rule for a valid strategy: take profit, stop loss, trailing stop or deadline above 0.

        The liquidity guard only decides when an exit may be built, so it never counts as one.
        """
        return bool(self.take_profit_pct > 0 or self.stop_loss_pct > 0 or self.trailing_stop_pct > 0 or self.deadline_s > 0)

    def wire_has_exit(self) -> bool:
        """Whether the wire strategy alone (without the deadline, which is not in it) has an exit condition."""
        return bool(self.take_profit_pct > 0 or self.stop_loss_pct > 0 or self.trailing_stop_pct > 0)

    def ladder_shares(self) -> list[tuple[float, float]]:
        """For each level: (share of the original position it sells, share sold in all once it has fired).

        A level sells `sell_pct` of what REMAINS when it fires, so 25:30 50:50 100:100 sells 30 %, then
        35 % (half of the 70 % left), then the last 35 %.
        """
        remaining = 100.0
        shares = []
        for level in self.ladder:
            sold = remaining * level.sell_pct / 100
            remaining -= sold
            shares.append((sold, 100.0 - remaining))
        return shares

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

    @classmethod
    def load(cls, text: str) -> Strategy:
        """A stored strategy, checked by today's rules before it is used: one an older version saved that
        LaserSell would now refuse (or that this version cannot read) raises StrategyError saying why."""
        try:
            strategy = cls.from_json(text)
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, or fields this version does not know
            raise StrategyError(f"this version cannot read it ({type(exc).__name__})") from None
        return strategy.validated()

    def describe(self) -> list[str]:
        """The strategy in plain words, one line a condition (ladder levels one line each)."""
        lines = []
        if self.ladder:
            lines.append("Take-profit ladder: each level sells a share of what is left when it fires")
            for level, (_sold, total) in zip(self.ladder, self.ladder_shares(), strict=True):
                what = "the rest" if level.sell_pct >= 100 else f"{_num(level.sell_pct)}% of what's left"
                how = (
                    f" once it falls {_num(level.trailing_stop_pct)}% from its peak after that"
                    if level.trailing_stop_pct
                    else ""
                )
                lines.append(
                    f"  at +{_num(level.profit_pct)}% sell {what}{how} ({_share(total)}% of the position sold by then)"
                )
            if self.take_profit_pct:
                lines.append(f"Take profit: at +{_num(self.take_profit_pct)}% sell whatever is left of the ladder")
        else:
            lines.append(f"Take profit: {'+' + _num(self.take_profit_pct) + '%' if self.take_profit_pct else 'off'}")
        lines.append(f"Stop loss: {'-' + _num(self.stop_loss_pct) + '%' if self.stop_loss_pct else 'off'}")
        lines.append(
            "Trailing stop: "
            + (f"{_num(self.trailing_stop_pct)}% below the peak, once in profit" if self.trailing_stop_pct else "off")
        )
        lines.append(f"Deadline: {_duration(self.deadline_s) + ' after the buy' if self.deadline_s else 'off'}")
        lines.append(f"Sell on graduation: {'on' if self.sell_on_graduation else 'off'}")
        lines.append(
            "Liquidity guard: "
            + (LIQUIDITY_GUARD_ON if self.liquidity_guard else "off (exits are built whatever the pool's liquidity)")
        )
        lines.append(
            "Breakeven trail: "
            + (
                f"once the position breaks even, exit if it falls {_num(self.breakeven_trail_pct)}% below entry"
                if self.breakeven_trail_pct
                else "off"
            )
        )
        return lines


MAX_LEVELS = 10
# What the guard does, in the words every strategy summary uses: it is a check on exits, not a trigger.
LIQUIDITY_GUARD_ON = (
    "on: LaserSell checks the pool's liquidity before it builds an exit and holds the exit back while the "
    "pool is too thin to take the sell (it never starts an exit by itself)"
)

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
    "tp": "a number above 0 (0 or off turns it off)",
    "sl": "more than 0 and below 100 (0 or off turns it off)",
    "trail": "more than 0 and below 100 (0 or off turns it off)",
    "breakeven": "more than 0 and below 100 (0 or off turns it off)",
    "deadline": "whole seconds from 0 (off) to 86400",
}
ONE_LINE_USAGE = "/strategy tp 25 sl 10 trail 5 deadline 120 graduation on guard off breakeven 3"
LADDER_USAGE = (
    "/ladder 25:30 50:50 100:100  (profit%:sell% of what is left, optional :trail%; the last level at 100 sells "
    "the rest; /ladder off to clear)"
)


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
            _number(f"ladder level {index}", p.rstrip("%"), "percent numbers like 25:30 (profit%:sell% of what is left)")
            for p in parts
        ]
        levels.append(Level(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 0.0))
    take_profit = current.take_profit_pct
    if levels and take_profit and take_profit <= max(level.profit_pct for level in levels):
        take_profit = 0.0  # a take profit below the ladder would sell everything first: the ladder takes over
    return replace(current, ladder=tuple(levels), take_profit_pct=take_profit).validated()


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


def _pct(name: str, value: float, upper: float | None, *, allow_off: bool, below: bool = False) -> None:
    """`value` is off (0, when allowed) or above 0 and at most `upper` (below it when `below`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StrategyError(f"{name} {value!r} is not a finite number")
    if allow_off and value == 0:
        return
    too_high = upper is not None and (value >= upper if below else value > upper)
    if value <= 0 or too_high:
        if upper is None:
            allowed = "a number above 0"
        else:
            allowed = f"more than 0 and {'below' if below else 'at most'} {_num(upper)}"
        raise StrategyError(
            f"{name} {_num(value)}% is out of range: use {allowed}" + (" (0 or off turns it off)" if allow_off else "")
        )


def _num(value: float) -> str:
    return f"{value:g}"


def _share(value: float) -> str:
    return f"{round(value, 1):g}"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
