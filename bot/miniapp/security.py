"""The dashboard's security rules: the PIN (Argon2id, lockout after repeated failures), delayed security
changes, and the withdrawal allow-list whose new addresses wait out a delay.

A first PIN takes effect at once (there was nothing to protect it from). Changing or removing a PIN, and
adding a withdrawal address, take effect only after the security delay, and the user is told in the chat at
once: whoever got hold of an open dashboard cannot quietly take over before the owner can react.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bot.exits.withdraw import parse_address
from storage.db import Database
from storage.miniapp import AllowedAddress, AllowList, Pins, SecurityChange, SecurityChanges

log = logging.getLogger("lasersell_bot.miniapp.security")

PIN_MIN, PIN_MAX = 6, 12
Notify = Callable[[int, str], Awaitable[None]]


class SecurityError(Exception):
    """A security step was refused; ``str()`` says why and what to do (never echoing a PIN)."""


class PinLocked(SecurityError):
    pass


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def check_pin_format(pin: str) -> None:
    if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
        raise SecurityError(f"A PIN is {PIN_MIN} to {PIN_MAX} digits. Nothing was changed.")


class Security:
    def __init__(
        self,
        db: Database,
        *,
        delay_s: int,
        max_attempts: int,
        lockout_s: int,
        notify: Notify,
        clock: Callable[[], float] = time.time,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.pins = Pins(db)
        self.allowlist = AllowList(db)
        self.changes = SecurityChanges(db)
        self.delay_s = delay_s
        self.max_attempts = max_attempts
        self.lockout_s = lockout_s
        self.notify = notify
        self.clock = clock
        # Argon2id with argon2-cffi's defaults (RFC 9106's second recommendation: t=3, 64 MiB, p=4)
        self.hasher = hasher or PasswordHasher(type=Type.ID)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _hash(self, pin: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, pin)

    # --- the PIN ------------------------------------------------------------------------------------------
    async def has_pin(self, user_id: int) -> bool:
        await self.apply_due(user_id)
        return await self.pins.get(user_id) is not None

    async def set_first_pin(self, user_id: int, pin: str) -> None:
        check_pin_format(pin)
        if await self.has_pin(user_id):
            raise SecurityError("You already have a PIN: use Change PIN and enter the current one.")
        await self.pins.set(user_id, await self._hash(pin), self.now_ms())
        await self.notify(user_id, "🔐 Your dashboard PIN is set. Exports, wallet removal and withdrawals now ask for it.")

    async def verify(self, user_id: int, pin: str) -> None:
        """Raise SecurityError (wrong, with the tries left) or PinLocked; count failures, lock at the limit."""
        await self.apply_due(user_id)
        record = await self.pins.get(user_id)
        if record is None:
            raise SecurityError("Set a PIN first (Security → Set PIN): it protects exports, removal and withdrawals.")
        now = self.now_ms()
        if record.locked_until > now:
            raise PinLocked(f"Too many wrong PINs: the PIN is locked until {when(record.locked_until)}.")
        try:
            ok: bool = await asyncio.to_thread(self.hasher.verify, record.pin_hash, pin)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if ok:
            await self.pins.succeeded(user_id)
            if self.hasher.check_needs_rehash(record.pin_hash):
                await self.pins.rehash(user_id, await self._hash(pin))
            return
        after = await self.pins.failed(user_id, self.max_attempts, now + self.lockout_s * 1000)
        if after is not None and after.locked_until > now:
            await self.notify(user_id, f"⚠️ {self.max_attempts} wrong PINs in a row were entered in your dashboard. "
                                       f"The PIN is locked until {when(after.locked_until)}. If this was not you, "
                                       "move your funds from the chat.")
            raise PinLocked(f"Too many wrong PINs: the PIN is locked until {when(after.locked_until)}.")
        left = self.max_attempts - (after.failures if after is not None else 0)
        raise SecurityError(f"Wrong PIN. {left} {'try' if left == 1 else 'tries'} left before it locks.")

    async def change_pin(self, user_id: int, current: str, new: str | None) -> SecurityChange:
        """Change (or with `new` None remove) the PIN after the delay; the current PIN is asked first."""
        if new is not None:
            check_pin_format(new)
        await self.verify(user_id, current)
        effective = self.now_ms() + self.delay_s * 1000
        value = await self._hash(new) if new is not None else None
        change = await self.changes.add(user_id, "pin_change" if new is not None else "pin_remove", value, effective,
                                        self.now_ms())
        what = "PIN change" if new is not None else "PIN removal"
        await self.notify(user_id, f"🔐 A {what} was asked for in your dashboard. It takes effect at {when(effective)}. "
                                   "If this was not you, open the dashboard and cancel it.")
        return change

    async def cancel_changes(self, user_id: int) -> int:
        cancelled = await self.changes.cancel_all(user_id)
        if cancelled:
            await self.notify(user_id, "🔐 The pending PIN change was cancelled.")
        return cancelled

    async def apply_due(self, user_id: int | None = None) -> None:
        for change in await self.changes.due(self.now_ms()):
            if user_id is not None and change.telegram_id != user_id:
                continue
            if not await self.changes.settle(change.id, "applied"):
                continue
            if change.kind == "pin_change" and change.value:
                await self.pins.set(change.telegram_id, change.value, self.now_ms())
                await self.notify(change.telegram_id, "🔐 Your new dashboard PIN is now in effect.")
            elif change.kind == "pin_remove":
                await self.pins.delete(change.telegram_id)
                await self.notify(change.telegram_id, "🔐 Your dashboard PIN was removed, as asked.")

    # --- the allow-list ----------------------------------------------------------------------------------
    async def add_address(self, user_id: int, address: str, label: str, pin: str) -> AllowedAddress:
        key = parse_address(address)
        clean = " ".join(label.split())[:32] or f"{str(key)[:4]}…{str(key)[-4:]}"
        await self.verify(user_id, pin)
        now = self.now_ms()
        entry = await self.allowlist.add(user_id, str(key), clean, now + self.delay_s * 1000, now)
        if entry is None:
            raise SecurityError("That address is already on your withdrawal list.")
        await self.notify(
            user_id,
            f"🔐 Withdrawal address {clean} ({str(key)[:4]}…{str(key)[-4:]}) was added in your dashboard. It can be "
            f"used from {when(entry.usable_at)}. If this was not you, remove it in the dashboard now.",
        )
        return entry

    async def remove_address(self, user_id: int, entry_id: str) -> None:
        if not await self.allowlist.remove(user_id, entry_id):
            raise SecurityError("That address is not on your list any more: reload the page.")

    async def usable_address(self, user_id: int, address: str) -> AllowedAddress:
        entry = await self.allowlist.get(user_id, address)
        if entry is None:
            raise SecurityError("Withdrawals go only to addresses on your allow-list: add it first.")
        if not entry.usable(self.now_ms()):
            raise SecurityError(f"This address is new: it can be used from {when(entry.usable_at)}.")
        return entry


__all__ = ["PIN_MAX", "PIN_MIN", "PinLocked", "Security", "SecurityError", "check_pin_format", "when"]
