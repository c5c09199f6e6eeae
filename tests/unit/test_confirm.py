import asyncio

from aiohttp import web

from bot.exits.confirm import SignatureWatcher
from bot.solana_rpc import RpcError, SignatureStatus, SolanaRpc


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


async def test_balances_wanted_together_are_one_call() -> None:


    calls: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body)
        value = [{"lamports": 1000 + i, "data": ["", "base64"], "owner": "11111111111111111111111111111111",
                  "executable": False, "rentEpoch": 0, "space": 0} for i, _ in enumerate(body["params"][0])]
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {"context": {"slot": 1}, "value": value}})

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rpc = SolanaRpc(f"http://127.0.0.1:{port}/")
    try:
        wallets = [f"W{i:02d}" for i in range(30)]
        balances = await asyncio.gather(*(rpc.get_balance_batched(w) for w in wallets))
        assert len(calls) == 1 and calls[0]["method"] == "getMultipleAccounts"
        assert balances == [1000 + sorted(wallets).index(w) for w in wallets]
    finally:
        await rpc.close()
        await runner.cleanup()
