"""Callback data: typed classes packed within Telegram's 64 bytes, garbage refused with a clear answer, and
no button data assembled by hand anywhere else."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest

from bot import callbacks
from bot.application import ROUTERS
from bot.callbacks import (
    STALE,
    BuyTap,
    CallbackData,
    CallbackError,
    CallbackTooLong,
    LegacyPositionTap,
    OnboardingTap,
    PositionTap,
    SettingsTap,
    SignalTap,
    Stash,
    StrategyTap,
    TokenBuyTap,
    TokenTap,
    WalletTap,
    keyboard,
    kind_of,
)
from handlers.registry import Button, button_handler

ROOT = Path(__file__).resolve().parents[2]
MINT = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"


@pytest.mark.parametrize(
    ("data", "packed"),
    [
        (SignalTap("sell", "0f3a9c1e-77aa"), "x:sell:0f3a9c1e-77aa"),
        (PositionTap("s", 42, 25), "pc:s:42:25"),
        (PositionTap("open", 7), "pc:open:7"),
        (WalletTap("import"), "w:import"),
        (WalletTap("exp", 3), "w:exp:3"),
        (OnboardingTap("skip", "wallet"), "ob:skip:wallet"),
        (StrategyTap("up", "tp"), "s:up:tp"),
        (SettingsTap("tip", "+"), "cfg:tip:+"),
        (TokenTap("r", 0, MINT), f"t:r:0:{MINT}"),
        (TokenBuyTap(12, 2, MINT), f"tb:12:2:{MINT}"),
        (BuyTap("go", "ord_1"), "b:go:ord_1"),
    ],
)
def test_each_kind_packs_to_its_wire_form_and_back(data: CallbackData, packed: str) -> None:
    assert data.pack() == packed
    assert type(data).unpack(packed) == data
    assert kind_of(packed) is type(data)
    assert len(packed.encode()) <= 64


@pytest.mark.parametrize(
    ("kind", "garbage"),
    [
        (PositionTap, "pc:zz:1"), (PositionTap, "pc:s:x"), (PositionTap, "pc:s:1:2:3"), (PositionTap, "pc"),
        (PositionTap, "pcs:1"), (PositionTap, "pc:s:" + "9" * 70), (PositionTap, ""), (PositionTap, None),
        (PositionTap, 42), (SignalTap, "x:sell"), (WalletTap, "w:exp:1e3"), (OnboardingTap, "ob:skip:nothing"),
    ],
)
def test_garbage_is_refused_with_the_stale_answer(kind: type[CallbackData], garbage: object) -> None:
    with pytest.raises(CallbackError) as caught:
        kind.unpack(garbage)
    assert str(caught.value) == STALE


def test_data_of_another_kind_is_not_read_as_this_one() -> None:
    assert not PositionTap.matches("p:sell:3") and LegacyPositionTap.matches("p:sell:3")
    assert LegacyPositionTap.unpack("p:sell:3").upgraded() == PositionTap("now", 3)
    with pytest.raises(CallbackError):
        PositionTap.unpack("p:sell:3")


def test_a_value_that_does_not_fit_is_refused_when_the_button_is_built() -> None:
    with pytest.raises(CallbackTooLong):
        SignalTap("sell", "a" * 70).pack()
    with pytest.raises(ValueError, match="Stash"):
        SignalTap("sell", "has:colon").pack()
    with pytest.raises(ValueError):
        PositionTap("explode", 1).pack()  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PositionTap("open", "1").pack()  # type: ignore[arg-type]


def test_keyboard_packs_every_button() -> None:
    markup = keyboard([("Sell 25%", PositionTap("s", 1, 25)), ("Skip", SignalTap("skip", "s1"))])
    assert [b.callback_data for b in markup.inline_keyboard[0]] == ["pc:s:1:25", "x:skip:s1"]


def test_a_prefix_is_taken_once() -> None:
    with pytest.raises(TypeError, match="already"):
        @dataclasses.dataclass(frozen=True)
        class Clash(CallbackData, prefix="pc"):
            action: Literal["a"]


def test_the_stash_hands_a_long_value_out_once() -> None:
    stash = Stash()
    long_value = "memo " * 40
    key = stash.put(long_value)
    assert len(SignalTap("sell", key).pack()) <= 64
    assert stash.take(key) == long_value
    with pytest.raises(CallbackError):
        stash.take(key)  # consumed
    with pytest.raises(CallbackError):
        stash.take("never-issued")


def test_the_stash_forgets_old_values() -> None:
    stash = Stash(ttl_s=0.0)
    key = stash.put("x")
    with pytest.raises(CallbackError):
        stash.take(key)
    small = Stash(max_items=2)
    first = small.put("1")
    small.put("2")
    small.put("3")
    with pytest.raises(CallbackError):
        small.take(first)


# --- nobody builds callback data by hand ------------------------------------------------------------------------
def _sources() -> list[Path]:
    files = sorted((ROOT / "handlers").rglob("*.py")) + sorted((ROOT / "bot").rglob("*.py"))
    return [p for p in files if p != ROOT / "bot" / "callbacks.py"]


def _literal_head(node: ast.expr) -> str | None:
    """The text a string expression starts with, when it is a literal, an f-string or `literal + ...`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        first = node.values[0] if node.values else None
        return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
    if isinstance(node, ast.BinOp):
        return _literal_head(node.left) or ""
    return None


