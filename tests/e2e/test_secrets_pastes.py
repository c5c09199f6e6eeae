"""Issue 14, secrets: whatever a user pastes, a wallet secret is deleted, never echoed, never sent on.

Driven through the sandbox Telegram as a careless user would: keys at the wrong prompt, after a command,
split, spaced, mistyped, a numbered phrase, a restart in the middle of an import, and a Telegram that
refuses deleteMessage for a while.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import base58
import pytest
from mnemonic import Mnemonic
from solders.keypair import Keypair

from tests.e2e.harness import ChatUser, Harness, deletions_looked, start_harness, stop_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, telegram_options={"per_chat_rate": None})
    try:
        yield h
    finally:
        await stop_harness(h)


def b58(keypair: Keypair) -> str:
    return base58.b58encode(bytes(keypair)).decode()


def typo(secret: str, at: int = 30) -> str:
    return secret[:at] + ("2" if secret[at] != "2" else "3") + secret[at + 1 :]


def numbered(phrase: str) -> str:
    return "\n".join(f"{i}. {word}" for i, word in enumerate(phrase.split(), start=1))


def user_message(chat: ChatUser, text: str) -> dict[str, Any]:
    return next(m for m in chat.messages() if m["from"] == "user" and m.get("text") == text)


async def assert_deleted(chat: ChatUser, text: str, timeout: float = 10.0) -> None:
    await chat.wait_for(lambda ms: user_message(chat, text)["deleted"], timeout, what="the secret message to be deleted")


def bot_texts(chat: ChatUser) -> str:
    return "\n".join(m.get("text") or m.get("caption") or "" for m in chat.bot_messages())


def stream_attempts(h: Harness) -> dict[str, int]:
    return dict(h.services.stream.connection_attempts)


def api_keys_seen(h: Harness) -> dict[str, int]:
    """Every x-api-key value LaserSell's REST stand-in received."""
    return dict(h.services.api.keys_seen)


async def started(h: Harness, name: str = "Ann") -> ChatUser:
    chat = await h.user(name)
    await chat.send("/start", expect=r"1/3 LaserSell key")
    return chat


# --- the API-key prompt ----------------------------------------------------------------------------------


