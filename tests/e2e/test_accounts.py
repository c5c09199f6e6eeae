"""Issue 4, accounts by chat: onboarding, /apikey, /wallets, /strategy, /ladder, /settings, /pause, /forget.

Each test drives the real bot through the sandbox Telegram and checks both the chat and what is stored.
Every secret a test uses is recorded; the last check reads the raw SQLite files and finds none of them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import base58
import pytest
from mnemonic import Mnemonic
from solders.keypair import Keypair

from bot.keys import keypair_from_phrase
from tests.e2e.harness import ChatUser, Harness, deletions_looked, start_harness, stop_harness, until


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    # No per-chat pacing in the sandbox: these tests send many messages to one chat and pacing has its own tests.
    h = await start_harness(tmp_path, telegram_options={"per_chat_rate": None})
    h.secrets = []  # type: ignore[attr-defined]
    try:
        yield h
    finally:
        try:
            assert_no_secret_in_database(h)
        finally:
            await stop_harness(h)


# --- helpers -------------------------------------------------------------------------------------------------


def remember(h: Harness, *secrets: str | bytes) -> None:
    h.secrets.extend(secrets)  # type: ignore[attr-defined]


def encodings(secret: str | bytes) -> list[bytes]:
    """The forms a leaked secret could take in a file: raw, text, base58, base64, hex."""
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode(), raw.hex().upper().encode()]
    if isinstance(secret, bytes):
        forms.append(base58.b58encode(raw))
        forms.append(json.dumps(list(raw)).encode())
        forms.append(json.dumps(list(raw), separators=(",", ":")).encode())
    forms.append(raw.decode("latin-1").encode("utf-16-le"))
    return forms


def database_bytes(h: Harness) -> list[tuple[str, bytes]]:
    files = [Path(str(h.data_dir / "bot.db") + suffix) for suffix in ("", "-wal", "-journal", "-shm")]
    blobs = [(f.name, f.read_bytes()) for f in files if f.exists()]
    assert blobs, "no database file found"
    return blobs


def assert_no_secret_in_database(h: Harness) -> None:
    blobs = database_bytes(h)
    for secret in h.secrets:  # type: ignore[attr-defined]
        for form in encodings(secret):
            for name, data in blobs:
                # never print the secret itself: say which one and where
                assert form not in data, f"a test secret ({len(form)} bytes) is readable in {name}"


def wallet_secrets(keypair: Keypair) -> list[str | bytes]:
    return [bytes(keypair), bytes(keypair)[:32], base58.b58encode(bytes(keypair)).decode()]


def services(h: Harness) -> Any:
    assert h.runner.services is not None
    return h.runner.services


def user_message(chat: ChatUser, text: str) -> dict[str, Any]:
    return next(m for m in chat.messages() if m["from"] == "user" and m.get("text") == text)


async def assert_deleted(chat: ChatUser, text: str) -> None:
    await chat.wait_for(lambda ms: user_message(chat, text)["deleted"], what="the secret message to be deleted")


async def stored_wallets(h: Harness, user_id: int) -> list[Any]:
    return await services(h).accounts.wallets.list(user_id)


async def stored_settings(h: Harness, user_id: int) -> Any:
    return await services(h).accounts.store.get(user_id)


async def with_key(h: Harness, name: str = "Ann", tier: str = "professional") -> tuple[ChatUser, str]:
    chat = await h.user(name)
    key = h.services.accounts.issue(tier).key
    remember(h, key)
    await chat.send("/start", expect=r"1/3 LaserSell key")
    await chat.send(f"/apikey {key}", expect=r"LaserSell key saved")
    await chat.wait_text(r"2/3 wallet")
    return chat, key


async def import_wallet(h: Harness, chat: ChatUser, secret: str, expect: str) -> dict[str, Any]:
    await chat.send("/wallets", expect=r"Your wallets")
    await chat.press("Import a wallet", expect=r"Send the wallet's secret")
    reply = await chat.send(secret, expect=expect)
    await assert_deleted(chat, secret)
    return reply


async def expire_after(h: Harness, chat: ChatUser, shown: dict[str, Any], start: float, seconds: float) -> None:
    """Move the deletion clock to just before, then just after, `seconds` past `start`; the message goes then."""
    deletions = services(h).deletions
    # the deletion is stored just after the message is shown
    row = await until(lambda: services(h).db.fetchone(
        "SELECT delete_at FROM scheduled_deletions WHERE chat_id=? AND message_id=?", (chat.chat_id, shown["message_id"])
    ), "the secret message scheduled for deletion")
    due = row[0] / 1000
    assert start + seconds - 0.01 <= due <= deletions.clock() + seconds
    deletions.clock = lambda: due - 1
    await deletions_looked(h, chat)
    assert not next(m for m in chat.messages() if m["message_id"] == shown["message_id"])["deleted"]
    deletions.clock = lambda: due + 1
    deletions.wake()
    await chat.wait_for(lambda ms: next(m for m in ms if m["message_id"] == shown["message_id"])["deleted"],
                        what=f"the secret message to be deleted after {seconds} s")


# --- onboarding ----------------------------------------------------------------------------------------------


async def test_onboarding_walks_a_new_user_through_three_steps(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    key = h.services.accounts.issue("professional").key
    keypair = Keypair()
    remember(h, key, *wallet_secrets(keypair))
    h.services.chain.fund(keypair.pubkey(), 2.0)

    step1 = await ann.send("/start", expect=r"1/3 LaserSell key")
    assert "Skip for now" in ann.buttons(step1)
    assert (await stored_settings(h, ann.user_id)).onboarding_step == "apikey"
    await ann.press("Enter my key", expect=r"Send your LaserSell API key as your next message")
    saved = await ann.send(key, expect=r"LaserSell key saved: <code>|LaserSell key saved: ls_")
    assert f"ls_…{key[-4:]}" in saved["text"] and key not in saved["text"]
    assert "deleted your message with the API key" in saved["text"]
    await assert_deleted(ann, key)
    stored_key = await services(h).accounts.keys.get(ann.user_id)
    assert stored_key is not None and stored_key.key_hint == f"ls_…{key[-4:]}"
    assert key.encode() not in stored_key.sealed

    step2 = await ann.wait_text(r"2/3 wallet")
    assert {"Import a wallet", "Generate a new one"} <= set(ann.buttons(step2))
    assert (await stored_settings(h, ann.user_id)).onboarding_step == "wallet"
    secret = base58.b58encode(bytes(keypair)).decode()
    await ann.press("Import a wallet", message=step2, expect=r"Send the wallet's secret")
    added = await ann.send(secret, expect=r"Wallet .* added")
    assert str(keypair.pubkey()) in added["text"] and "deleted your message" in added["text"]
    await assert_deleted(ann, secret)
    [wallet] = await stored_wallets(h, ann.user_id)
    assert wallet.address == str(keypair.pubkey()) and wallet.is_default and wallet.registered_at
    assert h.services.accounts.is_registered(key, str(keypair.pubkey())), "wallet not registered with LaserSell"

    step3 = await ann.wait_text(r"3/3 strategy")
    assert "Take profit: +6%" in step3["text"] and "Stop loss: -10%" in step3["text"] and "Deadline: off" in step3["text"]
    assert "Trailing stop: off" in step3["text"]
    await ann.press("Use this strategy", expect=r"You're set up")
    settings = await stored_settings(h, ann.user_id)
    assert settings.onboarding_step == "done"
    strategy = json.loads(settings.strategy_json)
    assert (strategy["take_profit_pct"], strategy["stop_loss_pct"], strategy["deadline_s"], strategy["trailing_stop_pct"]) == (
        6.0, 10.0, 0, 0.0)

    listing = await ann.send("/wallets", expect=r"Your wallets")
    assert "2.0000 SOL" in listing["text"] and "Wallet 1" in listing["text"]
    # the scan of the files finds what is stored in the clear, so its silence about secrets means something
    assert any(str(keypair.pubkey()).encode() in data for _name, data in database_bytes(h))
    assert any(f"ls_…{key[-4:]}".encode() in data for _name, data in database_bytes(h))


async def test_onboarding_resumes_where_the_user_left_and_skipped_steps_stay_open(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    await ann.send("/start", expect=r"1/3 LaserSell key")
    await ann.press("Skip for now", expect=r"2/3 wallet")
    settings = await stored_settings(h, ann.user_id)
    assert settings.skipped_steps == {"apikey"} and settings.onboarding_step == "wallet"
    # a new /start comes back to the step left open, not to the beginning
    resumed = await ann.send("/start", expect=r"2/3 wallet")
    await ann.press("Skip for now", message=resumed, expect=r"3/3 strategy")
    await ann.press("Skip for now", expect=r"Setup is not finished.*LaserSell key \(/apikey\).*wallet \(/wallets\)")
    shown = await ann.send("/settings", expect=r"<b>Settings</b>|Settings")
    assert "Skipped setup steps" in shown["text"] and "not set (/apikey)" in shown["text"]


# --- /apikey -------------------------------------------------------------------------------------------------


async def test_apikey_refused_by_lasersell_is_not_stored_and_its_message_is_deleted(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    bogus = "ls_" + "Z" * 32
    remember(h, bogus)
    reply = await ann.send(f"/apikey {bogus}", expect=r"LaserSell refused that key")
    assert "deleted your message with the API key" in reply["text"]
    await assert_deleted(ann, f"/apikey {bogus}")
    assert await services(h).accounts.keys.get(ann.user_id) is None
    # the bot now waits for the key again: a second try as a plain message is deleted as well
    reply = await ann.send("short", expect=r"does not look like a LaserSell API key")
    await assert_deleted(ann, "short")
    await ann.send("/cancel", expect=r"Cancelled")
    await ann.send("hello", expect=r"did not find a token")


async def test_apikey_as_next_message_and_a_key_used_by_another_user(harness: Harness) -> None:
    h = harness
    ann, key = await with_key(h, "Ann")
    bob = await h.user("Bob")
    await bob.send("/apikey", expect=r"No key set yet.*next message")
    reply = await bob.send(key, expect=r"cannot be used with this bot")
    assert "one stream session" in reply["text"] and "another user" not in reply["text"]
    await assert_deleted(bob, key)
    assert await services(h).accounts.keys.get(bob.user_id) is None
    owner = await services(h).accounts.keys.get(ann.user_id)
    assert owner is not None
    # Ann can see which key is in use, shown only as a hint
    shown = await ann.send("/apikey", expect=r"In use:")
    assert f"ls_…{key[-4:]}" in shown["text"] and key not in shown["text"]
    await ann.send("/cancel", expect="Cancelled")


async def test_a_secret_message_telegram_refuses_to_delete_is_flagged(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    key = h.services.accounts.issue("professional").key
    remember(h, key)
    h.services.telegram.inject_fault("deleteMessage", 400, "Bad Request: message can't be deleted")
    reply = await ann.send(f"/apikey {key}", expect=r"LaserSell key saved")
    assert "did not let me delete your message with the API key: delete it yourself now" in reply["text"]


# --- /wallets: import and its bad inputs ---------------------------------------------------------------------


async def test_import_bad_inputs_are_refused_and_every_attempt_is_deleted(harness: Harness) -> None:
    h = harness
    ann, _key = await with_key(h)
    keypair = Keypair()
    remember(h, *wallet_secrets(keypair))
    b58 = base58.b58encode(bytes(keypair)).decode()
    await ann.send("/wallets", expect=r"Your wallets")
    await ann.press("Import a wallet", expect=r"Send the wallet's secret")

    cases = [
        (b58[:40] + "0OIl" + b58[44:], r"not base58"),
        ("[1, 2, 3,", r"not valid JSON"),
        (json.dumps([7] * 12), r"needs 64 numbers .*got 12"),
        (str(keypair.pubkey()), r"wallet ADDRESS \(public key\), not a secret key"),
        ("abandon " * 2 + "zzzzqq " + "abandon " * 8 + "about", r"word 3 is not a BIP39 English word"),
        (" ".join(["abandon"] * 12), r"checksum does not match"),
        (base58.b58encode(bytes(keypair)[:32] + bytes(Keypair().pubkey())).decode(), r"second half .* not the public key"),
    ]
    for text, error in cases:
        reply = await ann.send(text, expect=error)
        assert "deleted your message with the wallet key" in reply["text"] and "Send it again" in reply["text"]
        await assert_deleted(ann, text)
        assert text not in reply["text"]
    assert await stored_wallets(h, ann.user_id) == []

    # still waiting for a key: a JSON key file of 64 numbers is accepted
    as_json = json.dumps(list(bytes(keypair)))
    reply = await ann.send(as_json, expect=r"Wallet .* added")
    await assert_deleted(ann, as_json)
    assert [w.address for w in await stored_wallets(h, ann.user_id)] == [str(keypair.pubkey())]

    # the same wallet again: refused by name, nothing stored twice
    reply = await import_wallet(h, ann, b58, r"already in your list as “Wallet 1”")
    assert len(await stored_wallets(h, ann.user_id)) == 1
    await ann.send("/cancel", expect="Cancelled")

    # another user cannot add it either
    bob, _ = await with_key(h, "Bob")
    reply = await import_wallet(h, bob, b58, r"cannot be added here")
    assert "another user" not in reply["text"]
    assert await stored_wallets(h, bob.user_id) == []


async def test_import_a_recovery_phrase_derives_the_phantom_account(harness: Harness) -> None:
    h = harness
    ann, key = await with_key(h)
    phrase = Mnemonic("english").generate(strength=256)
    expected = keypair_from_phrase(phrase)
    remember(h, phrase, *wallet_secrets(expected))
    numbered = "\n".join(f"{i}. {w}" for i, w in enumerate(phrase.split(), start=1))
    reply = await import_wallet(h, ann, numbered, r"Wallet .* added")
    assert str(expected.pubkey()) in reply["text"]
    [wallet] = await stored_wallets(h, ann.user_id)
    assert wallet.address == str(expected.pubkey())
    assert h.services.accounts.is_registered(key, wallet.address)


async def test_free_tier_allows_one_wallet(harness: Harness) -> None:
    h = harness
    ann, _ = await with_key(h, tier="free")
    first, second = Keypair(), Keypair()
    remember(h, *wallet_secrets(first), *wallet_secrets(second))
    await import_wallet(h, ann, base58.b58encode(bytes(first)).decode(), r"Wallet .* added")
    reply = await import_wallet(h, ann, base58.b58encode(bytes(second)).decode(), r"at most 1 wallet\(s\) per session")
    assert "you have 1" in reply["text"] and "upgrade" in reply["text"]
    assert [w.address for w in await stored_wallets(h, ann.user_id)] == [str(first.pubkey())]
    await ann.send("/cancel", expect="Cancelled")
    await ann.press("Generate a new one", message=await ann.send("/wallets", expect="Your wallets"),
                    expect=r"at most 1 wallet")
    assert len(await stored_wallets(h, ann.user_id)) == 1


async def test_a_secret_pasted_unasked_or_as_a_wallet_name_is_deleted_and_not_kept(harness: Harness) -> None:
    h = harness
    ann, _ = await with_key(h)
    keypair, other = Keypair(), Keypair()
    remember(h, *wallet_secrets(keypair), *wallet_secrets(other))
    await import_wallet(h, ann, base58.b58encode(bytes(keypair)).decode(), r"Wallet .* added")
    pasted = base58.b58encode(bytes(other)).decode()
    reply = await ann.send(pasted, expect=r"looked like a secret key, so I did not keep it")
    assert "deleted your message" in reply["text"]
    await assert_deleted(ann, pasted)
    # pasted where the bot asked for a wallet name: still a secret, never a label
    phrase = Mnemonic("english").generate(strength=128)
    remember(h, phrase)
    listing = await ann.send("/wallets", expect="Your wallets")
    await ann.press("Wallet 1", message=listing, expect=r"⭐ default")
    await ann.press("Rename", expect=r"Send the new name")
    await ann.send(phrase, expect=r"looked like a secret key")
    await assert_deleted(ann, phrase)
    assert [w.label for w in await stored_wallets(h, ann.user_id)] == ["Wallet 1"]


# --- /wallets: generate, rename, default, remove, export ---------------------------------------------------


async def test_generate_shows_the_secret_once_and_deletes_it(harness: Harness) -> None:
    h = harness
    ann, _ = await with_key(h)
    step2 = await ann.wait_text(r"2/3 wallet")
    shown = await ann.press("Generate a new one", message=step2, expect=r"New wallet")
    [wallet] = await stored_wallets(h, ann.user_id)
    secret = shown["text"].split("Secret key")[1].split("\n")[1].strip()
    keypair = Keypair.from_bytes(base58.b58decode(secret))
    remember(h, *wallet_secrets(keypair))
    assert str(keypair.pubkey()) == wallet.address and wallet.registered_at
    await ann.wait_text(r"3/3 strategy")
    await ann.press("I saved it", message=shown)
    await ann.wait_for(lambda ms: next(m for m in ms if m["message_id"] == shown["message_id"])["deleted"],
                       what="the generated secret to be deleted")
    # the row goes once Telegram has confirmed the deletion (a moment after the chat shows it)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while await services(h).db.fetchone("SELECT 1 FROM scheduled_deletions") is not None:
        assert loop.time() < deadline, "the confirmed deletion is still scheduled"
        await asyncio.sleep(0.02)

    # a second one left alone is deleted after 10 minutes
    listing = await ann.send("/wallets", expect="Your wallets")
    start = services(h).deletions.clock()
    second = await ann.press("Generate a new one", message=listing, expect=r"New wallet")
    secret2 = second["text"].split("Secret key")[1].split("\n")[1].strip()
    remember(h, *wallet_secrets(Keypair.from_bytes(base58.b58decode(secret2))))
    await expire_after(h, ann, second, start, 600)


async def test_rename_default_remove_and_export(harness: Harness) -> None:
    h = harness
    ann, _ = await with_key(h)
    first, second = Keypair(), Keypair()
    remember(h, *wallet_secrets(first), *wallet_secrets(second))
    await import_wallet(h, ann, base58.b58encode(bytes(first)).decode(), r"Wallet 1.* added")
    await import_wallet(h, ann, base58.b58encode(bytes(second)).decode(), r"Wallet 2.* added")
    ids = {w.address: w.id for w in await stored_wallets(h, ann.user_id)}

    # rename: another wallet's name is refused with a free one suggested, then a good one is stored
    listing = await ann.send("/wallets", expect="Your wallets")
    await ann.press("Wallet 2", message=listing, expect=str(second.pubkey()))
    await ann.press("Rename", expect=r"Send the new name")
    await ann.send("wallet 1", expect=r"already have a wallet named “wallet 1”. Try “wallet 1 2”")
    await ann.send("Sniper bag", expect=r"Renamed to <b>Sniper bag</b>|Renamed to Sniper bag")
    assert (await services(h).accounts.wallets.get(ann.user_id, ids[str(second.pubkey())])).label == "Sniper bag"

    # default
    listing = await ann.send("/wallets", expect="Your wallets")
    await ann.press("Sniper bag", message=listing, expect=str(second.pubkey()))
    await ann.press("Make default", expect=r"⭐ <b>Sniper bag|⭐ Sniper bag")
    defaults = [w.address for w in await stored_wallets(h, ann.user_id) if w.is_default]
    assert defaults == [str(second.pubkey())]

    # export: confirmation, then the key, deleted after 60 s
    listing = await ann.send("/wallets", expect="Your wallets")
    await ann.press("Wallet 1", message=listing, expect=str(first.pubkey()))
    await ann.press("Export key", expect=r"Show the secret key of <b>Wallet 1|Show the secret key of Wallet 1")
    await ann.press("Cancel", expect="Your wallets")
    assert not any("Secret key of" in (m.get("text") or "") for m in ann.bot_messages())
    listing = await ann.send("/wallets", expect="Your wallets")
    await ann.press("Wallet 1", message=listing, expect=str(first.pubkey()))
    await ann.press("Export key", expect=r"Show the secret key")
    start = services(h).deletions.clock()
    await ann.press("Yes, show the key", expect=r"disappears in 60 seconds")
    shown = await ann.wait_text(r"Secret key of")
    assert base58.b58encode(bytes(first)).decode() in shown["text"]
    await expire_after(h, ann, shown, start, 60)

    # remove: the confirmation can be cancelled, then confirmed
    listing = await ann.send("/wallets", expect="Your wallets")
    await ann.press("Sniper bag", message=listing, expect=str(second.pubkey()))
    await ann.press("^Remove$", expect=r"Remove <b>Sniper bag|Remove Sniper bag")
    await ann.press("^Cancel$", expect="Your wallets")
    assert len(await stored_wallets(h, ann.user_id)) == 2
    listing = await ann.send("/wallets", expect="Your wallets")
    await ann.press("Sniper bag", message=listing, expect=str(second.pubkey()))
    await ann.press("^Remove$", expect=r"Remove <b>Sniper bag|Remove Sniper bag")
    after = await ann.press("Yes, remove it", expect=r"Your wallets")
    assert "Sniper bag" not in after["text"]
    [left] = await stored_wallets(h, ann.user_id)
    assert left.address == str(first.pubkey()) and left.is_default


# --- /strategy and /ladder -----------------------------------------------------------------------------------


async def test_strategy_one_line_form_and_each_validation_error(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    await ann.send("/start", expect="1/3")
    saved = await ann.send("/strategy tp 25 sl 10 trail 5 deadline 120 graduation on guard off breakeven 3",
                           expect=r"Saved and sent to your stream")
    assert "Take profit: +25%" in saved["text"] and "Trailing stop: 5% below the peak" in saved["text"]
    stored = json.loads((await stored_settings(h, ann.user_id)).strategy_json)
    assert stored["take_profit_pct"] == 25 and stored["deadline_s"] == 120 and stored["sell_on_graduation"] is True
    assert stored["breakeven_trail_pct"] == 3

    errors = [
        ("tp -5", r"take profit \(tp\) -5% is out of range: use a number above 0"),
        ("sl 100", r"stop loss \(sl\) 100% is out of range: use more than 0 and below 100"),
        ("trail -1", r"trailing stop \(trail\) -1% is out of range: use more than 0 and below 100"),
        ("deadline 90000", r"deadline 90000 is out of range: use 0 \(off\) to 86400 seconds"),
        ("deadline 1.5", r"deadline '1.5' must be whole seconds from 0 \(off\) to 86400"),
        ("tp abc", r"tp 'abc' is not a number.*a number above 0"),
        ("sl nan", r"sl 'nan' is not a finite number.*below 100"),
        ("graduation maybe", r"graduation 'maybe' must be on or off"),
        ("speed 3", r"unknown setting 'speed'"),
        ("tp", r"'tp' needs a value"),
        # LaserSell counts take profit, stop loss, trailing stop and the deadline; the guard is no exit
        ("tp 0 sl 0 trail 0 deadline 0 graduation on guard on breakeven 3", r"no exit condition is on"),
    ]
    for args, error in errors:
        reply = await ann.send(f"/strategy {args}", expect=error)
        assert "Nothing was changed" in reply["text"]
    assert json.loads((await stored_settings(h, ann.user_id)).strategy_json) == stored


async def test_strategy_inline_editor(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    shown = await ann.send("/strategy", expect=r"Your exit strategy")
    await ann.press("Edit", message=shown, expect=r"Editing your strategy")
    await ann.press(r"^\+$", expect=r"Take profit: \+7%")  # a step that fits 6 %: one point, not five
    await ann.press(r"Trailing stop: off", expect=r"Trailing stop: 5% below the peak")
    await ann.press("Cancel", expect=r"\(Unchanged\.\)")
    assert (await stored_settings(h, ann.user_id)).strategy_json is None
    await ann.press("Edit", expect=r"Editing your strategy")
    await ann.press(r"Sell on graduation: off", expect=r"Sell on graduation: on")
    await ann.press("Done", expect=r"Saved and sent to your stream")
    assert json.loads((await stored_settings(h, ann.user_id)).strategy_json)["sell_on_graduation"] is True


async def test_ladder_happy_path_and_errors(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    saved = await ann.send("/ladder 25:30 50:50 100:20:5", expect=r"Saved and sent to your stream")
    # each level sells a share of what is left: 30 %, then 35 %, then 20 % of the last 35 %
    assert "at +25% sell 30% of what's left (30% of the position sold by then)" in saved["text"]
    assert "at +50% sell 50% of what's left (65% of the position sold by then)" in saved["text"]
    assert ("at +100% sell 20% of what's left once it falls 5% from its peak after that "
            "(72% of the position sold by then)") in saved["text"]
    ladder = json.loads((await stored_settings(h, ann.user_id)).strategy_json)["ladder"]
    assert [(lv["profit_pct"], lv["sell_pct"], lv["trailing_stop_pct"]) for lv in ladder] == [
        (25, 30, 0), (50, 50, 0), (100, 20, 5)]
    errors = [
        ("50:30 25:50", r"ladder level 2 profit 25% must be higher than the level before \(50%\)"),
        ("25:100 50:60", r"only the last level may sell 100%"),
        ("25", r"ladder level 1 '25' is not profit%:sell%"),
        ("25:0", r"ladder level 1 sell 0% is out of range: use more than 0 and at most 100"),
        ("25:150", r"ladder level 1 sell 150% is out of range"),
        ("25:x", r"ladder level 1 'x' is not a number"),
        # the server refuses a trail of 100 % or more: refused here, never saved and sent
        ("25:30:200", r"ladder level 1 trail 200% is out of range: use more than 0 and below 100"),
        ("", r"give the levels"),
    ]
    for args, error in errors:
        reply = await ann.send(f"/ladder {args}".strip(), expect=error)
        assert "Nothing was changed" in reply["text"]
    assert json.loads((await stored_settings(h, ann.user_id)).strategy_json)["ladder"] == ladder
    # the ladder turned the +6 % take profit off (it would have sold everything before the first level)
    await ann.send("/ladder off", expect=r"Take profit: off")
    assert json.loads((await stored_settings(h, ann.user_id)).strategy_json)["ladder"] == []


# --- /settings, /pause, /resume, /forget ---------------------------------------------------------------------


async def test_settings_one_line_and_each_error(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    shown = await ann.send("/settings", expect=r"Settings")
    # a new user gets the official CLI's defaults: Helius Sender with a 0.001 SOL tip
    assert "Auto-sell: off" in shown["text"] and "Send mode: helius_sender" in shown["text"]
    errors = [
        ("mode carrier", r"mode 'carrier' is not a send mode: use helius_sender, astralane, rpc"),
        ("tip 1", r"tip '1' is out of range: use 0 to 0.1 SOL"),
        ("tip 0.0001", r"under the floor: Helius Sender needs a tip of at least 0.0002 SOL"),
        ("mode rpc tip 0.001", r"plain RPC mode sends no tip"),
        ("tip lots", r"tip 'lots' is not a number"),
        ("cap 0.1", r"cap '0.1' is out of range: use 0.5 to 50 %"),
        ("retries 2.5", r"retries '2.5' must be a whole number from 0 to 5"),
        ("auto maybe", r"auto 'maybe' must be on or off"),
        ("alerts.signals off", r"exit signals cannot be turned off while auto-sell is off"),
        ("alerts.position loud", r"alerts.position 'loud' must be one of on, silent, off"),
        ("colour blue", r"unknown setting 'colour'"),
        ("tip", r"give settings as name value pairs"),
        ("slippage 20 cap 10", r"slippage cap 10% is below your slippage 20%"),
    ]
    for args, error in errors:
        reply = await ann.send(f"/settings {args}", expect=error)
        assert "Nothing was changed" in reply["text"]
    before = await stored_settings(h, ann.user_id)
    assert (before.send_mode, before.tip_lamports, before.auto_sell, before.alerts) == ("helius_sender", 1_000_000,
                                                                                         False, {})

    await ann.send("/settings mode helius_sender tip 0.001 cap 20 retries 3 auto on alerts.signals off "
                   "alerts.cards silent", expect=r"Saved")
    s = await stored_settings(h, ann.user_id)
    assert (s.send_mode, s.tip_lamports, s.slippage_cap_bps, s.retry_count, s.auto_sell) == (
        "helius_sender", 1_000_000, 2000, 3, True)
    assert s.alerts == {"signals": "off", "cards": "silent"}
    # turning auto-sell off by button brings exit signals back on
    shown = await ann.send("/settings", expect=r"Auto-sell: on")
    await ann.press("Auto-sell: on", message=shown, expect=r"Auto-sell: off")
    s = await stored_settings(h, ann.user_id)
    assert not s.auto_sell and s.alerts["signals"] == "on"
    # and the alert button cannot turn them off while auto-sell is off
    await ann.press("Exit signals: on", expect=r"Exit signals: silent")
    await ann.press("Exit signals: silent")
    await ann.wait_for(lambda ms: any("cannot be turned off" in (a.get("text") or "").lower()
                                      for a in h.services.telegram.callback_answers(ann.chat_id)),
                       what="the refusal as a button answer")
    assert (await stored_settings(h, ann.user_id)).alerts["signals"] == "on"


async def test_astralane_key_is_deleted_and_sealed(harness: Harness) -> None:
    h = harness
    ann = await h.user("Ann")
    astralane = "astr_" + "k3Y" * 10
    remember(h, astralane)
    await ann.send("/settings mode astralane", expect=r"Astralane needs its API key")
    reply = await ann.send(astralane, expect=r"Astralane key saved; send mode is astralane")
    assert "deleted your message with the Astralane key" in reply["text"]
    await assert_deleted(ann, astralane)
    s = await stored_settings(h, ann.user_id)
    assert s.send_mode == "astralane" and s.astralane_sealed and astralane.encode() not in s.astralane_sealed
    plain = services(h).vault.open(s.astralane_sealed, user_id=ann.user_id, kind="astralane_key", identity="astralane_key")
    assert plain == astralane.encode()


async def test_pause_resume_and_forget(harness: Harness) -> None:
    h = harness
    ann, key = await with_key(h)
    keypair = Keypair()
    remember(h, *wallet_secrets(keypair))
    await import_wallet(h, ann, base58.b58encode(bytes(keypair)).decode(), r"Wallet .* added")
    await ann.press("Use this strategy", message=await ann.wait_text("3/3 strategy"), expect=r"You're set up")
    await ann.send("/pause", expect=r"Paused")
    assert (await stored_settings(h, ann.user_id)).paused
    await ann.send("/resume", expect=r"Watching your wallets again")
    assert not (await stored_settings(h, ann.user_id)).paused

    prompt = await ann.send("/forget", expect=r"Delete <b>everything</b>|Delete everything")
    await ann.press("Cancel", message=prompt, expect=r"Nothing was deleted")
    assert await services(h).accounts.keys.get(ann.user_id) is not None
    prompt = await ann.send("/forget", expect=r"Delete")
    await ann.press("Yes, delete everything", message=prompt, expect=r"I deleted your keys, wallets, strategy and settings")
    db = services(h).db
    for table in ("users", "wallets", "lasersell_keys", "user_settings"):
        row = await db.fetchone(f"SELECT COUNT(*) FROM {table} WHERE telegram_id=?", (ann.user_id,))
        assert row[0] == 0, f"{table} still holds rows for the user"
    # the key is free again for its owner to use from scratch
    await ann.send(f"/apikey {key}", expect=r"LaserSell key saved")


async def test_a_lasersell_key_pasted_unasked_is_deleted_not_kept(harness: Harness) -> None:
    ann = await harness.user("Ann")
    await ann.send("/start", expect=r"1/3")
    await ann.send("/cancel", expect="Cancelled")
    key = harness.services.accounts.issue("professional").key
    remember(harness, key)  # the database scan after the test looks for it too
    reply = await ann.send(f"here it is {key}", expect=r"looked like a LaserSell API key")
    assert "/apikey" in reply["text"]
    pasted = next(m for m in ann.messages() if m.get("from") != "bot" and key in (m.get("text") or ""))
    assert pasted["deleted"]
    services = harness.runner.services
    assert services is not None and await services.accounts.key_info(ann.user_id) is None
