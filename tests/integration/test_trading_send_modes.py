"""Onboarding and /settings show the send mode's tip floor and refuse a tip under it, and the stream is
configured with the official CLI's defaults. The real bot against the sandbox."""

from __future__ import annotations

from tests.e2e.harness import Harness, setup_trader


async def test_onboarding_shows_the_tip_floor_and_a_tip_under_it_is_refused(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann")
    done = await trader.chat.wait_text(r"You're set up")
    assert ("Sells go out through Helius Sender with a 0.001 SOL tip (Helius Sender needs a tip of at least "
            "0.0002 SOL)") in done["text"]
    session = h.services.stream.session_for(trader.api_key)
    assert session is not None
    configure = [m for m in session.received if m.get("type") == "configure"][-1]
    assert configure.get("send_mode") == "helius_sender" and configure.get("tip_lamports") == 1_000_000

    reply = await trader.chat.send("/settings tip 0.0001", expect=r"Nothing was changed")
    assert "0.0001 SOL is under the floor: Helius Sender needs a tip of at least 0.0002 SOL" in reply["text"]
    shown = await trader.chat.send("/settings", expect=r"Send mode")
    assert "Tip: 0.001 SOL (Helius Sender needs a tip of at least 0.0002 SOL)" in shown["text"]
    services = h.runner.services
    assert services is not None
    assert (await services.accounts.store.get(trader.chat.user_id)).tip_lamports == 1_000_000
