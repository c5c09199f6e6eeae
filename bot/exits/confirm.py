"""Following signatures to confirmation: one getSignatureStatuses call a round for every sell in flight.

A burst of sells would otherwise poll the RPC once per sell per round, competing with the sends that
matter and tripping providers' rate limits. Callers ask for the next status of their signature; the
watcher asks the node about all of them together (up to 256 a call, the node's limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.solana_rpc import RpcError, SignatureStatus, SolanaRpc

log = logging.getLogger("lasersell_bot.confirm")

MAX_PER_CALL = 256


class SignatureWatcher:
    def __init__(self, rpc: SolanaRpc, interval_s: float = 0.3) -> None:
        self.rpc = rpc
        self.interval_s = interval_s
        self._waiters: dict[str, list[asyncio.Future[SignatureStatus | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def next_status(self, signature: str) -> SignatureStatus | None:
        """The signature's status at the next polling round (None: the node does not know it yet)."""
        future: asyncio.Future[SignatureStatus | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(signature, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="signature-watcher")
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._waiters:
            await asyncio.sleep(self.interval_s)
            waiters, self._waiters = self._waiters, {}
            signatures = list(waiters)
            for start in range(0, len(signatures), MAX_PER_CALL):
                chunk = signatures[start : start + MAX_PER_CALL]
                try:
                    statuses: list[SignatureStatus | None] = list(await self.rpc.get_signature_statuses(chunk))
                    if len(statuses) != len(chunk):
                        raise RpcError(f"{len(statuses)} statuses for {len(chunk)} signatures")
                except RpcError as exc:
                    log.info("status check failed: %s", exc)
                    statuses = [None] * len(chunk)  # unknown this round; callers ask again
                except Exception:
                    # One bad answer must not end the watcher: every sell in flight would wait forever.
                    log.exception("status check failed unexpectedly; asking again next round")
                    statuses = [None] * len(chunk)
                for signature, status in zip(chunk, statuses, strict=True):
                    for future in waiters[signature]:
                        if not future.done():
                            future.set_result(status)


async def follow(
    watcher: SignatureWatcher,
    signature: str,
    still_valid: Callable[[], Awaitable[bool]],
    timeout: float,
) -> tuple[str, SignatureStatus | None]:
    """Follow one signature until it lands, fails, expires or `timeout` passes.

    Returns ("landed" | "failed" | "expired" | "unknown", the last status). "expired": the node never saw
    it and its blockhash is gone, so it can never land (a cluster drops such a transaction silently).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    status: SignatureStatus | None = None
    while loop.time() < deadline:
        status = await watcher.next_status(signature)
        if status is not None and status.err is not None:
            return "failed", status
        if status is not None and status.landed:
            return "landed", status
        if status is None and not await still_valid():
            # one more look: it may have landed just before the blockhash expired
            status = await watcher.next_status(signature)
            if status is None:
                return "expired", None
            if status.err is not None:
                return "failed", status
            if status.landed:
                return "landed", status
    return "unknown", status
