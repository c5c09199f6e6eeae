"""The LaserSell REST Exit API (openapi.yaml): account, wallet registration, and sell / buy transactions built for us."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE = {429, 500, 502, 503, 504}
PLAN_NAMES = {"free": "Personal (free)", "tier_1": "Professional", "tier_2": "Advanced"}


class LaserSellApiError(Exception):
    """The API refused or failed; `status` is the HTTP status, the message is in words."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def retryable(self) -> bool:
        """Worth asking again later: no answer, rate limited, or a server error (the SDKs' rule)."""
        return self.status is None or self.status in RETRYABLE or self.status >= 500


class InvalidApiKey(LaserSellApiError):
    """401: the key is missing or unknown."""


class SignatureRejected(LaserSellApiError):
    """403 on wallet registration: the ownership signature failed verification (the key itself is fine)."""


@dataclass(frozen=True)
class AccountInfo:
    """`GET /v1/account`: the key's plan and limits."""

    tier: int
    tier_name: str
    max_wallets: int
    max_positions_per_wallet: int | None = None
    max_positions_per_session: int | None = None
    raw_limits: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> str:
        return PLAN_NAMES.get(self.tier_name, self.tier_name)


def _error_words(data: dict[str, Any], status: int) -> str:
    # ErrorResponse is {"error"}; UnsupportedResponse / NotIndexedResponse carry {"status","reason","message"}
    for name in ("message", "error", "reason"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return f"HTTP {status}"


class LaserSellApi:
    def __init__(self, base_url: str, stream_url: str = "", *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.stream_url = stream_url
        self._client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(
        self, method: str, path: str, api_key: str, body: dict[str, Any] | None = None, *, attempts: int = 3
    ) -> dict[str, Any]:
        delay = 0.25
        for attempt in range(attempts):
            try:
                reply = await self._client.request(
                    method, f"{self.base_url}{path}", json=body, headers={"x-api-key": api_key}
                )
            except httpx.HTTPError as exc:
                if attempt + 1 == attempts:
                    raise LaserSellApiError(f"LaserSell did not answer ({type(exc).__name__})") from exc
                await asyncio.sleep(delay)
                delay *= 2
                continue
            if reply.status_code in RETRYABLE and attempt + 1 < attempts:
                await asyncio.sleep(delay)
                delay *= 2
                continue
            try:
                data = reply.json()
            except ValueError:
                data = {}
            if not isinstance(data, dict):
                data = {}
            status = reply.status_code
            reason = data.get("reason") if isinstance(data.get("reason"), str) else None
            if status == 401:
                raise InvalidApiKey("LaserSell refused the API key", status, reason)
            if status >= 400:
                raise LaserSellApiError(_error_words(data, status), status, reason)
            # A 200 may still carry {"status": "unsupported" | "not_indexed" | "error", ...}
            if data.get("status") not in (None, "ok"):
                raise LaserSellApiError(_error_words(data, status), status, reason or str(data.get("status")))
            return data
        raise LaserSellApiError("LaserSell did not answer")

    async def _post(self, path: str, api_key: str, body: dict[str, Any], *, attempts: int = 3) -> dict[str, Any]:
        return await self._request("POST", path, api_key, body, attempts=attempts)

    async def account(self, api_key: str) -> AccountInfo:
        """`GET /v1/account`: checks a key without opening a stream session (one session per key)."""
        data = await self._request("GET", "/v1/account", api_key)
        raw = data.get("limits")
        limits: dict[str, Any] = raw if isinstance(raw, dict) else {}
        try:
            return AccountInfo(
                tier=int(data.get("tier", 0)),
                tier_name=str(data.get("tier_name") or "free"),
                max_wallets=int(limits.get("max_wallets") or 1),
                max_positions_per_wallet=_int_or_none(limits.get("max_positions_per_wallet")),
                max_positions_per_session=_int_or_none(limits.get("max_positions_per_session")),
                raw_limits=dict(limits),
            )
        except (TypeError, ValueError):
            raise LaserSellApiError("LaserSell answered /v1/account in an unexpected shape") from None

    async def register_wallet(self, api_key: str, proof: dict[str, Any], label: str | None = None) -> None:
        body = dict(proof)
        if label:
            body["label"] = label
        try:
            data = await self._post("/v1/wallets/register", api_key, body)
        except LaserSellApiError as exc:
            if exc.status == 403:
                raise SignatureRejected(str(exc), 403, exc.reason) from None
            raise
        if data.get("registered") is False:
            raise LaserSellApiError("LaserSell did not register the wallet", 200, None)

    async def unregister_wallet(self, api_key: str, wallet_pubkey: str) -> bool:
        """`DELETE /v1/wallets`: frees the wallet's place on the plan; True when LaserSell removed it."""
        data = await self._request("DELETE", "/v1/wallets", api_key, {"wallet_pubkey": wallet_pubkey})
        return bool(data.get("removed", True))

    async def sell(self, api_key: str, **body: Any) -> str:
        """`POST /v1/sell`: the unsigned transaction (base64) for `amount_tokens` of `mint`."""
        tx = (await self._post("/v1/sell", api_key, body)).get("tx")
        if not isinstance(tx, str) or not tx:
            raise LaserSellApiError("LaserSell answered without a transaction")
        return tx

    async def buy(self, api_key: str, **body: Any) -> dict[str, Any]:
        """`POST /v1/buy`: the body carries exactly one of `amount` (human) or `amount_in_total` (atomic)."""
        if ("amount" in body) == ("amount_in_total" in body):
            raise ValueError("a buy takes exactly one of amount or amount_in_total")
        return await self._post("/v1/buy", api_key, body)

    async def check_key(self, api_key: str) -> AccountInfo:
        """The key's plan and limits; raises InvalidApiKey for a refused key."""
        return await self.account(api_key)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