def _hand_built(tree: ast.Module) -> list[int]:
    """Lines where callback data is assembled from strings instead of a CallbackData class."""
    prefixes = tuple(f"{prefix}:" for prefix in callbacks._KINDS)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "callback_data":
            lines.append(node.value.lineno)  # only bot/callbacks.py makes buttons from packed data
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "keyboard", "buttons"
        ):
            for item in ast.walk(node):
                if isinstance(item, ast.Tuple) and len(item.elts) == 2 and _literal_head(item.elts[1]) is not None:
                    lines.append(item.lineno)
        elif isinstance(node, ast.JoinedStr | ast.Constant | ast.BinOp):
            head = _literal_head(node)  # type: ignore[arg-type]
            if head and head.startswith(prefixes) and len(head) < 30 and " " not in head:
                lines.append(node.lineno)
    return sorted(set(lines))


def test_the_hand_built_check_catches_the_old_ways() -> None:
    old = ast.parse(
        'keyboard([("Sell", f"x:sell:{sid}")])\n'
        'buttons([("Stop", "p:stop:" + str(pid))])\n'
        'InlineKeyboardButton("Copy", callback_data=f"cp:go:{oid}")\n'
        'data = f"pc:s:{pid}:{share}"\n'
    )
    assert _hand_built(old) == [1, 2, 3, 4]
    assert _hand_built(ast.parse('keyboard([("Sell", SignalTap("sell", sid))])\nkey = f"card:{pid}"')) == []


def test_no_callback_data_is_built_by_hand_outside_the_codec() -> None:
    found = {str(p.relative_to(ROOT)): _hand_built(ast.parse(p.read_text())) for p in _sources()}
    assert len(found) > 40
    assert {path: lines for path, lines in found.items() if lines} == {}


# --- one handler per kind, and a forged tap changes nothing ---------------------------------------------------------
def test_every_kind_of_button_has_exactly_one_handler_in_the_app() -> None:
    handled = [button.kind for router in ROUTERS for button in router.buttons]
    assert len(handled) == len(set(handled)), "two handlers for one kind of button"
    assert set(handled) == set(callbacks._KINDS.values()), "a kind of button nobody handles (or a handler for none)"


class FakeQuery:
    def __init__(self, data: str) -> None:
        self.data = data
        self.answers: list[tuple[str | None, bool]] = []

    async def answer(self, text: str | None = None, show_alert: bool = False) -> None:
        self.answers.append((text, show_alert))


async def test_a_forged_tap_gets_the_stale_answer_and_nothing_runs() -> None:
    ran: list[PositionTap] = []

    async def sell(update: object, _context: object) -> None:
        ran.append(PositionTap.read(update))  # type: ignore[arg-type]

    handler = button_handler(Button(PositionTap, sell))
    for data in ("pc:explode:1", "pc:s:1;DROP", "pc:s:1:2:3:4"):
        query = FakeQuery(data)
        assert handler.pattern is not None
        await handler.callback(SimpleNamespace(callback_query=query), None)  # type: ignore[arg-type]
        assert query.answers == [(STALE, False)], data
    assert ran == []
    good = FakeQuery("pc:s:7:25")
    await handler.callback(SimpleNamespace(callback_query=good), None)  # type: ignore[arg-type]
    assert ran == [PositionTap("s", 7, 25)] and good.answers == []
