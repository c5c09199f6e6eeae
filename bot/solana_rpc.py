"""A small Solana JSON-RPC client: one pooled HTTP connection, answers parsed with solders' typed responses."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from solders.hash import Hash
from solders.rpc.responses import (
    GetBalanceResp,
    GetLatestBlockhashResp,
    GetSignatureStatusesResp,
    IsBlockhashValidResp,
    SendTransactionResp,
)
from solders.transaction import VersionedTransaction

from bot.tasks import BackgroundTasks

_Answer = TypeVar("_Answer", GetBalanceResp, GetLatestBlockhashResp, IsBlockhashValidResp, SendTransactionResp)

_JSON = {"Content-Type": "application/json"}
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
MAX_BATCH = 100  # calls in one JSON-RPC batch request
# A burst's batched calls leave in pieces of this many as they are made, not in one request once the burst's
# last call is in: the node works on the first piece while the bot still builds the later ones, and the bot
# checks and signs the first answers while the node works on the rest (two processes, two cores).
BATCH_PIECE = 20


class RpcError(Exception):
    """The node answered with an error (or not at all); `code` is the JSON-RPC code when there was one."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class MalformedAnswer(RpcError):
    """The node answered, but not in the shape its method promises (a broken proxy, a node mid-upgrade).
    An RpcError like any other: the caller retries or reports it, and never dies of a parse error."""


def _answer(parsed: object, kind: type[_Answer]) -> _Answer:
    """solders parses an error answer into an error type: only `kind` carries a value."""
    if not isinstance(parsed, kind):
        raise AttributeError(f"{type(parsed).__name__} has no value")
    return parsed


def _malformed(method: str, exc: BaseException) -> MalformedAnswer:
    return MalformedAnswer(f"the Solana RPC answered {method} in an unexpected shape ({type(exc).__name__})")


@dataclass(frozen=True)
class SignatureStatus:
    slot: int
    confirmation_status: str | None  # processed / confirmed / finalized
    err: Any  # None when the transaction succeeded

    @property
    def landed(self) -> bool:
        return self.err is None and self.confirmation_status in ("confirmed", "finalized")


@dataclass(frozen=True)
class TokenHolding:
    token_account: str
    mint: str
    amount: int
    decimals: int
    program: str


