"""Telegram's initData check: only a fresh string signed with this bot's token names a user."""

import hashlib
import hmac
import json
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.miniapp.initdata import InitDataError, init_data_for, sign_init_data, verify_init_data

TOKEN = "123456789:" + "A" * 35
OTHER_TOKEN = "987654321:" + "B" * 35
NOW = 1_800_000_000


def fields_of(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True))


def test_a_fresh_signed_init_data_names_its_user() -> None:
    user = verify_init_data(init_data_for(42, "Ann", TOKEN, NOW - 10, "ann"), TOKEN, max_age_s=3600, now=NOW)
    assert (user.id, user.first_name, user.username) == (42, "Ann", "ann")


def test_forged_with_another_bots_token_is_refused() -> None:
    forged = init_data_for(42, "Ann", OTHER_TOKEN, NOW)
    with pytest.raises(InitDataError, match="signature"):
        verify_init_data(forged, TOKEN, max_age_s=3600, now=NOW)


def test_forged_with_a_made_up_hash_is_refused() -> None:
    fields = fields_of(init_data_for(42, "Ann", TOKEN, NOW))
    fields["hash"] = "0" * 64
    with pytest.raises(InitDataError, match="signature"):
        verify_init_data(urlencode(fields), TOKEN, max_age_s=3600, now=NOW)


def test_unsigned_init_data_is_refused() -> None:
    fields = fields_of(init_data_for(42, "Ann", TOKEN, NOW))
    del fields["hash"]
    with pytest.raises(InitDataError, match="signature"):
        verify_init_data(urlencode(fields), TOKEN, max_age_s=3600, now=NOW)
    with pytest.raises(InitDataError, match="no initData"):
        verify_init_data("", TOKEN, max_age_s=3600, now=NOW)


def test_stale_init_data_is_refused() -> None:
    stale = init_data_for(42, "Ann", TOKEN, NOW - 3601)
    with pytest.raises(InitDataError, match="too old"):
        verify_init_data(stale, TOKEN, max_age_s=3600, now=NOW)
    assert verify_init_data(stale, TOKEN, max_age_s=7200, now=NOW).id == 42  # the setting decides


def test_init_data_dated_in_the_future_is_refused() -> None:
    with pytest.raises(InitDataError, match="future"):
        verify_init_data(init_data_for(42, "Ann", TOKEN, NOW + 3600), TOKEN, max_age_s=3600, now=NOW)


def test_replayed_for_another_user_is_refused() -> None:
    """Ann's genuine initData with Bob's id put into it no longer matches its hash."""
    fields = fields_of(init_data_for(42, "Ann", TOKEN, NOW))
    user = json.loads(fields["user"])
    user["id"] = 43
    fields["user"] = json.dumps(user, separators=(",", ":"))
    with pytest.raises(InitDataError, match="signature"):
        verify_init_data(urlencode(fields), TOKEN, max_age_s=3600, now=NOW)


def test_tampered_auth_date_is_refused() -> None:
    """Refreshing a stolen, stale initData by editing auth_date breaks the signature."""
    fields = fields_of(init_data_for(42, "Ann", TOKEN, NOW - 7200))
    fields["auth_date"] = str(NOW)
    with pytest.raises(InitDataError, match="signature"):
        verify_init_data(urlencode(fields), TOKEN, max_age_s=3600, now=NOW)


def test_an_added_field_is_refused() -> None:
    raw = init_data_for(42, "Ann", TOKEN, NOW) + "&start_param=admin"
    with pytest.raises(InitDataError, match="signature"):
        verify_init_data(raw, TOKEN, max_age_s=3600, now=NOW)


def test_a_repeated_field_is_refused() -> None:
    """Two `user` fields: one parser could check the first and another use the second."""
    raw = init_data_for(42, "Ann", TOKEN, NOW) + "&user=%7B%22id%22%3A43%7D"
    with pytest.raises(InitDataError, match="repeats"):
        verify_init_data(raw, TOKEN, max_age_s=3600, now=NOW)


def test_signed_data_without_a_user_names_nobody() -> None:
    raw = sign_init_data({"auth_date": str(NOW), "query_id": "x"}, TOKEN)
    with pytest.raises(InitDataError, match="no user"):
        verify_init_data(raw, TOKEN, max_age_s=3600, now=NOW)


def test_the_check_string_is_telegrams() -> None:
    """Independent of our signer: the documented recipe, written out, accepts what we accept."""
    fields = {"auth_date": str(NOW), "query_id": "AAE", "user": '{"id":7,"first_name":"Zoë"}'}
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    secret = hmac.new(b"WebAppData", TOKEN.encode(), hashlib.sha256).digest()
    raw = urlencode({**fields, "hash": hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()})
    assert verify_init_data(raw, TOKEN, max_age_s=60, now=NOW).first_name == "Zoë"
