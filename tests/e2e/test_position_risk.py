"""Every new position message carries the token's risk flags, read from its mint on chain."""

from sandbox.control import write_mint_risk
from tests.e2e.harness import Harness, pump, setup_trader


async def test_a_new_position_shows_its_tokens_risk_flags_and_a_clean_token_shows_none(harness: Harness) -> None:
    h = harness
    trader = await setup_trader(h, "Ann", strategy="tp 500 sl 90 deadline 0")
    chain = h.services.chain
    risky = chain.create_mint("RISK", 6, 30.0, 1_000_000_000.0, name="Risky")
    write_mint_risk(chain, risky, ["mint_authority", "freeze_authority"])
    clean = chain.create_mint("CLEAN", 6, 30.0, 1_000_000_000.0, name="Clean")
    write_mint_risk(chain, clean, [])
    chain.outside_buy(trader.wallet, risky, 0.2)
    chain.outside_buy(trader.wallet, clean, 0.2)
    await pump(h)
    flagged = await trader.chat.wait_text(r"New position: RISK")
    assert "⚠️ mint authority kept: more of it can be minted" in flagged["text"]
    assert "⚠️ freeze authority kept: your tokens can be frozen" in flagged["text"]
    plain = await trader.chat.wait_text(r"New position: CLEAN")
    assert "⚠️" not in plain["text"]
    # the card keeps its flags when its numbers change
    chain.market_move(risky, 30)
    await pump(h)
    moved = await trader.chat.wait_text(r"New position: RISK[\s\S]*\(\+2\d\.\d%\)")
    assert "freeze authority kept" in moved["text"]
