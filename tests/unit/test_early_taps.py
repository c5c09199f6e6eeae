"""Sell taps read off Telegram's getUpdates answer before python-telegram-bot parses it (bot/exits/early_taps.py)."""

from __future__ import annotations

import asyncio
import json

from bot.callbacks import SignalTap
from bot.exits.early_taps import EarlyTaps, sell_tap


def _tap(update_id: int, data: str, user_id: int = 42, message: bool = True) -> dict[str, object]:
    query: dict[str, object] = {"id": f"q{update_id}", "from": {"id": user_id, "is_bot": False, "first_name": "Ann"},
                                "chat_instance": "1", "data": data}
    if message:
        query["message"] = {"message_id": 9, "date": 0, "chat": {"id": 4200, "type": "private"}, "text": "TP"}
    return {"update_id": update_id, "callback_query": query}


class Seller:
    """Records taps; a tap's sell is "sent" when `send` is set, as `Seller.sends_first` waits for."""

    def __init__(self) -> None:
        self.taps: list[tuple[int, str, str, tuple[int, int] | None]] = []
        self.sent = asyncio.Event()
        self.waited = 0

    async def tap(self, user_id: int, signal_id: str, action: str, shown_in: tuple[int, int] | None = None) -> str:
        self.taps.append((user_id, signal_id, action, shown_in))
        return f"Selling {signal_id}…"

    async def sends_first(self, timeout: float = 2.0) -> None:
        self.waited += 1
        await asyncio.wait_for(self.sent.wait(), timeout)


def test_only_a_well_formed_sell_tap_by_a_person_is_read_early() -> None:
    sell = SignalTap("sell", "abc123").pack()
    assert sell_tap(_tap(1, sell)) == ("q1", 42, "abc123", (4200, 9))
    assert sell_tap(_tap(1, sell, message=False)) == ("q1", 42, "abc123", None)  # an inline message: no chat
    assert sell_tap(_tap(1, SignalTap("skip", "abc123").pack())) is None  # Skip goes the usual way
    assert sell_tap(_tap(1, "x:sell")) is None  # no signal id
    assert sell_tap(_tap(1, "pc:now:5")) is None  # another kind of button
    bot = _tap(1, sell)
    bot["callback_query"]["from"]["is_bot"] = True  # type: ignore[index]
    assert sell_tap(bot) is None
    assert sell_tap({"update_id": 1, "message": {"text": "x:sell:abc"}}) is None
    assert sell_tap("garbage") is None


async def test_a_batch_starts_its_sells_and_is_handed_on_once_they_are_sent() -> None:
    seller = Seller()
    early = EarlyTaps(seller)
    updates = [_tap(1, SignalTap("sell", "s1").pack()), {"update_id": 2, "message": {"text": "hi"}},
               _tap(3, SignalTap("sell", "s2").pack(), user_id=7), _tap(4, SignalTap("skip", "s3").pack())]
    body = json.dumps({"ok": True, "result": updates}).encode()

    handed_on = asyncio.ensure_future(early.from_updates_body(body))
    await asyncio.sleep(0.05)
    assert [t[:3] for t in seller.taps] == [(42, "s1", "sell"), (7, "s2", "sell")]
    assert not handed_on.done()  # the library reads the batch only after the sells are out
    seller.sent.set()
    await asyncio.wait_for(handed_on, 1)

    started = early.started("q1")
    assert started is not None and await started == "Selling s1…"  # the handler answers with these words
    assert early.started("q1") is None  # handed out once: a second handler taps itself
    assert early.started("q4") is None  # Skip was never started early
    # the same batch again (getUpdates repeated): nothing starts twice
    await early.from_updates_body(json.dumps({"ok": True, "result": updates[2:3]}).encode())
    assert len(seller.taps) == 2
    await early.close()


async def test_a_batch_without_sell_taps_is_not_held() -> None:
    seller = Seller()
    early = EarlyTaps(seller)
    await asyncio.wait_for(early.from_updates_body(b'{"ok":true,"result":[{"update_id":1}]}'), 0.5)
    await asyncio.wait_for(early.from_updates_body(b"not json x:sell:"), 0.5)
    assert seller.taps == [] and seller.waited == 0
