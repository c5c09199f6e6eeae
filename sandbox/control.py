"""The sandbox control API: how tests and the demo play the market and the faults.

JSON over HTTP (on `JsonHttpServer`):

- `POST /sim/api_keys {"tier"}` -> `{"api_key", "tier"}`
- `POST /sim/wallets/fund {"pubkey", "sol"?, "usd1"?}` -> `{"pubkey", "lamports", "usd1_units"?}`
  (`usd1` in whole USD1, held in the wallet's USD1 token account)
- `POST /sim/mints {"symbol", "decimals", "sol_reserve", "token_reserve", "name"?, "quote"?}` ->
  `{"mint", "pool", "quote"}`; `quote` is "SOL" (default) or "USD1", and `sol_reserve` is then the
  pool's quote reserve in whole units of that asset (`quote_reserve` is accepted as its alias);
  `token_reserve` in whole tokens
- `POST /sim/buy {"wallet", "mint", "sol"}` -> `{"tokens"}`: an outside buy landing in the wallet
  (`sol` is in the pool's quote asset; `amount` is accepted as its alias)
- `POST /sim/market {"mint", "pct"}` moves the price; `{"mint", "drain_pct"}` pulls liquidity
- `POST /sim/graduate {"mint"}`
- `POST /sim/clock {"advance_slots"}` -> `{"slot", "now_ms"}`
- `POST /sim/faults {"drop_connections"?, "refuse_connections_for_s"?, "delay_hello_s"?,
  "send_garbage_frame"?, "unknown_market_type"?, "fail_next_send"? {"error": {"code", "message"}},
  "refuse_sessions"? N | {"count", "code"?}}`: `refuse_sessions` makes the stream answer the next N
  connections with an `error` frame (`session_limit` unless `code` says otherwise) and close them,
  as the real server does while the key's one session is still open; a client should retry.
  `"mirror_hostile": "overspend"` makes the next mirror buy transaction pay 3x the amount its frame
  states, `"steal_sol"` adds a transfer of half the wallet's SOL to a stranger (the guard's tests).
- Copy trading: a watched wallet buys with `POST /sim/buy {"wallet", "mint", "sol"}`; the stream answers
  every session watching it with `mirror_buy_signal` or `mirror_buy_failed` under its mirror_config.
- `POST /sim/hostile {"api_key"? | "wallet"?, "mint"? | "token_account"?, "kind", "count"?,
  "reason"?}` -> `{"sent", "position_id", "kind"}`: the stream sends, for that live position, an
  `exit_signal_with_tx` that looks genuine (its session, position, tokens, `reason` default
  "stop_loss") but carries a hostile transaction from `chain.build_hostile_tx(kind, ...)`. Kinds:
  steal_position, steal_sol, steal_other_token, set_authority, approve, cpi_drain, tip_over_cap,
  cpi_sol, router_approve, router_set_authority, second_signer, lookup_table_destination;
  and "burst": one genuine exit transaction sent `count` (default 2) times. Other kinds send
  `count` (default 1) frames.
- `POST /sim/mints {..., "risk": [...]}`: the mint is written with exactly these risk flags
  (mint_authority, freeze_authority, permanent_delegate, transfer_hook, transfer_fee; [] = clean).
- `GET /sim/state`: balances, mints, keys, sessions (with their last configure), positions, signatures

Every change is followed by a stream flush so connected clients see its effect at once. Mistakes
answer 400 with `{"error": "..."}` naming the field and what it should be.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from solders.account import Account
from solders.pubkey import Pubkey

from sandbox.accounts import TIERS, Accounts, UnknownTier
from sandbox.chain import HOSTILE_KINDS, Chain, ChainError
from sandbox.http import HttpError, JsonHttpServer, JsonService, Request
from sandbox.rpc import SandboxRpc
from sandbox.stream import SESSION_IN_USE_CODE, UNKNOWN_MARKET_TYPE, StreamServer

DEFAULT_SEND_FAULT = {"code": -32005, "message": "Node is behind by 42 slots"}
BURST = "burst"
TIP_OVER_CAP_LAMPORTS = 100_000_000
QUOTES = ("SOL", "USD1")


def _bad(message: str) -> HttpError:
    return HttpError(400, {"error": message})


def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except HttpError as exc:
        raise _bad("the body must be a JSON object") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    return body


def _number(
    body: dict[str, Any], name: str, *, positive: bool = False, required: bool = True
) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(f"{name} is required (a number)")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{name} must be a number")
    if positive and value <= 0:
        raise _bad(f"{name} must be greater than 0")
    return float(value)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} is required (a string)")
    return value


class ControlApi(JsonService):
    """`/sim/...` routes over the chain, accounts, stream and RPC."""

    def __init__(
        self, chain: Chain, accounts: Accounts, stream: StreamServer, rpc: SandboxRpc | None = None
    ) -> None:
        self.chain = chain
        self.accounts = accounts
        self.stream = stream
        self.rpc = rpc
        self.funded: list[str] = []
        self.server = JsonHttpServer()
        self.server.add_routes(
            {
                ("POST", "/sim/api_keys"): self._api_keys,
                ("POST", "/sim/wallets/fund"): self._fund,
                ("POST", "/sim/mints"): self._mints,
                ("POST", "/sim/buy"): self._buy,
                ("POST", "/sim/market"): self._market,
                ("POST", "/sim/graduate"): self._graduate,
                ("POST", "/sim/clock"): self._clock,
                ("POST", "/sim/faults"): self._faults,
                ("POST", "/sim/hostile"): self._hostile,
                ("GET", "/sim/state"): self._state,
            }
        )

    def _mint(self, body: dict[str, Any]) -> str:
        mint = _text(body, "mint")
        if not self.chain.has_mint(mint):
            raise _bad(f"unknown mint {mint}; create one with POST /sim/mints")
        return mint

    # -- routes ----------------------------------------------------------------------------

    async def _api_keys(self, request: Request) -> tuple[int, Any]:
        tier = _body(request).get("tier", "professional")
        try:
            key = self.accounts.issue(str(tier))
        except UnknownTier:
            raise _bad(f"tier must be one of {', '.join(TIERS)}") from None
        return 200, {"api_key": key.key, "tier": key.tier}

    async def _fund(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        pubkey = _text(body, "pubkey")
        sol = _number(body, "sol", positive=True, required="usd1" not in body)
        usd1 = _number(body, "usd1", positive=True, required=False)
        answer: dict[str, Any] = {"pubkey": pubkey}
        try:
            if sol is not None:
                answer["lamports"] = self.chain.fund(pubkey, sol)
            if usd1 is not None:
                answer["usd1_units"] = self.fund_usd1(pubkey, usd1)
            answer.setdefault("lamports", self.chain.balance(pubkey))
        except ValueError as exc:
            raise _bad(f"pubkey is not a valid base58 public key: {exc}") from exc
        if pubkey not in self.funded:
            self.funded.append(pubkey)
        self.stream.flush()
        return 200, answer

    def fund_usd1(self, pubkey: str, usd1: float) -> int:
        """Adds `usd1` whole USD1 to the wallet; returns its USD1 balance in base units."""
        return int(self.chain.fund_usd1(pubkey, usd1))

    async def _mints(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        symbol = _text(body, "symbol")
        decimals = body.get("decimals", 6)
        if isinstance(decimals, bool) or not isinstance(decimals, int):
            raise _bad("decimals must be an integer between 0 and 12")
        quote = body.get("quote", "SOL")
        if quote not in QUOTES:
            raise _bad(f"quote must be one of {', '.join(QUOTES)}")
        if "sol_reserve" not in body and "quote_reserve" in body:
            body = {**body, "sol_reserve": body["quote_reserve"]}
        sol_reserve = _number(body, "sol_reserve", positive=True)
        token_reserve = _number(body, "token_reserve", positive=True)
        name = body.get("name")
        risk = body.get("risk")
        if risk is not None and (not isinstance(risk, list) or not set(risk) <= set(RISK_FLAGS)):
            raise _bad(f"risk must be a list of: {', '.join(RISK_FLAGS)} (empty: a clean mint)")
        token_2022 = bool(set(risk or ()) & {"permanent_delegate", "transfer_hook", "transfer_fee"})
        if token_2022 and quote != "SOL":
            raise _bad("Token-2022 risk flags are for SOL-quoted mints")
        try:
            if token_2022:
                mint = self.chain.create_mint(symbol, decimals, sol_reserve or 0.0, token_reserve or 0.0,
                                              name if isinstance(name, str) else None, token_2022=True)
            else:
                mint = self.create_mint(
                symbol,
                decimals,
                sol_reserve or 0.0,
                token_reserve or 0.0,
                    name if isinstance(name, str) else None,
                    quote,
                )
        except ChainError as exc:
            raise _bad(str(exc)) from exc
        if risk is not None:
            write_mint_risk(self.chain, mint, risk)
        self.stream.flush()
        return 200, {"mint": str(mint), "pool": str(self.chain.pool(mint).address), "quote": quote}

    def create_mint(
        self, symbol: str, decimals: int, reserve: float, token_reserve: float, name: str | None, quote: str
    ) -> Any:
        return self.chain.create_mint(symbol, decimals, reserve, token_reserve, name, quote=quote)

    async def _buy(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        wallet = _text(body, "wallet")
        mint = self._mint(body)
        if "sol" not in body and "amount" in body:
            body = {**body, "sol": body["amount"]}
        sol = _number(body, "sol", positive=True)
        try:
            tokens = self.chain.outside_buy(wallet, mint, sol or 0.0)
        except ChainError as exc:
            raise _bad(str(exc)) from exc
        except ValueError as exc:
            raise _bad(f"wallet is not a valid base58 public key: {exc}") from exc
        self.stream.flush()
        return 200, {"tokens": tokens}

    async def _market(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        mint = self._mint(body)
        pct = _number(body, "pct", required=False)
        drain_pct = _number(body, "drain_pct", required=False)
        if (pct is None) == (drain_pct is None):
            raise _bad(
                "give exactly one of pct (price move, percent) and drain_pct (liquidity pulled, percent)"
            )
        try:
            if pct is not None:
                self.chain.market_move(mint, pct)
            else:
                self.chain.drain(mint, drain_pct or 0.0)
        except ChainError as exc:
            raise _bad(str(exc)) from exc
        self.stream.flush()
        return 200, self._pool_json(mint)

    async def _graduate(self, request: Request) -> tuple[int, Any]:
        mint = self._mint(_body(request))
        self.chain.graduate(mint)
        self.stream.flush()
        return 200, self._pool_json(mint)

    async def _clock(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        slots = body.get("advance_slots")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 0:
            raise _bad("advance_slots is required (an integer >= 0)")
        self.chain.advance_slots(slots)
        self.stream.flush()
        return 200, {"slot": self.chain.slot, "now_ms": self.chain.now_ms()}

    async def _faults(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        known = {
            "drop_connections",
            "refuse_connections_for_s",
            "delay_hello_s",
            "send_garbage_frame",
            "unknown_market_type",
            "fail_next_send",
            "refuse_sessions",
            "mirror_hostile",
        }
        unknown = sorted(set(body) - known)
        if unknown:
            raise _bad(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        applied: dict[str, Any] = {}
        refuse = _number(body, "refuse_connections_for_s", required=False)
        if refuse is not None:
            if refuse < 0:
                raise _bad("refuse_connections_for_s must be >= 0")
            self.stream.refuse_connections_for(refuse)
            applied["refuse_connections_for_s"] = refuse
        delay = _number(body, "delay_hello_s", required=False)
        if delay is not None:
            if delay < 0:
                raise _bad("delay_hello_s must be >= 0")
            self.stream.delay_hello(delay)
            applied["delay_hello_s"] = delay
        market_type = body.get("unknown_market_type")
        if market_type:
            name = market_type if isinstance(market_type, str) else UNKNOWN_MARKET_TYPE
            self.stream.use_unknown_market_type(name)
            applied["unknown_market_type"] = name
        if "fail_next_send" in body:
            if self.rpc is None:
                raise _bad("fail_next_send needs the RPC service, which is not running here")
            error = _send_fault(body["fail_next_send"])
            self.rpc.fail_next_send(error)
            applied["fail_next_send"] = error
        if "refuse_sessions" in body:
            count, code = _refusal(body["refuse_sessions"])
            self.stream.refuse_sessions(count, code)
            applied["refuse_sessions"] = {"count": count, "code": code}
        if "mirror_hostile" in body:
            if body["mirror_hostile"] not in ("overspend", "steal_sol"):
                raise _bad("mirror_hostile must be \"overspend\" (the next mirror buy pays 3x its amount) or "
                           "\"steal_sol\" (it also sends half the wallet's SOL to a stranger)")
            self.stream.faults.mirror_hostile = body["mirror_hostile"]
            applied["mirror_hostile"] = body["mirror_hostile"]
        if body.get("send_garbage_frame"):
            self.stream.send_garbage_frame()
            applied["send_garbage_frame"] = True
        if body.get("drop_connections"):
            applied["drop_connections"] = await self.stream.drop_connections()
        return 200, {"applied": applied}

    async def _hostile(self, request: Request) -> tuple[int, Any]:
        body = _body(request)
        kind = body.get("kind")
        if kind not in (*HOSTILE_KINDS, BURST):
            raise _bad(f"kind must be one of {', '.join((*HOSTILE_KINDS, BURST))}")
        count = body.get("count", 2 if kind == BURST else 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
            raise _bad("count must be an integer from 1 to 100")
        reason = body.get("reason", "stop_loss")
        if not isinstance(reason, str) or not reason:
            raise _bad("reason must be a non-empty string, e.g. stop_loss")
        for name in ("api_key", "wallet", "mint", "token_account"):
            if name in body and not isinstance(body[name], str):
                raise _bad(f"{name} must be a string")
        return 200, self.hostile(
            str(kind),
            api_key=body.get("api_key"),
            wallet=body.get("wallet"),
            mint=body.get("mint"),
            token_account=body.get("token_account"),
            count=count,
            reason=reason,
        )

    def hostile(
        self,
        kind: str,
        *,
        api_key: str | None = None,
        wallet: str | None = None,
        mint: str | None = None,
        token_account: str | None = None,
        count: int = 1,
        reason: str = "stop_loss",
    ) -> dict[str, Any]:
        """Sends a hostile (or burst) exit signal for a live position; raises HttpError 400 if none."""
        if (mint is None) == (token_account is None):
            raise _bad("give exactly one of mint and token_account to pick the position")
        if api_key is None and wallet is None:
            raise _bad("give api_key or wallet to pick whose stream gets the signal")
        keys = [api_key] if api_key is not None else [k.key for k in self.accounts.all()]
        for key in keys:
            position = self.stream.find_position(key, mint=mint, token_account=token_account)
            if position is None or (wallet is not None and position.wallet != wallet):
                continue
            session = self.stream.session_for(key)
            if session is None or session.closed or not session.configured:
                continue
            if kind == BURST:
                sent = self.stream.send_burst(key, position, reason, count)
            else:
                # Tipped like a genuine exit; tip_over_cap tips 0.1 SOL, far above any sane cap.
                tip = TIP_OVER_CAP_LAMPORTS if kind == "tip_over_cap" else session.effective_tip()
                try:
                    tx = self.chain.build_hostile_tx(
                        kind, position.wallet, position.mint, tip_lamports=tip, tier=session.api_key.tier
                    )
                except ChainError as exc:
                    raise _bad(str(exc)) from exc
                unsigned = base64.b64encode(bytes(tx)).decode()
                sent = self.stream.send_hostile(key, position, unsigned, reason, count)
            return {"sent": sent, "position_id": position.position_id, "kind": kind}
        raise _bad("no live position matches: connect the stream and open the position first")

    async def _state(self, request: Request) -> tuple[int, Any]:
        return 200, self.state()

    # -- views -----------------------------------------------------------------------------

    def _pool_json(self, mint: str) -> dict[str, Any]:
        pool = self.chain.pool(mint)
        return {
            "mint": str(pool.mint),
            "symbol": pool.symbol,
            "pool": str(pool.address),
            "sol_reserve": pool.sol_reserve,
            "token_reserve": pool.token_reserve,
            "price": pool.price,
            "market_type": pool.market_type,
            "graduated": pool.graduated,
            "quote": pool.quote,
        }

    def state(self) -> dict[str, Any]:
        wallets: list[str] = list(self.funded)
        for key in self.accounts.all():
            wallets += [w for w in sorted(key.registered_wallets) if w not in wallets]
        balances = {
            wallet: {
                "lamports": self.chain.balance(wallet),
                "tokens": {str(mint): amount for mint, amount in self.chain.token_balances(wallet).items()},
            }
            for wallet in wallets
        }
        signatures = []
        if self.rpc is not None:
            for signature in self.rpc.sent:
                status = self.chain.signature_status(signature)
                signatures.append({"signature": str(signature), "status": status})
        stream = self.stream.state()
        return {
            "slot": self.chain.slot,
            "now_ms": self.chain.now_ms(),
            "balances": balances,
            "mints": [self._pool_json(str(pool.mint)) for pool in self.chain.pools()],
            "api_keys": [
                {"api_key": k.key, "tier": k.tier, "wallets": sorted(k.registered_wallets)}
                for k in self.accounts.all()
            ],
            "sessions": stream["sessions"],
            "positions": stream["positions"],
            "signatures": signatures,
        }


def _refusal(raw: Any) -> tuple[int, str]:
    """Accepts N or {"count": N, "code"?: str}."""
    count, code = raw, SESSION_IN_USE_CODE
    if isinstance(raw, dict):
        count, code = raw.get("count"), raw.get("code", SESSION_IN_USE_CODE)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise _bad('refuse_sessions must be a count >= 0 or {"count": N, "code": "session_limit"}')
    if not isinstance(code, str) or not code:
        raise _bad("refuse_sessions.code must be a non-empty string")
    return count, code


def _send_fault(raw: Any) -> dict[str, Any]:
    """Accepts true, {"error": {...}}, {"error": "message"} or {"code", "message"}."""
    if raw is True or raw == {}:
        return dict(DEFAULT_SEND_FAULT)
    if not isinstance(raw, dict):
        raise _bad('fail_next_send must be true or {"error": {"code": int, "message": str}}')
    error = raw.get("error", raw)
    if isinstance(error, str):
        return {"code": DEFAULT_SEND_FAULT["code"], "message": error}
    if not isinstance(error, dict):
        raise _bad('fail_next_send.error must be {"code": int, "message": str} or a message')
    code = error.get("code", DEFAULT_SEND_FAULT["code"])
    message = error.get("message", DEFAULT_SEND_FAULT["message"])
    if isinstance(code, bool) or not isinstance(code, int) or not isinstance(message, str):
        raise _bad("fail_next_send.error needs an integer code and a string message")
    fault: dict[str, Any] = {"code": code, "message": message}
    if "data" in error:
        fault["data"] = error["data"]
    return fault


RISK_FLAGS = ("mint_authority", "freeze_authority", "permanent_delegate", "transfer_hook", "transfer_fee")
_MINT_BASE = 82
_ACCOUNT_TYPE_OFFSET = 165  # Token-2022: extensions follow the account-type byte, after a token account's size
_EXTENSIONS = {"transfer_fee": 1, "permanent_delegate": 12, "transfer_hook": 14}


def _coption(key: Pubkey | None) -> bytes:
    return struct.pack("<I", 1) + bytes(key) if key is not None else bytes(36)


def write_mint_risk(chain: Chain, mint: Any, flags: list[str]) -> None:
    """Rewrites the mint account as a token with exactly these risk flags (none: both authorities
    revoked, as launchpad tokens are). Token-2022 flags are written as their extensions (TLV after
    the account-type byte). A later supply change by the chain writes the mint plain again."""
    info = chain.mint_info(mint)
    stranger = chain.keypair("risk:authority").pubkey()
    data = (_coption(stranger if "mint_authority" in flags else None) + struct.pack("<Q", info.supply)
            + bytes([info.decimals, 1]) + _coption(stranger if "freeze_authority" in flags else None))
    assert len(data) == _MINT_BASE
    extensions = [f for f in flags if f in _EXTENSIONS]
    if extensions:
        data += bytes(_ACCOUNT_TYPE_OFFSET - _MINT_BASE) + bytes([1])  # 1 = a mint
        for flag in extensions:
            if flag == "transfer_fee":  # config and withdraw authorities, withheld, older and newer fee (5 %)
                value = bytes(stranger) * 2 + struct.pack("<Q", 0) + (struct.pack("<QQH", 0, 10**18, 500) * 2)
            elif flag == "permanent_delegate":
                value = bytes(stranger)
            else:  # transfer hook: authority, then the hook program
                value = bytes(stranger) + bytes(chain.keypair("risk:hook").pubkey())
            data += struct.pack("<HH", _EXTENSIONS[flag], len(value)) + value
    chain.svm.set_account(
        Pubkey.from_string(str(mint)),
        Account(lamports=chain.rent_exempt_minimum(len(data)), data=data, owner=info.token_program,
                executable=False, rent_epoch=0),
    )
