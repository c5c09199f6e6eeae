"""The dashboard's PIN (Argon2id, lockout) and allow-list delay, on a real database with a clock we move."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type
from solders.keypair import Keypair

from bot.miniapp.security import PinLocked, Security, SecurityError
from storage.db import Database
from storage.users import Users

USER, OTHER = 42, 43
DELAY_S = 86400


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Security, Clock, list[tuple[int, str]], Database]]:
    db = await Database.open(tmp_path / "bot.db")
    for uid in (USER, OTHER):
        await Users(db).seen(uid, uid, "Ann", None, None)
    clock, told = Clock(), []

    async def notify(user_id: int, text: str) -> None:
        told.append((user_id, text))

    # Argon2id with small costs: the same code path, fast enough for a unit test
    hasher = PasswordHasher(type=Type.ID, time_cost=1, memory_cost=1024, parallelism=1)
    security = Security(db, delay_s=DELAY_S, max_attempts=3, lockout_s=900, notify=notify, clock=clock, hasher=hasher)
    try:
        yield security, clock, told, db
    finally:
        await db.close()


async def test_the_pin_is_stored_as_an_argon2id_hash_only(world) -> None:
    security, _clock, told, db = world
    await security.set_first_pin(USER, "493817")
    row = await db.fetchone("SELECT pin_hash FROM miniapp_pins WHERE telegram_id=?", (USER,))
    assert row[0].startswith("$argon2id$") and "493817" not in row[0]
    await security.verify(USER, "493817")
    assert "PIN is set" in told[-1][1]


async def test_a_malformed_pin_is_refused_and_nothing_is_set(world) -> None:
    security, *_ = world
    for bad in ("123", "abcdef", "1234567890123", "１２３４５６"):
        with pytest.raises(SecurityError, match="6 to 12 digits"):
            await security.set_first_pin(USER, bad)
    assert not await security.has_pin(USER)


async def test_a_wrong_pin_is_refused_and_says_how_many_tries_are_left(world) -> None:
    security, *_ = world
    await security.set_first_pin(USER, "493817")
    with pytest.raises(SecurityError, match="Wrong PIN. 2 tries left"):
        await security.verify(USER, "000000")
    await security.verify(USER, "493817")  # a right PIN resets the count
    with pytest.raises(SecurityError, match="2 tries left"):
        await security.verify(USER, "000000")


async def test_repeated_wrong_pins_lock_out_even_the_right_one_until_the_lockout_ends(world) -> None:
    security, clock, told, _db = world
    await security.set_first_pin(USER, "493817")
    for _ in range(2):
        with pytest.raises(SecurityError, match="Wrong PIN"):
            await security.verify(USER, "111111")
    with pytest.raises(PinLocked, match="locked until"):
        await security.verify(USER, "111111")
    assert "wrong PINs in a row" in told[-1][1] and told[-1][0] == USER
    with pytest.raises(PinLocked):
        await security.verify(USER, "493817")  # the right PIN too: guessing cannot go on
    clock.now += 899
    with pytest.raises(PinLocked):
        await security.verify(USER, "493817")
    clock.now += 2
    await security.verify(USER, "493817")


async def test_another_users_failures_do_not_lock_mine(world) -> None:
    security, *_ = world
    await security.set_first_pin(USER, "493817")
    await security.set_first_pin(OTHER, "222222")
    for _ in range(3):
        with pytest.raises(SecurityError):
            await security.verify(OTHER, "999999")
    await security.verify(USER, "493817")


async def test_without_a_pin_protected_steps_are_refused(world) -> None:
    security, *_ = world
    with pytest.raises(SecurityError, match="Set a PIN first"):
        await security.verify(USER, "")


async def test_a_second_set_pin_is_refused(world) -> None:
    security, *_ = world
    await security.set_first_pin(USER, "493817")
    with pytest.raises(SecurityError, match="already have a PIN"):
        await security.set_first_pin(USER, "555555")
    await security.verify(USER, "493817")


async def test_a_pin_change_waits_out_the_delay_and_the_chat_is_told(world) -> None:
    security, clock, told, _db = world
    await security.set_first_pin(USER, "493817")
    await security.change_pin(USER, "493817", "777777")
    assert "takes effect at" in told[-1][1]
    await security.verify(USER, "493817")  # still the old one
    with pytest.raises(SecurityError):
        await security.verify(USER, "777777")
    clock.now += DELAY_S
    await security.verify(USER, "777777")
    assert "now in effect" in told[-1][1]


async def test_a_pin_change_needs_the_current_pin(world) -> None:
    security, *_ = world
    await security.set_first_pin(USER, "493817")
    with pytest.raises(SecurityError, match="Wrong PIN"):
        await security.change_pin(USER, "000000", "777777")
    assert await security.changes.pending(USER) == []


async def test_a_cancelled_pin_change_never_happens(world) -> None:
    security, clock, *_ = world
    await security.set_first_pin(USER, "493817")
    await security.change_pin(USER, "493817", "777777")
    assert await security.cancel_changes(USER) == 1
    clock.now += DELAY_S + 1
    await security.verify(USER, "493817")


async def test_a_new_withdrawal_address_is_locked_until_the_delay_passes(world) -> None:
    security, clock, told, _db = world
    await security.set_first_pin(USER, "493817")
    address = str(Keypair().pubkey())
    entry = await security.add_address(USER, address, "cold", "493817")
    assert "can be used from" in told[-1][1]
    with pytest.raises(SecurityError, match="new: it can be used from"):
        await security.usable_address(USER, address)
    clock.now += DELAY_S - 1
    with pytest.raises(SecurityError, match="new"):
        await security.usable_address(USER, address)
    clock.now += 1
    assert (await security.usable_address(USER, address)).id == entry.id


async def test_an_address_needs_the_pin_and_a_real_address(world) -> None:
    security, *_ = world
    await security.set_first_pin(USER, "493817")
    with pytest.raises(SecurityError, match="Wrong PIN"):
        await security.add_address(USER, str(Keypair().pubkey()), "x", "000000")
    with pytest.raises(Exception, match="not a Solana address"):
        await security.add_address(USER, "not-an-address", "x", "493817")
    assert await security.allowlist.list(USER) == []


async def test_an_address_not_on_my_list_is_refused(world) -> None:
    security, clock, *_ = world
    await security.set_first_pin(OTHER, "222222")
    address = str(Keypair().pubkey())
    await security.add_address(OTHER, address, "theirs", "222222")
    clock.now += DELAY_S
    with pytest.raises(SecurityError, match="allow-list"):
        await security.usable_address(USER, address)
