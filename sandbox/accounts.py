"""LaserSell accounts as the sandbox services see them: API keys with tiers, registered wallets.

Shared by the stream server, the REST API and the control API so that a key issued by
`POST /sim/api_keys` works on the stream and a wallet registered through `/v1/wallets/register`
is one the stream will watch.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

TIERS: dict[str, dict[str, int]] = {
    # Stream limits per tier, as api/reference/rate-limits.mdx documents them.
    "free": {
        "max_wallets_per_session": 1,
        "max_sessions_per_api_key": 1,
        "max_positions_per_wallet": 2,
        "max_positions_per_session": 2,
    },
    "professional": {
        "max_wallets_per_session": 5,
        "max_sessions_per_api_key": 1,
        "max_positions_per_wallet": 100,
        "max_positions_per_session": 500,
    },
    "advanced": {
        "max_wallets_per_session": 200,
        "max_sessions_per_api_key": 1,
        "max_positions_per_wallet": 100,
        "max_positions_per_session": 20_000,
    },
}


class UnknownTier(ValueError):
    pass


@dataclass
class ApiKey:
    key: str
    tier: str
    registered_wallets: set[str] = field(default_factory=set)

    @property
    def max_wallets_per_session(self) -> int:
        return TIERS[self.tier]["max_wallets_per_session"]


class Accounts:
    """API keys issued by the control API and the wallets registered under each."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._keys: dict[str, ApiKey] = {}

    def issue(self, tier: str = "professional") -> ApiKey:
        if tier not in TIERS:
            raise UnknownTier(f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
        alphabet = string.ascii_letters + string.digits
        key = "ls_" + "".join(self._rng.choice(alphabet) for _ in range(32))
        api_key = ApiKey(key=key, tier=tier)
        self._keys[key] = api_key
        return api_key

    def get(self, key: str | None) -> ApiKey | None:
        if not key:
            return None
        return self._keys.get(key)

    def revoke(self, key: str) -> None:
        """The key stops working (as when a trader rotates it on the dashboard)."""
        self._keys.pop(key, None)

    def register_wallet(self, key: str, wallet: str) -> None:
        self._keys[key].registered_wallets.add(wallet)

    def unregister_wallet(self, key: str, wallet: str) -> bool:
        """Removes the registration; False when the wallet was not registered under the key."""
        api_key = self._keys.get(key)
        if api_key is None or wallet not in api_key.registered_wallets:
            return False
        api_key.registered_wallets.discard(wallet)
        return True

    def is_registered(self, key: str, wallet: str) -> bool:
        api_key = self._keys.get(key)
        return api_key is not None and wallet in api_key.registered_wallets

    def all(self) -> list[ApiKey]:
        return list(self._keys.values())
