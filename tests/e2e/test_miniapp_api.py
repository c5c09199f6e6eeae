"""The dashboard's API on the real bot: who a call acts for comes from verified initData and nothing else,
and a PIN moves chat exports into the dashboard."""

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import aiohttp
import base58
import pytest
from solders.keypair import Keypair

from bot.miniapp.initdata import init_data_for
from tests.e2e.harness import Harness, start_harness, stop_harness

OTHER_BOT_TOKEN = "111111111:" + "Z" * 35


@pytest.fixture
async def dash(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, settings_env={"MINIAPP_LISTEN": "127.0.0.1:0"})
    try:
        yield h
    finally:
        await stop_harness(h)


async def call(h: Harness, method: str, path: str, init_data: str | None, body: dict | None = None) -> tuple[int, dict]:
    server = h.runner.services.dashboard
    headers = {"Authorization": f"tma {init_data}"} if init_data is not None else {}
    async with aiohttp.ClientSession() as session, session.request(
        method, server.url + path, headers=headers, json=body
    ) as reply:
        return reply.status, await reply.json()


def signed(h: Harness, user_id: int, name: str, age_s: int = 0, token: str | None = None) -> str:
    return init_data_for(user_id, name, token or h.runner.settings.telegram_bot_token, int(time.time()) - age_s)


async def test_calls_without_valid_fresh_init_data_are_refused(dash: Harness) -> None:
    h = dash
    ann = await h.user("Ann")
    await ann.send("/start", expect=r"1/3")
    assert (await call(h, "GET", "/api/me", signed(h, ann.user_id, "Ann")))[0] == 200  # the positive case first
    fields = dict(parse_qsl(signed(h, ann.user_id, "Ann")))
    user = json.loads(fields["user"])
    user["id"] += 1
    tampered = urlencode({**fields, "user": json.dumps(user)})
    for what, init_data in (
        ("missing", None),
        ("forged with another bot's token", signed(h, ann.user_id, "Ann", token=OTHER_BOT_TOKEN)),
        ("stale", signed(h, ann.user_id, "Ann", age_s=3601)),
        ("tampered", tampered),
        ("garbage", "hash=1&hash=2"),
    ):
        status, body = await call(h, "GET", "/api/me", init_data)
        assert status == 401, what
        assert "initData" in body["error"], what
    async with aiohttp.ClientSession() as session, session.get(h.runner.services.dashboard.url + "/api/events") as reply:
        assert reply.status == 401


async def test_the_user_comes_from_init_data_never_from_the_request(dash: Harness) -> None:
    h = dash
    ann, bob = await h.user("Ann"), await h.user("Bob")
    for chat in (ann, bob):
        await chat.send("/start", expect=r"1/3")
    keypair = Keypair()
    status, body = await call(h, "POST", "/api/wallets/import", signed(h, ann.user_id, "Ann"),
                              {"secret": base58.b58encode(bytes(keypair)).decode(), "label": "Main"})
    assert status == 200
    ann_wallet = body["wallet"]["id"]
    await call(h, "POST", "/api/pin", signed(h, ann.user_id, "Ann"), {"pin": "111111"})
    # Bob names Ann in the body: the PIN he sets is his own
    status, _ = await call(h, "POST", f"/api/pin?user_id={ann.user_id}", signed(h, bob.user_id, "Bob"),
                           {"pin": "222222", "user_id": ann.user_id})
    assert status == 200
    server = h.runner.services.dashboard
    await server.security.verify(bob.user_id, "222222")
    await server.security.verify(ann.user_id, "111111")
    # Bob cannot export or remove Ann's wallet by its id, even with his right PIN
    for action in ("export", "remove"):
        status, body = await call(h, "POST", f"/api/wallets/{ann_wallet}/{action}", signed(h, bob.user_id, "Bob"),
                                  {"pin": "222222"})
        assert status == 400 and "no longer in your list" in body["error"]
    assert [w.id for w in await h.runner.services.accounts.wallets.list(ann.user_id)] == [ann_wallet]
    # someone who never started the bot is told to
    status, body = await call(h, "GET", "/api/me", signed(h, 999_999, "Eve"))
    assert status == 403 and "/start" in body["error"]


async def test_with_a_pin_set_the_chat_export_sends_the_user_to_the_dashboard(dash: Harness) -> None:
    h = dash
    ann = await h.user("Ann")
    await ann.send("/start", expect=r"1/3")
    keypair = Keypair()
    secret = base58.b58encode(bytes(keypair)).decode()
    status, _ = await call(h, "POST", "/api/wallets/import", signed(h, ann.user_id, "Ann"), {"secret": secret, "label": "Main"})
    assert status == 200
    # before a PIN the chat still shows its export confirmation
    await ann.send("/wallets", expect=r"Your wallets")
    await ann.press("⚙ Main", expect=r"Main ⭐ default")
    await ann.press("Export key", expect=r"Show the secret key of")
    await call(h, "POST", "/api/pin", signed(h, ann.user_id, "Ann"), {"pin": "135790"})
    await ann.send("/wallets", expect=r"Your wallets")
    await ann.press("⚙ Main", expect=r"Main ⭐ default")
    reply = await ann.press("Export key", expect=r"protected exports with a PIN")
    buttons = [b for row in reply.get("buttons") or [] for b in row]
    assert any(b.get("web_app", {}).get("url", "").startswith(h.runner.services.dashboard.url) for b in buttons)
    shown_after = reply["message_id"]
    assert not [m for m in ann.bot_messages() if m["message_id"] >= shown_after and "Secret key of" in (m.get("text") or "")]
    # the dashboard exports it behind the PIN
    status, body = await call(h, "POST", "/api/wallets/1/export", signed(h, ann.user_id, "Ann"), {"pin": "000000"})
    assert status == 400 and "Wrong PIN" in body["error"]
    wallet_id = (await h.runner.services.accounts.wallets.list(ann.user_id))[0].id
    status, body = await call(h, "POST", f"/api/wallets/{wallet_id}/export", signed(h, ann.user_id, "Ann"),
                              {"pin": "135790"})
    assert status == 200 and body["address"] == str(keypair.pubkey())


