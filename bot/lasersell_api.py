"""The LaserSell REST Exit API: wallet registration, and sell / buy transactions built for us."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

RETRYABLE = {429, 500, 502, 503, 504}


class LaserSellApiError(Exception):
    """The API refused or failed; `status` is the HTTP status, the message is in words."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class InvalidApiKey(LaserSellApiError):
    pass


class LaserSellApi:
    def __init__(self, base_url: str, stream_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.stream_url = stream_url
        self._client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, api_key: str, body: dict[str, Any], *, attempts: int = 3) -> dict[str, Any]:
        delay = 0.25
        for attempt in range(attempts):
            try:
                reply = await self._client.post(f"{self.base_url}{path}", json=body, headers={"x-api-key": api_key})
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
            if reply.status_code in (401, 403):
                raise InvalidApiKey("LaserSell refused the API key", reply.status_code, data.get("reason"))
            if reply.status_code >= 400 or data.get("status") not in (None, "ok"):
                words = data.get("message") or data.get("reason") or data.get("error") or f"HTTP {reply.status_code}"
                raise LaserSellApiError(str(words), reply.status_code, data.get("reason"))
            return data
        raise LaserSellApiError("LaserSell did not answer")

    async def register_wallet(self, api_key: str, proof: dict[str, Any], label: str | None = None) -> None:
        body = dict(proof)
        if label:
            body["label"] = label
        await self._post("/v1/wallets/register", api_key, body)

    async def sell(self, api_key: str, **body: Any) -> str:
        return str((await self._post("/v1/sell", api_key, body))["tx"])

    async def buy(self, api_key: str, **body: Any) -> dict[str, Any]:
        return await self._post("/v1/buy", api_key, body)

    async def check_key(self, api_key: str, strategy: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """A short stream handshake with no wallets: returns hello_ok's limits, raises on a refused key."""
        try:
            async with websockets.connect(
                self.stream_url, additional_headers={"x-api-key": api_key}, open_timeout=timeout, max_size=2**20
            ) as ws:
                try:
                    await ws.send(json.dumps({"type": "configure", "wallet_pubkeys": [], "strategy": strategy}))
                except websockets.ConnectionClosed:
                    pass  # a refused key is closed at once; its error frame is still ours to read
                async with asyncio.timeout(timeout):
                    while True:
                        try:
                            message = json.loads(await ws.recv())
                        except websockets.ConnectionClosed as exc:
                            # closed without an error frame: the close reason carries the code
                            reason = exc.rcvd.reason if exc.rcvd is not None else ""
                            if not reason:
                                raise LaserSellApiError("the LaserSell stream closed the connection") from None
                            message = {"type": "error", "code": reason, "message": reason}
                        if message.get("type") == "hello_ok":
                            return dict(message.get("limits") or {})
                        if message.get("type") == "error":
                            code = str(message.get("code", ""))
                            text = str(message.get("message", code))
                            if "session" in code or "in_use" in code:
                                raise LaserSellApiError(
                                    "this key is already streaming somewhere else (one session per key)", None, code
                                )
                            if code in ("invalid_strategy", "too_many_wallets", "invalid_message"):
                                return {}
                            raise InvalidApiKey(f"LaserSell refused the key: {text}", None, code)
        except websockets.InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise InvalidApiKey("LaserSell refused the key", exc.response.status_code) from None
            raise LaserSellApiError(f"the LaserSell stream answered HTTP {exc.response.status_code}") from None
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise LaserSellApiError(f"could not reach the LaserSell stream ({type(exc).__name__})") from None
