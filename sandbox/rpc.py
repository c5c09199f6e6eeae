"""The sandbox chain's Solana JSON-RPC 2.0 endpoint (HTTP POST at "/", batches too).

Answers have the shapes a node gives (they parse with `solders.rpc.responses`), errors too:
-32700 parse error, -32600 invalid request, -32601 method not found, -32602 invalid params,
-32002 preflight failure (with the simulation result as data), -32003 signature verification
failure, -32015 a v0 transaction asked for without `maxSupportedTransactionVersion`.

simulateTransaction takes a node's config: `sigVerify` (a bad signature answers -32003),
`replaceRecentBlockhash` (simulates with the latest blockhash and returns `replacementBlockhash`),
`accounts` {`addresses`, `encoding` base64 | jsonParsed} (each account's state AFTER the
simulation, router trades included; null for one that would not exist) and `innerInstructions`.
getTransaction gives v0 transactions their `addressTableLookups` and `meta.loadedAddresses`.
Lookup tables are ordinary accounts: getAccountInfo returns their on-chain bytes (or, with
jsonParsed, the `address-lookup-table` parsed form).
`fail_next_send(error)` makes the next sendTransaction answer with that error (fault injection).
`fault(method, kind, times)` makes the next `times` calls of `method` misbehave as a flaky node does:
"garbage" (a well-formed JSON-RPC reply whose result has the wrong shape), "http500" / "http429"
(an HTTP error status with no JSON-RPC body), or "hang" (no answer for `hang_s` seconds, then a 504;
the request is never carried out, so a sendTransaction that hangs never lands).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import base58
from solders.account import Account
from solders.address_lookup_table_account import ID as ADDRESS_LOOKUP_TABLE_PROGRAM_ID
from solders.address_lookup_table_account import AddressLookupTable
from solders.hash import Hash
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.state import Mint, TokenAccount
from solders.transaction import VersionedTransaction

from sandbox.chain import (
    MINT_SIZE,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_ACCOUNT_SIZE,
    TOKEN_PROGRAM_ID,
    Chain,
    ChainError,
    RpcError,
    TxRecord,
    ui_token_amount,
)
from sandbox.http import JsonHttpServer, JsonService, Request

API_VERSION = "2.2.7"
FEATURE_SET = 3294202862
MAX_SIGNATURES = 256


def _invalid(message: str) -> RpcError:
    return RpcError(-32602, message)


def _params(params: Any, at_least: int = 0) -> list[Any]:
    if params is None:
        params = []
    if not isinstance(params, list):
        raise _invalid("Invalid params: expected an array of parameters")
    if len(params) < at_least:
        raise _invalid(f"Invalid params: expected at least {at_least} parameter(s)")
    return params


def _config(params: list[Any], index: int) -> dict[str, Any]:
    value = params[index] if len(params) > index else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid("Invalid params: config must be an object")
    return value


def _pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except (ValueError, TypeError) as exc:
        raise _invalid("Invalid param: Invalid") from exc


def _signature(value: Any) -> Signature:
    try:
        return Signature.from_string(value)
    except (ValueError, TypeError) as exc:
        raise _invalid(f"Invalid param: {value!r} is not a signature") from exc


def decode_transaction(data: Any, encoding: str) -> VersionedTransaction:
    """A wire transaction in `encoding` (base58 as a node defaults to, or base64)."""
    if not isinstance(data, str):
        raise _invalid("Invalid params: transaction must be a string")
    try:
        if encoding == "base64":
            raw = base64.b64decode(data, validate=True)
        elif encoding == "base58":
            raw = base58.b58decode(data)
        else:
            raise _invalid(
                f"Invalid params: unsupported encoding: {encoding}. Supported encodings: base58, base64"
            )
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"invalid transaction: failed to decode {encoding} string") from exc
    try:
        return VersionedTransaction.from_bytes(raw)
    except Exception as exc:  # solders raises its own error types on bad bytes
        raise _invalid(
            f"invalid transaction: Transaction failed to sanitize accounts offsets correctly: {exc}"
        ) from exc


FAULT_KINDS = ("garbage", "http500", "http429", "hang")
LAND_QUIET_S = 0.005  # sent transactions land once sendTransaction has been quiet this long
LAND_MAX_S = 0.2  # or this long after the first of them came (half a slot), whichever is sooner


class SandboxRpc(JsonService):
    """JSON-RPC over the sandbox chain. `await start()`, then clients POST to `.url`."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.calls: Counter[str] = Counter()
        self.sent: list[Signature] = []
        self.received_at: dict[Signature, float] = {}  # when sendTransaction first received each (time.monotonic())
        # sendTransaction with skipPreflight answers at once and the chain lands the transaction after (a node
        # forwards it to the leader and answers; it does not make the sender wait for the block): once sends
        # pause for LAND_QUIET_S, or LAND_MAX_S after the first one waiting, as a leader packs a block. A burst
        # of sends is received without each one waiting for the landing of those before it; any read lands
        # what was sent before it first, so no caller ever sees a sent transaction missing.
        self._landing_since = 0.0
        self._land_timer: asyncio.TimerHandle | None = None
        self._send_faults: deque[dict[str, Any]] = deque()
        self._faults: dict[str, deque[str]] = {}
        self.hang_s = 15.0
        self.hangs: Counter[str] = Counter()  # hung requests per method, counted when the hang begins
        self.server = JsonHttpServer()
        self.server.route("POST", "/", self._http)
        self.server.route("GET", "/ping", self._ping)  # Helius Sender's keep-warm ping (the sandbox's sender)
        self._methods: dict[str, Callable[[list[Any]], Any]] = {
            "getHealth": lambda p: "ok",
            "getVersion": lambda p: {"solana-core": API_VERSION, "feature-set": FEATURE_SET},
            "getSlot": lambda p: self.chain.slot,
            "getBlockHeight": lambda p: self.chain.block_height,
            "getLatestBlockhash": self._get_latest_blockhash,
            "isBlockhashValid": self._is_blockhash_valid,
            "getBalance": self._get_balance,
            "getAccountInfo": self._get_account_info,
            "getMultipleAccounts": self._get_multiple_accounts,
            "getMinimumBalanceForRentExemption": self._get_min_rent,
            "getTokenAccountBalance": self._get_token_account_balance,
            "getTokenAccountsByOwner": self._get_token_accounts_by_owner,
            "getSignatureStatuses": self._get_signature_statuses,
            "getTransaction": self._get_transaction,
            "simulateTransaction": self._simulate_transaction,
            "sendTransaction": self._send_transaction,
        }

    # -- serving -------------------------------------------------------------------------------

    async def stop(self) -> None:
        await super().stop()
        self.land_sent()  # what was accepted lands, as it would have a moment later

    def fail_next_send(self, error: dict[str, Any] | RpcError) -> None:
        """The next sendTransaction answers with this JSON-RPC error ({"code", "message", "data"?})."""
        self._send_faults.append(error.to_json() if isinstance(error, RpcError) else dict(error))

    def fault(self, method: str, kind: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer with `kind`: garbage, http500, http429 or hang."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        self._faults.setdefault(method, deque()).extend([kind] * times)

    def _take_fault(self, method: str, kinds: tuple[str, ...]) -> str | None:
        pending = self._faults.get(method)
        if pending and pending[0] in kinds:
            return pending.popleft()
        return None

    async def _ping(self, request: Request) -> tuple[int, Any]:
        self.calls["ping"] += 1
        return 200, "ok"

    async def _http(self, request: Request) -> tuple[int, Any]:
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return 200, _error_response(None, {"code": -32700, "message": "Parse error"})
        items = payload if isinstance(payload, list) else [payload]
        for item in items:
            raw_method = item.get("method") if isinstance(item, dict) else None
            method = raw_method if isinstance(raw_method, str) else ""
            kind = self._take_fault(method, ("http500", "http429", "hang")) if method else None
            if kind == "hang":
                # the caller gives up (or dies) first; the request is never carried out
                self.hangs[method] += 1
                await asyncio.sleep(self.hang_s)
                return 504, None
            if kind is not None:
                self.calls[method] += 1
                return (500 if kind == "http500" else 429), None
        return 200, self.handle(payload)

    def handle(self, payload: Any) -> Any:
        """One JSON-RPC request object or a batch (list) -> the response object(s)."""
        if isinstance(payload, list):
            if not payload:
                return _error_response(None, {"code": -32600, "message": "Invalid request"})
            return [self._handle_one(item) for item in payload]
        return self._handle_one(payload)

    def _handle_one(self, request: Any) -> dict[str, Any]:
        if (
            not isinstance(request, dict)
            or request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
        ):
            rid = request.get("id") if isinstance(request, dict) else None
            return _error_response(rid, {"code": -32600, "message": "Invalid request"})
        rid, method = request.get("id"), request["method"]
        if method != "sendTransaction":
            self.land_sent()  # every read sees what was sent before it, as if it had landed at once
        self.calls[method] += 1
        handler = self._methods.get(method)
        if handler is None:
            return _error_response(rid, {"code": -32601, "message": "Method not found"})
        if self._take_fault(method, ("garbage",)):
            # the reply a broken proxy or a node mid-upgrade gives: valid JSON-RPC, nonsense inside
            return {"jsonrpc": "2.0", "result": {"context": {"slot": "?"}, "value": [{"slot": "garbage"}]}, "id": rid}
        try:
            result = handler(_params(request.get("params")))
        except RpcError as exc:
            return _error_response(rid, exc.to_json())
        return {"jsonrpc": "2.0", "result": result, "id": rid}

    def _context(self, value: Any) -> dict[str, Any]:
        return {"context": {"apiVersion": API_VERSION, "slot": self.chain.slot}, "value": value}

    # -- methods -------------------------------------------------------------------------------

    def _get_latest_blockhash(self, params: list[Any]) -> Any:
        blockhash, last_valid = self.chain.latest_blockhash()
        return self._context({"blockhash": str(blockhash), "lastValidBlockHeight": last_valid})

    def _is_blockhash_valid(self, params: list[Any]) -> Any:
        params = _params(params, 1)
        try:
            blockhash = Hash.from_string(params[0])
        except (ValueError, TypeError) as exc:
            raise _invalid("Invalid param: Invalid") from exc
        return self._context(self.chain.is_blockhash_valid(blockhash))

    def _get_balance(self, params: list[Any]) -> Any:
        return self._context(self.chain.balance(_pubkey(_params(params, 1)[0])))

    def _get_min_rent(self, params: list[Any]) -> Any:
        size = _params(params, 1)[0]
        if not isinstance(size, int) or size < 0:
            raise _invalid("Invalid params: data length must be a non-negative integer")
        return self.chain.rent_exempt_minimum(size)

    def _account_json(self, address: Pubkey, encoding: str) -> dict[str, Any] | None:
        return self.ui_account(self.chain.account(address), encoding)

    def ui_account(self, acc: Account | None, encoding: str) -> dict[str, Any] | None:
        """An account as a node's UiAccount in `encoding`; None for one that does not exist."""
        if acc is None or (acc.lamports == 0 and not acc.data):
            return None
        data = bytes(acc.data)
        encoded: Any
        if encoding == "jsonParsed" and (parsed := self._parsed_data(acc.owner, data)) is not None:
            encoded = parsed
        elif encoding == "base58":
            encoded = [base58.b58encode(data).decode(), "base58"]
        elif encoding in ("base64", "jsonParsed"):
            encoded = [base64.b64encode(data).decode(), "base64"]
        else:
            raise _invalid(f"Invalid params: unsupported encoding: {encoding}")
        return {
            "data": encoded,
            "executable": acc.executable,
            "lamports": acc.lamports,
            "owner": str(acc.owner),
            "rentEpoch": 18446744073709551615,
            "space": len(data),
        }

    def _parsed_data(self, owner: Pubkey, data: bytes) -> dict[str, Any] | None:
        if owner == ADDRESS_LOOKUP_TABLE_PROGRAM_ID:
            try:
                table = AddressLookupTable.deserialize(data)
            except Exception:  # solders raises its own error types on bad bytes
                return None
            meta = table.meta
            info = {
                "addresses": [str(a) for a in table.addresses],
                "authority": str(meta.authority) if meta.authority else None,
                "deactivationSlot": str(meta.deactivation_slot),
                "lastExtendedSlot": str(meta.last_extended_slot),
                "lastExtendedSlotStartIndex": meta.last_extended_slot_start_index,
            }
            return {
                "program": "address-lookup-table",
                "parsed": {"info": info, "type": "lookupTable"},
                "space": len(data),
            }
        return self._parsed_token_data(owner, data)

    def _parsed_token_data(self, owner: Pubkey, data: bytes) -> dict[str, Any] | None:
        if owner not in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
            return None
        program = "spl-token" if owner == TOKEN_PROGRAM_ID else "spl-token-2022"
        if len(data) >= TOKEN_ACCOUNT_SIZE:
            state = TokenAccount.from_bytes(data[:TOKEN_ACCOUNT_SIZE])
            decimals = self.chain.mint_info(state.mint).decimals if self.chain.has_mint(state.mint) else 0
            info = {
                "isNative": False,
                "mint": str(state.mint),
                "owner": str(state.owner),
                "state": "initialized",
                "tokenAmount": ui_token_amount(state.amount, decimals),
            }
            parsed = {"info": info, "type": "account"}
        elif len(data) == MINT_SIZE:
            mint = Mint.from_bytes(data)
            parsed = {
                "info": {
                    "decimals": mint.decimals,
                    "freezeAuthority": None,
                    "isInitialized": mint.is_initialized,
                    "mintAuthority": str(mint.mint_authority) if mint.mint_authority else None,
                    "supply": str(mint.supply),
                },
                "type": "mint",
            }
        else:
            return None
        return {"program": program, "parsed": parsed, "space": len(data)}

    def _get_account_info(self, params: list[Any]) -> Any:
        params = _params(params, 1)
        address = _pubkey(params[0])
        encoding = _config(params, 1).get("encoding", "base64")
        return self._context(self._account_json(address, encoding))

    def _get_multiple_accounts(self, params: list[Any]) -> Any:
        params = _params(params, 1)
        if not isinstance(params[0], list) or len(params[0]) > 100:
            raise _invalid("Invalid params: expected an array of at most 100 addresses")
        encoding = _config(params, 1).get("encoding", "base64")
        return self._context([self._account_json(_pubkey(a), encoding) for a in params[0]])

    def _get_token_account_balance(self, params: list[Any]) -> Any:
        address = _pubkey(_params(params, 1)[0])
        state = self.chain.read_token_account(address)
        if state is None:
            raise _invalid("Invalid param: not a Token account")
        decimals = self.chain.mint_info(state.mint).decimals if self.chain.has_mint(state.mint) else 0
        return self._context(ui_token_amount(state.amount, decimals))

    def _get_token_accounts_by_owner(self, params: list[Any]) -> Any:
        params = _params(params, 2)
        owner = _pubkey(params[0])
        selector = params[1]
        if (
            not isinstance(selector, dict)
            or len(selector) != 1
            or not ({"mint", "programId"} & set(selector))
        ):
            raise _invalid("Invalid params: expected a filter object with exactly one of mint or programId")
        encoding = _config(params, 2).get("encoding", "base64")
        if "mint" in selector:
            mint = _pubkey(selector["mint"])
            if not self.chain.has_mint(mint):
                raise _invalid("Invalid param: could not find mint")
            wanted = lambda entry: entry.mint == mint  # noqa: E731
        else:
            program = _pubkey(selector["programId"])
            if program not in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
                raise _invalid("Invalid param: unrecognized Token program id")
            wanted = lambda entry: entry.token_program == program  # noqa: E731
        value = [
            {"pubkey": str(entry.ata), "account": self._account_json(entry.ata, encoding)}
            for entry in self.chain.token_accounts(owner)
            if wanted(entry)
        ]
        return self._context(value)

    def _get_signature_statuses(self, params: list[Any]) -> Any:
        params = _params(params, 1)
        if not isinstance(params[0], list):
            raise _invalid("Invalid params: expected an array of signatures")
        if len(params[0]) > MAX_SIGNATURES:
            raise _invalid(f"Too many inputs provided; max {MAX_SIGNATURES}")
        value = []
        for raw in params[0]:
            status = self.chain.signature_status(_signature(raw))
            if status is not None:
                status = dict(status)
                status["status"] = {"Ok": None} if status["err"] is None else {"Err": status["err"]}
            value.append(status)
        return self._context(value)

    def _get_transaction(self, params: list[Any]) -> Any:
        params = _params(params, 1)
        signature = _signature(params[0])
        config = _config(params, 1)
        encoding = config.get("encoding", "json")
        if encoding not in ("json", "base64", "base58"):
            raise _invalid(f"Invalid params: unsupported encoding: {encoding}")
        record = self.chain.get_transaction(signature)
        if record is None:
            return None
        max_version = config.get("maxSupportedTransactionVersion")
        if max_version is not None and (isinstance(max_version, bool) or not isinstance(max_version, int)):
            raise _invalid("Invalid params: maxSupportedTransactionVersion must be a number")
        if isinstance(record.transaction.message, MessageV0) and (max_version is None or max_version < 0):
            raise RpcError(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try the request again "
                'with the following configuration parameter: "maxSupportedTransactionVersion": 0',
            )
        return transaction_json(record, encoding)

    def _simulate_transaction(self, params: list[Any]) -> Any:
        params = _params(params, 1)
        config = _config(params, 1)
        tx = decode_transaction(params[0], config.get("encoding", "base58"))
        replace = bool(config.get("replaceRecentBlockhash"))
        sig_verify = bool(config.get("sigVerify"))
        if replace and sig_verify:
            raise _invalid("sigVerify may not be used with replaceRecentBlockhash")
        if sig_verify and not all(tx.verify_with_results()):
            raise RpcError(-32003, "Transaction signature verification failure")
        addresses, accounts_encoding = self._simulate_accounts_config(config.get("accounts"), tx)
        inner = bool(config.get("innerInstructions"))
        value = self.chain.simulate(
            tx,
            replace_recent_blockhash=replace,
            accounts=addresses,
            inner_instructions=inner,
        )
        if value["accounts"] is not None:
            value["accounts"] = [self.ui_account(acc, accounts_encoding) for acc in value["accounts"]]
        if inner and value["innerInstructions"] is not None:
            value["innerInstructions"] = self._partially_decoded(tx, value["innerInstructions"])
        return self._context(value)

    def _simulate_accounts_config(
        self, accounts: Any, tx: VersionedTransaction
    ) -> tuple[list[Pubkey] | None, str]:
        if accounts is None:
            return None, "base64"
        if not isinstance(accounts, dict) or not isinstance(accounts.get("addresses"), list):
            raise _invalid("Invalid params: accounts must be an object with an addresses array")
        encoding = accounts.get("encoding") or "base64"
        if encoding in ("binary", "base58"):
            raise _invalid("base58 encoding not supported")
        if encoding not in ("base64", "jsonParsed"):
            # base64+zstd needs a zstd codec the sandbox does not ship.
            raise _invalid(f"Invalid params: unsupported encoding: {encoding}. Supported: base64, jsonParsed")
        limit = len(tx.message.account_keys) + sum(
            len(bytes(lookup.writable_indexes)) + len(bytes(lookup.readonly_indexes))
            for lookup in getattr(tx.message, "address_table_lookups", None) or []
        )
        if len(accounts["addresses"]) > limit:
            raise _invalid(f"Too many accounts provided; max {limit}")
        return [_pubkey(a) for a in accounts["addresses"]], encoding

    def _partially_decoded(
        self, tx: VersionedTransaction, groups: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Inner instructions as simulateTransaction gives them: program and accounts by address."""
        try:
            static, writable, readonly = self.chain.resolve_account_keys(tx)
        except ChainError:
            return []
        keys = [str(k) for k in (*static, *writable, *readonly)]
        return [
            {
                "index": group["index"],
                "instructions": [
                    {
                        "programId": keys[ix["programIdIndex"]],
                        "accounts": [keys[i] for i in ix["accounts"]],
                        "data": ix["data"],
                        "stackHeight": ix["stackHeight"],
                    }
                    for ix in group["instructions"]
                ],
            }
            for group in groups
        ]

    def _send_transaction(self, params: list[Any]) -> Any:
        params = _params(params, 1)
        config = _config(params, 1)
        tx = decode_transaction(params[0], config.get("encoding", "base58"))
        self.received_at.setdefault(tx.signatures[0], time.monotonic())
        max_retries = config.get("maxRetries")
        if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0):
            raise _invalid("Invalid params: maxRetries must be a non-negative integer")
        if self._send_faults:
            fault = self._send_faults.popleft()
            raise RpcError(fault["code"], fault["message"], fault.get("data"))
        skip_preflight = bool(config.get("skipPreflight", False))
        if skip_preflight and not self.chain.seen(tx.signatures[0]):
            # nothing left that could refuse it: the answer is the signature, the landing follows (land_sent)
            self._land_soon(tx)
            self.sent.append(tx.signatures[0])
            return str(tx.signatures[0])
        self.land_sent()
        signature = self.chain.send_transaction(tx, skip_preflight=skip_preflight)
        self.sent.append(signature)
        return str(signature)

    def _land_soon(self, tx: VersionedTransaction) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside an event loop (a direct `handle()`): land now
            self.chain.send_transaction(tx, skip_preflight=True)
            return
        now = loop.time()
        if self._land_timer is None:
            self._landing_since = now
        else:
            self._land_timer.cancel()
        self.chain.accept(tx)
        wait = min(LAND_QUIET_S, max(0.0, self._landing_since + LAND_MAX_S - now))
        self._land_timer = loop.call_later(wait, self.land_sent)

    def land_sent(self) -> None:
        """Land the transactions sendTransaction accepted and has not landed yet, in the order they came."""
        if self._land_timer is not None:
            self._land_timer.cancel()
            self._land_timer = None
        self.chain.settle()


def transaction_json(record: TxRecord, encoding: str = "json") -> dict[str, Any]:
    """getTransaction's result for a landed transaction."""
    tx = record.transaction
    msg = tx.message
    v0 = isinstance(msg, MessageV0)
    if encoding == "base64":
        encoded: Any = [base64.b64encode(bytes(tx)).decode(), "base64"]
    elif encoding == "base58":
        encoded = [base58.b58encode(bytes(tx)).decode(), "base58"]
    elif encoding == "json":
        header = msg.header
        message: dict[str, Any] = {
            "accountKeys": [str(k) for k in msg.account_keys],
            "header": {
                "numRequiredSignatures": header.num_required_signatures,
                "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
            },
            "recentBlockhash": str(msg.recent_blockhash),
            "instructions": [
                {
                    "programIdIndex": ix.program_id_index,
                    "accounts": list(bytes(ix.accounts)),
                    "data": base58.b58encode(bytes(ix.data)).decode(),
                    "stackHeight": None,
                }
                for ix in msg.instructions
            ],
        }
        if isinstance(msg, MessageV0):
            message["addressTableLookups"] = [
                {
                    "accountKey": str(lookup.account_key),
                    "writableIndexes": list(bytes(lookup.writable_indexes)),
                    "readonlyIndexes": list(bytes(lookup.readonly_indexes)),
                }
                for lookup in msg.address_table_lookups
            ]
        encoded = {"signatures": [str(s) for s in tx.signatures], "message": message}
    else:
        raise _invalid(f"Invalid params: unsupported encoding: {encoding}")
    meta: dict[str, Any] = {
        "err": record.err,
        "status": {"Ok": None} if record.err is None else {"Err": record.err},
        "fee": record.fee,
        "preBalances": record.pre_balances,
        "postBalances": record.post_balances,
        "innerInstructions": record.inner_instructions,
        "logMessages": record.logs,
        "preTokenBalances": record.pre_token_balances,
        "postTokenBalances": record.post_token_balances,
        "rewards": [],
        "computeUnitsConsumed": record.compute_units,
    }
    if v0:
        meta["loadedAddresses"] = {
            "writable": [str(k) for k in record.loaded_writable],
            "readonly": [str(k) for k in record.loaded_readonly],
        }
    return {
        "slot": record.slot,
        "blockTime": record.block_time,
        "version": 0 if v0 else "legacy",
        "transaction": encoded,
        "meta": meta,
    }


def _error_response(rid: Any, error: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error, "id": rid}