async def test_a_wallet_key_at_the_api_key_prompt_is_refused_and_never_reaches_lasersell(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    secret = b58(Keypair())
    phrase = Mnemonic("english").generate(strength=128)
    before = stream_attempts(h)
    api_before = api_keys_seen(h)

    await ann.press("Enter my key", expect=r"Send your LaserSell API key")
    reply = await ann.send(secret, expect=r"wallet's secret key, not a LaserSell API key")
    assert "did not use it or send it anywhere" in reply["text"] and "ls_" in reply["text"]
    await assert_deleted(ann, secret)

    reply = await ann.send(f"/apikey {phrase}", expect=r"wallet's secret key, not a LaserSell API key")
    await assert_deleted(ann, f"/apikey {phrase}")

    # LaserSell's stand-ins (stream and REST) saw no request at all, let alone one carrying the secret
    assert stream_attempts(h) == before
    assert api_keys_seen(h) == api_before
    assert secret not in bot_texts(ann) and phrase.split()[3] not in bot_texts(ann).split()
    # the prompt is still open: the real key now goes through
    key = h.services.accounts.issue("professional").key
    await ann.send(key, expect=r"LaserSell key saved")
    # checked with LaserSell's account endpoint (GET /v1/account), not a second stream session
    assert api_keys_seen(h).get(key)
    assert secret not in api_keys_seen(h) and phrase not in api_keys_seen(h)


# --- secrets after commands and in every shape -----------------------------------------------------------


async def test_buy_with_a_key_answers_without_the_key_and_deletes_the_message(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    secret = b58(Keypair())
    phrase = Mnemonic("english").generate(strength=128)
    for text in (f"/buy {secret} 0.1", f"/wallets {secret}", f"/import {phrase}"):
        reply = await ann.send(text, expect=r"looked like a secret key, so I did not keep it")
        assert "/wallets" in reply["text"] and "Import a wallet" in reply["text"]
        await assert_deleted(ann, text)
    said = bot_texts(ann)
    assert secret not in said and secret[:12] not in said and secret[-12:] not in said
    assert " ".join(phrase.split()[:3]) not in said
    assert "not a token mint" not in said  # /buy never got to read it


async def test_a_split_spaced_or_mistyped_key_a_numbered_phrase_and_a_json_key_are_deleted(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    keypair = Keypair()
    secret = b58(keypair)
    phrase24 = Mnemonic("english").generate(strength=256)
    pastes = [
        secret[:44] + "\n" + secret[44:],
        secret[:20] + " " + secret[20:],
        typo(secret),
        typo(secret, at=70),
        secret[:-1],  # one character lost in the copy
        numbered(phrase24),
        json.dumps(list(bytes(keypair)), indent=2),
    ]
    for text in pastes:
        await ann.send(text, expect=r"looked like a secret key")
        await assert_deleted(ann, text)
    # a mint address is not a secret: /buy reads it and the message stays
    mint = str(Keypair().pubkey())
    sent = await ann.send(f"/buy {mint} 0.1")
    await ann.wait_text(r".", after=sent["message_id"])
    assert not user_message(ann, f"/buy {mint} 0.1")["deleted"]


async def test_a_key_pasted_after_a_restart_mid_import_is_still_deleted(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    key = h.services.accounts.issue("professional").key
    await ann.send(f"/apikey {key}", expect=r"LaserSell key saved")
    await ann.send("/wallets", expect=r"Your wallets")
    await ann.press("Import a wallet", expect=r"Send the wallet's secret")
    await h.restart_bot()
    whole = b58(Keypair())
    secret = whole[:44] + "\n" + whole[44:]  # as a phone's copy often breaks it
    reply = await ann.send(secret, expect=r"looked like a secret key")
    assert "Import a wallet" in reply["text"]
    await assert_deleted(ann, secret)
    services = h.runner.services
    assert services is not None and await services.accounts.wallets.list(ann.user_id) == []


# --- deletion survives Telegram's refusals ---------------------------------------------------------------


async def test_delete_message_failing_with_429_then_500_still_deletes_the_key(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    tg = h.services.telegram
    tg.inject_fault("deleteMessage", 429, retry_after=1)
    tg.inject_fault("deleteMessage", 500)
    secret = b58(Keypair())
    reply = await ann.send(secret, expect=r"looked like a secret key")
    assert "has not let me delete your message" in reply["text"]
    await assert_deleted(ann, secret, timeout=15)
    assert tg.stats()["calls"]["deleteMessage"] >= 3
    services = h.runner.services
    assert services is not None
    for _ in range(200):  # the job settles its row right after Telegram confirms
        if await services.deletions.pending() == 0:
            break
        await asyncio.sleep(0.02)
    assert await services.deletions.pending() == 0


async def test_a_generated_key_is_deleted_even_when_telegram_fails_the_first_time(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    key = h.services.accounts.issue("professional").key
    await ann.send(f"/apikey {key}", expect=r"LaserSell key saved")
    await ann.wait_text(r"2/3 wallet")
    shown = await ann.press("Generate a new one", expect=r"Secret key \(shown once")
    assert shown is not None
    h.services.telegram.inject_fault("deleteMessage", 502)
    await ann.press("I saved it", message=shown)
    await ann.wait_for(
        lambda ms: next(m for m in ms if m["message_id"] == shown["message_id"])["deleted"], 15,
        what="the generated key to be deleted after a failed attempt",
    )


async def test_a_secret_telegram_will_not_delete_for_a_minute_asks_the_user_to_delete_it(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    services = h.runner.services
    assert services is not None
    now = [services.deletions.clock()]
    services.deletions.clock = lambda: now[0]
    h.services.telegram.inject_fault("deleteMessage", 500, count=3)
    secret = b58(Keypair())
    await ann.send(secret, expect=r"has not let me delete your message")
    calls = h.services.telegram.stats()["calls"]["deleteMessage"]

    async def attempt_after(seconds: float) -> None:
        nonlocal calls
        await deletions_looked(h, ann)  # the last attempt's retry time is stored, by the old clock
        now[0] += seconds
        services.deletions.wake()
        await ann.wait_for(lambda _: h.services.telegram.stats()["calls"]["deleteMessage"] > calls, what="a retry")
        calls = h.services.telegram.stats()["calls"]["deleteMessage"]

    await attempt_after(30)  # still within the minute: retried, nobody bothered
    assert "Delete it yourself now" not in bot_texts(ann)
    await attempt_after(31)
    notice = await ann.wait_text(r"would not let me delete a message that shows a secret key\. Delete it yourself now")
    assert secret not in notice["text"]
    await attempt_after(40)  # the job keeps trying after the notice, and wins when Telegram lets it
    await assert_deleted(ann, secret)
    assert len(re.findall(r"Delete it yourself now", bot_texts(ann))) == 1


async def test_a_secret_whose_deletion_failed_is_deleted_after_a_restart(harness: Harness) -> None:
    h = harness
    ann = await started(h)
    services = h.runner.services
    assert services is not None
    frozen = services.deletions.clock()
    services.deletions.clock = lambda: frozen  # this run never gets to its retry
    h.services.telegram.inject_fault("deleteMessage", 500)
    secret = b58(Keypair())
    await ann.send(secret, expect=r"has not let me delete your message")
    assert await services.deletions.pending() == 1
    await h.restart_bot()
    await assert_deleted(ann, secret, timeout=15)
