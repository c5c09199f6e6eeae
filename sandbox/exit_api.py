"""The sandbox LaserSell REST Exit API, after the official openapi.yaml.

Every route needs the `x-api-key` header of a key issued through `sandbox.accounts.Accounts`:
missing or unknown -> 401. Errors answer openapi's `ErrorResponse` `{"error": <words>}`, with
`status: "error"`, a machine `reason` and the same words as `message` beside it.

- `GET /v1/account` -> `{"tier": 0|1|2, "tier_name": "free"|"tier_1"|"tier_2", "limits":
  {"max_wallets", "max_positions_per_wallet", "max_positions_per_session"}}` for the key.
- `POST /v1/wallets/register` {wallet_pubkey, signature, message, label?}: `message` is
  `lasersell-register:<wallet_pubkey>:<unix seconds>`, signed by the wallet (ed25519, base58
  signature), dated within 5 minutes of the server's wall clock. Idempotent; answers
  `{"wallet_pubkey", "registered": true}`. A bad pubkey, a malformed or expired message: 400. A
  signature that fails verification: 403 (it is not a key problem).
- `DELETE /v1/wallets` {wallet_pubkey} -> `{"wallet_pubkey", "removed": bool}`.
- `POST /v1/sell` {mint, user_pubkey, amount_tokens, output, slippage_bps, send_mode?, tip_lamports?}
  and `POST /v1/buy` {mint, user_pubkey, slippage_bps, input?, exactly one of amount (human: 0.1 =
  0.1 SOL, 10.0 = 10 USD1) and amount_in_total (atomic units), send_mode?, tip_lamports?} ->
  `{"status": "ok", "tx": <base64 unsigned v0 tx>, "route": {"market_type", "pool_id", ...}}` built by
  the chain's `build_sell_tx` / `build_buy_tx` with the key's tier (the router takes that tier's
  routing fee). `output`/`input` must be the pool's quote asset (SOL or USD1): another is 422
  `no_route`. Unknown mint 404, more tokens or quote than the wallet holds 422.
- `fail_next(status, reason)` answers the next request (optionally only on one path) with that
  error: 429 and 5xx for client retry tests.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature

from sandbox.accounts import TIERS, Accounts, ApiKey
from sandbox.chain import LAMPORTS_PER_SIGNATURE, Chain, ChainError, UnknownMint, encode_tx
from sandbox.http import HttpError, JsonHttpServer, JsonService, Request

REGISTER_PREFIX = "lasersell-register:"
TIER_NUMBERS = {"free": (0, "free"), "professional": (1, "tier_1"), "advanced": (2, "tier_2")}
QUOTE_DECIMALS = {"SOL": 9, "USD1": 6}
REGISTRATION_WINDOW_S = 300
SOL_MINT = "So11111111111111111111111111111111111111112"
SEND_MODES = ("helius_sender", "rpc", "astralane")
# Enough SOL left after a buy for the fees and the new token account's rent.
BUY_HEADROOM_LAMPORTS = 2_039_280 + 4 * LAMPORTS_PER_SIGNATURE


def _fail(status: int, reason: str, message: str) -> HttpError:
    return HttpError(status, _error_body(reason, message))


def _error_body(reason: str, message: str) -> dict[str, str]:
    return {"error": message, "status": "error", "reason": reason, "message": message}


@dataclass
class _Fault:
    status: int
    reason: str
    message: str
    path: str | None


class ExitApi(JsonService):
    """The REST routes; `await start()` serves them alone, or add `routes()` to a shared server."""

    def __init__(self, chain: Chain, accounts: Accounts, clock: Callable[[], float] = time.time) -> None:
        self.chain = chain
        self.accounts = accounts
        self.clock = clock  # unix seconds; registration proofs are dated in wall-clock time
        self.calls: Counter[str] = Counter()
        # every x-api-key value that reached the API, valid or not: tests prove a secret never got here
        self.keys_seen: Counter[str] = Counter()
        self.labels: dict[str, str] = {}
        self._faults: deque[_Fault] = deque()
        self.server = JsonHttpServer()
        self.server.add_routes(self.routes())

    def routes(self) -> dict[tuple[str, str], Any]:
        return {
            ("GET", "/v1/account"): self.account,
            ("POST", "/v1/wallets/register"): self.register_wallet,
            ("DELETE", "/v1/wallets"): self.unregister_wallet,
            ("POST", "/v1/sell"): self.sell,
            ("POST", "/v1/buy"): self.buy,
        }

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
                raise HttpError(fault.status, _error_body(fault.reason, fault.message), headers)
        api_key = self._key(request)
        try:
            body = request.json()
        except HttpError as exc:
            raise _fail(400, "invalid_request", "the body must be a JSON object") from exc
        if not isinstance(body, dict):
            raise _fail(400, "invalid_request", "the body must be a JSON object")
        return api_key, body

    def _key(self, request: Request) -> ApiKey:
        key = request.header("x-api-key")
        if key:
            self.keys_seen[key] += 1
        if not key:
            raise _fail(401, "missing_api_key", "send your LaserSell API key in the x-api-key header")
        api_key = self.accounts.get(key)
        if api_key is None:
            raise _fail(401, "invalid_api_key", "this API key is not valid")
        return api_key

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

    def _quote_of(self, mint: Pubkey) -> str:
        return str(self.chain.pool(mint).quote)

    def _build(self, kind: str, api_key: ApiKey, *args: Any, tip: int, send_mode: str) -> Any:
        build = self.chain.build_sell_tx if kind == "sell" else self.chain.build_buy_tx
        try:
            return build(*args, tip_lamports=tip, memo_tag=f"api:{send_mode}", tier=api_key.tier)
        except (ChainError, UnknownMint) as exc:
            raise _fail(422, "cannot_build", str(exc)) from exc

    # -- routes -------------------------------------------------------------------------------

    async def account(self, request: Request) -> tuple[int, Any]:
        self.calls[request.path] += 1
        api_key = self._key(request)
        number, name = TIER_NUMBERS[api_key.tier]
        limits = TIERS[api_key.tier]
        return 200, {
            "tier": number,
            "tier_name": name,
            "limits": {
                "max_wallets": limits["max_wallets_per_session"],
                "max_positions_per_wallet": limits["max_positions_per_wallet"],
                "max_positions_per_session": limits["max_positions_per_session"],
            },
        }

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
            raise _fail(
                403, "invalid_signature", "signature verification failed: not a base58 ed25519 signature"
            ) from exc
        if not sig.verify(wallet, message.encode()):
            raise _fail(
                403,
                "invalid_signature",
                "signature verification failed: sign the message with the wallet's own key",
            )
        already = self.accounts.is_registered(api_key.key, str(wallet))
        self.accounts.register_wallet(api_key.key, str(wallet))
        if label:
            self.labels[str(wallet)] = label
        return 200, {
            "wallet_pubkey": str(wallet),
            "registered": True,
            "status": "ok",
            "label": self.labels.get(str(wallet)),
            "already_registered": already,
        }

    async def unregister_wallet(self, request: Request) -> tuple[int, Any]:
        api_key, body = self._begin(request)
        if request.path.rstrip("/") != "/v1/wallets":
            raise HttpError(404, _error_body("not_found", f"no route {request.path}"))
        wallet = self._pubkey(body, "wallet_pubkey")
        removed = self.accounts.unregister_wallet(api_key.key, str(wallet))
        self.labels.pop(str(wallet), None)
        return 200, {"wallet_pubkey": str(wallet), "removed": removed}

    async def sell(self, request: Request) -> tuple[int, Any]:
        api_key, body = self._begin(request)
        mint = self._mint(body)
        wallet = self._pubkey(body, "user_pubkey")
        amount = self._int(body, "amount_tokens", low=1)
        slippage = self._int(body, "slippage_bps", high=10_000)
        tip = self._int(body, "tip_lamports", default=0)
        send_mode = self._send_mode(body)
        if "output" not in body:
            raise _fail(400, "invalid_request", "output is required: SOL or USD1")
        output = body.get("output")
        if output not in ("SOL", "USD1"):
            raise _fail(400, "invalid_request", "output must be SOL or USD1")
        quote = self._quote_of(mint)
        if output != quote:
            raise _fail(422, "no_route", f"this market trades against {quote}; ask for output {quote}")
        held = self.chain.token_balance(wallet, mint)
        if amount > held:
            raise _fail(422, "insufficient_balance", f"the wallet holds {held} tokens, {amount} asked")
        tx = self._build("sell", api_key, wallet, mint, amount, slippage, tip=tip, send_mode=send_mode)
        pool = self.chain.pool(mint)
        # What the wallet gets: the curve's proceeds less the tier's routing fee.
        expected = self.chain.quote_sell_net(mint, amount, api_key.tier)
        _, last_valid = self.chain.latest_blockhash()
        usd1 = self.chain.usd1_mint
        route = {
            "market_type": pool.market_type,
            "pool_id": str(pool.address),
            "pool": str(pool.address),
            "input_mint": str(mint),
            "output_mint": str(usd1) if quote == "USD1" else SOL_MINT,
            "amount_in": amount,
            "expected_out": expected,
            "min_out": expected * (10_000 - slippage) // 10_000,
            "slippage_bps": slippage,
            "send_mode": send_mode,
            "tip_lamports": tip,
            "last_valid_block_height": last_valid,
        }
        return 200, {"status": "ok", "tx": encode_tx(tx), "route": route}

    def _buy_amount(self, body: dict[str, Any], quote: str) -> int:
        """Atomic units to spend: exactly one of `amount` (human) and `amount_in_total` (atomic)."""
        has_human, has_atomic = body.get("amount") is not None, body.get("amount_in_total") is not None
        if has_human == has_atomic:
            raise _fail(
                400,
                "invalid_request",
                "give exactly one of amount (human units, e.g. 0.1 for 0.1 SOL or 10.0 for 10 USD1) "
                "and amount_in_total (atomic units, e.g. 100000000 lamports)"
                + ("; both were given" if has_human else "; neither was given"),
            )
        if has_atomic:
            return self._int(body, "amount_in_total", low=1)
        human = body["amount"]
        if (
            isinstance(human, bool)
            or not isinstance(human, int | float)
            or not math.isfinite(human)
            or human <= 0
        ):
            raise _fail(400, "invalid_request", "amount must be a positive number (e.g. 0.1 for 0.1 SOL)")
        atomic = round(human * 10 ** QUOTE_DECIMALS[quote])
        if atomic < 1:
            raise _fail(400, "invalid_request", f"amount {human} is less than one atomic unit of {quote}")
        return atomic

    async def buy(self, request: Request) -> tuple[int, Any]:
        api_key, body = self._begin(request)
        mint = self._mint(body)
        wallet = self._pubkey(body, "user_pubkey")
        quote_in = body.get("input", "SOL")
        if quote_in not in ("SOL", "USD1"):
            raise _fail(400, "invalid_request", "input must be SOL or USD1")
        amount = self._buy_amount(body, str(quote_in))
        slippage = self._int(body, "slippage_bps", high=10_000)
        tip = self._int(body, "tip_lamports", default=0)
        send_mode = self._send_mode(body)
        quote = self._quote_of(mint)
        if quote_in != quote:
            raise _fail(422, "no_route", f"this market trades against {quote}; pay with input {quote}")
        balance = self.chain.balance(wallet)
        usd1 = self.chain.usd1_mint
        if quote == "USD1":
            held = self.chain.token_balance(wallet, usd1)
            if amount > held:
                raise _fail(
                    422, "insufficient_balance", f"the wallet holds {held} USD1 units, {amount} asked"
                )
            if tip + BUY_HEADROOM_LAMPORTS > balance:
                raise _fail(422, "insufficient_balance", f"the wallet holds {balance} lamports for fees")
        elif amount + tip + BUY_HEADROOM_LAMPORTS > balance:
            raise _fail(
                422,
                "insufficient_balance",
                f"the wallet holds {balance} lamports, {amount} asked plus fees",
            )
        tx = self._build("buy", api_key, wallet, mint, amount, slippage, tip=tip, send_mode=send_mode)
        pool = self.chain.pool(mint)
        expected = self.chain.quote_buy_net(mint, amount, api_key.tier)
        _, last_valid = self.chain.latest_blockhash()
        route = {
            "market_type": pool.market_type,
            "pool_id": str(pool.address),
            "pool": str(pool.address),
            "input_mint": str(usd1) if quote == "USD1" else SOL_MINT,
            "output_mint": str(mint),
            "amount_in": amount,
            "expected_out": expected,
            "min_out": expected * (10_000 - slippage) // 10_000,
            "slippage_bps": slippage,
            "send_mode": send_mode,
            "tip_lamports": tip,
            "last_valid_block_height": last_valid,
        }
        return 200, {"status": "ok", "tx": encode_tx(tx), "route": route}
