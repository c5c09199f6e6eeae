"""AccountReads: the taps of one burst read their accounts in one go, each address once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.exits.executor import AccountReads
from bot.solana_rpc import RpcError


class Node:
    """getMultipleAccounts as a node answers it, counting the calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def get_accounts(self, addresses: list[str]) -> list[dict[str, Any] | None]:
        self.calls.append(list(addresses))
        await asyncio.sleep(0)
        if self.fail:
            raise RpcError("the node is down")
        return [None if a.startswith("missing") else {"lamports": len(a)} for a in addresses]


async def test_reads_asked_in_the_same_moment_go_out_once_per_address_in_calls_of_at_most_100() -> None:
    node = Node()
    reads = AccountReads(node)  # type: ignore[arg-type]
    pool = ["pool", "curve", "vault"]
    taps = [[f"wallet{i}", f"tokens{i}", *pool] for i in range(60)] + [["missing1", "pool"]]
    answers = await asyncio.gather(*(reads.read(addresses) for addresses in taps))
    assert answers[0] == [{"lamports": 7}, {"lamports": 7}, {"lamports": 4}, {"lamports": 5}, {"lamports": 5}]
    assert answers[-1] == [None, {"lamports": 4}]
    asked = [a for call in node.calls for a in call]
    assert sorted(asked) == sorted({a for addresses in taps for a in addresses})  # each address once
    assert len(node.calls) == 2 and all(len(call) <= 100 for call in node.calls)
    # a later moment reads afresh
    await reads.read(["pool"])
    assert node.calls[-1] == ["pool"]
    await reads.close()


async def test_a_failed_read_fails_every_tap_that_shared_it() -> None:
    reads = AccountReads(Node(fail=True))  # type: ignore[arg-type]
    results = await asyncio.gather(reads.read(["a", "b"]), reads.read(["b", "c"]), return_exceptions=True)
    assert all(isinstance(r, RpcError) for r in results)
    with pytest.raises(RpcError):
        await reads.read(["a"])
    await reads.close()
