"""/stats and /broadcast count the same people, and each says whom a broadcast leaves out."""

from __future__ import annotations

import re

from tests.e2e.harness import setup_trader
from tests.e2e.test_admin import AdminStarter, admin_harness  # noqa: F401 (the fixture)


async def test_stats_and_broadcast_count_the_same_users(admin_harness: AdminStarter) -> None:  # noqa: F811
    h, ada = await admin_harness()
    await ada.send("/help", expect=r"/start")
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")  # set up by command, not buttons
    stats = await ada.send("/stats", expect=r"Stats")
    assert re.search(r"Users</b> 2 · set up 1|Users 2 · set up 1", stats["text"]), stats["text"]
    assert "a broadcast reaches the 2 not blocked, except the admin sending it" in stats["text"]

    question = await ada.send("/broadcast Hello traders", expect=r"Send it to")
    assert re.search(r"Send it to (<b>)?1(</b>)? users\?", question["text"])
    assert "Of the 2 users in /stats: all but you." in question["text"]
    await ada.press("Send", message=question, expect=r"Broadcast #\d+ (sent|done|finished)|1 of 1")
    await trader.chat.wait_text(r"Hello traders")
