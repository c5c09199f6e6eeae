"""Stream faults: a flood of error frames. What would be lost is the chat itself (hundreds of messages
burying the exits); the test asserts the flood is one message and the stream still works after it."""

from __future__ import annotations

from tests.e2e.harness import Harness, pump, setup_trader


def errors_shown(chat_text: list[str]) -> int:
    return sum("LaserSell says" in t for t in chat_text)


async def test_three_hundred_error_frames_become_one_chat_message(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann")
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None

    for i in range(300):
        session.error(f"upstream_glitch_{i}", f"glitch number {i}")
    # a position opened after the flood: once it is shown, every error frame before it was handled
    mint = h.services.chain.create_mint("PEPE", 6, 30.0, 1_000_000_000.0, name="Pepe")
    h.services.chain.outside_buy(trader.wallet, mint, 0.5)
    await pump(h)
    await trader.chat.wait_text(r"New position: PEPE", timeout=20)
    await trader.chat.wait_text(r"LaserSell says")

    shown = errors_shown([m.get("text") or "" for m in trader.chat.bot_messages()])
    assert shown == 1, trader.chat.transcript()[-2000:]
