"""Traders tapping Sell at the same moment: every sell reaches the RPC before any tap's answer goes out. The
answers are Telegram traffic on the bot's one event loop; in a burst they must not delay a send."""

from __future__ import annotations

from typing import Any

from solders.signature import Signature

from tests.e2e.harness import Harness, holding, signal_id, stored, take_profit


def sell_data(message: dict[str, Any]) -> str:
    return next(b["data"] for row in message.get("buttons") or [] for b in row if b.get("data", "").startswith("x:sell:"))


async def test_the_answers_of_simultaneous_taps_go_out_after_every_sell_is_sent(harness: Harness) -> None:
    h = harness
    ann, pepe = await holding(h, "Ann", "PEPE")
    bob, wif = await holding(h, "Bob", "WIF")
    ann_signal = await take_profit(h, ann, pepe)
    bob_signal = await take_profit(h, bob, wif)

    # both taps in one go: the bot's next getUpdates hands them out together
    for trader, signal in ((ann, ann_signal), (bob, bob_signal)):
        h.services.telegram.press(trader.chat.user_id, signal["message_id"], sell_data(signal))
    await ann.chat.wait_text(r"Sold .* PEPE for", timeout=30)
    await bob.chat.wait_text(r"Sold .* WIF for", timeout=30)

    sells = [await stored(h, signal_id(s)) for s in (ann_signal, bob_signal)]
    received = [h.services.rpc.received_at[Signature.from_string(signal.signature)] for signal in sells if signal.signature]
    answered = [a["received_at"] for t, s in ((ann, ann_signal), (bob, bob_signal))
                for a in h.services.telegram.callback_answers(t.chat.chat_id) if a["data"] == sell_data(s)]
    assert len(received) == 2 and len(answered) == 2
    assert min(answered) > max(received)