async def test_dashboard_command_gives_a_web_app_button_to_the_dashboard(dash: Harness) -> None:
    h = dash
    ann = await h.user("Ann")
    await ann.send("/start", expect=r"1/3")
    reply = await ann.send("/dashboard", expect=r"Your dashboard")
    buttons = [b for row in reply.get("buttons") or [] for b in row]
    assert [b["web_app"]["url"] for b in buttons] == [h.runner.services.dashboard.url + "/"]
    async with aiohttp.ClientSession() as session, session.get(buttons[0]["web_app"]["url"]) as page:
        assert page.status == 200 and '<div id="toast"' in await page.text()


async def test_a_token_is_withdrawn_to_an_allow_listed_address_only_after_the_delay(dash: Harness) -> None:
    h = dash
    chain = h.services.chain
    server = h.runner.services.dashboard
    offset = [0.0]
    server.clock = lambda: time.time() + offset[0]

    def now_signed() -> str:
        return init_data_for(cat.user_id, "Cat", h.runner.settings.telegram_bot_token, int(server.clock()))

    cat = await h.user("Cat")
    await cat.send("/start", expect=r"1/3")
    keypair = Keypair()
    wallet = keypair.pubkey()
    chain.fund(wallet, 1.0)
    mint = chain.create_mint("CAT", 6, 50.0, 1_000_000_000.0)
    held = chain.outside_buy(wallet, mint, 0.5)
    assert held > 0
    status, _ = await call(h, "POST", "/api/wallets/import", now_signed(),
                           {"secret": base58.b58encode(bytes(keypair)).decode(), "label": "Main"})
    assert status == 200
    assert (await call(h, "POST", "/api/pin", now_signed(), {"pin": "482916"}))[0] == 200
    destination = Keypair().pubkey()
    status, _ = await call(h, "POST", "/api/allowlist", now_signed(),
                           {"address": str(destination), "label": "Cold", "pin": "482916"})
    assert status == 200
    status, body = await call(h, "GET", f"/api/tokens?wallet={wallet}", now_signed())
    assert status == 200 and [(t["mint"], t["decimals"]) for t in body["tokens"]] == [(str(mint), 6)]
    assert float(body["tokens"][0]["amount"]) * 10**6 == pytest.approx(held)
    half = held // 2
    ask = {"wallet": str(wallet), "destination": str(destination), "mint": str(mint),
           "amount": format(half / 10**6, "f"), "pin": "482916"}

    # a new address is locked: nothing moves
    status, body = await call(h, "POST", "/api/withdraw", now_signed(), ask)
    assert status == 400 and "This address is new" in body["error"]
    # an address not on the list is refused, however right the PIN
    stranger = Keypair().pubkey()
    status, body = await call(h, "POST", "/api/withdraw", now_signed(), {**ask, "destination": str(stranger)})
    assert status == 400
    assert chain.token_balance(destination, mint) == 0 and chain.token_balance(wallet, mint) == held

    offset[0] += 86_400 + 1
    # bad input after the delay: said what was wrong, nothing moved
    for bad, words in ((dict(amount="lots"), "number of tokens"), (dict(amount=format((held + 1) / 10**6, "f")),
                       "holds"), (dict(mint=str(Keypair().pubkey())), "holds none of that token")):
        status, body = await call(h, "POST", "/api/withdraw", now_signed(), {**ask, **bad})
        assert status == 400 and words in body["error"], bad
    assert chain.token_balance(wallet, mint) == held

    sol_before = chain.balance(wallet)
    status, body = await call(h, "POST", "/api/withdraw", now_signed(), ask)
    assert status == 200 and body["kind"] == "landed", body
    assert chain.token_balance(destination, mint) == half
    assert chain.token_balance(wallet, mint) == held - half
    rent = chain.rent_exempt_minimum(165)
    assert chain.balance(wallet) == sol_before - 5000 - rent  # the fee and the new account's rent, nothing else
    await cat.wait_text(r"Withdrawal from your dashboard: Sent [\d.]+ tokens to")

    # a sweep sends the rest; the destination's account exists now, so only the fee is paid
    sol_before = chain.balance(wallet)
    status, body = await call(h, "POST", "/api/withdraw", now_signed(),
                              {**ask, "amount": None, "sweep": True})
    assert status == 200 and body["kind"] == "landed", body
    assert chain.token_balance(destination, mint) == held and chain.token_balance(wallet, mint) == 0
    assert chain.balance(wallet) == sol_before - 5000
    records = await server.withdrawals.for_user(cat.user_id)
    assert [(r.mint, r.lamports, r.state) for r in records] == [(str(mint), held - half, "landed"),
                                                                 (str(mint), half, "landed")]
