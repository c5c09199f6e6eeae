"""Reconnects against the sandbox LaserSell stream, which numbers positions afresh in every session and
refuses a second session for a key (`session_limit`), through the real bot and the sandbox Telegram."""

from __future__ import annotations

from tests.e2e.harness import Harness, buys, setup_trader


async def test_stream_refused_as_in_use_comes_back_without_bothering_the_trader(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    stream = h.services.stream
    first = stream.session_for(trader.api_key)
    before = stream.connection_attempts[trader.api_key]
    stream.refuse_sessions(3)  # as if the dropped session still held the key for a moment
    await stream.drop_connections()
    worker = h.runner.services.streams.workers[trader.chat.user_id]
    await trader.chat.wait_for(lambda _: stream.session_for(trader.api_key) not in (None, first), what="a new session")
    assert await worker.client.wait_connected(5)
    assert stream.connection_attempts[trader.api_key] - before == 4  # three refusals, then the session
    # the trader notices nothing of a blip: a sell they ask for still works
    await buys(h, trader)
    opened = await trader.chat.wait_text(r"New position: PEPE")
    await trader.chat.press("Sell now", message=opened)
    await trader.chat.wait_text(r"You asked to sell")
    assert "stream stopped" not in trader.chat.transcript() and "down for over" not in trader.chat.transcript()


async def test_stream_a_deadline_fires_for_the_right_position_after_the_session_renumbers_it(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 2")
    await buys(h, trader, symbol="PEPE")
    stream = h.services.stream
    first = stream.session_for(trader.api_key)
    await stream.drop_connections()  # the deadline runs out in the next session, where ids are new
    signal = await trader.chat.wait_text(r"Deadline reached", timeout=10)
    assert "PEPE" in signal["text"]
    session = stream.session_for(trader.api_key)
    assert session is not None and session is not first
    asked = [m for m in session.received if m["type"] == "request_exit_signal"]
    position = (await h.runner.services.streams.positions.open_for(trader.chat.user_id))[0]
    assert asked == [{"type": "request_exit_signal", "token_account": position.token_account}]
