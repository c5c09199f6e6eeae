"""Redaction: no secret reaches any log output, whichever path a record takes."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from mnemonic import Mnemonic

import bot.logs as logs
from bot.keys import generate_wallet
from bot.logs import (
    REDACTED,
    forget_secret,
    install_redaction,
    redact,
    register_secret,
    setup_logging,
)


@pytest.fixture(autouse=True)
def fresh_logging(isolated_logging: None) -> Iterator[None]:
    """Each test starts with the process's logging as it was and no secret registered for redaction."""
    try:
        yield
    finally:
        with logs._lock:
            logs._secrets.clear()
            logs._rebuild()


class Secrets:
    """Fresh secret values in the encodings the bot could let slip."""

    def __init__(self) -> None:
        keypair, self.wallet_b58 = generate_wallet()
        self.wallet_json = json.dumps(list(bytes(keypair)))
        self.wallet_json_compact = self.wallet_json.replace(" ", "")
        self.phrase = Mnemonic("english").generate(strength=128)
        self.phrase24 = Mnemonic("english").generate(strength=256)
        self.bot_token = "7312345678:AAH" + "x9Kq_Zt-4Lm2Np8Rv5Ws1Yb6Cd3Ef0Gh"
        self.api_key = "ls_live_" + "Qm9vYmFy/+=" + "7f3a9c"
        register_secret(self.api_key)

    def all_forms(self) -> list[str]:
        return [
            self.wallet_b58,
            self.wallet_json,
            self.wallet_json_compact,
            self.phrase,
            self.phrase24,
            self.bot_token,
            self.bot_token.split(":", 1)[1],
            self.api_key,
            quote(self.api_key, safe=""),
        ]

    def assert_absent(self, output: str) -> None:
        assert output, "nothing was logged"
        for form in self.all_forms():
            assert form not in output
        # A fragment of the phrase long enough to matter must not survive either.
        assert " ".join(self.phrase.split()[:4]) not in output


def _log_everything(s: Secrets) -> None:
    log = logging.getLogger("lasersell_bot.test")
    log.info("wallet %s loaded for %r", s.wallet_b58, {"key": s.wallet_json})
    log.info(f"f-string with the phrase {s.phrase} and api key {s.api_key}")
    log.warning("24 words:\n%s", "\n".join(f"{i}. {w}" for i, w in enumerate(s.phrase24.split(), 1)))
    log.info("user record", extra={"api_key": s.api_key, "wallet": s.wallet_json_compact})
    try:
        try:
            raise KeyError(s.wallet_b58)
        except KeyError as inner:
            raise RuntimeError(f"could not use key {s.api_key}") from inner
    except RuntimeError:
        log.exception("failed with %s", s.phrase)
    log.info("where am I", stack_info=True)
    logging.getLogger("httpx.client").warning(
        'HTTP Request: POST https://api.telegram.org/bot%s/getMe "HTTP/1.1 200 OK"', s.bot_token
    )
    logging.getLogger("telegram.ext.Updater").error("token %s rejected", s.bot_token)
    logging.getLogger("httpx").warning("GET /v1/sell?api_key=%s", quote(s.api_key, safe=""))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated call with {s.wallet_b58}", UserWarning, stacklevel=1)


def test_text_format_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    s = Secrets()
    setup_logging("INFO", "text")
    _log_everything(s)
    output = capsys.readouterr().err
    s.assert_absent(output)
    # The lines themselves still get through, with the secrets masked.
    assert "wallet [REDACTED] loaded" in output
    assert "/bot[REDACTED]/getMe" in output
    assert "Traceback" in output and "RuntimeError: could not use key [REDACTED]" in output
    assert "KeyError" in output
    assert "Stack (most recent call last)" in output
    assert "UserWarning: deprecated call with [REDACTED]" in output


def test_json_format_to_file(tmp_path: Path) -> None:
    s = Secrets()
    log_file = tmp_path / "bot.log"
    setup_logging("INFO", "json", log_file=log_file)
    _log_everything(s)
    for handler in logging.getLogger().handlers:
        handler.flush()
    raw = log_file.read_text()
    s.assert_absent(raw)
    entries = [json.loads(line) for line in raw.splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in entries)
    failed = next(e for e in entries if e["msg"].startswith("failed with"))
    assert failed["level"] == "ERROR" and "RuntimeError" in failed["exc"]
    record = next(e for e in entries if e["msg"] == "user record")
    assert record["api_key"] == REDACTED and record["wallet"] == REDACTED
    assert any(e["logger"] == "py.warnings" for e in entries)
    # JSON escaping must not hide a secret from the check above: decode and look again.
    s.assert_absent("\n".join(json.dumps(e, ensure_ascii=True) for e in entries))


def test_handler_added_after_setup_is_covered(capsys: pytest.CaptureFixture[str]) -> None:
    s = Secrets()
    setup_logging("INFO", "text")
    late = io.StringIO()
    handler = logging.StreamHandler(late)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logging.getLogger("telegram").addHandler(handler)  # no filter of ours on it
    try:
        _log_everything(s)
        logging.getLogger("telegram.ext").info("extra %(api_key)s", extra={"api_key": s.api_key})
        extra_line = io.StringIO()
        extra_handler = logging.StreamHandler(extra_line)
        extra_handler.setFormatter(logging.Formatter("%(message)s key=%(api_key)s"))
        logging.getLogger("late.extra").addHandler(extra_handler)
        logging.getLogger("late.extra").warning("with extra", extra={"api_key": s.api_key})
        logging.getLogger("late.extra").removeHandler(extra_handler)
    finally:
        logging.getLogger("telegram").removeHandler(handler)
    assert "token [REDACTED] rejected" in late.getvalue()
    s.assert_absent(late.getvalue())
    assert extra_line.getvalue().strip() == "with extra key=[REDACTED]"
    s.assert_absent(capsys.readouterr().err)


def test_records_built_without_the_factory_are_caught_by_the_filter() -> None:
    s = Secrets()
    stream = io.StringIO()
    handler = install_redaction(logging.StreamHandler(stream))
    record = logging.makeLogRecord({"msg": "key %s", "args": (s.wallet_b58,), "levelno": 20})
    handler.handle(record)
    assert stream.getvalue().strip() == "key [REDACTED]"


def test_register_and_forget() -> None:
    value = "plain-secret-value-1234"
    assert redact(f"x {value} y") == f"x {value} y"
    register_secret(value)
    assert redact(f"x {value} y") == "x [REDACTED] y"
    forget_secret(value)
    assert redact(f"x {value} y") == f"x {value} y"
    register_secret("ab")  # too short to mask safely: ignored
    assert redact("abc") == "abc"


def test_public_data_is_left_alone() -> None:
    keypair, _ = generate_wallet()
    signature = str(keypair.sign_message(b"tx"))
    line = f"sold 1.5 SOL from {keypair.pubkey()} in tx {signature} at 12:34:56"
    assert redact(line) == line


def test_signatures_beside_short_words_are_left_alone() -> None:
    # "in tx <signature>": short base58 words joined with a signature once added up to a key's shape
    # (about one line in thirteen); a signature is public and stays readable in the logs
    for i in range(300):
        keypair, _ = generate_wallet()
        line = f"sold 1.5 SOL from {keypair.pubkey()} in tx {keypair.sign_message(b'tx%d' % i)} at 12:34:56"
        assert redact(line) == line


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="log level"):
        setup_logging("LOUD")
    with pytest.raises(ValueError, match="log format"):
        setup_logging("INFO", "xml")
