"""What a trader reads: small prices, failure sentences, pasted links, typed buy amounts, button steps."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair

from bot.accounts import api_failure_words, free_label
from bot.lasersell_api import LaserSellApiError
from bot.notify.render import price
from handlers.common import PCT_LADDER, TIP_LADDER_LAMPORTS, ladder_step
from handlers.home import mint_in, parse_presets
from handlers.positions import failure_words


def test_small_prices_keep_their_digits_in_subscript_zero_notation() -> None:
    assert price(0.000000030) == "0.0₇3 SOL"
    assert price(0.00000003012) == "0.0₇301 SOL"
    assert price(0.00123) == "0.00123 SOL"
    assert price(1.5, "USD1") == "1.50 USD1"


@pytest.mark.parametrize("exc", [
    LaserSellApiError("LaserSell did not answer (ConnectError)"),
    LaserSellApiError("bad proof (POST /v1/wallets/register)", 400),
    LaserSellApiError("HTTP 400", 400),
    LaserSellApiError("upstream", 503),
])
def test_lasersell_failures_never_show_paths_or_exception_names(exc: LaserSellApiError) -> None:
    words = api_failure_words(exc)
    for developer in ("ConnectError", "POST", "/v1/", "HTTP 4"):
        assert developer not in words
    assert words.startswith("LaserSell")


def test_failed_exits_in_history_say_why_in_words() -> None:
    assert failure_words("other: instruction 2 failed with error code 1") == "it did not land; nothing was sold"
    assert failure_words("slippage: custom program error") == "the price moved past your slippage"
    assert "other" not in failure_words("other")


def test_a_pasted_address_or_token_link_gives_the_mint() -> None:
    mint = str(Keypair().pubkey())
    for text in (mint, f"https://pump.fun/coin/{mint}", f"see https://dexscreener.com/solana/{mint} now",
                 f"https://birdeye.so/token/{mint}?chain=solana", f"https://solscan.io/token/{mint}",
                 f"https://gmgn.ai/sol/token/{mint}"):
        assert mint_in(text) == mint, text
    assert mint_in("hello") is None
    assert mint_in(f"my friend said {mint} is good") is None  # an address inside chatter is not a paste
    assert mint_in(f"https://example.com/{mint}") is None


def test_typed_buy_amounts_are_checked() -> None:
    assert parse_presets("0.1 0.5, 1") == (100_000_000, 500_000_000, 1_000_000_000)
    for bad, words in (("lots", "not an amount"), ("0 1", "not more than 0"), ("1 2 3 4 5", "at most 4"),
                       ("5000", "at most 1000")):
        with pytest.raises(ValueError, match=words):
            parse_presets(bad)


def test_buttons_step_by_amounts_that_fit_the_value() -> None:
    assert ladder_step(PCT_LADDER, 6, True) == 7
    assert ladder_step(PCT_LADDER, 50, True) == 60
    assert ladder_step(PCT_LADDER, 0.5, False) is None
    assert ladder_step(TIP_LADDER_LAMPORTS, 1_000_000, False) == 500_000


def test_a_free_wallet_name_is_suggested() -> None:
    assert free_label({"Main", "main 2"}, "Main") == "Main 3"
    assert free_label({"Main"}, "Other") == "Other"
