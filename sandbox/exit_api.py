"""The sandbox LaserSell REST Exit API: wallet registration, sell and buy transactions.

Every route needs the `x-api-key` header of a key issued through `sandbox.accounts.Accounts`:
missing -> 401 `missing_api_key`, unknown -> 403 `invalid_api_key`. Errors answer
`{"status": "error", "reason": <code>, "message": <words>}`; 401 and 403 mean only "bad key" (clients
treat them as a dead key), so a bad wallet proof is a 400.

- `POST /v1/wallets/register` {wallet_pubkey, signature, message, label?}: `message` is
  `lasersell-register:<wallet_pubkey>:<unix seconds>`, signed by the wallet (ed25519, base58
  signature), dated within 5 minutes of the server's wall clock. Idempotent.
- `POST /v1/sell` {mint, user_pubkey, amount_tokens, slippage_bps, output, send_mode?, tip_lamports?}
  and `POST /v1/buy` {mint, user_pubkey, slippage_bps, input, amount_in_total | amount, send_mode?,
  tip_lamports?} -> `{"status": "ok", "tx": <base64 unsigned v0 tx>, "route": {...}}` built by the
  chain's `build_sell_tx` / `build_buy_tx` (see `sandbox.chain`). Unknown mint 404, more tokens or
  SOL than the wallet holds 422, a USD1 route 422 (sandbox pools are SOL pools).
- `fail_next(status, reason)` answers the next request (optionally only on one path) with that
  error: 429 and 5xx for client retry tests.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature

from sandbox.accounts import Accounts, ApiKey
from sandbox.chain import LAMPORTS_PER_SIGNATURE, Chain, ChainError, UnknownMint, encode_tx
from sandbox.http import HttpError, JsonHttpServer, Request

REGISTER_PREFIX = "lasersell-register:"
REGISTRATION_WINDOW_S = 300
SOL_MINT = "So11111111111111111111111111111111111111112"
SEND_MODES = ("helius_sender", "rpc", "astralane")
# Enough SOL left after a buy for the fees and the new token account's rent.
BUY_HEADROOM_LAMPORTS = 2_039_280 + 4 * LAMPORTS_PER_SIGNATURE


def _fail(status: int, reason: str, message: str) -> HttpError:
    return HttpError(status, {"status": "error", "reason": reason, "message": message})


@dataclass
class _Fault:
    status: int
    reason: str
    message: str
    path: str | None


class ExitApi:
    """The REST routes; `await start()` serves them alone, or add `routes()` to a shared server."""

    def __init__(self, chain: Chain, accounts: Accounts, clock: Callable[[], float] = time.time) -> None:
        self.chain = chain
        self.accounts = accounts
        self.clock = clock  # unix seconds; registration proofs are dated in wall-clock time
        self.calls: Counter[str] = Counter()
        self.labels: dict[str, str] = {}
        self._faults: deque[_Fault] = deque()
        self.server = JsonHttpServer()
        self.server.add_routes(self.routes())

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("POST", "/v1/wallets/register"): self.register_wallet,
            ("POST", "/v1/sell"): self.sell,
            ("POST", "/v1/buy"): self.buy,
        }

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await self.server.start(host, port)

    async def stop(self) -> None:
        await self.server.stop()

    def fail_next(self, status: int, reason: str = "", message: str = "", path: str | None = None) -> None:
        """The next request (to `path`, if given) answers `status` with this reason."""
        default = {429: "rate_limited", 502: "upstream_error", 503: "unavailable"}.get(status, "error")
        self._faults.append(_Fault(status, reason or default, message or f"sandbox fault {status}", path))

    # -- shared checks ------------------------------------------------------------------------

    def _begin(self, request: Request) -> tuple[ApiKey, dict[str, Any]]:
        self.calls[request.path] += 1
        for fault in list(self._faults):
            if fault.path is None or fault.path == request.path:
                self._faults.remove(fault)
                headers = {"Retry-After": "1"} if fault.status == 429 else None
                raise HttpError(
                    fault.status,
                    {"status": "error", "reason": fault.reason, "message": fault.message},
                    headers,
                )
        key = request.header("x-api-key")
        if not key:
            raise _fail(401, "missing_api_key", "send your LaserSell API key in the x-api-key header")
        api_key = self.accounts.get(key)
        if api_key is None:
            raise _fail(403, "invalid_api_key", "this API key is not valid")
        try:
            body = request.json()
        except HttpError as exc:
            raise _fail(400, "invalid_request", "the body must be a JSON object") from exc
        if not isinstance(body, dict):
            raise _fail(400, "invalid_request", "the body must be a JSON object")
        return api_key, body

    @staticmethod
    def _pubkey(body: dict[str, Any], name: str) -> Pubkey:
        value = body.get(name)
        if not isinstance(value, str):
            raise _fail(400, "invalid_request", f"{name} is required (a base58 public key)")
        try:
            return Pubkey.from_string(value)
        except ValueError as exc:
            raise _fail(400, "invalid_request", f"{name} is not a valid public key") from exc

    @staticmethod
    def _int(
        body: dict[str, Any], name: str, *, default: int | None = None, low: int = 0, high: int | None = None
    ) -> int:
        value = body.get(name, default)
        if value is None:
            raise _fail(400, "invalid_request", f"{name} is required")
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise _fail(400, "invalid_request", f"{name} must be an integer {bounds}")
        return value

    def _mint(self, body: dict[str, Any]) -> Pubkey:
        mint = self._pubkey(body, "mint")
        if not self.chain.has_mint(mint):
            raise _fail(404, "mint_not_found", f"no market found for mint {mint}")
        return mint

    @staticmethod
    def _send_mode(body: dict[str, Any]) -> str:
        mode = body.get("send_mode") or "rpc"
        if mode not in SEND_MODES:
            raise _fail(400, "invalid_request", f"send_mode must be one of {', '.join(SEND_MODES)}")
        return str(mode)

    # -- routes -------------------------------------------------------------------------------

    async def register_wallet(self, request: Request) -> tuple[int, Any]:
        api_key, body = self._begin(request)
        wallet = self._pubkey(body, "wallet_pubkey")
        message, signature = body.get("message"), body.get("signature")
        if not isinstance(message, str) or not isinstance(signature, str):
            raise _fail(400, "invalid_request", "message and signature are required")
        label = body.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > 64):
            raise _fail(400, "invalid_request", "label must be a string of at most 64 characters")
        prefix, _, stamp = message.rpartition(":")
        if prefix != f"{REGISTER_PREFIX}{wallet}" or not stamp.isdigit():
            raise _fail(400, "invalid_message", f"message must be '{REGISTER_PREFIX}{wallet}:<unix seconds>'")
        if abs(self.clock() - int(stamp)) > REGISTRATION_WINDOW_S:
            raise _fail(400, "message_expired", "the signed message is more than 5 minutes from server time")
        try:
            sig = Signature.from_string(signature)
        except ValueError as exc:
            raise _fail(400, "invalid_signature", "signature is not a base58 ed25519 signature") from exc
        if not sig.verify(wallet, message.encode()):
            raise _fail(400, "invalid_signature", "the signature does not match the wallet and message")
        already = self.accounts.is_registered(api_key.key, str(wallet))
        self.accounts.register_wallet(api_key.key, str(wallet))
        if label:
            self.labels[str(wallet)] = label
        return 200, {
            "status": "ok",
            "wallet_pubkey": str(wallet),
            "label": self.labels.get(str(wallet)),
            "already_registered": already,
        }

    async def sell(self, request: Request) -> tuple[int, Any]:
        _api_key, body = self._begin(request)
        mint = self._mint(body)
        wallet = self._pubkey(body, "user_pubkey")
        amount = self._int(body, "amount_tokens", low=1)
        slippage = self._int(body, "slippage_bps", high=10_000)
        tip = self._int(body, "tip_lamports", default=0)
        send_mode = self._send_mode(body)
        output = body.get("output", "SOL")
        if output not in ("SOL", "USD1"):
            raise _fail(400, "invalid_request", "output must be SOL or USD1")
        if output != "SOL":
            raise _fail(422, "no_route", "this market only trades against SOL")
        held = self.chain.token_balance(wallet, mint)
        if amount > held:
            raise _fail(422, "insufficient_balance", f"the wallet holds {held} tokens, {amount} asked")
        try:
            tx = self.chain.build_sell_tx(wallet, mint, amount, slippage, tip, None, f"api:{send_mode}")
        except (ChainError, UnknownMint) as exc:
            raise _fail(422, "cannot_build", str(exc)) from exc
        pool = self.chain.pool(mint)
        expected = self.chain.quote_sell(mint, amount)
        _, last_valid = self.chain.latest_blockhash()
        route = {
            "market_type": pool.market_type,
            "pool": str(pool.address),
            "input_mint": str(mint),
            "output_mint": SOL_MINT,
            "amount_in": amount,
            "expected_out": expected,
            "min_out": expected * (10_000 - slippage) // 10_000,
            "slippage_bps": slippage,
            "send_mode": send_mode,
            "tip_lamports": tip,
            "last_valid_block_height": last_valid,
        }
        return 200, {"status": "ok", "tx": encode_tx(tx), "route": route}

    async def buy(self, request: Request) -> tuple[int, Any]:
        _api_key, body = self._begin(request)
        mint = self._mint(body)
        wallet = self._pubkey(body, "user_pubkey")
        name = "amount_in_total" if "amount_in_total" in body else "amount"
        lamports = self._int(body, name, low=1)
        slippage = self._int(body, "slippage_bps", high=10_000)
        tip = self._int(body, "tip_lamports", default=0)
        send_mode = self._send_mode(body)
        quote = body.get("input", "SOL")
        if quote not in ("SOL", "USD1"):
            raise _fail(400, "invalid_request", "input must be SOL or USD1")
        if quote != "SOL":
            raise _fail(422, "no_route", "this market only trades against SOL")
        balance = self.chain.balance(wallet)
        if lamports + tip + BUY_HEADROOM_LAMPORTS > balance:
            raise _fail(
                422,
                "insufficient_balance",
                f"the wallet holds {balance} lamports, {lamports} asked plus fees",
            )
        try:
            tx = self.chain.build_buy_tx(wallet, mint, lamports, slippage, tip, None, f"api:{send_mode}")
        except (ChainError, UnknownMint) as exc:
            raise _fail(422, "cannot_build", str(exc)) from exc
        pool = self.chain.pool(mint)
        expected = self.chain.quote_buy(mint, lamports)
        _, last_valid = self.chain.latest_blockhash()
        route = {
            "market_type": pool.market_type,
            "pool": str(pool.address),
            "input_mint": SOL_MINT,
            "output_mint": str(mint),
            "amount_in": lamports,
            "expected_out": expected,
            "min_out": expected * (10_000 - slippage) // 10_000,
            "slippage_bps": slippage,
            "send_mode": send_mode,
            "tip_lamports": tip,
            "last_valid_block_height": last_valid,
        }
        return 200, {"status": "ok", "tx": encode_tx(tx), "route": route}
