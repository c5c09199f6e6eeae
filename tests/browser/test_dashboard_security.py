"""The dashboard's security screens: a key imported without the chat ever seeing it, a PIN, an allow-listed
address locked until the delay passes, a withdrawal after it (SOL, then a token), and a lockout after wrong PINs."""

import re

import base58
import pytest
from playwright.async_api import expect
from solders.keypair import Keypair

from bot.exits.withdraw import KEEP_LAMPORTS
from tests.browser.conftest import DELAY_S, Dashboard

pytestmark = pytest.mark.asyncio(loop_scope="session")
PIN = "482916"


async def test_import_pin_allow_list_withdraw_and_lockout(dash: Dashboard) -> None:
    h = dash.h
    chain = h.services.chain
    chat = await h.user("Bob")
    await chat.send("/start", expect=r"1/3")
    keypair = Keypair()
    chain.fund(keypair.pubkey(), 2.0)
    secret = base58.b58encode(bytes(keypair)).decode()

    await dash.open(chat.user_id, "Bob", page="security")
    f = dash.frame
    # --- import: the key goes to the bot, never into the chat
    await f.locator("#import-secret").fill(secret)
    await f.locator("#import-label").fill("Hot")
    await f.get_by_role("button", name="Import").click()
    await expect(f.locator("#import-note")).to_contain_text("Imported Hot")
    await expect(f.locator("#import-secret")).to_have_value("")
    await chat.wait_text(r"Wallet Hot .* was imported in your dashboard")
    wallets = await h.runner.services.accounts.wallets.list(chat.user_id)
    assert [w.address for w in wallets] == [str(keypair.pubkey())]
    transcript = chat.transcript()
    assert secret not in transcript and secret[:20] not in transcript
    assert all(secret not in str(m) for m in chat.messages())

    # --- a PIN
    await dash.open(chat.user_id, "Bob", page="security")
    await f.locator("#pin-new").fill(PIN)
    await f.locator("#pin-again").fill(PIN)
    await f.get_by_role("button", name="Set PIN").click()
    await expect(f.get_by_role("heading", name="PIN ✓")).to_be_visible()
    await chat.wait_text(r"dashboard PIN is set")
    await dash.screenshot("security")
    assert PIN not in chat.transcript()

    # --- a new withdrawal address is locked until the delay passes
    destination = str(Keypair().pubkey())
    await f.locator("#allow-address").fill(destination)
    await f.locator("#allow-label").fill("Cold")
    await f.locator("#allow-pin").fill(PIN)
    await f.get_by_role("button", name="Add address").click()
    entry = f.locator(f'li[data-address="{destination}"]')
    await expect(entry).to_contain_text("🔒 locked for 24 h 0 min")
    await chat.wait_text(r"Withdrawal address Cold .* can be used from")
    await dash.screenshot("allowlist", show="#allowlist")

    await f.locator("#withdraw-to").fill(destination)
    await f.locator("#withdraw-amount").fill("0.25")
    await f.locator("#withdraw-pin").fill(PIN)
    await f.get_by_role("button", name="Withdraw").click()
    await expect(f.locator("#withdraw-note")).to_contain_text("This address is new: it can be used from")
    assert chain.balance(destination) == 0

    # --- after the delay (the bot's clock and the client's move together) the same withdrawal lands
    dash.clock.offset += DELAY_S
    await dash.open(chat.user_id, "Bob", page="security")
    await expect(entry).to_contain_text("usable")
    await f.locator("#withdraw-to").fill(destination)
    await f.locator("#withdraw-amount").fill("0.25")
    await f.locator("#withdraw-pin").fill(PIN)
    await f.get_by_role("button", name="Withdraw").click()
    await expect(f.locator("#withdraw-note")).to_contain_text(re.compile(r"Sent 0\.25 SOL to"), timeout=15_000)
    assert chain.balance(destination) == 250_000_000
    await chat.wait_text(r"Withdrawal from your dashboard: Sent 0\.25 SOL")
    await dash.screenshot("withdraw", show="#allowlist")

    # --- a sweep sends everything but what keeps the wallet open
    held = chain.balance(str(keypair.pubkey()))
    await f.locator("#withdraw-sweep").check()
    await f.locator("#withdraw-pin").fill(PIN)
    await f.get_by_role("button", name="Withdraw").click()
    await expect(f.locator("#withdraw-note")).to_contain_text(re.compile(r"Sent 1\.\d+ SOL to"), timeout=15_000)
    assert chain.balance(str(keypair.pubkey())) == KEEP_LAMPORTS
    assert chain.balance(destination) == 250_000_000 + held - KEEP_LAMPORTS - 5000
    await f.locator("#withdraw-sweep").uncheck()
    swept = chain.balance(destination)

    # --- a token the wallet holds, picked from its holdings and swept to the same allow-listed address
    mint = chain.create_mint("BOBT", 6, 50.0, 1_000_000_000.0)
    chain.fund(keypair.pubkey(), 0.1)
    tokens = chain.outside_buy(keypair.pubkey(), mint, 0.01)
    await dash.open(chat.user_id, "Bob", page="security")
    await expect(f.locator("#withdraw-token option")).to_have_count(2)
    await f.locator("#withdraw-token").select_option(str(mint))
    await f.locator("#withdraw-to").fill(destination)
    await f.locator("#withdraw-sweep").check()
    await f.locator("#withdraw-pin").fill(PIN)
    await f.get_by_role("button", name="Withdraw").click()
    await expect(f.locator("#withdraw-note")).to_contain_text(re.compile(r"Sent [\d.]+ tokens to"), timeout=15_000)
    assert chain.token_balance(destination, mint) == tokens and chain.token_balance(keypair.pubkey(), mint) == 0
    await expect(f.locator("#withdraw-token option")).to_have_count(1)  # nothing of it left to pick
    await f.locator("#withdraw-sweep").uncheck()
    await f.locator("#withdraw-amount").fill("0.25")

    # --- wrong PINs lock it, and then even the right PIN sends nothing
    note = f.locator("#withdraw-note")
    for left in ("2 tries left", "1 try left"):
        await f.locator("#withdraw-pin").fill("000000")
        await f.get_by_role("button", name="Withdraw").click()
        await expect(note).to_contain_text(f"Wrong PIN. {left}")
    await f.locator("#withdraw-pin").fill("000000")
    await f.get_by_role("button", name="Withdraw").click()
    await expect(note).to_contain_text("Too many wrong PINs: the PIN is locked until")
    await chat.wait_text(r"3 wrong PINs in a row")
    await f.locator("#withdraw-pin").fill(PIN)
    await f.get_by_role("button", name="Withdraw").click()
    await expect(note).to_contain_text("locked until")
    assert chain.balance(destination) == swept
