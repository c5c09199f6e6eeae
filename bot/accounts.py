"""Accounts: a user's LaserSell key, wallets and strategy, with secrets sealed by the vault.

Every operation checks everything first and stores last, so a refused request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from solders.keypair import Keypair

from bot.config import Settings
from bot.keys import KeyFormatError, export_secret, generate_wallet, parse_wallet_secret, registration_proof
from bot.lasersell_api import AccountInfo, InvalidApiKey, LaserSellApi, LaserSellApiError, SignatureRejected
from bot.logs import register_secret
from bot.solana_rpc import RpcError, SolanaRpc
from bot.strategy import DEFAULT_STRATEGY, Strategy
from bot.vault import Vault, VaultError
from storage.accounts import (
    DuplicateWallet,
    KeyInUse,
    LaserSellKeys,
    SettingsStore,
    UserSettings,
    Wallet,
    Wallets,
    forget_user,
)
from storage.db import Database
from storage.users import BuyPresets

log = logging.getLogger("lasersell_bot.accounts")
# A refusal never says that another user of the bot has the key or wallet: that would tell a stranger
# who trades here.
KEY_TAKEN = ("That key cannot be used with this bot. Each LaserSell key allows one stream session: use a key of "
             "your own, from your LaserSell dashboard.")
WALLET_TAKEN = "That wallet cannot be added here. Import a wallet only you control, or create a new one with /wallets."

API_KEY_KIND = "api_key"
WALLET_KIND = "wallet"
FREE_TIER_WALLETS = 1
MAX_LABEL = 32


class AccountError(Exception):
    """A request the user made cannot be done; the message says why and what to do, in words."""


@dataclass(frozen=True)
class ApiKeyInfo:
    hint: str
    max_wallets: int
    source: str  # "yours" or "operator"
    plan: str | None = None  # from GET /v1/account, e.g. "Professional"
    max_positions_per_wallet: int | None = None
    max_positions_per_session: int | None = None

    def limits_words(self) -> str:
        """The plan and its limits as a trader reads them."""
        parts = [f"up to {self.max_wallets} wallet(s)"]
        if self.max_positions_per_wallet is not None:
            parts.append(f"{self.max_positions_per_wallet} open positions per wallet")
        if self.max_positions_per_session is not None:
            parts.append(f"{self.max_positions_per_session} in all")
        plan = f"{self.plan} plan: " if self.plan else ""
        return plan + ", ".join(parts)


def _key_info(hint: str, source: str, stored: dict[str, object]) -> ApiKeyInfo:
    def number(name: str) -> int | None:
        value = stored.get(name)
        return int(value) if isinstance(value, int | float | str) and str(value).isdigit() else None

    return ApiKeyInfo(
        hint, number("max_wallets") or FREE_TIER_WALLETS, source,
        str(stored["plan"]) if stored.get("plan") else None,
        number("max_positions_per_wallet"), number("max_positions_per_session"),
    )


@dataclass(frozen=True)
class WalletView:
    wallet: Wallet
    sol_lamports: int | None
    token_count: int | None


def key_hint(api_key: str) -> str:
    return f"{api_key[:3]}…{api_key[-4:]}" if len(api_key) > 8 else "…"


def key_hash(api_key: str) -> str:
    return hashlib.sha256(b"lasersell-bot/api-key/v1:" + api_key.encode()).hexdigest()


class AccountService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        vault: Vault,
        api: LaserSellApi,
        rpc: SolanaRpc,
        on_change: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.vault = vault
        self.api = api
        self.rpc = rpc
        self.wallets = Wallets(db)
        self.keys = LaserSellKeys(db)
        self.store = SettingsStore(db)
        # called after any change that the user's stream must pick up (key, wallets, strategy, settings)
        self.on_change = on_change

    async def _changed(self, user_id: int) -> None:
        if self.on_change is not None:
            await self.on_change(user_id)

    # --- the LaserSell key ------------------------------------------------------------------------------
    async def set_api_key(self, user_id: int, api_key: str) -> ApiKeyInfo:
        api_key = api_key.strip()
        if len(api_key) < 8 or any(c.isspace() for c in api_key):
            raise AccountError("That does not look like a LaserSell API key. Copy it from your LaserSell dashboard.")
        register_secret(api_key)
        digest = key_hash(api_key)
        owner = await self.keys.owner_of(digest)
        if owner is not None and owner != user_id:
            raise AccountError(KEY_TAKEN)
        try:
            account: AccountInfo = await self.api.check_key(api_key)
        except InvalidApiKey:
            raise AccountError("LaserSell refused that key. Check it on your LaserSell dashboard and send it again.") from None
        except LaserSellApiError as exc:
            raise AccountError(f"I could not check the key: {api_failure_words(exc)}. Nothing was saved.") from None
        stored = {
            "max_wallets": account.max_wallets, "plan": account.plan, "tier_name": account.tier_name,
            "max_positions_per_wallet": account.max_positions_per_wallet,
            "max_positions_per_session": account.max_positions_per_session,
        }
        sealed = self.vault.seal(api_key.encode(), user_id=user_id, kind=API_KEY_KIND, identity="api_key")
        try:
            await self.keys.set(user_id, sealed, key_hint(api_key), digest, json.dumps(stored))
        except KeyInUse:
            raise AccountError(KEY_TAKEN) from None
        await self._register_pending_wallets(user_id, api_key)
        await self._changed(user_id)
        return _key_info(key_hint(api_key), "yours", stored)

    async def api_key(self, user_id: int) -> tuple[str, ApiKeyInfo] | None:
        """The key the user's stream and API calls use: their own, else the operator's (admins only)."""
        stored = await self.keys.get(user_id)
        if stored is not None:
            try:
                key = self.vault.open(stored.sealed, user_id=user_id, kind=API_KEY_KIND, identity="api_key").decode()
            except VaultError as exc:
                raise AccountError(f"Your LaserSell key cannot be opened ({exc}): set it again with /apikey.") from None
            register_secret(key)
            return key, _key_info(stored.key_hint, "yours", json.loads(stored.tier or "{}"))
        operator = self.settings.lasersell_api_key
        if operator and self.settings.is_admin(user_id):
            return operator, ApiKeyInfo(key_hint(operator), 200, "operator")
        return None

    async def key_info(self, user_id: int) -> ApiKeyInfo | None:
        found = await self.api_key(user_id)
        return found[1] if found else None

    # --- wallets ----------------------------------------------------------------------------------------
    async def import_wallet(self, user_id: int, secret_text: str, label: str | None = None) -> Wallet:
        try:
            keypair = parse_wallet_secret(secret_text)
        except KeyFormatError as exc:
            raise AccountError(str(exc)) from None
        return await self._add(user_id, keypair, label)

    async def generate(self, user_id: int, label: str | None = None) -> tuple[Wallet, str]:
        keypair, secret = generate_wallet()
        register_secret(secret)
        wallet = await self._add(user_id, keypair, label)
        return wallet, secret

    async def _add(self, user_id: int, keypair: Keypair, label: str | None) -> Wallet:
        address = str(keypair.pubkey())
        existing = await self.wallets.by_address(address)
        if existing is not None:
            if existing.telegram_id == user_id:
                raise AccountError(f"That wallet is already in your list as “{existing.label}”.")
            raise AccountError(WALLET_TAKEN)
        current = await self.wallets.list(user_id)
        found = await self.api_key(user_id)
        if found is not None and len(current) >= found[1].max_wallets:
            raise AccountError(
                f"Your LaserSell plan streams at most {found[1].max_wallets} wallet(s) per session and you have "
                f"{len(current)}. Remove one with /wallets, or upgrade your LaserSell plan."
            )
        taken = {w.label for w in current}
        cleaned = _clean_label(label)
        if cleaned and cleaned.casefold() in {t.casefold() for t in taken}:
            raise AccountError(f"You already have a wallet named “{cleaned}”. Try “{free_label(taken, cleaned)}”.")
        label = cleaned or free_label(taken, f"Wallet {len(current) + 1}")
        registered = False
        if found is not None:
            await self._register(found[0], keypair, label)
            registered = True
        sealed = self.vault.seal(bytes(keypair), user_id=user_id, kind=WALLET_KIND, identity=address)
        try:
            wallet = await self.wallets.add(user_id, address, label, sealed)
        except DuplicateWallet as exc:
            raise AccountError("That wallet is already added." if exc.mine else WALLET_TAKEN) from None
        if registered:
            await self.wallets.mark_registered(wallet.id)
            wallet = await self.wallets.get(user_id, wallet.id) or wallet
        await self._changed(user_id)
        return wallet

    async def _register(self, api_key: str, keypair: Keypair, label: str) -> None:
        try:
            await self.api.register_wallet(api_key, registration_proof(keypair, int(time.time())), label)
        except InvalidApiKey:
            raise AccountError("LaserSell refused your API key while registering the wallet: set it again with /apikey.") from None
        except SignatureRejected:
            # 403 is the ownership proof, not the key: usually this machine's clock is off (the signed time must
            # be within 5 minutes of LaserSell's) or the key bytes do not belong to this address
            raise AccountError(
                "LaserSell could not verify this wallet's ownership signature (403). Your API key is fine. "
                "Check that the secret key belongs to this wallet and try again; if it keeps failing, tell the "
                "bot's operator (the server clock may be off). Nothing was saved."
            ) from None
        except LaserSellApiError as exc:
            if exc.status == 400:
                raise AccountError(
                    f"LaserSell did not accept the wallet ({api_failure_words(exc)}): the wallet address or the "
                    "signed message was refused. Nothing was saved; try again, and tell the bot's operator if it repeats."
                ) from None
            if exc.retryable:
                raise AccountError(
                    f"{api_failure_words(exc)}. Nothing was saved."
                ) from None
            raise AccountError(f"LaserSell could not register the wallet: {api_failure_words(exc)}. Nothing was saved; "
                               "try again.") from None

    async def _register_pending_wallets(self, user_id: int, api_key: str) -> None:
        """A new key: every wallet is registered under it (a registration belongs to the key, so wallets
        registered with the old one would be refused). A wallet never registered must succeed now; one
        registered before is tried again on every connect if LaserSell is busy right now."""
        for wallet in await self.wallets.list(user_id):
            keypair = self._keypair(wallet)
            try:
                await self._register(api_key, keypair, wallet.label)
            except AccountError as exc:
                if wallet.registered_at is None:
                    raise
                log.warning("re-registering wallet %s under the new key failed: %s", wallet.id, exc)
                continue
            finally:
                del keypair
            if wallet.registered_at is None:
                await self.wallets.mark_registered(wallet.id)

    async def register_for_stream(self, user_id: int, api_key: str) -> int:
        """Register every wallet of the user under `api_key`, as the official CLI does before every stream
        connect: registering is idempotent, and a wallet the stream does not know for this key (a changed
        key, a plan change, a registration LaserSell lost) would stop the stream. Failures are logged, not
        raised: the connect goes on and the stream says which wallet it refuses. Returns how many succeeded."""
        done = 0
        for wallet in await self.wallets.list(user_id):
            try:
                keypair = self._keypair(wallet)
                try:
                    await self._register(api_key, keypair, wallet.label)
                finally:
                    del keypair
            except AccountError as exc:
                log.info("registering wallet %s before connecting failed: %s", wallet.id, exc)
                continue
            done += 1
            if wallet.registered_at is None:
                await self.wallets.mark_registered(wallet.id)
        return done

    def _keypair(self, wallet: Wallet) -> Keypair:
        try:
            raw = self.vault.open(wallet.sealed, user_id=wallet.telegram_id, kind=WALLET_KIND, identity=wallet.address)
        except VaultError as exc:
            raise AccountError(f"The key of wallet {wallet.label} cannot be opened: {exc}") from None
        return Keypair.from_bytes(raw)

    async def keypair(self, user_id: int, address: str) -> Keypair:
        """Decrypt a wallet key (only to sign, or for an explicit export)."""
        wallet = await self.wallets.by_address(address)
        if wallet is None or wallet.telegram_id != user_id:
            # one sentence for "removed" and "someone else's": a reply never hints at another user's wallet
            raise AccountError(
                f"The wallet {address[:4]}…{address[-4:]} is not in your wallets any more (it was removed), so I "
                "cannot sign with it. Import it again with /import to sell from the bot, or sell from your wallet app."
            )
        return self._keypair(wallet)

    async def export(self, user_id: int, wallet_id: int) -> tuple[Wallet, str]:
        wallet = await self._own(user_id, wallet_id)
        secret = export_secret(self._keypair(wallet))
        register_secret(secret)
        return wallet, secret

    async def rename(self, user_id: int, wallet_id: int, label: str) -> Wallet:
        cleaned = _clean_label(label)
        if not cleaned:
            raise AccountError(f"A wallet name needs 1 to {MAX_LABEL} characters.")
        await self._own(user_id, wallet_id)
        others = {w.label for w in await self.wallets.list(user_id) if w.id != wallet_id}
        if cleaned.casefold() in {t.casefold() for t in others}:
            raise AccountError(f"You already have a wallet named “{cleaned}”. Try “{free_label(others, cleaned)}”.")
        await self.wallets.rename(user_id, wallet_id, cleaned)
        return await self._own(user_id, wallet_id)

    async def set_default(self, user_id: int, wallet_id: int) -> Wallet:
        await self._own(user_id, wallet_id)
        await self.wallets.set_default(user_id, wallet_id)
        return await self._own(user_id, wallet_id)

    async def remove(self, user_id: int, wallet_id: int) -> Wallet:
        wallet = await self._own(user_id, wallet_id)
        await self.wallets.remove(user_id, wallet_id)
        await self._changed(user_id)
        found = await self.api_key(user_id)
        if found is not None and found[1].source == "yours" and wallet.registered_at:
            try:  # best effort: the wallet is gone from the bot either way; this frees its place on the plan
                await self.api.unregister_wallet(found[0], wallet.address)
            except LaserSellApiError as exc:
                log.info("could not unregister a removed wallet: %s", exc)
        return wallet

    async def _own(self, user_id: int, wallet_id: int) -> Wallet:
        wallet = await self.wallets.get(user_id, wallet_id)
        if wallet is None:
            raise AccountError("That wallet is no longer in your list. Open /wallets to see the current list.")
        return wallet

    async def overview(self, user_id: int) -> list[WalletView]:
        views = []
        for wallet in await self.wallets.list(user_id):
            try:
                sol: int | None = await self.rpc.get_balance(wallet.address)
                tokens: int | None = sum(1 for h in await self.rpc.get_token_holdings(wallet.address) if h.amount > 0)
            except RpcError as exc:
                log.warning("balance lookup failed: %s", exc)
                sol, tokens = None, None
            views.append(WalletView(wallet, sol, tokens))
        return views

    # --- strategy ---------------------------------------------------------------------------------------
    async def strategy(self, user_id: int) -> Strategy:
        settings = await self.store.get(user_id)
        return Strategy.from_json(settings.strategy_json) if settings.strategy_json else DEFAULT_STRATEGY

    async def set_strategy(self, user_id: int, strategy: Strategy) -> Strategy:
        strategy = strategy.validated()
        await self.store.update(user_id, strategy_json=strategy.to_json())
        await self._changed(user_id)
        return strategy

    async def forget(self, user_id: int) -> None:
        await forget_user(self.db, user_id)
        await self._changed(user_id)

    # --- what handlers read and change (public: no handler reaches into the store or the vault) ---------
    async def user_settings(self, user_id: int) -> UserSettings:
        """The user's stored settings (defaults for a user not stored yet)."""
        return await self.store.get(user_id)

    async def update_settings(self, user_id: int, **changes: Any) -> UserSettings:
        """Store `changes` and hand them to the user's stream; returns the settings as stored."""
        if changes:
            await self.store.update(user_id, **changes)
            await self._changed(user_id)
        return await self.store.get(user_id)

    async def note_setup(self, user_id: int, *, step: str | None = None, skipped: str | None = None) -> None:
        """Remember where the user is in setup (`step`), or that they skipped a step (`skipped`)."""
        if step is not None:
            await self.store.update(user_id, onboarding_step=step)
        if skipped is not None:
            current = await self.store.get(user_id)
            await self.store.update(user_id, skipped_steps=set(current.skipped_steps) | {skipped})

    async def wallet(self, user_id: int, wallet_id: int) -> Wallet:
        """One of the user's wallets; AccountError when it is not (or no longer) theirs."""
        return await self._own(user_id, wallet_id)

    async def set_astralane_key(self, user_id: int, key: str, **changes: Any) -> UserSettings:
        """Seal and store the user's Astralane key, together with `changes` (the send mode and its tip)."""
        key = key.strip()
        if len(key) < 8 or any(c.isspace() for c in key):
            raise AccountError("That does not look like an Astralane key.")
        sealed = self.vault.seal(key.encode(), user_id=user_id, kind="astralane_key", identity="astralane_key")
        return await self.update_settings(user_id, astralane_sealed=sealed, **changes)

    async def buy_presets(self, user_id: int) -> tuple[int, ...]:
        """The lamport amounts on the user's buy buttons."""
        return tuple(await BuyPresets(self.db).get(user_id))

    async def set_buy_presets(self, user_id: int, presets: tuple[int, ...]) -> None:
        await BuyPresets(self.db).set(user_id, presets)


