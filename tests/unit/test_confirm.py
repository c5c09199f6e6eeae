import asyncio

from bot.exits.confirm import SignatureWatcher
from bot.solana_rpc import RpcError, SignatureStatus


class FakeRpc:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail_next = False

    async def get_signature_statuses(self, signatures: list[str]) -> list[SignatureStatus | None]:
        self.calls.append(list(signatures))
        if self.fail_next:
            self.fail_next = False
            raise RpcError("busy", 429)
        return [SignatureStatus(10, "confirmed", None) if s.startswith("ok") else None for s in signatures]


async def test_many_sells_in_flight_share_one_status_call_a_round() -> None:
    rpc = FakeRpc()
    watcher = SignatureWatcher(rpc, interval_s=0.01)
    signatures = [f"ok{i}" for i in range(300)] + ["unknown"]
    results = await asyncio.gather(*(watcher.next_status(s) for s in signatures))
    assert [len(c) for c in rpc.calls] == [256, 45]  # the node's limit per call, one round
    assert all(r is not None and r.landed for r in results[:300]) and results[300] is None
    await watcher.close()


async def test_a_failed_round_reads_as_unknown_and_the_next_one_answers() -> None:
    rpc = FakeRpc()
    rpc.fail_next = True
    watcher = SignatureWatcher(rpc, interval_s=0.01)
    assert await watcher.next_status("ok1") is None
    status = await watcher.next_status("ok1")
    assert status is not None and status.landed
    await watcher.close()
