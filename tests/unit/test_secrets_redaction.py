"""Log redaction by shape, in the forms DEBUG lines really take, and how long the redactor holds values."""

from __future__ import annotations

import json
from collections.abc import Iterator

import base58
import pytest
from mnemonic import Mnemonic
from solders.keypair import Keypair

from bot import logs
from bot.keys import incoming_secret
from bot.logs import REDACTED, redact, register_secret, registered_count


@pytest.fixture(autouse=True)
def empty_redactor() -> Iterator[None]:
    with logs._lock:
        saved = dict(logs._secrets)
        logs._secrets.clear()
        logs._rebuild()
    try:
        yield
    finally:
        with logs._lock:
            logs._secrets.clear()
            logs._secrets.update(saved)
            logs._rebuild()


def b58(keypair: Keypair) -> str:
    return base58.b58encode(bytes(keypair)).decode()


def ptb_update_line(text: str) -> str:
    """What python-telegram-bot logs at DEBUG for a getUpdates answer holding `text`."""
    update = [{"update_id": 7, "message": {"message_id": 3, "chat": {"id": 1, "type": "private"}, "text": text}}]
    return f"Call to Bot API endpoint `getUpdates` finished with return value `{update!r}`"


def test_a_numbered_24_word_phrase_in_a_debug_line_is_masked() -> None:
    phrase = Mnemonic("english").generate(strength=256).split()
    numbered = "\n".join(f"{i}. {w}" for i, w in enumerate(phrase, start=1))
    for line in (ptb_update_line(numbered), json.dumps({"text": numbered}), numbered):
        cleaned = redact(line)
        assert REDACTED in cleaned
        assert not any(" ".join(phrase[i : i + 2]) in cleaned.replace("\\n", " ") for i in range(23))
        assert sum(word in cleaned for word in phrase[5:]) <= 2


def test_a_base58_key_split_over_two_lines_or_spaced_is_masked() -> None:
    secret = b58(Keypair())
    for pasted in (secret[:44] + "\n" + secret[44:], secret[:30] + " " + secret[30:]):
        for line in (ptb_update_line(pasted), pasted, f"got {pasted!r}"):
            cleaned = redact(line)
            assert secret[:25] not in cleaned and secret[-25:] not in cleaned, line[:40]


def test_a_pretty_printed_json_key_is_masked() -> None:
    raw = bytes(Keypair())
    pretty = json.dumps(list(raw), indent=2)
    for line in (pretty, ptb_update_line(pretty), json.dumps({"text": pretty})):
        squeezed = "".join(redact(line).replace("\\n", "").split())
        assert REDACTED in squeezed
        assert not any(",".join(str(b) for b in raw[i : i + 5]) in squeezed for i in range(60))


def test_a_mistyped_key_a_user_sent_is_masked_in_the_update_dump() -> None:
    secret = b58(Keypair())
    for at in (3, 40, 80):
        mistyped = secret[:at] + ("2" if secret[at] != "2" else "3") + secret[at + 1 :]
        assert mistyped not in redact(ptb_update_line(mistyped))


def test_an_api_key_is_masked_before_anyone_registers_it() -> None:
    key = "ls_" + "Ab3" * 10
    assert key not in redact(ptb_update_line(key))
    assert key not in redact(ptb_update_line(f"/apikey {key}"))
    # whatever shape the argument of /apikey has, it is a key
    odd = "k3y-with-no-known-shape"
    assert odd not in redact(ptb_update_line(f"/apikey {odd}"))


def test_signatures_addresses_and_prose_stay_readable() -> None:
    keypair = Keypair()
    signature = str(keypair.sign_message(b"a sell"))
    line = f"sold 1.5 SOL of {Keypair().pubkey()} from {keypair.pubkey()} in tx {signature}"
    assert redact(line) == line
    prose = "Your exit strategy: take profit +6%, stop loss -10%, trailing stop off, deadline 45 s after the buy"
    assert redact(ptb_update_line(prose)) == ptb_update_line(prose)


def test_incoming_text_detector_judges_every_paste_shape() -> None:
    keypair = Keypair()
    secret = b58(keypair)
    phrase = Mnemonic("english").generate(strength=128)
    for text in (
        secret, f"/buy {secret} 0.1", secret[:44] + "\n" + secret[44:], secret[:10] + " " + secret[10:],
        secret[:50] + "x" + secret[51:], secret[1:], phrase, "\n".join(f"{i}) {w}" for i, w in enumerate(phrase.split())),
        json.dumps(list(bytes(keypair)), indent=4), json.dumps(list(bytes(keypair))[:63]),
    ):
        assert incoming_secret(text) == "wallet", text[:20]
    assert incoming_secret("ls_" + "x1" * 12) == "api_key"
    mint = str(Keypair().pubkey())
    for text in (f"/buy {mint} 0.1", f"{mint} {Keypair().pubkey()}", "gm, what are we buying today",
                 f"https://solscan.io/tx/{keypair.sign_message(b'x')}", "/strategy tp 25 sl 10 trail 5"):
        assert incoming_secret(text) is None, text[:20]


def test_registered_values_expire_and_the_set_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    register_secret("operator-token-value", ttl_s=None)
    register_secret("a-user-api-key-value", ttl_s=600)
    exported = b58(Keypair())
    register_secret(exported)  # a wallet secret: its shape masks it anyway, the value goes soon
    assert registered_count() == 3
    assert redact("x a-user-api-key-value y") == f"x {REDACTED} y"
    now[0] += logs.SHAPED_TTL_S + 1
    assert registered_count() == 2
    now[0] += 600
    assert redact("x a-user-api-key-value y") == "x a-user-api-key-value y"
    assert registered_count() == 1  # only the lifelong one
    for i in range(logs._MAX_SECRETS + 50):
        register_secret(f"value-number-{i:05d}")
    assert registered_count() == logs._MAX_SECRETS
    assert redact("operator-token-value") == REDACTED