class SolanaRpc:
    def __init__(self, url: str, *, timeout: float = 10.0, max_connections: int = 64) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self._balance_wanted: list[tuple[str, asyncio.Future[int]]] = []
        self._batch: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._sending = BackgroundTasks()  # batched calls on their way

    def _client(self) -> aiohttp.ClientSession:
        # aiohttp's pool stays fast with hundreds of requests queued at once (a burst of Sell taps);
        # created lazily because a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        await self._sending.cancel_all()
        if self._session is not None:
            await self._session.close()

    async def call_raw(self, method: str, params: list[Any] | None = None) -> str:
        """POST one request; return the answer's text (for the typed parsers). Raises RpcError on an error."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        try:
            async with self._client().post(self.url, data=json.dumps(body), headers=_JSON) as reply:
                status = reply.status
                text = await reply.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RpcError(f"the Solana RPC did not answer {method}: {type(exc).__name__}") from exc
        if status == 429:
            raise RpcError("the Solana RPC is rate limiting us (HTTP 429)", 429)
        try:
            parsed = json.loads(text)
        except ValueError:
            raise RpcError(f"the Solana RPC answered {method} with HTTP {status} and no JSON") from None
        if isinstance(parsed, dict) and parsed.get("error"):
            error = parsed["error"]
            if not isinstance(error, dict):
                error = {"message": str(error)}
            raise RpcError(str(error.get("message", error)), error.get("code"), error.get("data"))
        return text

    async def call_batched(self, method: str, params: list[Any]) -> Any:
        """`call`, sent in one JSON-RPC batch with every other batched call made in the same moment (a burst of
        taps simulating at once costs one HTTP request, not a hundred). Raises RpcError for its own error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._batch.append(({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}, future))
        if len(self._batch) >= BATCH_PIECE:
            self._flush_batch()
        elif len(self._batch) == 1:
            loop.call_soon(self._flush_batch)
        return await future

    def _flush_batch(self) -> None:
        if not self._batch:
            return
        wanted, self._batch = self._batch, []
        self._sending.spawn(self._send_batch(wanted), name="rpc-batch")

    async def _send_batch(self, wanted: list[tuple[dict[str, Any], asyncio.Future[Any]]]) -> None:
        try:
            await self._send_batch_of(wanted)
        except Exception as exc:  # whatever went wrong, no caller is left waiting forever
            error = exc if isinstance(exc, RpcError) else _malformed("a batch", exc)
            for _, future in wanted:
                if not future.done():
                    future.set_exception(error)

    async def _send_batch_of(self, wanted: list[tuple[dict[str, Any], asyncio.Future[Any]]]) -> None:
        for start in range(0, len(wanted), MAX_BATCH):
            chunk = wanted[start : start + MAX_BATCH]
            by_id = {body["id"]: future for body, future in chunk}
            try:
                async with self._client().post(self.url, data=json.dumps([b for b, _ in chunk]), headers=_JSON) as reply:
                    status = reply.status
                    text = await reply.text()
                answers = json.loads(text)
                if not isinstance(answers, list):
                    raise RpcError(f"the Solana RPC answered a batch with HTTP {status} and no list")
            except (aiohttp.ClientError, TimeoutError, ValueError, RpcError) as exc:
                error = exc if isinstance(exc, RpcError) else RpcError(f"the Solana RPC did not answer: {type(exc).__name__}")
                for future in by_id.values():
                    if not future.done():
                        future.set_exception(error)
                continue
            for answer in answers:
                waiting = by_id.pop(answer.get("id"), None) if isinstance(answer, dict) else None
                if waiting is None or waiting.done():
                    continue
                if answer.get("error"):
                    said = answer["error"]
                    if not isinstance(said, dict):
                        said = {"message": str(said)}
                    waiting.set_exception(RpcError(str(said.get("message", said)), said.get("code"), said.get("data")))
                else:
                    waiting.set_result(answer.get("result"))
            for future in by_id.values():
                if not future.done():
                    future.set_exception(RpcError("the Solana RPC left a batched call unanswered"))

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        text = await self.call_raw(method, params)
        try:
            return json.loads(text)["result"]
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(method, exc) from None

    async def get_balance(self, pubkey: str) -> int:
        text = await self.call_raw("getBalance", [pubkey, {"commitment": "confirmed"}])
        try:
            return int(_answer(GetBalanceResp.from_json(text), GetBalanceResp).value)
        except Exception as exc:  # solders' parse errors are their own types
            raise _malformed("getBalance", exc) from None

    async def get_balances(self, pubkeys: list[str]) -> list[int]:
        """Lamports of up to 100 accounts in one call (getMultipleAccounts); a missing account holds 0."""
        result = await self.call(
            "getMultipleAccounts",
            [pubkeys, {"encoding": "base64", "dataSlice": {"offset": 0, "length": 0}, "commitment": "confirmed"}],
        )
        try:
            balances = [int(account["lamports"]) if account else 0 for account in result["value"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed("getMultipleAccounts", exc) from None
        if len(balances) != len(pubkeys):
            raise _malformed("getMultipleAccounts", ValueError("wrong count"))
        return balances

    async def get_balance_batched(self, pubkey: str) -> int:
        """`get_balance`, asked together with every other balance wanted in the same moment (a burst of
        sells): one getMultipleAccounts call for up to 100 wallets instead of a call each."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._balance_wanted.append((pubkey, future))
        if len(self._balance_wanted) == 1:
            loop.call_soon(lambda: self._sending.spawn(self._fetch_balances(), name="rpc-balances"))
        return await future

    async def _fetch_balances(self) -> None:
        wanted, self._balance_wanted = self._balance_wanted, []
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            try:
                balances = await self.get_balances(sorted({p for p, _ in chunk}))
                by_key = dict(zip(sorted({p for p, _ in chunk}), balances, strict=True))
            except Exception as exc:  # every waiter gets an answer, an RpcError of its kind
                error = exc if isinstance(exc, RpcError) else _malformed("getMultipleAccounts", exc)
                for _, future in chunk:
                    if not future.done():
                        future.set_exception(error)
                continue
            for pubkey, future in chunk:
                if not future.done():
                    future.set_result(by_key[pubkey])

    async def get_latest_blockhash(self) -> tuple[Hash, int]:
        text = await self.call_raw("getLatestBlockhash", [{"commitment": "confirmed"}])
        try:
            value = _answer(GetLatestBlockhashResp.from_json(text), GetLatestBlockhashResp).value
        except Exception as exc:
            raise _malformed("getLatestBlockhash", exc) from None
        return value.blockhash, value.last_valid_block_height

    async def is_blockhash_valid(self, blockhash: Hash) -> bool:
        text = await self.call_raw("isBlockhashValid", [str(blockhash), {"commitment": "processed"}])
        try:
            return bool(_answer(IsBlockhashValidResp.from_json(text), IsBlockhashValidResp).value)
        except Exception as exc:
            raise _malformed("isBlockhashValid", exc) from None

    async def send_transaction(self, tx: VersionedTransaction | bytes, *, skip_preflight: bool = True) -> str:
        raw = bytes(tx) if isinstance(tx, VersionedTransaction) else tx
        options: dict[str, Any] = {"encoding": "base64", "skipPreflight": skip_preflight, "maxRetries": 0}
        options["preflightCommitment"] = "processed"
        text = await self.call_raw("sendTransaction", [base64.b64encode(raw).decode(), options])
        try:
            return str(_answer(SendTransactionResp.from_json(text), SendTransactionResp).value)
        except Exception as exc:
            raise _malformed("sendTransaction", exc) from None

    async def get_signature_statuses(self, signatures: list[str]) -> list[SignatureStatus | None]:
        text = await self.call_raw("getSignatureStatuses", [signatures, {"searchTransactionHistory": True}])
        out: list[SignatureStatus | None] = []
        try:
            GetSignatureStatusesResp.from_json(text)  # the shape a node gives, or an error here
            for status in json.loads(text)["result"]["value"]:
                if status is None:
                    out.append(None)
                    continue
                # err stays the node's JSON (e.g. {"InstructionError": [2, {"Custom": 6003}]}) for explaining it
                out.append(SignatureStatus(int(status["slot"]), status.get("confirmationStatus"), status.get("err")))
        except Exception as exc:
            raise _malformed("getSignatureStatuses", exc) from None
        if len(out) != len(signatures):
            raise _malformed("getSignatureStatuses", ValueError("wrong count"))
        return out

    async def get_transaction_meta(self, signature: str) -> dict[str, Any] | None:
        result = await self.call(
            "getTransaction", [signature, {"encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": "confirmed"}]
        )
        if not result:
            return None
        try:
            meta = dict(result.get("meta") or {})
            meta["account_keys"] = result.get("transaction", {}).get("message", {}).get("accountKeys", [])
        except (AttributeError, TypeError, ValueError) as exc:
            raise _malformed("getTransaction", exc) from None
        return meta

    async def get_token_holdings(self, owner: str) -> list[TokenHolding]:
        holdings: list[TokenHolding] = []
        for program in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
            result = await self.call(
                "getTokenAccountsByOwner", [owner, {"programId": program}, {"encoding": "jsonParsed"}]
            )
            try:
                for item in result.get("value", []):
                    info = item["account"]["data"]["parsed"]["info"]
                    amount = info["tokenAmount"]
                    holdings.append(
                        TokenHolding(item["pubkey"], info["mint"], int(amount["amount"]), int(amount["decimals"]), program)
                    )
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise _malformed("getTokenAccountsByOwner", exc) from None
        return holdings

    async def sol_change(self, signature: str, wallet: str) -> tuple[int, int] | None:
        """(change of the wallet's SOL, fee paid) by a landed transaction, in lamports; None if unknown."""
        try:
            meta = await self.get_transaction_meta(signature)
        except RpcError:
            return None
        if not meta:
            return None
        try:
            keys = [k if isinstance(k, str) else k.get("pubkey") for k in meta.get("account_keys", [])]
            if wallet not in keys:
                return None
            index = keys.index(wallet)
            pre, post = meta.get("preBalances", []), meta.get("postBalances", [])
            if index >= len(pre) or index >= len(post):
                return None
            return int(post[index]) - int(pre[index]), int(meta.get("fee", 0))
        except (AttributeError, TypeError, ValueError):
            return None  # a malformed answer: the amount is unknown, the sell still landed

    async def token_change(self, signature: str, owner: str, mint: str) -> int | None:
        """Change of `owner`'s balance of `mint` (atomic units) in a landed transaction; None if unknown.
        A USD1 market's sell pays USD1 into a token account, which the SOL balance does not show."""
        try:
            meta = await self.get_transaction_meta(signature)
        except RpcError:
            return None
        if not meta:
            return None

        def total(rows: list[dict[str, Any]] | None) -> int:
            amount = 0
            for row in rows or []:
                if row.get("owner") == owner and row.get("mint") == mint:
                    amount += int((row.get("uiTokenAmount") or {}).get("amount") or 0)
            return amount

        try:
            return total(meta.get("postTokenBalances")) - total(meta.get("preTokenBalances"))
        except (AttributeError, TypeError, ValueError):
            return None

    async def simulate(self, tx: VersionedTransaction | bytes, addresses: list[str]) -> dict[str, Any]:
        """simulateTransaction of an unsigned transaction with the latest blockhash, returning each of
        `addresses` as the transaction would leave it (base64) and the inner instructions: the value object."""
        raw = bytes(tx) if isinstance(tx, VersionedTransaction) else tx
        config = {
            "encoding": "base64", "sigVerify": False, "replaceRecentBlockhash": True, "commitment": "processed",
            "accounts": {"addresses": addresses, "encoding": "base64"}, "innerInstructions": True,
        }
        result = await self.call_batched("simulateTransaction", [base64.b64encode(raw).decode(), config])
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, dict):
            raise RpcError("the Solana RPC answered simulateTransaction without a value")
        return value

    async def get_accounts(self, addresses: list[str]) -> list[dict[str, Any] | None]:
        """Up to 100 accounts in one getMultipleAccounts call (base64 data); None for a missing one."""
        result = await self.call_batched(
            "getMultipleAccounts", [addresses, {"encoding": "base64", "commitment": "processed"}]
        )
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, list) or len(value) != len(addresses):
            raise _malformed("getMultipleAccounts", TypeError("no list of accounts"))
        return value

    async def get_account_data(self, address: str) -> tuple[str, bytes] | None:
        """(owner program, raw data) of an account, or None when it does not exist."""
        result = await self.call("getAccountInfo", [address, {"encoding": "base64"}])
        try:
            value = (result or {}).get("value")
            if not value:
                return None
            data = value.get("data")
            encoded = data[0] if isinstance(data, list) else data
            return str(value.get("owner")), base64.b64decode(encoded or "")
        except (AttributeError, TypeError, ValueError) as exc:
            raise _malformed("getAccountInfo", exc) from None