_DEVELOPER_WORDS = re.compile(r"\s*\((?:[A-Z][A-Za-z]*(?:Error|Exception|Timeout)|(?:GET|POST|PUT|DELETE) /[^)]*)\)|"
                              r"\b(?:GET|POST|PUT|DELETE) /\S+|HTTP \d{3}")


def api_failure_words(exc: LaserSellApiError) -> str:
    """A LaserSell failure in a trader's words: what happened and what to do, never an exception name,
    an HTTP path or a bare status."""
    if exc.status is None:
        return "LaserSell did not answer (the connection failed): try again in a minute"
    if exc.status == 429:
        return "LaserSell asked us to slow down: try again in a minute"
    if exc.status >= 500:
        return "LaserSell had a problem on its side: try again in a minute"
    said = _DEVELOPER_WORDS.sub("", str(exc)).strip(" .")
    return f"LaserSell said: {said}" if said else "LaserSell refused the request"


def _clean_label(label: str | None) -> str:
    """What the user typed, kept as typed (emoji, HTML-looking text: it is escaped where shown); only
    control characters go and runs of spaces become one. Longer than MAX_LABEL is cut (see label_was_cut)."""
    if not label:
        return ""
    cleaned = " ".join("".join(c for c in label if c.isprintable() or c == " ").split())
    return cleaned[:MAX_LABEL]


def label_was_cut(typed: str) -> bool:
    """True when `typed` was longer than a wallet name may be, so the saved name is its start."""
    return len(" ".join("".join(c for c in typed if c.isprintable() or c == " ").split())) > MAX_LABEL


def free_label(taken: set[str], base: str) -> str:
    """`base`, or `base 2`, `base 3`… whichever no wallet of the user is named yet (case ignored)."""
    taken_folded = {t.casefold() for t in taken}
    if base.casefold() not in taken_folded:
        return base
    n = 2
    while f"{base} {n}".casefold() in taken_folded:
        n += 1
    return f"{base} {n}"
